"""Risk scoring: signals, weights, thresholds, and what each decision does to the request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.risk.config import RiskSettings
from services.risk.service import decide, score
from tests.binding.test_api import assert_problem
from tests.factories import Customer, customer_with_binding, idempotency_key, unbind_body
from tests.stack import Stack, auth, eventually, make_bus_topics, running_stack

QUIET = {"new_device": False, "requests_24h": 0, "failed_verifications_24h": 0, "rejections_30d": 0, "night_request": False}


def test_no_signal_scores_zero_and_is_allowed() -> None:
    total, reasons = score(QUIET)
    assert (total, reasons) == (0, [])
    assert decide(RiskSettings(), total) == ("allow", "normal")


def test_a_new_device_weighs_40() -> None:
    total, reasons = score(QUIET | {"new_device": True, "requests_24h": 1})
    assert total == 60 and [reason.code for reason in reasons] == ["new_device", "repeated_requests"]
    assert decide(RiskSettings(), total)[0] == "step_up"


def test_weights_add_up_and_are_capped() -> None:
    total, reasons = score(QUIET | {"requests_24h": 2, "night_request": True})
    assert total == 50
    assert {reason.code: reason.weight for reason in reasons} == {"repeated_requests": 40, "night_request": 10}
    total, _ = score({"requests_24h": 9, "failed_verifications_24h": 9, "rejections_30d": 9, "night_request": True})
    assert total == 100


@pytest.mark.parametrize(("total", "decision"), [(39, "allow"), (40, "step_up"), (64, "step_up"), (65, "review"), (84, "review"), (85, "deny"), (100, "deny")])
def test_default_thresholds(total: int, decision: str) -> None:
    assert decide(RiskSettings(), total)[0] == decision


@pytest.fixture
async def strict_stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    """A risk service so strict that one earlier request (20 points) means review, two mean deny."""
    overrides = {"risk": {"threshold_step_up": 10, "threshold_review": 15, "threshold_deny": 35}}
    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path, overrides=overrides) as running:
        yield running


async def unbind(stack: Stack, customer: Customer) -> str:
    response = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests", json=unbind_body(), headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()}
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def test_repeated_requests_go_to_review_then_are_denied(strict_stack: Stack) -> None:
    stack = strict_stack
    first = await customer_with_binding(stack)
    second = await customer_with_binding(stack, user_id=first.user_id)
    third = await customer_with_binding(stack, user_id=first.user_id)

    allowed = await unbind(stack, first)
    await stack.wait_for_request(allowed, first.user_id, lambda body: body["status"] == "pending_verification")

    reviewed = await unbind(stack, second)
    body = await stack.wait_for_request(reviewed, first.user_id, lambda body: body["status"] == "under_review")
    assert body["risk"] == {"decision": "review", "reasons": ["1 earlier unbind request(s) in the last 24 hours"]}

    denied = await unbind(stack, third)
    body = await stack.wait_for_request(denied, first.user_id, lambda body: body["status"] == "rejected")
    assert body["outcome_reason"] == "risk_denied"
    binding = await stack.client("binding").get(f"/v1/bindings/{third.binding_id}", headers=auth(first.user_id))
    assert binding.json()["status"] == "active"

    async def rejection_notice() -> list[dict]:
        items = (await stack.client("notification").get("/v1/notifications", headers=auth(first.user_id))).json()["items"]
        return [item for item in items if item["kind"] == "unbind_rejected" and item["request_id"] == denied]

    notices = await eventually(rejection_notice, 10, "no rejection notice")
    assert "risk_denied" in notices[0]["body"]

    assessment = await stack.client("risk").get(f"/v1/assessments/{denied}", headers=auth("ops-1", "ops"))
    assert assessment.status_code == 200
    assert assessment.json()["signals"]["requests_24h"] == 2
    assert assessment.json()["score"] == 40 + (10 if assessment.json()["signals"]["night_request"] else 0)
    assert assessment.json()["decision"] == "deny"


async def test_assessments_are_for_ops_only(strict_stack: Stack) -> None:
    customer = await customer_with_binding(strict_stack)
    request_id = await unbind(strict_stack, customer)
    await strict_stack.wait_for_request(request_id, customer.user_id, lambda body: body["risk"] is not None)
    assert_problem(await strict_stack.client("risk").get(f"/v1/assessments/{request_id}", headers=auth(customer.user_id)), 403, "forbidden")
    assert_problem(await strict_stack.client("risk").get("/v1/assessments/unknown", headers=auth("ops-1", "ops")), 404, "not-found")


async def test_a_request_from_a_new_device_steps_up_to_both_methods(database_urls: dict[str, str], tmp_path: Path) -> None:
    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        response = await stack.client("binding").post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            json=unbind_body(device_id="d-new-phone"),
            headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
        )
        body = await stack.wait_for_request(response.json()["id"], customer.user_id, lambda body: body["verification"] is not None)
        assert body["risk"]["decision"] == "step_up"
        assert body["verification"]["methods"] == ["otp", "biometric"]
        assert "requested from a device not seen before for this customer" in body["risk"]["reasons"]
