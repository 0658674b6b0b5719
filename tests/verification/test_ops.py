"""What ops read in verification for a case: every attempt on a request's verifications (method,
result, time, device; never a code) and a customer's devices; on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.binding.test_api import assert_problem
from tests.factories import customer_with_binding, enrolled_device
from tests.stack import Stack, auth, on_memory_bus
from tests.verification.test_api import issued_verification, wrong
from tests.verification.test_otp import otp

OPS = auth("ops-1", "ops")


@pytest.fixture
async def stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with on_memory_bus(
        database_urls,
        tmp_path,
        overrides={"verification": {"otp_max_attempts": 3}},
    ) as running:
        yield running


async def _verifications(stack: Stack, request_id: str) -> list[dict]:
    response = await stack.client("verification").get(
        "/v1/ops/verifications", params={"request_id": request_id}, headers=OPS
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_every_attempt_is_listed_a_wrong_code_then_the_right_one(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    request_id, verification_id = await issued_verification(stack, customer)
    code = stack.latest_code(customer.phone)
    assert (await otp(stack, customer.user_id, verification_id, wrong(code))).status_code == 422
    assert (await otp(stack, customer.user_id, verification_id, code)).status_code == 200

    [verification] = await _verifications(stack, request_id)
    assert (verification["verification_id"], verification["purpose"], verification["status"]) == (
        verification_id,
        "unbind",
        "verified",
    )
    assert verification["methods"] == ["otp"] and verification["otp_sends"] >= 1
    assert [
        (attempt["method"], attempt["result"], attempt["device_id"]) for attempt in verification["attempts"]
    ] == [("otp", "wrong_code", None), ("otp", "passed", None)]
    assert verification["attempts"][0]["at"] <= verification["attempts"][1]["at"]
    listed = str(verification)
    assert code not in listed and wrong(code) not in listed
    assert await _verifications(stack, "no-such-request") == []


async def test_the_attempt_that_locks_the_verification_reads_locked(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    request_id, verification_id = await issued_verification(stack, customer)
    code = stack.latest_code(customer.phone)
    for _ in range(3):
        await otp(stack, customer.user_id, verification_id, wrong(code))
    [verification] = await _verifications(stack, request_id)
    assert verification["status"] == "failed"
    assert [attempt["result"] for attempt in verification["attempts"]] == [
        "wrong_code",
        "wrong_code",
        "locked",
    ]


async def test_ops_list_a_customers_devices_with_their_history(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    device = await enrolled_device(stack, customer, name="Phone 13812345678")
    other = await customer_with_binding(stack)
    await enrolled_device(stack, other)

    response = await stack.client("verification").get(
        f"/v1/ops/customers/{customer.user_id}/devices", headers=OPS
    )
    assert response.status_code == 200, response.text
    [listed] = response.json()["items"]
    assert (listed["id"], listed["status"]) == (device.device_id, "active")
    assert [entry["action"] for entry in listed["history"]] == ["enrolment_requested", "activated"]
    assert listed["name"] == "Phone ***5678", "numbers the customer typed are masked"


async def test_only_ops_read_them(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    client = stack.client("verification")
    for path, params in (
        ("/v1/ops/verifications", {"request_id": "r-1"}),
        (f"/v1/ops/customers/{customer.user_id}/devices", {}),
    ):
        assert_problem(
            await client.get(path, params=params, headers=auth(customer.user_id)), 403, "forbidden"
        )
        assert_problem(
            await client.get(path, params=params, headers=auth("risk", "service")), 403, "forbidden"
        )
    assert (await client.get("/v1/ops/verifications", headers=OPS)).status_code == 422, (
        "a request id is required"
    )
    assert (
        await client.get("/v1/ops/verifications", params={"request_id": "not an id"}, headers=OPS)
    ).status_code == 422
