"""The verification API: SMS one-time codes, attempts and lock-out, ownership."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.binding.test_api import assert_problem
from tests.factories import Customer, customer_with_binding, idempotency_key, unbind_body
from tests.stack import Stack, auth, eventually, on_memory_bus


@pytest.fixture
async def stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with on_memory_bus(database_urls, tmp_path) as running:
        yield running


async def issued_verification(
    stack: Stack, customer: Customer, kind: str = "unbind", body: dict | None = None
) -> tuple[str, str]:
    """Request an unbind (or, by `kind`, a pause or a switch, with `body`) and wait for its verification
    and code; returns (request id, verification id)."""
    sent_before = len(stack.codes(customer.phone))
    accepted = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/{kind}-requests",
        json=body or unbind_body(),
        headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
    )
    assert accepted.status_code == 202, accepted.text
    request_id = accepted.json()["id"]
    issued = await stack.wait_for_request(
        request_id, customer.user_id, lambda body: body["verification"] is not None
    )
    await eventually(lambda: len(stack.codes(customer.phone)) > sent_before, 10, "no code sent")
    return request_id, issued["verification"]["id"]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_code_is_sent_by_sms_and_never_shown(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    _, verification_id = await issued_verification(stack, customer)
    code = stack.latest_code(customer.phone)
    response = await stack.client("verification").get(
        f"/v1/verifications/{verification_id}", headers=auth(customer.user_id)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pending" and body["methods"] == ["otp"] and body["otp_attempts_remaining"] == 5
    assert await eventually(lambda: _delivery(stack, customer, verification_id), 10) == "sent"
    assert code not in response.text


async def _delivery(stack: Stack, customer: Customer, verification_id: str) -> str | None:
    body = (
        await stack.client("verification").get(
            f"/v1/verifications/{verification_id}", headers=auth(customer.user_id)
        )
    ).json()
    return body["otp_delivery"] if body["otp_delivery"] != "sending" else None


async def test_wrong_code_counts_an_attempt(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    _, verification_id = await issued_verification(stack, customer)
    code = stack.latest_code(customer.phone)
    url = f"/v1/verifications/{verification_id}/otp"
    problem = assert_problem(
        await stack.client("verification").post(
            url, json={"code": wrong(code)}, headers=auth(customer.user_id)
        ),
        422,
        "wrong-code",
    )
    assert problem["attempts_remaining"] == 4
    accepted = await stack.client("verification").post(
        url, json={"code": code}, headers=auth(customer.user_id)
    )
    assert accepted.status_code == 200 and accepted.json()["status"] == "verified"
    again = await stack.client("verification").post(url, json={"code": code}, headers=auth(customer.user_id))
    assert_problem(again, 409, "verification-verified")


async def test_five_wrong_codes_lock_the_verification_and_reject_the_request(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    request_id, verification_id = await issued_verification(stack, customer)
    code = stack.latest_code(customer.phone)
    url = f"/v1/verifications/{verification_id}/otp"
    for remaining in (4, 3, 2, 1):
        problem = assert_problem(
            await stack.client("verification").post(
                url, json={"code": wrong(code)}, headers=auth(customer.user_id)
            ),
            422,
            "wrong-code",
        )
        assert problem["attempts_remaining"] == remaining
    locked = assert_problem(
        await stack.client("verification").post(
            url, json={"code": wrong(code)}, headers=auth(customer.user_id)
        ),
        422,
        "verification-locked",
    )
    assert locked["attempts_remaining"] == 0
    assert_problem(
        await stack.client("verification").post(url, json={"code": code}, headers=auth(customer.user_id)),
        409,
        "verification-failed",
    )

    rejected = await stack.wait_for_request(
        request_id, customer.user_id, lambda body: body["status"] == "rejected"
    )
    assert rejected["outcome_code"] == "verification_failed:too_many_attempts"
    binding = await stack.client("binding").get(
        f"/v1/bindings/{customer.binding_id}", headers=auth(customer.user_id)
    )
    assert binding.json()["status"] == "active", "a rejected request gives the binding back"


async def test_verification_of_another_customer_is_not_found(stack: Stack) -> None:
    owner, other = await customer_with_binding(stack), await customer_with_binding(stack)
    _, verification_id = await issued_verification(stack, owner)
    code = stack.latest_code(owner.phone)
    client = stack.client("verification")
    assert_problem(
        await client.get(f"/v1/verifications/{verification_id}", headers=auth(other.user_id)),
        404,
        "not-found",
    )
    assert_problem(
        await client.post(
            f"/v1/verifications/{verification_id}/otp", json={"code": code}, headers=auth(other.user_id)
        ),
        404,
        "not-found",
    )
    check = await client.get(f"/v1/verifications/{verification_id}", headers=auth(owner.user_id))
    assert check.json()["otp_attempts_remaining"] == 5, "a stranger's attempt costs the owner nothing"


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "", 123456, None])
async def test_malformed_codes_are_422(stack: Stack, code: object) -> None:
    customer = await customer_with_binding(stack)
    _, verification_id = await issued_verification(stack, customer)
    response = await stack.client("verification").post(
        f"/v1/verifications/{verification_id}/otp", json={"code": code}, headers=auth(customer.user_id)
    )
    assert_problem(response, 422, "validation-error")
    body = (
        await stack.client("verification").get(
            f"/v1/verifications/{verification_id}", headers=auth(customer.user_id)
        )
    ).json()
    assert body["otp_attempts_remaining"] == 5
