"""Risk scoring: each signal's weight, thresholds, rules in Radar's order, and the review queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.risk.config import RiskSettings
from services.risk.rules import parse_rules
from services.risk.scoring import SIGNALS, decide, score
from tests.binding.test_api import assert_problem
from tests.factories import RULES_ADMIN, customer_with_binding, request_unbind, reviewer_auth, save_rules
from tests.stack import Stack, auth, eventually, on_memory_bus

QUIET = {name: 0 for name in SIGNALS} | {"account_age_days": 2000}


@pytest.mark.parametrize(
    ("signal", "value", "weight"),
    [
        ("device_unknown", 1, 40),
        ("device_recent", 1, 15),
        ("phone_changed_recently", 1, 25),
        ("requests_24h", 1, 20),
        ("requests_24h", 2, 40),
        ("requests_24h", 5, 60),
        ("failed_verifications_24h", 1, 15),
        ("failed_verifications_24h", 4, 45),
        ("counter_regressions_24h", 1, 30),
        ("counter_regressions_24h", 3, 60),
        ("night_request", 1, 10),
        ("instalment_due_soon", 1, 10),
        ("account_age_days", 30, 20),
        ("account_age_days", 89, 20),
        ("account_age_days", 90, 0),
        ("account_age_days", -1, 0),
        ("ip_changed", 1, 10),
        ("rejections_30d", 2, 20),
        ("rejections_30d", 5, 30),
        ("appeals_30d", 1, 15),
        ("account_flagged", 1, 30),
    ],
)
def test_each_signal_moves_the_score_by_its_weight(signal: str, value: int, weight: int) -> None:
    total, reasons = score(QUIET | {signal: value})
    assert total == weight
    assert [(reason.code, reason.weight) for reason in reasons] == ([(signal, weight)] if weight else [])


def test_no_signal_scores_zero_and_the_sum_is_capped() -> None:
    assert score(QUIET) == (0, [])
    assert score(QUIET | {"device_unknown": 1, "requests_24h": 3, "account_flagged": 1})[0] == 100


@pytest.mark.parametrize(
    ("total", "decision", "level"),
    [
        (39, "allow", "normal"),
        (40, "step_up", "elevated"),
        (64, "step_up", "elevated"),
        (65, "review", "highest"),
        (84, "review", "highest"),
        (85, "deny", "highest"),
    ],
)
def test_default_thresholds(total: int, decision: str, level: str) -> None:
    assert decide(RiskSettings(), total)[:2] == (decision, level)


def test_rules_decide_first_in_radar_order() -> None:
    rules = parse_rules(
        [
            {"name": "r-review", "action": "review", "if": "requests_24h >= 1"},
            {"name": "r-deny", "action": "deny", "if": "requests_24h >= 1 and night_request == true"},
            {"name": "r-allow", "action": "allow", "if": "account_age_days > 3650"},
            {"name": "r-step", "action": "step_up", "if": "device_unknown == 1"},
        ],
        set(SIGNALS),
    )
    signals = QUIET | {"requests_24h": 1, "night_request": 1}
    assert decide(RiskSettings(), 30, signals, rules)[0::2] == ("deny", rules[1])
    assert decide(RiskSettings(), 30, signals | {"account_age_days": 4000}, rules)[2].name == "r-allow", (
        "allow rules come before deny"
    )
    assert (
        decide(RiskSettings(), 30, signals | {"account_age_days": 4000, "device_unknown": 1}, rules)[2].name
        == "r-step"
    ), "step_up rules come first"
    assert decide(RiskSettings(), 30, QUIET | {"requests_24h": 1}, rules)[0::2] == ("review", rules[0])
    assert decide(RiskSettings(), 90, QUIET, rules) == ("deny", "highest", None), (
        "no rule: the thresholds decide"
    )


@pytest.fixture
async def stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with on_memory_bus(database_urls, tmp_path) as running:
        yield running


OPS = auth("ops-1", "ops")


async def test_a_bad_rule_set_is_refused_and_the_old_one_stays(stack: Stack) -> None:
    client = stack.client("risk")
    original = (await client.get("/v1/rules", headers=OPS)).json()
    assert original["version"] == 1 and original["rules"][0]["if"] == "requests_24h >= 2"
    for bad in (
        [{"action": "review", "if": "requests_24h >= 2"}, {"action": "explode", "if": "requests_24h >= 1"}],
        [{"action": "review", "if": "shoe_size >= 44"}],
        [{"action": "review", "if": "requests_24h >= lots"}],
        [{"action": "review"}],
        [{"action": "review", "if": "requests_24h >= 1; DROP TABLE rule_sets"}],
    ):
        refused = await client.put(
            "/v1/rules", json={"rules": bad}, headers={**RULES_ADMIN, "If-Match": '"rules-v1"'}
        )
        assert_problem(refused, 422, "invalid-rules")
        assert (await client.get("/v1/rules", headers=OPS)).json() == original
    saved = await save_rules(client, [{"name": "strict", "action": "review", "if": "requests_24h >= 1"}])
    assert saved["version"] == 2 and saved["created_by"] == "rules-admin-1"

    customer = await customer_with_binding(stack)
    second = await customer_with_binding(stack, user_id=customer.user_id)
    first = await request_unbind(stack, customer)
    await stack.wait_for_request(first, customer.user_id, lambda body: body["risk"] is not None)
    request_id = await request_unbind(stack, second)
    body = await stack.wait_for_request(request_id, customer.user_id, lambda body: body["risk"] is not None)
    assert body["status"] == "under_review"
    assessment = (await client.get(f"/v1/assessments/{request_id}", headers=OPS)).json()
    assert (assessment["rules_version"], assessment["matched_rule"]) == (2, "strict")


async def test_review_or_deny_flags_the_account_and_ops_can_clear_it(stack: Stack) -> None:
    await save_rules(stack.client("risk"), [{"action": "review", "if": "requests_24h >= 1"}])
    customer = await customer_with_binding(stack)
    second, third = (
        await customer_with_binding(stack, user_id=customer.user_id),
        await customer_with_binding(stack, user_id=customer.user_id),
    )
    first = await request_unbind(stack, customer)
    # Events of different bindings may be handled in any order: let risk see the first one first.
    await stack.wait_for_request(first, customer.user_id, lambda body: body["risk"] is not None)
    reviewed = await request_unbind(stack, second)
    await stack.wait_for_request(reviewed, customer.user_id, lambda body: body["status"] == "under_review")
    flags = (await stack.client("risk").get("/v1/flags", headers=OPS)).json()["items"]
    assert [(flag["user_id"], flag["request_id"]) for flag in flags] == [(customer.user_id, reviewed)]

    flagged = await request_unbind(stack, third)
    await stack.wait_for_request(flagged, customer.user_id, lambda body: body["risk"] is not None)
    signals = (await stack.client("risk").get(f"/v1/assessments/{flagged}", headers=OPS)).json()["signals"]
    assert signals["account_flagged"] == 1

    # Clearing a flag is a reviewer's decision: ops who only read may not.
    assert_problem(
        await stack.client("risk").post(f"/v1/flags/{customer.user_id}/clear", headers=OPS), 403, "forbidden"
    )
    cleared = await stack.client("risk").post(f"/v1/flags/{customer.user_id}/clear", headers=reviewer_auth())
    assert cleared.status_code == 200 and all(
        flag["cleared_by"] == "rev-1" for flag in cleared.json()["items"]
    )
    assert (await stack.client("risk").get("/v1/flags", headers=OPS)).json()["items"] == []
    assert_problem(
        await stack.client("risk").post(f"/v1/flags/{customer.user_id}/clear", headers=reviewer_auth()),
        404,
        "not-found",
    )


async def test_profile_signals_come_from_the_customer_system(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    profile = {
        "account_opened_at": "2026-11-01T00:00:00+08:00",
        "phone_changed_at": "2026-11-20T00:00:00+08:00",
    }
    assert_problem(
        await stack.client("risk").put(
            f"/internal/v1/profiles/{customer.user_id}", json=profile, headers=OPS
        ),
        403,
        "forbidden",
    )
    assert (
        await stack.client("risk").put(
            f"/internal/v1/profiles/{customer.user_id}",
            json=profile,
            headers=auth("customer-system", "service"),
        )
    ).status_code == 204
    request_id = await request_unbind(stack, customer)
    await stack.wait_for_request(request_id, customer.user_id, lambda body: body["risk"] is not None)
    assessment = (await stack.client("risk").get(f"/v1/assessments/{request_id}", headers=OPS)).json()
    assert (
        assessment["signals"]["phone_changed_recently"] == 1
        and 0 <= assessment["signals"]["account_age_days"] < 90
    )
    assert {"phone_changed_recently", "account_age_days"} <= {
        reason["code"] for reason in assessment["reasons"]
    }


async def test_non_ops_callers_get_403_on_every_ops_endpoint(stack: Stack) -> None:
    client = stack.client("risk")
    for headers in (auth("u-zhangsan"), auth("verification", "service")):
        calls = [
            client.get("/v1/assessments/r-1", headers=headers),
            client.get("/v1/rules", headers=headers),
            client.put("/v1/rules", json={"rules": []}, headers=headers),
            client.get("/v1/reviews?status=pending", headers=headers),
            client.post("/v1/reviews/x/decision", json={"decision": "approve"}, headers=headers),
            client.get("/v1/flags", headers=headers),
            client.post("/v1/flags/u-zhangsan/clear", headers=headers),
        ]
        for call in calls:
            assert_problem(await call, 403, "forbidden")


async def test_reviews_list_oldest_first_with_waiting_time(stack: Stack) -> None:
    await save_rules(stack.client("risk"), [{"action": "review", "if": "requests_24h >= 0"}])
    first, second = await customer_with_binding(stack), await customer_with_binding(stack)
    ids = [await request_unbind(stack, first)]
    # Events of different bindings may be handled in any order: the first review must open first.
    await stack.wait_for_request(ids[0], first.user_id, lambda body: body["risk"] is not None)
    ids.append(await request_unbind(stack, second))

    async def queue() -> list | None:
        items = (await stack.client("risk").get("/v1/reviews?status=pending", headers=OPS)).json()["items"]
        return items if len(items) == 2 else None

    items = await eventually(queue, 15, "the reviews were not opened")
    assert [item["request_id"] for item in items] == ids
    assert all(item["waiting_seconds"] >= 0 and item["origin"] == "risk" for item in items)
