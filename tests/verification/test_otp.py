"""SMS codes beyond the basics: expiry, resend, send limits, notification outages, and no code ever
on the topic or in a log line."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path

import pytest

from services.notification.models import Contact
from services.verification.models import DeliveryStatus, Verification
from shared.cloudevents import Envelope
from shared.db import utcnow
from shared.events import BindingRequested
from tests.binding.test_api import assert_problem
from tests.factories import Customer, customer_with_binding
from tests.stack import (
    BusTopics,
    Stack,
    Switchable,
    auth,
    eventually,
    make_bus_topics,
    on_memory_bus,
    running_stack,
)
from tests.verification.test_api import issued_verification, wrong


def codes_sent(stack: Stack, phone: str) -> list[str]:
    return stack.codes(phone)


async def otp(stack: Stack, user_id: str, verification_id: str, code: str):
    return await stack.client("verification").post(
        f"/v1/verifications/{verification_id}/otp", json={"code": code}, headers=auth(user_id)
    )


async def resend(stack: Stack, user_id: str, verification_id: str):
    return await stack.client("verification").post(
        f"/v1/verifications/{verification_id}/otp/resend", headers=auth(user_id)
    )


async def test_an_expired_code_is_refused(database_urls: dict[str, str], tmp_path: Path) -> None:
    async with on_memory_bus(
        database_urls,
        tmp_path,
        overrides={"verification": {"otp_ttl_seconds": 1}},
    ) as stack:
        customer = await customer_with_binding(stack)
        _, verification_id = await issued_verification(stack, customer)
        code = stack.latest_code(customer.phone)
        await asyncio.sleep(1.2)
        assert_problem(await otp(stack, customer.user_id, verification_id, code), 422, "code-expired")


def resends_at_once(
    database_urls: dict[str, str], tmp_path: Path, topics: BusTopics | None = None
) -> AbstractAsyncContextManager[Stack]:
    """The stack (on the in-memory bus unless `topics`) with no wait between two codes."""
    overrides = {"verification": {"otp_resend_interval_seconds": 0}}
    return running_stack(
        topics or make_bus_topics("memory", None), database_urls, tmp_path, overrides=overrides
    )


async def test_resend_replaces_the_code_and_the_old_one_dies(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with resends_at_once(database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        _, verification_id = await issued_verification(stack, customer)
        old = stack.latest_code(customer.phone)
        assert (await resend(stack, customer.user_id, verification_id)).status_code == 200
        await eventually(lambda: len(codes_sent(stack, customer.phone)) == 2, 10, "no second SMS")
        new = stack.latest_code(customer.phone)
        if new != old:  # one in a million: the same six digits again
            assert_problem(await otp(stack, customer.user_id, verification_id, old), 422, "wrong-code")
        accepted = await otp(stack, customer.user_id, verification_id, new)
        assert accepted.status_code == 200 and accepted.json()["status"] == "verified"


async def test_send_flooding_gets_429_with_retry_after(database_urls: dict[str, str], tmp_path: Path) -> None:
    async with on_memory_bus(database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        _, verification_id = await issued_verification(stack, customer)
        too_soon = await resend(stack, customer.user_id, verification_id)
        problem = assert_problem(too_soon, 429, "too-many-codes")
        assert 1 <= int(too_soon.headers["retry-after"]) <= 30 and problem["retry_after"] == int(
            too_soon.headers["retry-after"]
        )

    overrides = {"verification": {"otp_resend_interval_seconds": 0, "otp_sends_per_window": 5}}
    async with on_memory_bus(database_urls, tmp_path / "window", overrides=overrides) as stack:
        customer = await customer_with_binding(stack)
        _, verification_id = await issued_verification(stack, customer)
        for _ in range(5):
            assert (await resend(stack, customer.user_id, verification_id)).status_code == 200
        flood = await resend(stack, customer.user_id, verification_id)
        assert_problem(flood, 429, "too-many-codes")
        assert 590 <= int(flood.headers["retry-after"]) <= 600
        await eventually(
            lambda: len(codes_sent(stack, customer.phone)) == 6, 10, "the allowed codes were not all sent"
        )


async def test_notification_down_then_up_the_code_arrives_after_the_retry(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    links: list[Switchable] = []

    def cut(transport):
        links.append(Switchable(transport))
        return links[-1]

    # A sweep that would sleep a minute on its own: a failed send wakes it, and it sleeps only
    # until the re-send falls due.
    overrides = {"verification": {"otp_delivery_backoff_seconds": 0.5, "sweep_seconds": 60}}
    async with running_stack(
        kafka_topics, database_urls, tmp_path, overrides=overrides, notification_link=cut
    ) as stack:
        links[0].down = True
        customer = await customer_with_binding(stack)
        accepted = await stack.client("binding").post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            json={"reason": "other"},
            headers={**auth(customer.user_id), "Idempotency-Key": "outage-0001"},
        )
        issued = await stack.wait_for_request(
            accepted.json()["id"], customer.user_id, lambda body: body["verification"] is not None
        )
        verification_id = issued["verification"]["id"]

        async def delivery() -> str | None:
            body = (
                await stack.client("verification").get(
                    f"/v1/verifications/{verification_id}", headers=auth(customer.user_id)
                )
            ).json()
            return body["otp_delivery"] if body["otp_delivery"] == "failed" else None

        assert await eventually(delivery, 30, "the customer never saw the failed delivery") == "failed"
        assert stack.codes(customer.phone) == []

        links[0].down = False
        await eventually(
            lambda: codes_sent(stack, customer.phone), 30, "no code arrived after notification came back"
        )
        accepted = await otp(stack, customer.user_id, verification_id, stack.latest_code(customer.phone))
        assert accepted.status_code == 200, accepted.text


async def test_a_code_whose_send_was_cut_short_is_sent_again_by_the_sweep(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    # The process stopped while a code was on its way to notification: the row says "sending" for good
    # unless the sweep takes it, once past its deadline, like a failed send.
    overrides = {"verification": {"sweep_seconds": 0.2}}
    async with running_stack(kafka_topics, database_urls, tmp_path, overrides=overrides) as stack:
        customer = await customer_with_binding(stack)
        _, verification_id = await issued_verification(stack, customer)
        async with stack.runtime("verification").unit_of_work() as uow:
            verification = await uow.session.get(Verification, verification_id)
            assert verification is not None and verification.otp_delivery == DeliveryStatus.SENT
            verification.otp_delivery = DeliveryStatus.SENDING
            verification.next_delivery_at = utcnow() - timedelta(seconds=1)
        await eventually(
            lambda: len(codes_sent(stack, customer.phone)) == 2, 15, "the cut-short code was not sent again"
        )
        accepted = await otp(stack, customer.user_id, verification_id, stack.latest_code(customer.phone))
        assert accepted.status_code == 200, accepted.text


async def test_no_code_on_the_topic_or_in_the_logs(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with resends_at_once(database_urls, tmp_path, kafka_topics) as stack:
        customer = await customer_with_binding(stack)
        request_id, verification_id = await issued_verification(stack, customer)
        await resend(stack, customer.user_id, verification_id)
        await eventually(lambda: len(codes_sent(stack, customer.phone)) == 2, 10, "no second SMS")
        await otp(
            stack,
            customer.user_id,
            verification_id,
            "000000" if stack.latest_code(customer.phone) != "000000" else "111111",
        )
        await otp(stack, customer.user_id, verification_id, stack.latest_code(customer.phone))
        await stack.wait_for_request(request_id, customer.user_id, lambda body: body["status"] == "completed")
        raw = b"".join(
            record.value + b"".join(value for _, value in record.headers)
            for record in await kafka_topics.records()
        )

    logs = "".join(capfd.readouterr())
    assert "service started" in logs
    for code in codes_sent(stack, customer.phone):
        assert code.encode() not in raw, "a code reached the topic"
        assert code not in logs, "a code reached a log line"


async def test_resends_keep_the_attempt_count_five_checks_in_total(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    # As Twilio Verify does: a resend replaces the code, not the budget of guesses.
    async with resends_at_once(database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        request_id, verification_id = await issued_verification(stack, customer)
        first = stack.latest_code(customer.phone)
        for remaining in (4, 3, 2):
            assert (
                assert_problem(
                    await otp(stack, customer.user_id, verification_id, wrong(first)), 422, "wrong-code"
                )["attempts_remaining"]
                == remaining
            )
        resent = await resend(stack, customer.user_id, verification_id)
        assert resent.status_code == 200 and resent.json()["otp_attempts_remaining"] == 2
        await eventually(lambda: len(codes_sent(stack, customer.phone)) == 2, 10, "no second SMS")
        second = stack.latest_code(customer.phone)
        assert (
            assert_problem(
                await otp(stack, customer.user_id, verification_id, wrong(second)), 422, "wrong-code"
            )["attempts_remaining"]
            == 1
        )
        assert (
            assert_problem(
                await otp(stack, customer.user_id, verification_id, wrong(second)), 422, "verification-locked"
            )["attempts_remaining"]
            == 0
        )
        assert_problem(
            await otp(stack, customer.user_id, verification_id, second), 409, "verification-failed"
        )
        assert_problem(await resend(stack, customer.user_id, verification_id), 409, "verification-failed")
        rejected = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["status"] == "rejected"
        )
        assert rejected["outcome_code"] == "verification_failed:too_many_attempts"


async def test_a_bind_request_gets_its_own_code_under_the_id_binding_named_and_never_emits_verified(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    overrides = {"verification": {"otp_resend_interval_seconds": 0}}
    async with running_stack(
        kafka_topics, database_urls, tmp_path, ("verification", "notification"), overrides=overrides
    ) as stack:
        customer = Customer(f"u-{uuid.uuid4().hex[:8]}", "+8613800001234", "", "b-new", 0, 0)
        async with stack.runtime("notification").unit_of_work() as uow:
            uow.session.add(Contact(user_id=customer.user_id, phone=customer.phone, locale="zh-CN"))
        asked = BindingRequested(
            request_id=str(uuid.uuid4()), binding_id="b-new", user_id=customer.user_id,
            verification_id=str(uuid.uuid4()),
            lender="example_bank", account_last4="1234", monthly_instalment=8000, auto_debit=True,
        )  # fmt: skip
        await kafka_topics.publish_event(
            Envelope.emit(asked), times=2
        )  # redelivered: one verification, one code
        await eventually(lambda: codes_sent(stack, customer.phone), 15, "no binding code was sent")
        state = (
            await stack.client("verification").get(
                f"/v1/verifications/{asked.verification_id}", headers=auth(customer.user_id)
            )
        ).json()
        assert (state["purpose"], state["request_id"], state["methods"], state["status"]) == (
            "binding",
            asked.request_id,
            ["otp"],
            "pending",
        )
        assert "您正在绑定示例银行 尾号 1234 的房贷还款账户" in next(
            sms["text"] for sms in stack.sms_messages() if sms["to"] == customer.phone
        )
        assert (await resend(stack, customer.user_id, asked.verification_id)).status_code == 200
        await eventually(lambda: len(codes_sent(stack, customer.phone)) == 2, 10, "no second code")
        assert (
            await otp(stack, customer.user_id, asked.verification_id, stack.latest_code(customer.phone))
        ).json()["status"] == "verified"
        await eventually(
            lambda: _types(
                kafka_topics, asked.request_id, ["BindingRequested", "BindingRequested", "BindingVerified"]
            ),
            15,
            "no BindingVerified",
        )


async def _types(topics: BusTopics, request_id: str, expected: list[str]) -> bool:
    return [event.type for event in await topics.request_events(request_id)] == expected
