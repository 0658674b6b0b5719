"""The notification API: the internal send endpoint (service role, idempotent) and the inbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from services.notification.models import Delivery
from shared.cloudevents import Envelope
from shared.events import UnbindRequested
from tests.binding.test_api import assert_problem
from tests.factories import Customer, customer_with_binding, notification_knows
from tests.stack import Stack, auth, on_memory_bus


@pytest.fixture
async def stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with on_memory_bus(database_urls, tmp_path, ("binding", "notification")) as running:
        yield running


def otp_message(user_id: str, message_id: str = "v-1:otp:1") -> dict:
    return {
        "message_id": message_id,
        "user_id": user_id,
        "template": "otp_code",
        "request_id": "r-1",
        "params": {"code": "493021", "ttl_minutes": "5"},
    }


async def with_request(stack: Stack, customer: Customer) -> None:
    """Notification knows the customer's request r-1 and another's r-2, as if it had seen their
    UnbindRequested (the risk prompt, which a code waits for, is the business of test_timing.py)."""
    requested = [
        UnbindRequested(
            request_id=request_id,
            binding_id=customer.binding_id,
            user_id=user_id,
            reason="other",
            impact_hash="a" * 64,
        )
        for request_id, user_id in (("r-1", customer.user_id), ("r-2", "u-other"))
    ]
    await notification_knows(stack, *map(Envelope.emit, requested))


async def test_service_sends_a_code_once_per_message_id(stack: Stack) -> None:
    customer = await customer_with_binding(stack, locale="en")
    await with_request(stack, customer)
    client = stack.client("notification")
    first = await client.post(
        "/internal/v1/messages", json=otp_message(customer.user_id), headers=auth("verification", "service")
    )
    assert first.status_code == 202, first.text
    assert first.json()["to"] == f"{customer.phone[3:6]}****{customer.phone[-4:]}"
    assert "493021" not in first.text
    again = await client.post(
        "/internal/v1/messages", json=otp_message(customer.user_id), headers=auth("verification", "service")
    )
    assert again.status_code == 202
    messages = stack.sms_messages()
    assert len(messages) == 1, "a retried call sends nothing new"
    async with stack.runtime("notification").session_factory() as session:
        [stored] = (await session.scalars(select(Delivery).where(Delivery.event_id == "v-1:otp:1"))).all()
    assert "493021" not in stored.body and "******" in stored.body, "the stored record has the code redacted"
    assert messages[0]["to"] == customer.phone
    assert "493021" in messages[0]["text"] and "expires in 5 minutes" in messages[0]["text"]


async def test_only_services_may_send(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    client = stack.client("notification")
    for headers in ({}, auth(customer.user_id), auth("ops-1", "ops")):
        response = await client.post(
            "/internal/v1/messages", json=otp_message(customer.user_id), headers=headers
        )
        assert response.status_code in (401, 403)
    assert stack.sms_messages() == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"user_id": "u-nobody"}, "unknown-recipient"),
        ({"template": "free_text"}, "validation-error"),
        ({"params": {"code": "493021"}}, "template-parameters"),
        ({"message_id": "x" * 200}, "validation-error"),
        ({"extra": 1}, "validation-error"),
        ({"request_id": None}, "validation-error"),  # a code names its request: its prompt goes first
        ({"template": "device_enrolment_code"}, "validation-error"),  # which has none
        ({"request_id": "r-2"}, "unknown-request"),  # another customer's
    ],
)
async def test_bad_messages_are_422_and_send_nothing(stack: Stack, change: dict, code: str) -> None:
    customer = await customer_with_binding(stack)
    await with_request(stack, customer)
    response = await stack.client("notification").post(
        "/internal/v1/messages",
        json=otp_message(customer.user_id) | change,
        headers=auth("verification", "service"),
    )
    assert_problem(response, 422, code)
    assert stack.sms_messages() == []


async def test_inbox_is_per_customer(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    response = await stack.client("notification").get("/v1/notifications", headers=auth(customer.user_id))
    assert response.status_code == 200 and response.json() == {"items": [], "next_cursor": None}
    assert_problem(
        await stack.client("notification").get("/v1/notifications?limit=0", headers=auth(customer.user_id)),
        422,
        "validation-error",
    )
