"""Device keys are a second factor: over the real broker, a key enrolled with a customer token alone
is pending and passes no biometric; its own SMS code activates it and the customer hears of it on
every channel; a key activated after a request was made cannot sign for that request; the customer
lists and revokes keys, and a revoked key never passes again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.notification.models import Delivery
from services.verification.models import OutboxMessage
from shared.cloudevents import Envelope
from tests.binding.test_api import assert_problem
from tests.contracts import assert_records_follow_contract
from tests.factories import Customer, customer_with_binding, enrolled_device, pending_device
from tests.stack import BusTopics, Stack, auth, eventually, on_memory_bus, running_stack
from tests.verification.test_api import wrong
from tests.verification.test_biometric import WITHOUT_RISK, challenge, step_up, submit
from tools.device_simulator import DeviceSimulator

EVERY_CHANNEL = {"sms": "sent", "push": "sent", "inapp": "sent", "email": "sent"}


@pytest.fixture
async def stack(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> AsyncIterator[Stack]:
    async with running_stack(kafka_topics, database_urls, tmp_path, WITHOUT_RISK) as running:
        yield running


async def devices(stack: Stack, user_id: str) -> list[dict[str, Any]]:
    response = await stack.client("verification").get("/v1/devices", headers=auth(user_id))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def device(stack: Stack, user_id: str, device_id: str) -> dict[str, Any]:
    response = await stack.client("verification").get(f"/v1/devices/{device_id}", headers=auth(user_id))
    assert response.status_code == 200, response.text
    return response.json()


async def events_of(stack: Stack, event_type: str, count: int) -> list[Envelope]:
    async def found() -> list[Envelope] | None:
        events = [event for event in await stack.topics.events() if event.type == event_type]
        return events if len(events) >= count else None

    return await eventually(found, 15, f"fewer than {count} {event_type} on the topic")


async def deliveries_settled(
    stack: Stack, user_id: str, kind: str, expected: dict[str, str]
) -> list[Delivery]:
    """The deliveries of one message kind to the customer, once none is queued and each channel's
    status is as expected."""

    async def settled() -> list[Delivery] | None:
        async with stack.runtime("notification").session_factory() as session:
            rows = list(
                (
                    await session.scalars(
                        select(Delivery).where(Delivery.user_id == user_id, Delivery.kind == kind)
                    )
                ).all()
            )
        done = all(row.status != "queued" for row in rows)
        return rows if done and {(row.channel, row.status) for row in rows} == set(expected.items()) else None

    return await eventually(settled, 20, f"the {kind} deliveries did not reach {expected}")


async def sign_for(
    stack: Stack, customer: Customer, key: DeviceSimulator, request_id: str, *, verification_id: str
):
    issued = await challenge(stack, customer, verification_id)
    return await submit(
        stack,
        customer,
        verification_id,
        key.sign(issued["challenge"], verification_id, request_id, issued["impact_hash"]),
    )


async def test_a_key_enrolled_with_a_customer_token_alone_is_pending_and_passes_no_biometric(
    stack: Stack,
) -> None:
    customer = await customer_with_binding(stack)
    key, enrolment = await pending_device(stack, customer)
    assert (enrolment["request_id"], enrolment["device_id"], enrolment["methods"]) == (
        None,
        key.device_id,
        ["otp"],
    )
    text = stack.sms_messages()[-1]["text"]
    assert "添加新设备" in text and "如非本人操作" in text, "the code SMS says what the code is for"
    assert [
        (item["id"], item["status"], item["activated_at"]) for item in await devices(stack, customer.user_id)
    ] == [(key.device_id, "pending", None)]
    # The enrolment's verification takes the SMS code only.
    challenge_url = f"/v1/verifications/{enrolment['id']}/biometric/challenge"
    assert_problem(
        await stack.client("verification").post(challenge_url, headers=auth(customer.user_id)),
        409,
        "biometric-not-expected",
    )

    # Even a request made from that device cannot be signed for with the pending key.
    request_id, verification_id = await step_up(stack, customer, key.device_id)
    refused = await sign_for(stack, customer, key, request_id, verification_id=verification_id)
    assert assert_problem(refused, 422, "device-not-active")["attempts_remaining"] == 4


async def test_the_code_activates_the_key_and_the_customer_is_told_on_every_channel(stack: Stack) -> None:
    customer = await customer_with_binding(stack, email="customer@example.com")
    key = await enrolled_device(stack, customer)
    [listed] = await devices(stack, customer.user_id)
    assert listed["status"] == "active" and listed["activated_at"] is not None and "public_key" not in listed

    [enrolled] = await events_of(stack, "DeviceEnrolled", 1)
    assert enrolled.data.model_dump() == {"user_id": customer.user_id, "device_id": key.device_id}, (
        "ids only: no name, no key"
    )
    records = await stack.topics.records()
    assert [
        record.key
        for record in records
        if (record.headers and dict(record.headers).get("ce_type") == b"DeviceEnrolled")
    ] == [customer.user_id.encode()]
    assert not [record for record in records if b"Phone" in record.value], (
        "the device's name stays in verification"
    )
    assert_records_follow_contract(records)
    assert not [
        event.type
        for event in await stack.topics.events()
        if event.type in ("Verified", "VerificationFailed")
    ], "an enrolment is no unbind verification"

    await deliveries_settled(stack, customer.user_id, "device_enrolled", EVERY_CHANNEL)
    inbox = (
        await stack.client("notification").get("/v1/notifications", headers=auth(customer.user_id))
    ).json()["items"]
    assert [(item["kind"], item["title"], item["request_id"]) for item in inbox] == [
        ("device_enrolled", "已添加新设备", None)
    ]
    assert "如非本人操作" in inbox[0]["body"]
    assert (stack.var_dir / "email.jsonl").read_text().count("customer@example.com") == 1
    # A security message: the customer cannot turn it off.
    refused = await stack.client("notification").put(
        "/v1/preferences", json={"opt_out": {"device_enrolled": ["push"]}}, headers=auth(customer.user_id)
    )
    assert_problem(refused, 422, "security-message")


async def test_wrong_codes_lock_the_enrolment_and_no_unbind_event_is_emitted(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    key, enrolment = await pending_device(stack, customer)
    url = f"/v1/verifications/{enrolment['id']}/otp"
    bad = {"code": wrong(stack.latest_code(customer.phone))}
    answers = [
        await stack.client("verification").post(url, json=bad, headers=auth(customer.user_id))
        for _ in range(5)
    ]
    assert assert_problem(answers[-1], 422, "verification-locked")["detail"].startswith(
        "错误次数过多，本次验证已锁定"
    )
    right = {"code": stack.latest_code(customer.phone)}
    assert_problem(
        await stack.client("verification").post(url, json=right, headers=auth(customer.user_id)),
        409,
        "verification-failed",
    )

    viewed = await device(stack, customer.user_id, key.device_id)
    assert viewed["status"] == "revoked"
    assert [(row["action"], row["actor"]) for row in viewed["history"]] == [
        ("enrolment_requested", customer.user_id),
        ("enrolment_failed", customer.user_id),
    ]
    again = await stack.client("verification").post(
        "/v1/devices", json=key.enrolment(), headers=auth(customer.user_id)
    )
    assert_problem(again, 409, "device-enrolled")

    # Another key enrolled properly: once its DeviceEnrolled is out, whatever the failed one emitted is too.
    other = await enrolled_device(stack, customer)
    [enrolled] = await events_of(stack, "DeviceEnrolled", 1)
    assert enrolled.data.device_id == other.device_id
    assert [event.type for event in await stack.topics.events()] == ["DeviceEnrolled"]


async def test_a_key_activated_after_the_request_cannot_sign_for_it_but_can_for_the_next(
    stack: Stack,
) -> None:
    customer = await customer_with_binding(stack)
    request_id, verification_id = await step_up(stack, customer, "d-requesting-phone")
    # A stolen token and the SMS of the moment: a key added mid-step-up, code confirmed and all.
    late = await enrolled_device(stack, customer)
    refused = await sign_for(stack, customer, late, request_id, verification_id=verification_id)
    assert assert_problem(refused, 422, "device-newer-than-request")["attempts_remaining"] == 4
    # The device the request came from may still be added during it.
    requesting = await enrolled_device(stack, customer, DeviceSimulator.generate("d-requesting-phone"))
    passed = await sign_for(stack, customer, requesting, request_id, verification_id=verification_id)
    assert passed.status_code == 200 and passed.json()["passed_methods"] == ["biometric"], passed.text

    # The next request was made after the key was active: it signs.
    second = await customer_with_binding(stack, user_id=customer.user_id)
    next_request, next_verification = await step_up(stack, second)
    signed = await sign_for(stack, customer, late, next_request, verification_id=next_verification)
    assert signed.status_code == 200, signed.text


async def test_the_customer_lists_and_revokes_keys_and_a_revoked_key_never_passes(stack: Stack) -> None:
    customer, other = await customer_with_binding(stack), await customer_with_binding(stack)
    key = await enrolled_device(stack, customer)
    spare, spare_enrolment = await pending_device(stack, customer)
    listed = await devices(stack, customer.user_id)
    assert [(item["id"], item["status"]) for item in listed] == [
        (key.device_id, "active"),
        (spare.device_id, "pending"),
    ]
    assert await devices(stack, other.user_id) == []

    client, owner, intruder = stack.client("verification"), auth(customer.user_id), auth(other.user_id)
    assert_problem(await client.get(f"/v1/devices/{key.device_id}", headers=intruder), 404, "not-found")
    assert_problem(await client.delete(f"/v1/devices/{key.device_id}", headers=intruder), 404, "not-found")
    assert (await device(stack, customer.user_id, key.device_id))["status"] == "active"

    assert (await client.delete(f"/v1/devices/{key.device_id}", headers=owner)).status_code == 204
    assert (await client.delete(f"/v1/devices/{key.device_id}", headers=owner)).status_code == 204, (
        "revoking again changes nothing"
    )
    assert (await client.delete(f"/v1/devices/{spare.device_id}", headers=owner)).status_code == 204
    revoked = await device(stack, customer.user_id, key.device_id)
    assert revoked["status"] == "revoked" and revoked["revoked_at"] is not None
    assert [(row["action"], row["actor"]) for row in revoked["history"]] == [
        ("enrolment_requested", customer.user_id),
        ("activated", customer.user_id),
        ("revoked", customer.user_id),
    ]
    # The pending key's enrolment ended with it: its code no longer works.
    code = {"code": stack.latest_code(customer.phone)}
    assert_problem(
        await client.post(f"/v1/verifications/{spare_enrolment['id']}/otp", json=code, headers=owner),
        409,
        "verification-voided",
    )

    revocations = await events_of(stack, "DeviceRevoked", 2)
    assert [event.data.model_dump() for event in revocations] == [
        {"user_id": customer.user_id, "device_id": key.device_id},
        {"user_id": customer.user_id, "device_id": spare.device_id},
    ]
    rows = await deliveries_settled(
        stack, customer.user_id, "device_revoked", {"sms": "sent", "push": "sent", "inapp": "sent"}
    )
    assert len(rows) == 6, "one message per revocation and channel (no email on file)"

    request_id, verification_id = await step_up(stack, customer, key.device_id)
    refused = await sign_for(stack, customer, key, request_id, verification_id=verification_id)
    assert_problem(refused, 422, "device-not-active")


async def test_an_enrolment_not_confirmed_in_time_revokes_the_key(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    overrides = {"verification": {"verification_ttl_seconds": 1, "sweep_seconds": 0.2}}
    async with on_memory_bus(database_urls, tmp_path, WITHOUT_RISK, overrides=overrides) as stack:
        customer = await customer_with_binding(stack)
        key, _ = await pending_device(stack, customer)

        async def revoked() -> dict[str, Any] | None:
            viewed = await device(stack, customer.user_id, key.device_id)
            return viewed if viewed["status"] == "revoked" else None

        viewed = await eventually(revoked, 10, "the expired enrolment left the key pending")
        assert [(row["action"], row["actor"]) for row in viewed["history"]] == [
            ("enrolment_requested", customer.user_id),
            ("enrolment_failed", "system"),
        ]
        async with stack.runtime("verification").session_factory() as session:
            emitted = (await session.scalars(select(OutboxMessage.event_type))).all()
        assert emitted == [], "no VerificationFailed: an enrolment is no unbind verification"
