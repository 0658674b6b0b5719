"""The thinnest unbind, end to end through HTTP and the event bus, on each bus and each database."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.binding import texts
from tests.contracts import assert_records_follow_contract
from tests.factories import customer_with_binding, idempotency_key, unbind_body
from tests.stack import BusTopics, auth, eventually, running_stack

FLOW = ["UnbindRequested", "RiskAssessed", "VerificationRequested", "Verified", "UnbindCompleted"]


async def test_unbind_completes_through_all_four_services(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running_stack(any_bus, database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        headers = auth(customer.user_id)

        accepted = await stack.client("binding").post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            json=unbind_body(),
            headers={**headers, "Idempotency-Key": idempotency_key()},
        )
        assert accepted.status_code == 202, accepted.text
        request_id = accepted.json()["id"]
        assert accepted.json()["status"] == "pending_risk"

        issued = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["verification"] is not None
        )
        assert issued["status"] == "pending_verification"
        assert issued["verification"]["methods"] == ["otp"]
        assert issued["risk"]["summary"] == texts.text("risk.allow", "zh-CN")
        verification_id = issued["verification"]["id"]

        code = await eventually(lambda: _code_when_sent(stack, customer.phone), 10, "no SMS code was sent")
        verified = await stack.client("verification").post(
            f"/v1/verifications/{verification_id}/otp", json={"code": code}, headers=headers
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["status"] == "verified"

        completed = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["status"] == "completed"
        )
        assert completed["follow_up"], "a completed unbind tells the customer what to check next"
        assert [entry["status"] for entry in completed["timeline"]] == [
            "pending_risk",
            "pending_verification",
            "pending_verification",
            "completed",
        ]

        binding = (
            await stack.client("binding").get(f"/v1/bindings/{customer.binding_id}", headers=headers)
        ).json()
        assert binding["status"] == "unbound"
        assert binding["auto_debit"] is False
        assert binding["credit_account"]["credit_limit"] == customer.credit_limit - customer.contribution

        async def completion_notice() -> list[dict]:
            inbox = (await stack.client("notification").get("/v1/notifications", headers=headers)).json()[
                "items"
            ]
            return [
                item
                for item in inbox
                if item["kind"] == "unbind_completed" and item["request_id"] == request_id
            ]

        notices = await eventually(completion_notice, 15, "no completion notice in the inbox")
        assert len(notices) == 1

        events = [event for event in await any_bus.events() if event.data.request_id == request_id]
        assert [event.type for event in events] == FLOW
        assert {event.subject for event in events} == {customer.binding_id}
        sources = [
            "/services/binding",
            "/services/risk",
            "/services/verification",
            "/services/verification",
            "/services/binding",
        ]
        assert [event.source for event in events] == sources
        completion = events[-1].data
        assert completion.mandates_cancelled == 1
        assert (completion.credit_limit_before, completion.credit_limit_after) == (
            customer.credit_limit,
            customer.credit_limit - customer.contribution,
        )

        records = await any_bus.records()
        assert_records_follow_contract(records)
        raw = b"".join(record.value + b"".join(value for _, value in record.headers) for record in records)
        assert code.encode() not in raw, "the one-time code must never travel on the topic"
        assert customer.phone.encode() not in raw and customer.phone[3:].encode() not in raw

    logs = "".join(capfd.readouterr())
    assert "service started" in logs, "the services' JSON logs were captured"
    for secret in (code, customer.phone[3:], customer.account_number):
        assert secret not in logs, "no code, phone or account number in any log line"


async def _code_when_sent(stack, phone: str) -> str | None:
    return stack.latest_code(phone) if stack.codes(phone) else None
