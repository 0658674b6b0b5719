"""Support for the customer on the phone, in notification: find them by masked phone, list their
messages (masked, never a code), resend one they lost (audited; a code never); on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.notification.models import Contact
from tests.binding.test_api import assert_problem
from tests.factories import Customer, customer_with_binding
from tests.stack import Stack, auth, eventually, on_memory_bus
from tests.verification.test_api import issued_verification

OPS = auth("ops-1", "ops")


@pytest.fixture
async def stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with on_memory_bus(database_urls, tmp_path) as running:
        yield running


async def _contact(stack: Stack, user_id: str, phone: str) -> None:
    async with stack.runtime("notification").unit_of_work() as uow:
        uow.session.add(Contact(user_id=user_id, phone=phone, email=f"{user_id}@example.com", locale="zh-CN"))


async def _messages(stack: Stack, **params: str) -> list[dict]:
    response = await stack.client("notification").get("/v1/ops/notifications", params=params, headers=OPS)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def _inbox(stack: Stack, customer: Customer, request_id: str, kind: str) -> list[dict]:
    items = (
        await stack.client("notification").get("/v1/notifications", headers=auth(customer.user_id))
    ).json()["items"]
    return [item for item in items if item["request_id"] == request_id and item["kind"] == kind]


async def test_ops_find_a_customer_by_masked_phone_and_not_another(stack: Stack) -> None:
    await _contact(stack, "u-wang", "+8613812345678")
    await _contact(stack, "u-zhao", "+8613912345678")  # the same last four, another prefix
    await _contact(stack, "u-qian", "+8613812340000")  # the same prefix, other last four
    response = await stack.client("notification").get(
        "/v1/ops/customers", params={"phone": "138****5678"}, headers=OPS
    )
    assert response.status_code == 200, response.text
    assert response.json()["items"] == [
        {"user_id": "u-wang", "phone": "138****5678", "email": "u***@example.com", "locale": "zh-CN"}
    ]
    by_id = await stack.client("notification").get(
        "/v1/ops/customers", params={"user_id": "u-zhao"}, headers=OPS
    )
    assert [item["phone"] for item in by_id.json()["items"]] == ["139****5678"]
    assert (
        await stack.client("notification").get(
            "/v1/ops/customers", params={"user_id": "u-nobody"}, headers=OPS
        )
    ).json()["items"] == []
    assert "13812345678" not in response.text + by_id.text


@pytest.mark.parametrize(
    "params",
    [
        {"phone": "13812345678"},
        {"phone": "138***5678"},
        {"phone": "1381234****"},
        {"phone": "138****5678", "user_id": "u-wang"},
        {},
    ],
)
async def test_a_malformed_lookup_is_422(stack: Stack, params: dict) -> None:
    response = await stack.client("notification").get("/v1/ops/customers", params=params, headers=OPS)
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json", (
        response.text
    )


async def test_messages_are_listed_masked_and_a_code_has_no_text(stack: Stack) -> None:
    customer = await customer_with_binding(stack, awake=True)
    request_id, _ = await issued_verification(stack, customer)
    code = stack.latest_code(customer.phone)
    await eventually(
        lambda: _inbox(stack, customer, request_id, "unbind_requested"), 10, "no notice in the inbox"
    )

    messages = await _messages(stack, request_id=request_id)
    assert {(message["kind"], message["channel"]) for message in messages} >= {
        ("unbind_requested", "inapp"),
        ("unbind_requested", "sms"),
        ("otp_code", "sms"),
    }
    sms = next(message for message in messages if message["kind"] == "otp_code")
    assert sms["destination"] == f"138****{customer.phone[-4:]}" and sms["status"] == "sent"
    assert all("body" not in message and "text" not in message for message in messages)
    listed = str(messages)
    assert code not in listed and customer.phone.removeprefix("+86") not in listed
    assert {message["id"] for message in await _messages(stack, user_id=customer.user_id)} >= {
        message["id"] for message in messages
    }
    assert_problem(
        await stack.client("notification").get("/v1/ops/notifications", headers=OPS), 422, "filter-required"
    )


async def test_a_lost_message_is_resent_audited_and_a_code_never(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    customer = await customer_with_binding(stack, awake=True)
    request_id, _ = await issued_verification(stack, customer)
    await eventually(
        lambda: _inbox(stack, customer, request_id, "unbind_requested"), 10, "no notice in the inbox"
    )
    messages = await _messages(stack, request_id=request_id)
    notice = next(
        message
        for message in messages
        if (message["kind"], message["channel"]) == ("unbind_requested", "inapp")
    )
    code_sms = next(message for message in messages if message["kind"] == "otp_code")

    refused = assert_problem(
        await stack.client("notification").post(
            f"/v1/ops/notifications/{code_sms['id']}/resend", json={"reason": "lost it"}, headers=OPS
        ),
        409,
        "not-resendable",
    )
    assert "new code" in refused["detail"]
    assert len(await _messages(stack, request_id=request_id)) == len(messages), (
        "a refused resend changes nothing"
    )
    sms_before = len(stack.sms_messages())

    reason = "customer called from 13812345678, deleted it"
    response = await stack.client("notification").post(
        f"/v1/ops/notifications/{notice['id']}/resend", json={"reason": reason}, headers=OPS
    )
    assert response.status_code == 202, response.text
    resent = response.json()
    assert (resent["resend_of"], resent["resent_by"], resent["kind"], resent["channel"]) == (
        notice["id"],
        "ops-1",
        "unbind_requested",
        "inapp",
    )
    assert resent["resend_reason"] == "customer called from ***5678, deleted it" and resent["resent_at"]
    await eventually(
        lambda: _count(stack, customer, request_id, 2), 10, "the resent notice never reached the inbox"
    )
    listed = {message["id"]: message for message in await _messages(stack, request_id=request_id)}
    assert listed[resent["id"]]["resent_by"] == "ops-1" and listed[resent["id"]]["status"] == "sent"
    assert len(stack.sms_messages()) == sms_before, "only the inbox copy went again"

    [logged] = [record for record in caplog.records if record.getMessage() == "message resent by ops"]
    assert (logged.resent_by, logged.resend_of, logged.delivery_id) == ("ops-1", notice["id"], resent["id"])
    body = (await _inbox(stack, customer, request_id, "unbind_requested"))[0]["body"]
    assert all(body not in str(record.__dict__) for record in caplog.records), "the text is never logged"


async def _count(stack: Stack, customer: Customer, request_id: str, expected: int) -> bool:
    return len(await _inbox(stack, customer, request_id, "unbind_requested")) == expected


async def test_only_ops_call_them_and_unknown_ids_are_404(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    client = stack.client("notification")
    calls = [
        ("GET", "/v1/ops/notifications", {"params": {"user_id": customer.user_id}}),
        ("GET", "/v1/ops/customers", {"params": {"user_id": customer.user_id}}),
        ("POST", "/v1/ops/notifications/1/resend", {"json": {"reason": "lost"}}),
    ]
    for method, path, options in calls:
        assert_problem(
            await client.request(method, path, headers=auth(customer.user_id), **options), 403, "forbidden"
        )
        assert_problem(
            await client.request(method, path, headers=auth("verification", "service"), **options),
            403,
            "forbidden",
        )
    assert_problem(
        await client.post("/v1/ops/notifications/999999/resend", json={"reason": "lost"}, headers=OPS),
        404,
        "not-found",
    )
    assert (
        await client.post("/v1/ops/notifications/1/resend", json={"reason": ""}, headers=OPS)
    ).status_code == 422
