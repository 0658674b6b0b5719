"""The anomaly model in the running system: it warms up on real requests, then scores and explains
each one in shadow (the rules alone decide); a restart keeps what it learned; a rule naming
`model_score` promotes it, after a dry run shows what would change. Ops see the score and its
explanation; no customer view and no event on the topic carries either."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families

from services.risk.features import FEATURES
from services.risk.rules import DEFAULT_RULES
from services.risk.scoring import SIGNALS
from tests.binding.test_api import assert_problem
from tests.factories import RULES_ADMIN, customer_with_binding, save_rules
from tests.risk.test_flows import MovableClock, request
from tests.risk.test_rule_versions import assessed
from tests.stack import BusTopics, Stack, auth, eventually, make_bus_topics, running_stack

OPS = auth("ops-20", "ops")
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
WINDOW = 8
# A window of eight, learned at once: the model is ready after eight requests.
FAST_MODEL = {"model_window": WINDOW, "model_train_seconds": 0.05, "model_sync_seconds": 0.05}


async def model_status(stack: Stack) -> dict[str, Any]:
    response = await stack.client("risk").get("/v1/model", headers=OPS)
    assert response.status_code == 200, response.text
    return response.json()


async def model_ready(stack: Stack, learned: int) -> dict[str, Any]:
    async def learned_enough() -> dict[str, Any] | None:
        status = await model_status(stack)
        return status if status["learned"] >= learned and status["queued"] == 0 else None

    return await eventually(learned_enough, 20, f"the model never learned {learned} requests")


async def test_the_model_scores_in_shadow_keeps_what_it_learned_and_decides_once_promoted(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    clock = MovableClock(NOON)

    def risk_alone() -> Any:
        return running_stack(
            any_bus,
            database_urls,
            tmp_path,
            services=("risk",),
            overrides={"risk": FAST_MODEL},
            app_options={"risk": {"clock": clock}},
        )

    async with risk_alone() as stack:
        # Ordinary requests (no device named, noon): the model warms up on them and scores none.
        for index in range(WINDOW):
            warming = await assessed(stack, clock, NOON + timedelta(minutes=index), f"r-warm-{index}")
            assert (warming["model_score"], warming["model_version"], warming["model_explanation"]) == (
                None,
                None,
                None,
            )
            assert set(warming["features"]) == set(FEATURES)
        status = await model_ready(stack, WINDOW)
        assert (status["version"], status["promoted_by"], status["drift"]) == (1, [], None)

        # In shadow: a request from a new device is scored and explained, and the rules alone decide
        # (a new device is 40: step_up).
        probe = await assessed(stack, clock, NOON + timedelta(minutes=20), "r-probe", device_id="d-new-1")
        assert probe["model_version"] == 1 and 0 < probe["model_score"] <= 1
        assert (probe["decision"], probe["matched_rule"], probe["score"]) == ("step_up", None, 40)
        explained = [item["feature"] for item in probe["model_explanation"]]
        assert explained and set(explained) <= {"device_new", "device_age_days"}, probe["model_explanation"]
        ordinary = await assessed(stack, clock, NOON + timedelta(minutes=21), "r-ordinary")
        assert ordinary["model_score"] < probe["model_score"], (ordinary, probe)
        metrics = (await stack.client("risk").get("/metrics")).text
        scores = {
            sample.name: sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if family.name == "unbind_risk_model_score"
        }
        assert scores["unbind_risk_model_score_count"] == 2
        await model_ready(stack, WINDOW + 2)

    # A restart: the model that scores next is the one learned before (a fresh one could not score).
    async with risk_alone() as stack:
        restarted = await model_status(stack)
        assert (restarted["version"], restarted["learned"]) == (1, WINDOW + 2)
        again = await assessed(stack, clock, NOON + timedelta(minutes=30), "r-again", device_id="d-new-2")
        assert (again["model_version"], again["model_score"]) == (1, probe["model_score"])

        # The analyst promotes the model: a dry run first shows what a rule on its score would change
        # (the two new-device requests; the warm-up ones have no score, the ordinary one scores lower).
        threshold = math.floor(probe["model_score"] * 1000) / 1000
        promoted = {"name": "anomaly model", "action": "review", "if": f"model_score >= {threshold}"}
        client = stack.client("risk")
        dry_run = await client.post(
            "/v1/rules/simulate", json={"rules": [*DEFAULT_RULES, promoted], "days": 1}, headers=OPS
        )
        assert dry_run.status_code == 200, dry_run.text
        assert dry_run.json()["transitions"] == [{"from": "step_up", "to": "review", "count": 2}]
        assert {example["request_id"] for example in dry_run.json()["examples"]} == {"r-probe", "r-again"}

        # A rule with a score outside 0-1 is refused, and changes nothing.
        out_of_range = {**promoted, "if": "model_score >= 1.2"}
        before = (await client.get("/v1/rules", headers=OPS)).json()
        etag = (await client.get("/v1/rules", headers=OPS)).headers["ETag"]
        refused = await client.put(
            "/v1/rules",
            json={"rules": [*DEFAULT_RULES, out_of_range]},
            headers={**RULES_ADMIN, "If-Match": etag},
        )
        assert "model_score is a score from 0 to 1" in assert_problem(refused, 422, "invalid-rules")["detail"]
        assert (await client.get("/v1/rules", headers=OPS)).json() == before

        await save_rules(client, [*DEFAULT_RULES, promoted])
        assert (await model_status(stack))["promoted_by"] == ["anomaly model"]
        decided = await assessed(stack, clock, NOON + timedelta(minutes=40), "r-decided", device_id="d-new-3")
        assert (decided["machine_decision"], decided["decision"], decided["matched_rule"]) == (
            "review",
            "review",
            "anomaly model",
        )
        still_ordinary = await assessed(stack, clock, NOON + timedelta(minutes=41), "r-still-ordinary")
        assert (still_ordinary["decision"], still_ordinary["matched_rule"]) == ("allow", None)


# The model's own words. A binding's monthly instalment is the customer's own fact (and rides on
# UnbindRequested as the model's input); the signals' names are the rules' reasons, on RiskAssessed.
MODEL_FIELDS = ("model_score", "model_version", "model_explanation")
FEATURE_NAMES = tuple(name for name in FEATURES if name != "monthly_instalment")


def mentions(text: str, words: tuple[str, ...]) -> list[str]:
    return [word for word in words if word in text]


async def test_ops_see_the_score_and_its_explanation_and_no_customer_view_or_event_does(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    clock = MovableClock(NOON)
    async with running_stack(
        kafka_topics,
        database_urls,
        tmp_path,
        overrides={"risk": FAST_MODEL},
        app_options={"risk": {"clock": clock}},
    ) as stack:
        for _ in range(WINDOW):
            await request(stack, await customer_with_binding(stack))
        await model_ready(stack, WINDOW)
        customer = await customer_with_binding(stack)
        unbind = await request(stack, customer, device_id="d-unknown")
        request_id = unbind["id"]

        assessment = (await stack.client("risk").get(f"/v1/assessments/{request_id}", headers=OPS)).json()
        assert assessment["model_version"] == 1 and assessment["model_explanation"], assessment
        own = auth(customer.user_id)
        assert_problem(
            await stack.client("risk").get(f"/v1/assessments/{request_id}", headers=own), 403, "forbidden"
        )
        assert_problem(await stack.client("risk").get("/v1/model", headers=own), 403, "forbidden")

        # Everything the customer can read of the request, the binding and their inbox.
        async def inbox() -> str | None:
            response = await stack.client("notification").get("/v1/notifications", headers=own)
            return response.text if request_id in response.text else None

        await eventually(inbox, 15, "the customer was never told of the request")
        views = {
            path: await stack.client(service).get(path, headers=own)
            for service, path in (
                ("binding", f"/v1/unbind-requests/{request_id}"),
                ("binding", f"/v1/unbind-requests/{request_id}/audit"),
                ("binding", f"/v1/bindings/{customer.binding_id}"),
                ("binding", "/v1/bindings"),
                ("notification", "/v1/notifications"),
            )
        }
        for path, response in views.items():
            assert response.status_code == 200, (path, response.text)
            assert mentions(response.text, MODEL_FIELDS + FEATURE_NAMES) == [], path
            if len(str(assessment["model_score"])) >= 5:  # 0.6123, not a bare 1.0 that any text may hold
                assert str(assessment["model_score"]) not in response.text, path
        for envelope in await stack.topics.request_events(request_id):
            data = envelope.data.model_dump_json()
            model_only = tuple(name for name in FEATURE_NAMES if name not in SIGNALS)
            assert mentions(data, MODEL_FIELDS + model_only) == [], (envelope.type, data)


async def test_the_customers_time_zone_sets_the_hour_of_the_night_signal_and_the_model(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    clock = MovableClock(NOON.replace(hour=2))  # 02:00 in Shanghai: 19:00 the day before in Paris
    system = auth("customer-system", "service")
    async with running_stack(
        make_bus_topics("memory", None),
        database_urls,
        tmp_path,
        services=("risk",),
        app_options={"risk": {"clock": clock}},
    ) as stack:
        client = stack.client("risk")
        path = "/internal/v1/profiles/u-r-paris"
        refused = await client.put(path, json={"time_zone": "Mars/Olympus_Mons"}, headers=system)
        assert_problem(refused, 422, "validation-error")
        assert (await client.get("/v1/customers/u-r-paris/risk", headers=OPS)).json()["profile"] is None
        assert (await client.put(path, json={"time_zone": "Europe/Paris"}, headers=system)).status_code == 204
        assert (await client.get("/v1/customers/u-r-paris/risk", headers=OPS)).json()["profile"][
            "time_zone"
        ] == ("Europe/Paris")
        in_paris = await assessed(stack, clock, clock.at, "r-paris")
        in_shanghai = await assessed(stack, clock, clock.at, "r-shanghai")
        assert (in_paris["signals"]["night_request"], in_paris["features"]["hour_local"]) == (0, 19)
        assert (in_shanghai["signals"]["night_request"], in_shanghai["features"]["hour_local"]) == (1, 2)
