"""Risk decisions through the whole system on the real broker, with a deterministic clock:
normal -> allow; a new device at night -> step_up; a third request in a day -> review, then
approve -> both methods -> completed, or deny -> rejected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from services.binding import texts
from services.verification.models import InboxEntry, Verification
from shared.cloudevents import Envelope
from shared.events import ReviewDecided
from tests.factories import Customer, customer_with_binding, enrolled_device, idempotency_key, pass_verification, unbind_body
from tests.stack import BusTopics, Stack, auth, eventually, running_stack

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=SHANGHAI)
TWO_AM = datetime(2026, 11, 27, 2, 0, tzinfo=SHANGHAI)
OPS = auth("ops-3", "ops")


def told(decision: str) -> str:
    """What the request view tells the customer of a risk decision (zh-CN, the default)."""
    return texts.text(f"risk.{decision}", "zh-CN")


def stack_at(moment: datetime) -> Callable[..., AsyncIterator[Stack]]:
    @pytest.fixture
    async def fixture(kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
        async with running_stack(kafka_topics, database_urls, tmp_path, app_options={"risk": {"clock": lambda: moment}}) as running:
            yield running

    return fixture


at_noon = stack_at(NOON)
at_night = stack_at(TWO_AM)


async def request(stack: Stack, customer: Customer, **body: object) -> dict:
    response = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests", json=unbind_body(**body), headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()}
    )
    assert response.status_code == 202, response.text
    return await stack.wait_for_request(response.json()["id"], customer.user_id, lambda body: body["risk"] is not None)


async def test_a_normal_request_is_allowed(at_noon: Stack) -> None:
    customer = await customer_with_binding(at_noon)
    body = await request(at_noon, customer)
    # The customer reads what the check asks of them, never the score or the signals.
    assert body["risk"] == {"summary": told("allow")}
    body = await at_noon.wait_for_request(body["id"], customer.user_id, lambda body: body["verification"] is not None)
    assert body["verification"]["methods"] == ["otp"]


async def test_a_new_device_at_night_steps_up(at_night: Stack) -> None:
    customer = await customer_with_binding(at_night)
    body = await request(at_night, customer, device_id="d-unknown")
    assert body["risk"]["summary"] == told("step_up")
    assessment = (await at_night.client("risk").get(f"/v1/assessments/{body['id']}", headers=OPS)).json()
    assert (assessment["score"], assessment["level"]) == (50, "elevated")
    assert {reason["code"]: reason["weight"] for reason in assessment["reasons"]} == {"device_unknown": 40, "night_request": 10}
    body = await at_night.wait_for_request(body["id"], customer.user_id, lambda body: body["verification"] is not None)
    assert body["verification"]["methods"] == ["otp", "biometric"]


async def third_request_under_review(stack: Stack, first: Customer | None = None) -> tuple[Customer, dict, dict]:
    first = first or await customer_with_binding(stack)
    others = [await customer_with_binding(stack, user_id=first.user_id) for _ in range(2)]
    for customer in (first, others[0]):
        assert (await request(stack, customer))["status"] != "under_review"
    third = await request(stack, others[1])
    assert third["risk"]["summary"] == told("review") and third["status"] == "under_review"

    async def review() -> dict | None:
        queue = (await stack.client("risk").get("/v1/reviews?status=pending", headers=OPS)).json()["items"]
        return next((item for item in queue if item["request_id"] == third["id"]), None)

    return others[1], third, await eventually(review, 15, "no review was opened")


async def test_a_third_request_in_a_day_is_reviewed_then_approved_with_both_methods(at_noon: Stack) -> None:
    stack = at_noon
    first = await customer_with_binding(stack)
    # Enrolled before the requests: a key added after a request was made cannot sign for it.
    device = await enrolled_device(stack, first)
    customer, third, review = await third_request_under_review(stack, first)
    sent_before = len(stack.codes(customer.phone))
    decided = await stack.client("risk").post(f"/v1/reviews/{review['id']}/decision", json={"decision": "approve", "note": "customer called in"}, headers=OPS)
    assert decided.status_code == 200 and decided.json()["reviewer"] == "ops-3"

    body = await stack.wait_for_request(third["id"], customer.user_id, lambda body: body["verification"] is not None)
    assert body["verification"]["methods"] == ["otp", "biometric"]
    await eventually(lambda: len(stack.codes(customer.phone)) > sent_before, 15, "no code was sent")
    await pass_verification(stack, customer, third["id"], body["verification"]["id"], device)
    await stack.wait_for_request(third["id"], customer.user_id, lambda body: body["status"] == "completed")


async def test_a_third_request_in_a_day_reviewed_and_denied_is_rejected(at_noon: Stack) -> None:
    customer, third, review = await third_request_under_review(at_noon)
    await at_noon.client("risk").post(f"/v1/reviews/{review['id']}/decision", json={"decision": "deny", "note": "unusual pattern"}, headers=OPS)
    body = await at_noon.wait_for_request(third["id"], customer.user_id, lambda body: body["status"] == "rejected")
    assert body["outcome_code"] == "review_denied" and "unusual pattern" not in str(body), "the ops note stays in risk"
    again = await at_noon.client("risk").post(f"/v1/reviews/{review['id']}/decision", json={"decision": "approve"}, headers=OPS)
    assert again.status_code == 409
    # One decision counted; the refused second one is not.
    metrics = (await at_noon.client("risk").get("/metrics")).text
    families = text_string_to_metric_families(metrics)
    reviews = {sample.labels["outcome"]: sample.value for family in families for sample in family.samples if sample.name == "unbind_risk_reviews_total"}
    assert reviews == {"deny": 1.0}


async def test_a_cancelled_request_withdraws_its_review_and_no_late_approval_sends_a_code(at_noon: Stack) -> None:
    customer, third, review = await third_request_under_review(at_noon)
    cancelled = await at_noon.client("binding").post(f"/v1/unbind-requests/{third['id']}/cancel", headers=auth(customer.user_id))
    assert cancelled.status_code == 200, cancelled.text

    async def withdrawn() -> dict | None:
        queue = (await at_noon.client("risk").get("/v1/reviews?status=withdrawn", headers=OPS)).json()["items"]
        return next((item for item in queue if item["id"] == review["id"]), None)

    assert (await eventually(withdrawn, 15, "the review was not withdrawn"))["note"] == "withdrawn: UnbindCancelled"
    assert all(item["id"] != review["id"] for item in (await at_noon.client("risk").get("/v1/reviews?status=pending", headers=OPS)).json()["items"])
    late = await at_noon.client("risk").post(f"/v1/reviews/{review['id']}/decision", json={"decision": "approve"}, headers=OPS)
    assert late.status_code == 409

    # An approval that crossed the cancellation on the topic issues no verification and sends no code.
    codes_before = at_noon.codes(customer.phone)
    approval = ReviewDecided(
        request_id=third["id"], binding_id=customer.binding_id, user_id=customer.user_id, decision="approve", reviewer="ops-3", required_methods=["otp", "biometric"]
    )
    crossed = Envelope.emit(approval)
    await at_noon.topics.publish_event(crossed)

    async def handled_by_verification() -> bool:
        async with at_noon.runtime("verification").session_factory() as session:
            return await session.get(InboxEntry, crossed.id) is not None

    await eventually(handled_by_verification, 15, "verification never handled the crossed approval")
    async with at_noon.runtime("verification").session_factory() as session:
        assert (await session.scalars(select(Verification).where(Verification.request_id == third["id"]))).all() == []
    await asyncio.sleep(0.5)
    assert at_noon.codes(customer.phone) == codes_before
    assert (await at_noon.request_status(third["id"], customer.user_id))["status"] == "cancelled"
