"""Device-key biometrics and the step-up path, over the real broker: both methods are needed,
`Verified` is emitted once, and every forged, replayed or cloned signature is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.cloudevents import Envelope
from shared.encoding import b64url
from shared.events import RiskAssessed
from tests.binding.test_api import assert_problem
from tests.factories import Customer, customer_with_binding, enrolled_device, idempotency_key, unbind_body
from tests.stack import BusTopics, Stack, auth, eventually, running_stack
from tools.device_simulator import DeviceSimulator

# Risk is played by the test: it decides step_up, so verification asks for both methods.
WITHOUT_RISK = ("binding", "verification", "notification")


@pytest.fixture
async def stack(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> AsyncIterator[Stack]:
    async with running_stack(kafka_topics, database_urls, tmp_path, WITHOUT_RISK) as running:
        yield running


async def step_up(stack: Stack, customer: Customer, device_id: str = "d-1") -> tuple[str, str]:
    """Request an unbind from `device_id`, let 'risk' decide step_up; returns (request id, verification
    id)."""
    sent_before = len(stack.codes(customer.phone))
    accepted = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests",
        json=unbind_body(device_id=device_id),
        headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
    )
    request_id = accepted.json()["id"]
    # As real risk would, decide only after UnbindRequested is on the topic.
    await eventually(lambda: _requested(stack, request_id), 15, "UnbindRequested was not published")
    decision = RiskAssessed(
        request_id=request_id,
        binding_id=customer.binding_id,
        user_id=customer.user_id,
        score=50,
        level="elevated",
        decision="step_up",
        reasons=[{"code": "new_device", "weight": 50, "detail": "a device seen for the first time"}],
        required_methods=["otp", "biometric"],
    )
    await stack.topics.publish_event(Envelope(data=decision, source="/services/risk"))
    issued = await stack.wait_for_request(
        request_id, customer.user_id, lambda body: body["verification"] is not None
    )
    assert issued["verification"]["methods"] == ["otp", "biometric"]
    await eventually(lambda: len(stack.codes(customer.phone)) > sent_before, 10, "no code sent")
    return request_id, issued["verification"]["id"]


async def _requested(stack: Stack, request_id: str) -> bool:
    return any(event.type == "UnbindRequested" for event in await stack.topics.request_events(request_id))


async def challenge(stack: Stack, customer: Customer, verification_id: str) -> dict:
    response = await stack.client("verification").post(
        f"/v1/verifications/{verification_id}/biometric/challenge", headers=auth(customer.user_id)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def submit(stack: Stack, customer: Customer, verification_id: str, body: dict):
    return await stack.client("verification").post(
        f"/v1/verifications/{verification_id}/biometric", json=body, headers=auth(customer.user_id)
    )


async def test_step_up_needs_both_methods_and_verified_is_emitted_once(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    device = await enrolled_device(stack, customer)
    request_id, verification_id = await step_up(stack, customer)

    code = {"code": stack.latest_code(customer.phone)}
    after_code = await stack.client("verification").post(
        f"/v1/verifications/{verification_id}/otp", json=code, headers=auth(customer.user_id)
    )
    assert (
        after_code.status_code == 200
        and after_code.json()["status"] == "pending"
        and after_code.json()["passed_methods"] == ["otp"]
    )

    issued = await challenge(stack, customer, verification_id)
    assert (issued["request_id"], len(issued["impact_hash"])) == (request_id, 64)
    passed = await submit(
        stack,
        customer,
        verification_id,
        device.sign(issued["challenge"], verification_id, request_id, issued["impact_hash"]),
    )
    assert passed.status_code == 200, passed.text
    assert passed.json()["status"] == "verified" and sorted(passed.json()["passed_methods"]) == [
        "biometric",
        "otp",
    ]

    await stack.wait_for_request(request_id, customer.user_id, lambda body: body["status"] == "completed")

    # UnbindCompleted is committed with the status and reaches the topic when the relay publishes it.
    async def flow() -> list[str] | None:
        types = [event.type for event in await stack.topics.request_events(request_id)]
        return types if "UnbindCompleted" in types else None

    types = await eventually(flow, 15, "UnbindCompleted was not published")
    assert types.count("Verified") == 1
    assert types[-2:] == ["Verified", "UnbindCompleted"]


async def test_forged_replayed_and_cloned_signatures_are_refused(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    device = await enrolled_device(stack, customer)
    request_id, verification_id = await step_up(stack, customer)

    # A signature from another key, under the enrolled device's id.
    issued = await challenge(stack, customer, verification_id)
    impostor = DeviceSimulator.generate(device.device_id)
    refused = await submit(
        stack,
        customer,
        verification_id,
        impostor.sign(issued["challenge"], verification_id, request_id, issued["impact_hash"]),
    )
    assert assert_problem(refused, 422, "signature-invalid")["attempts_remaining"] == 4

    # A signature over another request's data.
    issued = await challenge(stack, customer, verification_id)
    elsewhere = device.sign(issued["challenge"], verification_id, "another-request", issued["impact_hash"])
    assert_problem(await submit(stack, customer, verification_id, elsewhere), 422, "signature-invalid")
    issued = await challenge(stack, customer, verification_id)
    other_impact = device.sign(issued["challenge"], verification_id, request_id, "0" * 64)
    assert_problem(await submit(stack, customer, verification_id, other_impact), 422, "signature-invalid")

    # A replayed challenge: the first use passes, the replay is refused.
    issued = await challenge(stack, customer, verification_id)
    good = device.sign(issued["challenge"], verification_id, request_id, issued["impact_hash"])
    unknown = device.sign(b64url(b"\x01" * 32), verification_id, request_id, issued["impact_hash"])
    assert_problem(await submit(stack, customer, verification_id, unknown), 422, "challenge-invalid")
    assert (await submit(stack, customer, verification_id, good)).status_code == 200
    # The biometric has passed; only the code is left, so a replay of it is not even expected.
    assert_problem(await submit(stack, customer, verification_id, good), 409, "biometric-not-expected")


async def test_a_counter_that_does_not_go_up_is_refused_and_reported(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    device = await enrolled_device(stack, customer)
    first_request, first_verification = await step_up(stack, customer)
    issued = await challenge(stack, customer, first_verification)
    first = device.sign(
        issued["challenge"], first_verification, first_request, issued["impact_hash"], counter=7
    )
    assert (await submit(stack, customer, first_verification, first)).status_code == 200

    second = await customer_with_binding(stack, user_id=customer.user_id)
    request_id, verification_id = await step_up(stack, second)
    for counter in (7, 3):  # the same counter again, then a lower one: a cloned key
        issued = await challenge(stack, customer, verification_id)
        body = device.sign(
            issued["challenge"], verification_id, request_id, issued["impact_hash"], counter=counter
        )
        assert_problem(await submit(stack, customer, verification_id, body), 422, "counter-not-increased")

    async def regressions() -> list:
        return [event for event in await stack.topics.events() if event.type == "BiometricCounterRegressed"]

    reported = await eventually(lambda: _at_least(regressions, 2), 15, "the regressions were not reported")
    assert [(event.data.counter, event.data.last_counter, event.data.device_id) for event in reported] == [
        (7, 7, device.device_id),
        (3, 7, device.device_id),
    ]
    issued = await challenge(stack, customer, verification_id)
    higher = device.sign(issued["challenge"], verification_id, request_id, issued["impact_hash"], counter=8)
    assert (await submit(stack, customer, verification_id, higher)).status_code == 200


async def _at_least(fetch, count: int):
    found = await fetch()
    return found if len(found) >= count else None


async def test_five_failed_signatures_lock_the_verification(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    device = await enrolled_device(stack, customer)
    request_id, verification_id = await step_up(stack, customer)
    for _ in range(5):
        issued = await challenge(stack, customer, verification_id)
        bad = device.sign(issued["challenge"], verification_id, request_id, "f" * 64)
        last = await submit(stack, customer, verification_id, bad)
    assert_problem(last, 422, "verification-locked")
    rejected = await stack.wait_for_request(
        request_id, customer.user_id, lambda body: body["status"] == "rejected"
    )
    assert rejected["outcome_code"] == "verification_failed:too_many_attempts"


async def test_device_enrolment_rules(stack: Stack) -> None:
    customer, other = await customer_with_binding(stack), await customer_with_binding(stack)
    device = await enrolled_device(stack, customer)
    again = await stack.client("verification").post(
        "/v1/devices", json=device.enrolment(), headers=auth(other.user_id)
    )
    assert_problem(again, 409, "device-enrolled")
    rsa_like = {
        "device_id": "d-bad",
        "name": "Old phone",
        "public_key": (
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC "
            "KEY-----\n"
        ),
    }
    assert_problem(
        await stack.client("verification").post("/v1/devices", json=rsa_like, headers=auth(customer.user_id)),
        422,
        "invalid-public-key",
    )

    # The other customer's verification cannot use this customer's device.
    request_id, verification_id = await step_up(stack, other)
    issued = await challenge(stack, other, verification_id)
    borrowed = device.sign(issued["challenge"], verification_id, request_id, issued["impact_hash"])
    assert_problem(await submit(stack, other, verification_id, borrowed), 422, "device-unknown")
    assert_problem(await submit(stack, customer, verification_id, borrowed), 404, "not-found")


async def test_expiry_fails_the_verification_even_across_a_restart(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    overrides = {"verification": {"verification_ttl_seconds": 2, "sweep_seconds": 0.2}}
    async with running_stack(kafka_topics, database_urls, tmp_path, overrides=overrides) as stack:
        customer = await customer_with_binding(stack)
        accepted = await stack.client("binding").post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            json=unbind_body(),
            headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
        )
        request_id = accepted.json()["id"]
        await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["verification"] is not None
        )
    await asyncio.sleep(2.5)  # the verification's deadline passes while everything is down

    async with running_stack(kafka_topics, database_urls, tmp_path, overrides=overrides) as restarted:
        rejected = await restarted.wait_for_request(
            request_id, customer.user_id, lambda body: body["status"] == "rejected", timeout=30
        )
        assert rejected["outcome_code"] == "verification_failed:expired"
        failures = [
            event
            for event in await kafka_topics.request_events(request_id)
            if event.type == "VerificationFailed"
        ]
        assert [event.data.reason for event in failures] == ["expired"]
