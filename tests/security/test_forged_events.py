"""A forged event moves nothing: whoever can write to the topic, without the emitting service's key,
or with a key but against the consumer's own state, changes no request, no mandate, no limit, sends
no message and no lender webhook. Each forgery is dead-lettered with its reason and counted.

Run on the real broker (and on both databases): the attacker writes records to the topic directly.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from services.binding.models import Mandate, MandateStatus
from services.notification.models import Delivery, Notification
from shared.cloudevents import Envelope, header_map
from shared.events import UnbindCompleted, Verified
from shared.keys import SigningKey, new_kid
from tests.e2e.test_metrics import samples
from tests.factories import Customer, customer_with_binding, idempotency_key, unbind_body
from tests.keys import service_key
from tests.stack import BusTopics, Stack, auth, eventually, running_stack

STRANGER = SigningKey.generate(new_kid("verification"))  # the right shape of kid, but no key the JWKS holds


@dataclasses.dataclass(frozen=True)
class Forgery:
    name: str
    reason: str
    source: str = "/services/verification"
    signer: Any = "verification"
    tamper: bool = False


FORGED_VERIFIED = [
    Forgery("unsigned", "unsigned", signer=None),
    Forgery("signed-by-risk", "wrong-key", signer="risk"),
    Forgery("from-the-wrong-source", "wrong-source", source="/services/risk", signer="risk"),
    Forgery("unknown-key", "unknown-key", signer=STRANGER),
    Forgery("tampered-after-signing", "bad-signature", tamper=True),
]


async def _publish(
    topics: BusTopics, envelope: Envelope, forgery: Forgery, tampered: dict[str, str] | None = None
) -> None:
    signer = service_key(forgery.signer) if isinstance(forgery.signer, str) else forgery.signer
    key, value, headers = dataclasses.replace(envelope, source=forgery.source).to_record(signer)
    if forgery.tamper:
        value = orjson.dumps(orjson.loads(value) | (tampered or {}))
    await topics.publish(value, key=key, headers=headers)


async def _pending_request(stack: Stack) -> tuple[Customer, str, str]:
    customer = await customer_with_binding(stack)
    accepted = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests",
        json=unbind_body(),
        headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
    )
    assert accepted.status_code == 202, accepted.text
    request_id = accepted.json()["id"]
    issued = await stack.wait_for_request(
        request_id, customer.user_id, lambda body: body["verification"] is not None
    )
    return customer, request_id, issued["verification"]["id"]


async def _letters(topics: BusTopics, group: str, count: int) -> list[dict[str, str]]:
    async def arrived() -> list[dict[str, str]] | None:
        letters = [header_map(record.headers) for record in await topics.records(topics.dlq_topic)]
        mine = [letter for letter in letters if letter.get("x-dlq-consumer-group") == group]
        return mine if len(mine) >= count else None

    return await eventually(arrived, 30, f"{count} dead letters of {group} did not arrive")


async def _metric(stack: Stack, service: str, name: str) -> dict[tuple[str, ...], float]:
    return samples((await stack.client(service).get("/metrics")).text, name)


@pytest.mark.kafka
async def test_a_forged_verified_completes_nothing(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer, request_id, verification_id = await _pending_request(stack)
        ids = {"request_id": request_id, "binding_id": customer.binding_id, "user_id": customer.user_id}
        for forgery in FORGED_VERIFIED:
            # The tampered one was signed for another verification, then pointed at the one the request waits
            # for.
            claimed = "another-verification" if forgery.tamper else verification_id
            envelope = Envelope.emit(Verified(**ids, verification_id=claimed, methods=["otp"]))
            await _publish(kafka_topics, envelope, forgery, tampered={"verification_id": verification_id})
        # Signed with verification's real key (a compromised verification), but not for the verification this
        # request waits for.
        await kafka_topics.publish_event(
            Envelope.emit(Verified(**ids, verification_id="not-the-one-issued", methods=["otp"]))
        )

        letters = await _letters(
            kafka_topics, stack.runtime("binding").settings.consumer_group, len(FORGED_VERIFIED) + 1
        )
        assert sorted(letter["x-dlq-reason"] for letter in letters) == sorted(
            [f.reason for f in FORGED_VERIFIED] + ["state"]
        )
        rejected = await _metric(stack, "binding", "unbind_events_rejected_total")
        assert sum(rejected.values()) == len(FORGED_VERIFIED) + 1 and all(
            labels[1] == "Verified" for labels in rejected
        )

        status = await stack.request_status(request_id, customer.user_id)
        assert status["status"] == "pending_verification", "no forged Verified completed the request"
        binding = (
            await stack.client("binding").get(
                f"/v1/bindings/{customer.binding_id}", headers=auth(customer.user_id)
            )
        ).json()
        assert binding["status"] == "unbinding" and binding["auto_debit"] is True
        assert binding["credit_account"]["credit_limit"] == customer.credit_limit
        async with stack.runtime("binding").session_factory() as session:
            assert (
                await session.scalar(
                    select(func.count()).select_from(Mandate).where(Mandate.status == MandateStatus.CANCELLED)
                )
                == 0
            )

        # The customer's real code still completes it.
        code = stack.latest_code(customer.phone)
        verified = await stack.client("verification").post(
            f"/v1/verifications/{verification_id}/otp", json={"code": code}, headers=auth(customer.user_id)
        )
        assert verified.status_code == 200, verified.text
        await stack.wait_for_request(request_id, customer.user_id, lambda body: body["status"] == "completed")


FORGED_COMPLETED = [
    Forgery("unsigned", "unsigned", source="/services/binding", signer=None),
    Forgery("signed-by-verification", "wrong-key", source="/services/binding", signer="verification"),
    Forgery(
        "signed-by-binding-for-an-unknown-binding", "state", source="/services/binding", signer="binding"
    ),
]


@pytest.mark.kafka
async def test_a_forged_unbind_completed_sends_no_message_and_no_webhook(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path, ("notification",)) as stack:
        for number, forgery in enumerate(FORGED_COMPLETED):
            ghost = UnbindCompleted(
                request_id=f"r-ghost-{number}",
                binding_id="b-does-not-exist",
                user_id="u-does-not-exist",
                mandates_cancelled=1,
                credit_limit_before=1,
                credit_limit_after=0,
            )
            await _publish(
                kafka_topics, Envelope(data=ghost, source=forgery.source, time=datetime.now(UTC)), forgery
            )

        letters = await _letters(
            kafka_topics, stack.runtime("notification").settings.consumer_group, len(FORGED_COMPLETED)
        )
        assert sorted(letter["x-dlq-reason"] for letter in letters) == sorted(
            f.reason for f in FORGED_COMPLETED
        )
        async with stack.runtime("notification").session_factory() as session:
            assert await session.scalar(select(func.count()).select_from(Delivery)) == 0, (
                "no SMS, no push, no lender webhook"
            )
            assert await session.scalar(select(func.count()).select_from(Notification)) == 0, (
                "no inbox row for a customer who does not exist"
            )
        rejected = await _metric(stack, "notification", "unbind_events_rejected_total")
        assert sum(rejected.values()) == len(FORGED_COMPLETED)
