"""Risk decisions through the whole system on the real broker, with a deterministic clock:
normal -> allow; a new device at night -> step_up; a third request in a day -> review, then
approve -> both methods -> completed, or deny -> rejected. A deny score goes to a person, who alone
denies, with a reason from the list and a message to the customer; an approval closes the flag its
request raised; the customer's enrolled device is a known one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from services.binding import texts
from services.risk.models import KnownDevice
from services.verification.models import InboxEntry, Verification
from shared.cloudevents import Envelope
from shared.events import ReviewDecided
from tests.binding.test_api import assert_problem
from tests.binding.test_lifecycle import pending_review_for
from tests.factories import (
    Customer,
    customer_with_binding,
    decide_review,
    enrolled_device,
    idempotency_key,
    pass_verification,
    reviewer_auth,
    save_rules,
    unbind_body,
)
from tests.stack import BusTopics, Stack, Switchable, auth, eventually, running_stack

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=SHANGHAI)
TWO_AM = datetime(2026, 11, 27, 2, 0, tzinfo=SHANGHAI)
OPS = auth("ops-3", "ops")


def told(decision: str) -> str:
    """What the request view tells the customer of a risk decision (zh-CN, the default)."""
    return texts.text(f"risk.{decision}", "zh-CN")


def stack_at(moment: datetime) -> Callable[..., AsyncIterator[Stack]]:
    @pytest.fixture
    async def fixture(
        kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
    ) -> AsyncIterator[Stack]:
        async with running_stack(
            kafka_topics, database_urls, tmp_path, app_options={"risk": {"clock": lambda: moment}}
        ) as running:
            yield running

    return fixture


at_noon = stack_at(NOON)
at_night = stack_at(TWO_AM)


async def request(stack: Stack, customer: Customer, **body: object) -> dict:
    response = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests",
        json=unbind_body(**body),
        headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
    )
    assert response.status_code == 202, response.text
    return await stack.wait_for_request(
        response.json()["id"], customer.user_id, lambda body: body["risk"] is not None
    )


async def test_a_normal_request_is_allowed(at_noon: Stack) -> None:
    customer = await customer_with_binding(at_noon)
    body = await request(at_noon, customer)
    # The customer reads what the check asks of them, never the score or the signals.
    assert body["risk"] == {"summary": told("allow")}
    body = await at_noon.wait_for_request(
        body["id"], customer.user_id, lambda body: body["verification"] is not None
    )
    assert body["verification"]["methods"] == ["otp"]


async def test_a_new_device_at_night_steps_up(at_night: Stack) -> None:
    customer = await customer_with_binding(at_night)
    body = await request(at_night, customer, device_id="d-unknown")
    assert body["risk"]["summary"] == told("step_up")
    assessment = (await at_night.client("risk").get(f"/v1/assessments/{body['id']}", headers=OPS)).json()
    assert (assessment["score"], assessment["level"]) == (50, "elevated")
    assert {reason["code"]: reason["weight"] for reason in assessment["reasons"]} == {
        "device_unknown": 40,
        "night_request": 10,
    }
    body = await at_night.wait_for_request(
        body["id"], customer.user_id, lambda body: body["verification"] is not None
    )
    assert body["verification"]["methods"] == ["otp", "biometric"]


async def third_request_under_review(
    stack: Stack, first: Customer | None = None
) -> tuple[Customer, dict, dict]:
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
    decided = await decide_review(
        stack.client("risk"), review["id"], "approve", note="customer called in", reviewer="ops-3"
    )
    assert decided.status_code == 200 and decided.json()["reviewer"] == "ops-3"

    body = await stack.wait_for_request(
        third["id"], customer.user_id, lambda body: body["verification"] is not None
    )
    assert body["verification"]["methods"] == ["otp", "biometric"]
    await eventually(lambda: len(stack.codes(customer.phone)) > sent_before, 15, "no code was sent")
    await pass_verification(stack, customer, third["id"], body["verification"]["id"], device=device)
    await stack.wait_for_request(third["id"], customer.user_id, lambda body: body["status"] == "completed")


async def test_a_third_request_in_a_day_reviewed_and_denied_is_rejected(at_noon: Stack) -> None:
    customer, third, review = await third_request_under_review(at_noon)
    await decide_review(
        at_noon.client("risk"), review["id"], "deny", reason="account_security_risk", note="unusual pattern"
    )
    body = await at_noon.wait_for_request(
        third["id"], customer.user_id, lambda body: body["status"] == "rejected"
    )
    assert body["outcome_code"] == "review_denied:account_security_risk" and "unusual pattern" not in str(
        body
    ), "the ops note stays in risk"
    again = await decide_review(at_noon.client("risk"), review["id"], "approve", reviewer="rev-2")
    assert again.status_code == 409
    # One decision counted; the refused second one is not.
    metrics = (await at_noon.client("risk").get("/metrics")).text
    families = text_string_to_metric_families(metrics)
    reviews = {
        sample.labels["outcome"]: sample.value
        for family in families
        for sample in family.samples
        if sample.name == "unbind_risk_reviews_total"
    }
    assert reviews == {"deny": 1.0}


async def test_a_cancelled_request_withdraws_its_review_and_no_late_approval_sends_a_code(
    at_noon: Stack,
) -> None:
    customer, third, review = await third_request_under_review(at_noon)
    cancelled = await at_noon.client("binding").post(
        f"/v1/unbind-requests/{third['id']}/cancel", headers=auth(customer.user_id)
    )
    assert cancelled.status_code == 200, cancelled.text

    async def withdrawn() -> dict | None:
        queue = (await at_noon.client("risk").get("/v1/reviews?status=withdrawn", headers=OPS)).json()[
            "items"
        ]
        return next((item for item in queue if item["id"] == review["id"]), None)

    assert (await eventually(withdrawn, 15, "the review was not withdrawn"))[
        "note"
    ] == "withdrawn: UnbindCancelled"
    assert all(
        item["id"] != review["id"]
        for item in (await at_noon.client("risk").get("/v1/reviews?status=pending", headers=OPS)).json()[
            "items"
        ]
    )
    late = await decide_review(at_noon.client("risk"), review["id"], "approve")
    assert late.status_code == 409

    # An approval that crossed the cancellation on the topic issues no verification and sends no code.
    codes_before = at_noon.codes(customer.phone)
    approval = ReviewDecided(
        request_id=third["id"],
        binding_id=customer.binding_id,
        user_id=customer.user_id,
        decision="approve",
        reviewer="ops-3",
        required_methods=["otp", "biometric"],
    )
    crossed = Envelope.emit(approval)
    await at_noon.topics.publish_event(crossed)

    async def handled_by_verification() -> bool:
        async with at_noon.runtime("verification").session_factory() as session:
            return await session.get(InboxEntry, crossed.id) is not None

    await eventually(handled_by_verification, 15, "verification never handled the crossed approval")
    async with at_noon.runtime("verification").session_factory() as session:
        assert (
            await session.scalars(select(Verification).where(Verification.request_id == third["id"]))
        ).all() == []
    await asyncio.sleep(0.5)
    assert at_noon.codes(customer.phone) == codes_before
    assert (await at_noon.request_status(third["id"], customer.user_id))["status"] == "cancelled"


class MovableClock:
    """Risk's clock in a test: fixed, and moved on by hand."""

    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Movable:
    stack: Stack
    clock: MovableClock
    # The lines of verification and risk to notification, which a test may cut.
    lines: list[Switchable]


@pytest.fixture
async def movable(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> AsyncIterator[Movable]:
    clock, lines = MovableClock(NOON), []

    def line(transport: httpx.AsyncBaseTransport) -> Switchable:
        lines.append(Switchable(transport))
        return lines[-1]

    async with running_stack(
        kafka_topics, database_urls, tmp_path, app_options={"risk": {"clock": clock}}, notification_link=line
    ) as running:
        yield Movable(running, clock, lines)


async def new_customer_on_a_new_phone(stack: Stack, customer: Customer) -> None:
    """What the customer system tells risk of someone who opened their account 30 days ago and changed
    their phone number 3 days ago: with a device risk never saw, 20 + 25 + 40 = 85, a deny score."""
    profile = {
        "account_opened_at": (NOON - timedelta(days=30)).isoformat(),
        "phone_changed_at": (NOON - timedelta(days=3)).isoformat(),
    }
    response = await stack.client("risk").put(
        f"/internal/v1/profiles/{customer.user_id}", json=profile, headers=auth("customer-system", "service")
    )
    assert response.status_code == 204, response.text


async def assessment_of(stack: Stack, request_id: str) -> dict:
    return (await stack.client("risk").get(f"/v1/assessments/{request_id}", headers=OPS)).json()


# What the reviewer writes: a phone number in it is masked before it reaches the customer.
TO_THE_CUSTOMER = "我们两次致电 138 1234 5678 都未接通，请回电 95555 转人工"


async def test_a_deny_score_goes_to_a_person_who_alone_denies_with_a_reason_and_a_message(
    movable: Movable,
) -> None:
    stack = movable.stack
    customer = await customer_with_binding(stack)
    await new_customer_on_a_new_phone(stack, customer)
    body = await request(stack, customer, device_id="d-new-phone")
    assert (body["status"], body["risk"]["summary"]) == ("under_review", told("review")), (
        "no machine says a final no"
    )
    assessment = await assessment_of(stack, body["id"])
    assert (assessment["score"], assessment["level"], assessment["decision"]) == (85, "highest", "review")
    review = await pending_review_for(stack, body["id"])
    flags = (await stack.client("risk").get("/v1/flags", headers=OPS)).json()["items"]
    assert [flag["reason"] for flag in flags if flag["user_id"] == customer.user_id] == [
        "review by deny by score 85"
    ]

    async def decide(decision: dict, by: str = "rev-1") -> httpx.Response:
        assert (
            await stack.client("risk").post(f"/v1/reviews/{review['id']}/claim", headers=reviewer_auth(by))
        ).status_code == 200
        return await stack.client("risk").post(
            f"/v1/reviews/{review['id']}/decision", json=decision, headers=reviewer_auth(by)
        )

    # Only with a reason from the list that fits; `other` says why to the customer.
    assert_problem(await decide({"decision": "deny"}), 422, "invalid-reason")
    assert_problem(
        await decide({"decision": "deny", "reason": "other", "note": "odd"}), 422, "customer-message-required"
    )
    assert_problem(await decide({"decision": "approve", "reason": "other"}), 422, "invalid-reason")
    assert_problem(await decide({"decision": "deny", "reason": "because"}), 422, "invalid-reason")
    # A deny of a score of 85 takes two reviewers: the first one's is recorded, nothing more.
    first = await decide({"decision": "deny", "reason": "customer_unreachable", "note": "no answer"})
    assert first.status_code == 202 and first.json()["awaiting_second_reviewer"], first.text
    denial = {
        "decision": "deny",
        "reason": "customer_unreachable",
        "note": "two calls, no answer; voice sounded scripted",
        "customer_message": TO_THE_CUSTOMER,
    }
    for line in movable.lines:
        line.down = True
    assert_problem(await decide(denial, by="rev-2"), 503, "notification-unavailable")
    for line in movable.lines:
        line.down = False
    assert [
        item["id"]
        for item in (await stack.client("risk").get("/v1/reviews?status=pending", headers=OPS)).json()[
            "items"
        ]
    ] == [review["id"]], "nothing was decided"
    assert (await stack.request_status(body["id"], customer.user_id))["status"] == "under_review"

    decided = await decide(denial, by="rev-2")
    assert decided.status_code == 200, decided.text
    assert (decided.json()["reason"], decided.json()["customer_message"]) == (
        "customer_unreachable",
        TO_THE_CUSTOMER,
    )
    rejected = await stack.wait_for_request(
        body["id"], customer.user_id, lambda body: body["status"] == "rejected"
    )
    assert rejected["outcome_code"] == "review_denied:customer_unreachable"

    # One notice: the reviewer's decision in the customer's words, with the message; no second "rejected".
    notices = await stack.wait_for_notice(customer.user_id, body["id"], "review_denied")
    assert "原因：我们未能联系上您核实情况。" in notices["review_denied"]
    assert notices["review_denied"].endswith(
        "审核人员留言：我们两次致电 ***5678 都未接通，请回电 95555 转人工"
    )
    assert "unbind_rejected" not in notices and "scripted" not in str(notices), (
        "the internal note stays in risk"
    )

    # The stream says who decided and why, by code; the words stay with the services that hold them.
    decision = next(
        event.data for event in await stack.topics.request_events(body["id"]) if event.type == "ReviewDecided"
    )
    assert (decision.reason, decision.customer_message, decision.review_id, decision.origin) == (
        "customer_unreachable",
        True,
        review["id"],
        "risk",
    )
    raw = b"".join(record.value for record in await stack.topics.records())
    assert "未接通".encode() not in raw and b"scripted" not in raw

    # The customer can appeal, once.
    appealed = await stack.client("binding").post(
        f"/v1/unbind-requests/{body['id']}/appeal",
        json={"message": "请再看看"},
        headers=auth(customer.user_id),
    )
    assert appealed.status_code == 200 and appealed.json()["status"] == "under_review"
    assert (await pending_review_for(stack, body["id"]))["origin"] == "appeal"


async def test_a_customer_approved_once_is_not_sent_to_review_forever(movable: Movable) -> None:
    stack = movable.stack
    customer = await customer_with_binding(stack)
    second = await customer_with_binding(stack, user_id=customer.user_id)
    await new_customer_on_a_new_phone(stack, customer)
    first = await request(stack, customer, device_id="d-new-phone")
    assert first["status"] == "under_review"
    review = await pending_review_for(stack, first["id"])
    approved = await decide_review(
        stack.client("risk"), review["id"], "approve", note="called back: it was her", reviewer="ops-3"
    )
    assert approved.status_code == 200, approved.text

    # The flag the request raised closed with the approval, saying by whom and by which review.
    flags = [
        flag
        for flag in (await stack.client("risk").get("/v1/flags?active=false", headers=OPS)).json()["items"]
        if flag["user_id"] == customer.user_id
    ]
    assert [(flag["cleared_by"], flag["cleared_reason"]) for flag in flags] == [
        ("ops-3", f"review {review['id']} approved")
    ]
    assert flags[0]["cleared_at"] is not None
    assert all(
        flag["user_id"] != customer.user_id
        for flag in (await stack.client("risk").get("/v1/flags", headers=OPS)).json()["items"]
    )

    # A day later, from the same phone: 15 (a device seen this week) + 25 + 20, not 30 more for a flag ops
    # cleared.
    movable.clock.at = NOON + timedelta(hours=25)
    again = await request(stack, second, device_id="d-new-phone")
    assessment = await assessment_of(stack, again["id"])
    assert (again["risk"]["summary"], assessment["decision"], assessment["score"]) == (
        told("step_up"),
        "step_up",
        60,
    ), assessment
    assert "account_flagged" not in {reason["code"] for reason in assessment["reasons"]}


async def test_a_request_from_an_enrolled_device_is_from_a_known_one_and_from_a_revoked_one_is_not(
    at_noon: Stack,
) -> None:
    customer = await customer_with_binding(at_noon)
    second = await customer_with_binding(at_noon, user_id=customer.user_id)
    device = await enrolled_device(at_noon, customer)

    async def known(revoked: bool) -> bool:
        async with at_noon.runtime("risk").session_factory() as session:
            row = await session.get(KnownDevice, (customer.user_id, device.device_id))
            return row is not None and (row.revoked_at is not None) == revoked

    await eventually(lambda: known(revoked=False), 15, "risk never learned of the enrolled device")
    body = await request(at_noon, customer, device_id=device.device_id)
    reasons = {reason["code"] for reason in (await assessment_of(at_noon, body["id"]))["reasons"]}
    assert "device_unknown" not in reasons and "device_recent" in reasons, reasons
    assert body["risk"]["summary"] == told("allow")

    revoked = await at_noon.client("verification").delete(
        f"/v1/devices/{device.device_id}", headers=auth(customer.user_id)
    )
    assert revoked.status_code == 204, revoked.text
    await eventually(lambda: known(revoked=True), 15, "risk never learned of the revocation")
    again = await request(at_noon, second, device_id=device.device_id)
    assert "device_unknown" in {
        reason["code"] for reason in (await assessment_of(at_noon, again["id"]))["reasons"]
    }, "a revoked key is no longer the customer's"


@pytest.mark.kafka
async def test_a_saved_rule_with_or_and_in_changes_a_live_decision(at_noon: Stack) -> None:
    """A lost phone's device id or a listed network: the same request, steps up before the rule and
    goes to a person after it is saved."""
    stack = at_noon
    before, after, elsewhere = [await customer_with_binding(stack) for _ in range(3)]
    assert (await request(stack, before, device_id="d-lost-phone"))["risk"]["summary"] == told("step_up")

    lost = [
        {
            "name": "lost phones and listed networks",
            "action": "review",
            "if": 'device_id in ("d-lost-phone", "d-other") or client_ip in ("192.0.2.0/24")',
        }
    ]
    assert (await save_rules(stack.client("risk"), lost))["version"] == 2
    body = await request(stack, after, device_id="d-lost-phone")
    assert (body["status"], body["risk"]["summary"]) == ("under_review", told("review"))
    assessment = await assessment_of(stack, body["id"])
    assert (assessment["matched_rule"], assessment["rules_version"], assessment["machine_decision"],
        assessment["device_id"]) == (
        "lost phones and listed networks", 2, "review", "d-lost-phone"
    )  # fmt: skip
    # Neither listed: the thresholds decide, as before.
    assert (await request(stack, elsewhere, device_id="d-new"))["risk"]["summary"] == told("step_up")
