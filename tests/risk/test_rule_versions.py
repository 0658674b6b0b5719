"""Rule sets a risk analyst can trust: versions with an ETag that each change must send back
(If-Match), no version for an unchanged set, a rollback as a new version, and a dry run over the
assessments real requests produced, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.risk.rules import DEFAULT_RULES
from shared.cloudevents import Envelope
from shared.events import UnbindRequested
from tests.binding.test_api import assert_problem
from tests.factories import RULES_ADMIN, save_rules
from tests.risk.test_flows import MovableClock
from tests.stack import BusTopics, Stack, auth, eventually, make_bus_topics, on_memory_bus, running_stack

OPS = auth("ops-5", "ops")
REVIEWER = auth("rev-5", "ops", "reviewer")
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
STRICT = [{"name": "strict", "action": "review", "if": "requests_24h >= 1 or night_request == true"}]


@pytest.fixture
async def risk(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[tuple[Stack, MovableClock]]:
    """Risk alone on the in-memory bus, reading its events at a clock the test moves."""
    clock = MovableClock(NOON)
    async with on_memory_bus(
        database_urls,
        tmp_path,
        services=("risk",),
        app_options={"risk": {"clock": clock}},
    ) as stack:
        yield stack, clock


def changing(etag: str | None, headers: dict[str, str] = RULES_ADMIN) -> dict[str, str]:
    return {**headers, "If-Match": etag} if etag is not None else headers


async def in_force(client: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
    response = await client.get("/v1/rules", headers=OPS)
    assert response.status_code == 200, response.text
    return response.json(), response.headers["ETag"]


async def versions(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/v1/rules/versions", headers=OPS)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_each_change_names_the_version_it_was_made_from(risk: tuple[Stack, MovableClock]) -> None:
    client = risk[0].client("risk")
    first, etag = await in_force(client)
    assert (first["version"], etag, first["comment"]) == (1, '"rules-v1"', None)

    async def put(body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        return await client.put("/v1/rules", json=body, headers=headers)

    # Only a rules admin changes rules; a reviewer or ops user reads them.
    assert_problem(await put({"rules": STRICT}, changing(etag, OPS)), 403, "forbidden")
    assert_problem(await put({"rules": STRICT}, changing(etag, REVIEWER)), 403, "forbidden")
    assert_problem(await put({"rules": STRICT}, RULES_ADMIN), 428, "precondition-required")
    stale = await put({"rules": STRICT}, changing('"rules-v0"'))
    assert_problem(stale, 412, "rules-changed")
    assert (stale.json()["current_version"], stale.headers["ETag"]) == (1, '"rules-v1"')
    assert_problem(
        await put({"rules": STRICT}, changing("rules-v1")), 412, "rules-changed"
    )  # not the quoted tag
    for bad in (
        {"rules": [{"action": "review", "if": "requests_24h >= 1 or"}]},
        {"rules": [{"action": "review", "if": 'client_ip in ("10.0.0.300")'}]},
        {"rules": STRICT, "comment": "x" * 201},
        {"rules": STRICT, "note": "unknown field"},
    ):
        assert (await put(bad, changing(etag))).status_code == 422
    assert await in_force(client) == (first, etag), "nothing changed"
    assert [item["version"] for item in await versions(client)] == [1, 0]

    saved = await put({"rules": STRICT, "comment": "night requests too"}, changing(etag))
    assert saved.status_code == 200, saved.text
    assert (
        saved.json()["version"],
        saved.json()["created_by"],
        saved.json()["comment"],
        saved.headers["ETag"],
    ) == (2, "rules-admin-1", "night requests too", '"rules-v2"')
    # The same set again adds no version; the one made from version 1 is now stale.
    again = await put({"rules": STRICT, "comment": "again"}, changing('"rules-v2"'))
    assert (again.status_code, again.json()["version"], again.json()["comment"], again.headers["ETag"]) == (
        200,
        2,
        "night requests too",
        '"rules-v2"',
    )
    assert_problem(await put({"rules": DEFAULT_RULES}, changing(etag)), 412, "rules-changed")
    # Several tags: the one in force among them is enough.
    listed = await put(
        {"rules": [*STRICT, {"action": "deny", "if": "score >= 95"}]}, changing('"rules-v1", "rules-v2"')
    )
    assert (listed.status_code, listed.json()["version"]) == (200, 3)


async def test_history_lists_every_version_and_a_rollback_is_a_new_one(
    risk: tuple[Stack, MovableClock],
) -> None:
    client = risk[0].client("risk")
    await save_rules(client, STRICT, comment="stricter")
    await save_rules(client, [{"name": "score only", "action": "review", "if": "score >= 50"}])

    history = await versions(client)
    assert [
        (item["version"], item["created_by"], item["comment"], item["restored_from"], item["rule_count"])
        for item in history
    ] == [
        (3, "rules-admin-1", None, None, 1),
        (2, "rules-admin-1", "stricter", None, 1),
        (1, "migration 0004", None, None, 2),
        (0, "default", None, None, 2),
    ]
    assert history[-1]["created_at"] is None and all(item["created_at"] for item in history[:-1])
    assert (await client.get("/v1/rules/versions/2", headers=OPS)).json()["rules"] == STRICT
    assert (await client.get("/v1/rules/versions/0", headers=OPS)).json()["rules"] == DEFAULT_RULES
    assert_problem(await client.get("/v1/rules/versions/99", headers=OPS), 404, "not-found")
    for bad in ("-1", "x", str(2**31)):
        assert_problem(await client.get(f"/v1/rules/versions/{bad}", headers=OPS), 422, "validation-error")

    async def restore(version: int | str, headers: dict[str, str], **options: Any) -> httpx.Response:
        return await client.post(f"/v1/rules/versions/{version}/restore", headers=headers, **options)

    assert_problem(await restore(2, RULES_ADMIN), 428, "precondition-required")
    assert_problem(await restore(2, changing('"rules-v2"')), 412, "rules-changed")
    assert_problem(await restore(2, changing('"rules-v3"', OPS)), 403, "forbidden")
    assert_problem(await restore(99, changing('"rules-v3"')), 404, "not-found")
    assert_problem(
        await restore(2, changing('"rules-v3"'), json={"comment": "x" * 201}), 422, "validation-error"
    )
    assert [item["version"] for item in await versions(client)] == [3, 2, 1, 0], "nothing changed"

    restored = await restore(
        2, changing('"rules-v3"'), json={"comment": "the score rule sent too many to review"}
    )
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert (body["version"], body["rules"], body["restored_from"], body["comment"],
        restored.headers["ETag"]) == (
        4, STRICT, 2, "the score rule sent too many to review", '"rules-v4"'
    )  # fmt: skip
    assert (await in_force(client))[0] == body
    # Restoring what is in force (version 2's rules are) adds nothing; version 0 brings back the defaults.
    same = await restore(2, changing('"rules-v4"'))
    assert (same.status_code, same.json()["version"]) == (200, 4)
    defaults = await restore(0, changing('"rules-v4"'))
    assert (defaults.json()["version"], defaults.json()["rules"], defaults.json()["restored_from"]) == (
        5,
        DEFAULT_RULES,
        0,
    )


def requested(
    request_id: str, user_id: str, *, device_id: str | None = None, client_ip: str | None = None
) -> Envelope:
    return Envelope.emit(
        UnbindRequested(
            request_id=request_id,
            binding_id=f"b-{user_id}",
            user_id=user_id,
            reason="fund_planning",
            impact_hash="0" * 64,
            device_id=device_id,
            client_ip=client_ip,
        )
    )


async def assessed(
    stack: Stack, clock: MovableClock, at: datetime, request_id: str, **facts: str
) -> dict[str, Any]:
    """An UnbindRequested from a new customer at `at`, scored by risk's own consumer."""
    clock.at = at
    await stack.topics.publish_event(requested(request_id, f"u-{request_id}", **facts))

    async def assessment() -> dict[str, Any] | None:
        response = await stack.client("risk").get(f"/v1/assessments/{request_id}", headers=OPS)
        return response.json() if response.status_code == 200 else None

    return await eventually(assessment, 15, f"{request_id} was never assessed")


async def test_a_dry_run_replays_recent_assessments_and_changes_nothing(
    risk: tuple[Stack, MovableClock],
) -> None:
    stack, clock = risk
    client = stack.client("risk")
    in_force_rules = [
        *DEFAULT_RULES,
        {"name": "known bad phone", "action": "deny", "if": 'device_id == "d-bad"'},
    ]
    await save_rules(client, in_force_rules)
    # Requests of new customers at noon: no device, score 0 -> allow; a device never seen, 40 -> step_up.
    facts = {
        "r-old": {"device_id": "d-stolen"},  # eleven days ago: outside a week's window
        "r-a": {"client_ip": "203.0.113.9"},
        "r-b": {"device_id": "d-stolen", "client_ip": "198.51.100.1"},
        "r-c": {"device_id": "d-bad"},
        "r-d": {"device_id": "d-ok", "client_ip": "10.1.2.3"},
        "r-e": {"client_ip": "2001:db8::1"},
    }
    made = {}
    for minutes, (request_id, fact) in enumerate(facts.items()):
        made[request_id] = await assessed(
            stack,
            clock,
            NOON + timedelta(minutes=minutes) - timedelta(days=11 if request_id == "r-old" else 0),
            request_id,
            **fact,
        )
    # What each recorded: the machine's own decision (a deny goes to review, but stays a deny here).
    recorded = {request_id: (body["decision"], body["machine_decision"]) for request_id, body in made.items()}
    assert recorded == {
        "r-old": ("step_up", "step_up"),
        "r-a": ("allow", "allow"),
        "r-b": ("step_up", "step_up"),
        "r-c": ("review", "deny"),
        "r-d": ("step_up", "step_up"),
        "r-e": ("allow", "allow"),
    }
    assert (made["r-b"]["device_id"], made["r-b"]["client_ip"], made["r-a"]["device_id"]) == (
        "d-stolen",
        "198.51.100.1",
        None,
    )

    candidate = [
        {
            "name": "stolen phones, bad networks",
            "action": "deny",
            "if": 'device_id in ("d-stolen") or client_ip in ("203.0.113.0/24", "2001:db8::/32")',
        }
    ]
    # The independent expectation, by hand: r-a, r-b, r-e now match the candidate rule (deny);
    # r-c no longer meets a rule: its 40 for a new device steps up; r-d stays step_up.
    week = await client.post("/v1/rules/simulate", json={"rules": candidate, "days": 7}, headers=OPS)
    assert week.status_code == 200, week.text
    assert week.json() == {
        "days": 7,
        "assessments": 5,
        "changed": 4,
        "transitions": [
            {"from": "allow", "to": "deny", "count": 2},
            {"from": "deny", "to": "step_up", "count": 1},
            {"from": "step_up", "to": "deny", "count": 1},
        ],
        "examples": [
            {
                "request_id": "r-e",
                "user_id": "u-r-e",
                "score": 0,
                "from": "allow",
                "to": "deny",
                "rule": "stolen phones, bad networks",
            },
            {
                "request_id": "r-c",
                "user_id": "u-r-c",
                "score": 40,
                "from": "deny",
                "to": "step_up",
                "rule": None,
            },
            {
                "request_id": "r-b",
                "user_id": "u-r-b",
                "score": 40,
                "from": "step_up",
                "to": "deny",
                "rule": "stolen phones, bad networks",
            },
            {
                "request_id": "r-a",
                "user_id": "u-r-a",
                "score": 0,
                "from": "allow",
                "to": "deny",
                "rule": "stolen phones, bad networks",
            },
        ],
        "rules_version": 2,
    }
    month = (
        await client.post("/v1/rules/simulate", json={"rules": candidate, "days": 30}, headers=OPS)
    ).json()
    assert (month["assessments"], month["changed"]) == (6, 5)
    assert month["transitions"] == [
        {"from": "allow", "to": "deny", "count": 2},
        {"from": "step_up", "to": "deny", "count": 2},
        {"from": "deny", "to": "step_up", "count": 1},
    ]
    assert month["examples"][-1]["request_id"] == "r-old"
    # The set in force replays to exactly what was decided.
    unchanged = (
        await client.post("/v1/rules/simulate", json={"rules": in_force_rules, "days": 30}, headers=OPS)
    ).json()
    assert (
        unchanged["assessments"],
        unchanged["changed"],
        unchanged["transitions"],
        unchanged["examples"],
    ) == (6, 0, [], [])

    before = (await in_force(client), await versions(client))
    assert_problem(
        await client.post("/v1/rules/simulate", json={"rules": candidate, "days": 31}, headers=OPS),
        422,
        "window-too-long",
    )
    assert_problem(
        await client.post("/v1/rules/simulate", json={"rules": candidate, "days": 0}, headers=OPS),
        422,
        "validation-error",
    )
    assert_problem(
        await client.post("/v1/rules/simulate", json={"rules": candidate}, headers=OPS),
        422,
        "validation-error",
    )
    invalid = [{"action": "deny", "if": 'device_id in ("d-stolen"'}]
    refused = await client.post("/v1/rules/simulate", json={"rules": invalid, "days": 7}, headers=OPS)
    assert_problem(refused, 422, "invalid-rules")
    assert "rule 1: at character 25: expected `,` or `)` closing the list" in refused.json()["detail"]
    assert_problem(
        await client.post("/v1/rules/simulate", json={"rules": candidate, "days": 7}, headers=auth("u-1")),
        403,
        "forbidden",
    )
    assert (await in_force(client), await versions(client)) == before, "a dry run changes nothing"


async def test_the_window_follows_its_setting(database_urls: dict[str, str], tmp_path: Path) -> None:
    topics: BusTopics = make_bus_topics("memory", None)
    async with running_stack(
        topics,
        database_urls,
        tmp_path,
        services=("risk",),
        overrides={"risk": {"rules_simulation_max_days": 3}},
    ) as stack:
        client = stack.client("risk")
        assert (
            await client.post("/v1/rules/simulate", json={"rules": STRICT, "days": 3}, headers=OPS)
        ).json()["assessments"] == 0
        refused = await client.post("/v1/rules/simulate", json={"rules": STRICT, "days": 4}, headers=OPS)
        assert_problem(refused, 422, "window-too-long")
        assert refused.json()["max_days"] == 3
