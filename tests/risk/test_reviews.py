"""Reviews that a team can work: a reviewer claims a case (others see who holds it; the claim lapses),
waits are measured against the SLA, every decision takes a reason from the list that fits it, and
four eyes: whoever denied a request does not decide its appeal, and a deny of a high score waits for
a second, different reviewer. Roles: `ops` reads, `reviewer` claims and decides."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.risk.models import ApprovalReason, DisputeFinding, OutboxMessage
from shared.events import DenialReason
from tests.binding.test_api import assert_problem
from tests.binding.test_lifecycle import pending_review_for
from tests.factories import (
    Customer,
    customer_with_binding,
    decide_review,
    idempotency_key,
    reviewer_auth,
    save_rules,
    unbind_body,
)
from tests.risk.test_flows import NOON, MovableClock, new_customer_on_a_new_phone
from tests.stack import BusTopics, Stack, auth, make_bus_topics, running_stack

OPS = auth("ops-1", "ops")
# Saving rules is a rules admin's; this staff user holds every staff role.
REVIEW_EVERYTHING = {
    "rules": [{"name": "look at every request", "action": "review", "if": "requests_24h >= 0"}]
}
# A deny score (85: new_customer_on_a_new_phone) is at least this; a plain request (0) is below.
SECOND_REVIEWER_SCORE = 80


@dataclass
class Team:
    stack: Stack
    clock: MovableClock

    async def risk(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        return await self.stack.client("risk").request(method, path, headers=headers, **kwargs)

    async def review(self, review_id: str) -> dict:
        response = await self.risk("GET", f"/v1/reviews/{review_id}", OPS)
        assert response.status_code == 200, response.text
        return response.json()

    async def decisions_emitted(self) -> int:
        async with self.stack.runtime("risk").session_factory() as session:
            return (
                await session.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.event_type == "ReviewDecided")
                )
                or 0
            )


async def _team(topics: BusTopics, database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Team]:
    clock = MovableClock(NOON)
    overrides = {"risk": {"review_second_reviewer_score": SECOND_REVIEWER_SCORE}}
    async with running_stack(
        topics, database_urls, tmp_path, overrides=overrides, app_options={"risk": {"clock": clock}}
    ) as stack:
        await save_rules(stack.client("risk"), REVIEW_EVERYTHING["rules"])
        yield Team(stack, clock)


@pytest.fixture
async def team(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Team]:
    async for running in _team(make_bus_topics("memory", None), database_urls, tmp_path):
        yield running


@pytest.fixture
async def team_on_kafka(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> AsyncIterator[Team]:
    async for running in _team(kafka_topics, database_urls, tmp_path):
        yield running


async def under_review(
    team: Team, customer: Customer | None = None, **body: object
) -> tuple[Customer, str, dict]:
    """A request of the customer's (a new one by default) waiting for a reviewer, and its review."""
    customer = customer or await customer_with_binding(team.stack)
    response = await team.stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests",
        json=unbind_body(**body),
        headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
    )
    assert response.status_code == 202, response.text
    request_id = response.json()["id"]
    await team.stack.wait_for_request(
        request_id, customer.user_id, lambda view: view["status"] == "under_review"
    )
    return customer, request_id, await pending_review_for(team.stack, request_id)


async def high_score_under_review(team: Team) -> tuple[Customer, str, dict]:
    customer = await customer_with_binding(team.stack)
    await new_customer_on_a_new_phone(team.stack, customer)
    customer, request_id, review = await under_review(team, customer, device_id="d-new-phone")
    assert review["score"] == 85
    return customer, request_id, review


async def test_one_reviewer_holds_a_claim_others_see_who_and_it_lapses(team: Team) -> None:
    _, _, review = await under_review(team)
    claim = f"/v1/reviews/{review['id']}/claim"
    assert (review["claimed_by"], review["claim_expires_at"]) == (None, None)

    held = await team.risk("POST", claim, reviewer_auth("rev-1"))
    assert held.status_code == 200, held.text
    assert held.json()["claimed_by"] == "rev-1" and datetime.fromisoformat(
        held.json()["claim_expires_at"]
    ) == NOON + timedelta(minutes=15)
    assert (await team.review(review["id"]))["claimed_by"] == "rev-1", "others see who holds it"
    taken = assert_problem(await team.risk("POST", claim, reviewer_auth("rev-2")), 409, "review-claimed")
    assert taken["claimed_by"] == "rev-1"
    assert_problem(await team.risk("DELETE", claim, reviewer_auth("rev-2")), 409, "review-claimed")
    assert (await team.review(review["id"]))["claimed_by"] == "rev-1", "a refused claim changes nothing"

    # The holder renews: the lapse moves on from now, the claim keeps its start.
    team.clock.at = NOON + timedelta(minutes=10)
    renewed = (await team.risk("POST", claim, reviewer_auth("rev-1"))).json()
    assert (
        renewed["claimed_at"] == held.json()["claimed_at"]
        and renewed["claim_expires_at"] > held.json()["claim_expires_at"]
    )

    # 15 minutes without a renewal: the claim lapsed; nobody holds it, another reviewer may take it.
    team.clock.at = NOON + timedelta(minutes=26)
    assert (
        (await team.review(review["id"]))["claimed_by"],
        (await team.review(review["id"]))["claim_expires_at"],
    ) == (None, None)
    decision = {"decision": "approve", "reason": "false_positive"}
    assert_problem(
        await team.risk(
            "POST", f"/v1/reviews/{review['id']}/decision", reviewer_auth("rev-1"), json=decision
        ),
        409,
        "claim-required",
    )
    assert (await team.risk("POST", claim, reviewer_auth("rev-2"))).json()["claimed_by"] == "rev-2"
    assert_problem(
        await team.risk(
            "POST", f"/v1/reviews/{review['id']}/decision", reviewer_auth("rev-1"), json=decision
        ),
        409,
        "claim-required",
    )

    # Released by its holder, it is nobody's; releasing again is refused.
    assert (await team.risk("DELETE", claim, reviewer_auth("rev-2"))).json()["claimed_by"] is None
    assert_problem(await team.risk("DELETE", claim, reviewer_auth("rev-2")), 409, "not-claimed")
    assert_problem(
        await team.risk("POST", "/v1/reviews/no-such-review/claim", reviewer_auth("rev-2")), 404, "not-found"
    )


async def test_a_decision_needs_the_claim_and_a_reason_from_the_list_that_fits_or_nothing_changes(
    team: Team,
) -> None:
    _, request_id, review = await under_review(team)
    decide = f"/v1/reviews/{review['id']}/decision"
    assert_problem(
        await team.risk(
            "POST", decide, reviewer_auth("rev-1"), json={"decision": "approve", "reason": "false_positive"}
        ),
        409,
        "claim-required",
    )
    assert (
        await team.risk("POST", f"/v1/reviews/{review['id']}/claim", reviewer_auth("rev-1"))
    ).status_code == 200
    for body, allowed in [
        ({"decision": "approve"}, list(ApprovalReason)),
        ({"decision": "approve", "reason": "identity_not_confirmed"}, list(ApprovalReason)),
        ({"decision": "deny", "note": "no reason"}, list(DenialReason)),
        ({"decision": "deny", "reason": "unauthorised_unbind"}, list(DenialReason)),
        ({"decision": "deny", "reason": "because"}, list(DenialReason)),
    ]:
        refused = assert_problem(
            await team.risk("POST", decide, reviewer_auth("rev-1"), json=body), 422, "invalid-reason"
        )
        assert refused["allowed"] == allowed, body
    assert_problem(
        await team.risk("POST", decide, reviewer_auth("rev-1"), json={"decision": "deny", "reason": "other"}),
        422,
        "customer-message-required",
    )
    unchanged = await team.review(review["id"])
    assert (
        unchanged["status"],
        unchanged["reason"],
        unchanged["claimed_by"],
        unchanged["first_decision"],
    ) == ("pending", None, "rev-1", None)
    assert await team.decisions_emitted() == 0

    decided = await team.risk(
        "POST",
        decide,
        reviewer_auth("rev-1"),
        json={"decision": "approve", "reason": "behaviour_explained", "note": "travelling"},
    )
    assert decided.status_code == 200, decided.text
    assert (
        decided.json()["status"],
        decided.json()["reason"],
        decided.json()["reviewer"],
        decided.json()["claimed_by"],
    ) == ("approved", "behaviour_explained", "rev-1", None)
    assert await team.decisions_emitted() == 1
    assert (
        await team.stack.wait_for_request(
            request_id, review["user_id"], lambda view: view["verification"] is not None
        )
    )["status"] == "pending_verification"

    reasons = (await team.risk("GET", "/v1/reviews/reasons", OPS)).json()
    assert reasons == {
        "approve": list(ApprovalReason),
        "deny": list(DenialReason),
        "close_dispute": list(DisputeFinding),
    }


async def test_the_reviewer_who_denied_a_request_cannot_claim_or_decide_its_appeal(team: Team) -> None:
    customer, request_id, review = await under_review(team)
    assert (
        await decide_review(
            team.stack.client("risk"), review["id"], "deny", reason="identity_not_confirmed", reviewer="rev-1"
        )
    ).status_code == 200
    await team.stack.wait_for_request(request_id, customer.user_id, lambda view: view["status"] == "rejected")
    appealed = await team.stack.client("binding").post(
        f"/v1/unbind-requests/{request_id}/appeal",
        json={"message": "it was me"},
        headers=auth(customer.user_id),
    )
    assert appealed.status_code == 200, appealed.text
    appeal = await pending_review_for(team.stack, request_id)
    assert appeal["origin"] == "appeal"

    assert_problem(
        await team.risk("POST", f"/v1/reviews/{appeal['id']}/claim", reviewer_auth("rev-1")), 409, "four-eyes"
    )
    body = {"decision": "approve", "reason": "identity_confirmed_by_call"}
    assert_problem(
        await team.risk("POST", f"/v1/reviews/{appeal['id']}/decision", reviewer_auth("rev-1"), json=body),
        409,
        "four-eyes",
    )
    assert (await team.review(appeal["id"]))["claimed_by"] is None
    # Another reviewer decides it.
    decided = await decide_review(team.stack.client("risk"), appeal["id"], "approve", reviewer="rev-2")
    assert decided.status_code == 200 and decided.json()["reviewer"] == "rev-2", decided.text


async def test_a_deny_of_a_high_score_waits_for_a_second_reviewer_who_may_override_it(team: Team) -> None:
    customer, request_id, review = await high_score_under_review(team)
    team.clock.at = NOON + timedelta(minutes=5)
    first = await decide_review(
        team.stack.client("risk"),
        review["id"],
        "deny",
        reason="account_security_risk",
        reviewer="rev-1",
        note="pattern",
        customer_message="请致电 95555",
    )
    assert first.status_code == 202, first.text
    recorded = first.json()
    assert (
        recorded["status"],
        recorded["awaiting_second_reviewer"],
        recorded["claimed_by"],
        recorded["reviewer"],
    ) == ("pending", True, None, None)
    assert recorded["first_decision"] == {
        "reviewer": "rev-1",
        "decision": "deny",
        "reason": "account_security_risk",
        "note": "pattern",
        "customer_message": "请致电 95555",
        "decided_at": recorded["first_decision"]["decided_at"],
    }
    assert await team.decisions_emitted() == 0, "nothing is emitted before the second decision"
    assert (await team.stack.request_status(request_id, customer.user_id))["status"] == "under_review"

    # The first reviewer cannot take it again nor decide it; a second one overrides the deny.
    assert_problem(
        await team.risk("POST", f"/v1/reviews/{review['id']}/claim", reviewer_auth("rev-1")), 409, "four-eyes"
    )
    body = {"decision": "deny", "reason": "account_security_risk"}
    assert_problem(
        await team.risk("POST", f"/v1/reviews/{review['id']}/decision", reviewer_auth("rev-1"), json=body),
        409,
        "four-eyes",
    )
    approved = await decide_review(
        team.stack.client("risk"),
        review["id"],
        "approve",
        reason="identity_confirmed_by_call",
        reviewer="rev-2",
    )
    assert approved.status_code == 200, approved.text
    assert (
        approved.json()["status"],
        approved.json()["reviewer"],
        approved.json()["awaiting_second_reviewer"],
    ) == ("approved", "rev-2", False)
    assert approved.json()["customer_message"] is None, (
        "the first reviewer's message goes only with a confirmed deny"
    )
    assert await team.decisions_emitted() == 1
    await team.stack.wait_for_request(
        request_id, customer.user_id, lambda view: view["status"] == "pending_verification"
    )


async def test_a_deny_below_the_second_reviewer_score_is_final_at_once(team: Team) -> None:
    customer, request_id, review = await under_review(team)
    assert review["score"] < SECOND_REVIEWER_SCORE
    denied = await decide_review(
        team.stack.client("risk"), review["id"], "deny", reason="customer_unreachable"
    )
    assert (
        denied.status_code == 200
        and denied.json()["status"] == "denied"
        and denied.json()["first_decision"] is None
    )
    await team.stack.wait_for_request(request_id, customer.user_id, lambda view: view["status"] == "rejected")


async def test_a_case_waiting_longer_than_the_sla_is_late(team: Team) -> None:
    _, _, review = await under_review(team)
    assert (review["sla_seconds"], review["late"]) == (7200, False)
    team.clock.at = NOON + timedelta(minutes=120)
    assert (await team.review(review["id"]))["late"] is False
    team.clock.at = NOON + timedelta(minutes=121)
    late = await team.review(review["id"])
    assert (late["late"], late["waiting_seconds"]) == (True, 121 * 60)
    assert [
        item["late"]
        for item in (await team.risk("GET", "/v1/reviews", OPS, params={"status": "pending"})).json()["items"]
    ] == [True]
    decided = await decide_review(team.stack.client("risk"), review["id"], "approve")
    assert decided.json()["late"] is False, "a decided case is no longer late"


async def test_ops_read_and_only_reviewers_claim_or_decide(team: Team) -> None:
    customer, request_id, review = await under_review(team)
    for method, path, body in [
        ("POST", f"/v1/reviews/{review['id']}/claim", None),
        ("DELETE", f"/v1/reviews/{review['id']}/claim", None),
        ("POST", f"/v1/reviews/{review['id']}/decision", {"decision": "approve", "reason": "false_positive"}),
    ]:
        assert_problem(await team.risk(method, path, OPS, json=body), 403, "forbidden")
        assert_problem(await team.risk(method, path, auth(customer.user_id), json=body), 403, "forbidden")
    for path in (
        f"/v1/reviews/{review['id']}",
        "/v1/reviews/reasons",
        f"/v1/customers/{customer.user_id}/risk",
    ):
        assert (await team.risk("GET", path, OPS)).status_code == 200
        assert_problem(await team.risk("GET", path, auth(customer.user_id)), 403, "forbidden")
        # A reviewer's token with no ops role reads nothing: roles add up, they do not imply each other.
        assert_problem(await team.risk("GET", path, auth("rev-9", "reviewer")), 403, "forbidden")
    assert (await team.review(review["id"]))["claimed_by"] is None


async def test_the_queue_filters_and_a_customers_risk(team: Team) -> None:
    customer = await customer_with_binding(team.stack)
    await new_customer_on_a_new_phone(team.stack, customer)
    customer, request_id, review = await under_review(team, customer)
    other, _, _ = await under_review(team)
    by_user = (await team.risk("GET", "/v1/reviews", OPS, params={"user_id": customer.user_id})).json()[
        "items"
    ]
    by_request = (
        await team.risk("GET", "/v1/reviews", OPS, params={"request_id": request_id, "status": "pending"})
    ).json()["items"]
    assert [item["id"] for item in by_user] == [item["id"] for item in by_request] == [review["id"]]
    assert (
        await team.risk("GET", "/v1/reviews", OPS, params={"request_id": request_id, "status": "approved"})
    ).json()["items"] == []
    assert_problem(
        await team.risk("GET", "/v1/reviews", OPS, params={"user_id": "../x"}), 422, "validation-error"
    )
    assert_problem(await team.risk("GET", "/v1/reviews/no-such-review", OPS), 404, "not-found")

    risk = (await team.risk("GET", f"/v1/customers/{customer.user_id}/risk", OPS)).json()
    assert risk["user_id"] == customer.user_id and risk["known_devices"] == []
    profile = {name: datetime.fromisoformat(value) for name, value in risk["profile"].items() if value}
    assert profile == {
        "account_opened_at": NOON - timedelta(days=30),
        "phone_changed_at": NOON - timedelta(days=3),
    }
    assert [flag["request_id"] for flag in risk["flags"]] == [request_id]
    assert [item["id"] for item in risk["reviews"]] == [review["id"]] and risk["reviews"][0][
        "score"
    ] == review["score"]
    assert other.user_id not in str(risk)
    nobody = (await team.risk("GET", "/v1/customers/u-nobody/risk", OPS)).json()
    assert nobody == {"user_id": "u-nobody", "profile": None, "flags": [], "known_devices": [], "reviews": []}


@pytest.mark.kafka
async def test_a_second_reviewers_deny_reaches_the_customer_only_after_the_second_decision(
    team_on_kafka: Team,
) -> None:
    team = team_on_kafka
    customer, request_id, review = await high_score_under_review(team)
    first = await decide_review(
        team.stack.client("risk"),
        review["id"],
        "deny",
        reason="customer_unreachable",
        reviewer="rev-1",
        customer_message="请回电 95555",
    )
    assert first.status_code == 202, first.text
    # Nothing left risk: binding, given time to act on anything, still waits for a decision.
    assert await team.decisions_emitted() == 0
    await asyncio.sleep(1)
    assert (await team.stack.request_status(request_id, customer.user_id))["status"] == "under_review"
    assert "ReviewDecided" not in [event.type for event in await team.stack.topics.request_events(request_id)]

    confirmed = await decide_review(
        team.stack.client("risk"), review["id"], "deny", reason="customer_unreachable", reviewer="rev-2"
    )
    assert confirmed.status_code == 200, confirmed.text
    assert (
        confirmed.json()["reviewer"],
        confirmed.json()["customer_message"],
        confirmed.json()["first_decision"]["reviewer"],
    ) == ("rev-2", "请回电 95555", "rev-1")
    rejected = await team.stack.wait_for_request(
        request_id, customer.user_id, lambda view: view["status"] == "rejected"
    )
    assert rejected["outcome_code"] == "review_denied:customer_unreachable"
    notices = await team.stack.wait_for_notice(customer.user_id, request_id, "review_denied")
    assert notices["review_denied"].endswith("审核人员留言：请回电 95555"), (
        "the first reviewer's message went with the final decision"
    )
    decisions = [
        event.data
        for event in await team.stack.topics.request_events(request_id)
        if event.type == "ReviewDecided"
    ]
    assert [(decision.reviewer, decision.decision, decision.reason) for decision in decisions] == [
        ("rev-2", "deny", "customer_unreachable")
    ]
