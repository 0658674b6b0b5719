"""The dashboard API beside the four services: the feed and funnel from real flows (on the in-memory
bus and on the real broker), the review queue through risk, the live stream, sign-in and who may
see what."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.dashboard.api import STATIC
from shared.events import DenialReason
from shared.keys import SigningKey, new_kid
from shared.login_links import write_login_link
from shared.problems import PROBLEM_JSON
from tests.binding.test_api import assert_problem
from tests.binding.test_lifecycle import pending_review_for
from tests.dashboard.conftest import running_dashboard
from tests.factories import (
    RULES_ADMIN,
    customer_with_binding,
    idempotency_key,
    reviewer_auth,
    save_rules,
    unbind_body,
)
from tests.keys import token
from tests.stack import BusTopics, Stack, auth, eventually, make_bus_topics, running_stack, served

OPS = auth("ops-7", "ops")
REVIEWER = reviewer_auth("ops-7")
REVIEW_EVERYTHING = {
    "rules": [{"name": "look at every request", "action": "review", "if": "requests_24h >= 0"}]
}


def sqlite_urls(tmp_path: Path) -> dict[str, str]:
    return {
        service: f"sqlite+aiosqlite:///{tmp_path / f'{service}.db'}"
        for service in ("binding", "verification", "risk", "notification")
    }


async def request_unbind(stack: Stack) -> tuple[Any, str]:
    customer = await customer_with_binding(stack, awake=True)
    response = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests",
        json=unbind_body(),
        headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
    )
    assert response.status_code == 202, response.text
    return customer, response.json()["id"]


async def feed_types(client: httpx.AsyncClient, request_id: str) -> list[str]:
    response = await client.get("/v1/events", params={"request_id": request_id}, headers=OPS)
    assert response.status_code == 200, response.text
    return [item["type"] for item in reversed(response.json()["items"])]


async def test_a_flow_reaches_the_feed_and_moves_the_funnel(any_bus: BusTopics, tmp_path: Path) -> None:
    async with (
        running_stack(any_bus, sqlite_urls(tmp_path), tmp_path) as stack,
        running_dashboard(any_bus, tmp_path, risk_app=stack.apps["risk"]) as (_, dashboard),
    ):
        customer, request_id = await request_unbind(stack)

        async def whole_flow_seen() -> bool:
            return await feed_types(dashboard, request_id) == [
                "UnbindRequested",
                "RiskAssessed",
                "VerificationRequested",
            ]

        await eventually(whole_flow_seen, 20, "the flow never reached the feed")

        overview = (await dashboard.get("/v1/overview", headers=OPS)).json()
        assert (
            overview["funnel"]["now"]["pending_verification"] == 1
            and overview["funnel"]["now"]["completed"] == 0
        )
        assert sum(overview["series"]["requested"]) == 1
        assert overview["latency"]["windows"]["5m"]["requested→assessed"]["count"] == 1

        only = await dashboard.get(
            "/v1/events", params={"request_id": request_id, "type": "RiskAssessed"}, headers=OPS
        )
        (assessed,) = only.json()["items"]
        assert assessed["user_id"] == customer.user_id and assessed["summary"].startswith("score ")
        # The line in each language of the page: the English one is `summary`, the Chinese words every code.
        assert assessed["summaries"]["en"] == assessed["summary"]
        assert re.fullmatch(
            r"风险评分 \d+ · (放行|加强验证) · 需验证：短信验证码.*", assessed["summaries"]["zh-CN"]
        ), assessed["summaries"]
        (requested,) = (
            await dashboard.get(
                "/v1/events", params={"request_id": request_id, "type": "UnbindRequested"}, headers=OPS
            )
        ).json()["items"]
        assert requested["summaries"]["zh-CN"].startswith("解绑请求 · 原因：资金规划 · "), requested[
            "summaries"
        ]
        # Masked data only: nothing long enough to be the phone or account number.
        text = (await dashboard.get("/v1/events", headers=OPS)).text
        assert customer.phone[-8:] not in text and customer.account_number not in text

        # The view has caught up: every partition it holds is at lag 0, and its metrics say so.
        async def caught_up() -> dict[str, float] | None:
            samples = {
                f"{sample.name}{sample.labels.get('partition', '')}": sample.value
                for family in text_string_to_metric_families((await dashboard.get("/metrics")).text)
                for sample in family.samples
                if sample.name in ("unbind_consumer_lag", "unbind_dashboard_events_applied")
            }
            lags = [value for name, value in samples.items() if name.startswith("unbind_consumer_lag")]
            return samples if lags and not any(lags) else None

        metrics = await eventually(caught_up, 10, "the dashboard's lag never reached 0")
        assert metrics["unbind_dashboard_events_applied"] >= 3


async def test_reviews_are_listed_with_their_score_and_decided_through_risk(
    any_bus: BusTopics, tmp_path: Path
) -> None:
    async with (
        running_stack(any_bus, sqlite_urls(tmp_path), tmp_path) as stack,
        running_dashboard(any_bus, tmp_path, risk_app=stack.apps["risk"]) as (_, dashboard),
    ):
        await save_rules(stack.client("risk"), REVIEW_EVERYTHING["rules"])
        customer, request_id = await request_unbind(stack)

        async def listed() -> dict | None:
            queue = (await dashboard.get("/v1/reviews", headers=OPS)).json()["items"]
            return next(
                (
                    review
                    for review in queue
                    if review["request_id"] == request_id and review["score"] is not None
                ),
                None,
            )

        review = await eventually(listed, 20, "the review never reached the dashboard's queue")
        assert review["kind"] == "unbind", "the reviewer sees what the request asks"
        assert (review["claimed_by"], review["late"], review["sla_seconds"]) == (None, False, 7200), (
            "risk's fields as they are"
        )
        reasons = (await dashboard.get("/v1/reviews/reasons", headers=OPS)).json()
        assert (
            "identity_confirmed_by_call" in reasons["approve"]
            and "identity_not_confirmed" in reasons["deny"]
            and reasons["close_dispute"]
        )

        # Claimed through the dashboard as the signed-in user; risk's refusals pass through with their fields.
        claim = f"/v1/reviews/{review['id']}/claim"
        assert_problem(await dashboard.post(claim, headers=OPS), 403, "forbidden")
        assert (await dashboard.post(claim, headers=REVIEWER)).json()["claimed_by"] == "ops-7"
        assert (
            assert_problem(
                await dashboard.post(claim, headers=reviewer_auth("rev-2")), 409, "review-claimed"
            )["claimed_by"]
            == "ops-7"
        )
        assert (await dashboard.delete(claim, headers=REVIEWER)).json()["claimed_by"] is None
        assert_problem(await dashboard.delete(claim, headers=REVIEWER), 409, "not-claimed")
        assert (await dashboard.post(claim, headers=REVIEWER)).status_code == 200
        # A decision needs its reason from the list; nothing is decided without one.
        refused = await dashboard.post(
            f"/v1/reviews/{review['id']}/decision",
            json={"decision": "deny", "note": "no reason given"},
            headers=REVIEWER,
        )
        assert assert_problem(refused, 422, "invalid-reason")["allowed"] == list(DenialReason)
        approval = {
            "decision": "approve",
            "reason": "identity_confirmed_by_call",
            "note": "called the customer",
            "customer_message": "Thanks for your patience.",
        }
        decided = await dashboard.post(
            f"/v1/reviews/{review['id']}/decision", json=approval, headers=REVIEWER
        )
        assert decided.status_code == 200, decided.text
        assert (decided.json()["status"], decided.json()["reviewer"], decided.json()["customer_message"]) == (
            "approved",
            "ops-7",
            "Thanks for your patience.",
        )
        notices = await stack.wait_for_notice(customer.user_id, request_id, "review_approved")
        assert notices["review_approved"].endswith("审核人员留言：Thanks for your patience.")

        body = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body.get("verification") is not None
        )
        assert sorted(body["verification"]["methods"]) == ["biometric", "otp"]
        again = await dashboard.post(
            f"/v1/reviews/{review['id']}/decision", json={"decision": "deny"}, headers=REVIEWER
        )
        assert again.status_code == 409 and again.headers["content-type"] == PROBLEM_JSON


async def test_rules_go_to_risk_as_the_signed_in_user_with_their_etag(tmp_path: Path) -> None:
    topics = make_bus_topics("memory", None)
    async with (
        running_stack(topics, sqlite_urls(tmp_path), tmp_path, services=("risk",)) as stack,
        running_dashboard(topics, tmp_path, risk_app=stack.apps["risk"]) as (_, dashboard),
    ):
        read = await dashboard.get("/v1/rules", headers=OPS)
        assert (read.status_code, read.json()["version"], read.headers["ETag"]) == (200, 1, '"rules-v1"')
        strict = {
            "rules": [{"name": "any repeat", "action": "review", "if": "requests_24h >= 1 or score >= 50"}],
            "comment": "from the dashboard",
        }

        async def put(body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
            return await dashboard.put("/v1/rules", json=body, headers=headers)

        # Risk's answers pass through with their status: who may change, the precondition, the rules.
        assert_problem(await put(strict, {**OPS, "If-Match": '"rules-v1"'}), 403, "forbidden")
        assert_problem(await put(strict, RULES_ADMIN), 428, "precondition-required")
        stale = await put(strict, {**RULES_ADMIN, "If-Match": '"rules-v7"'})
        assert (assert_problem(stale, 412, "rules-changed")["current_version"], stale.headers["ETag"]) == (
            1,
            '"rules-v1"',
        )
        assert_problem(
            await put(
                {"rules": [{"action": "review", "if": "score >="}]}, {**RULES_ADMIN, "If-Match": '"rules-v1"'}
            ),
            422,
            "invalid-rules",
        )
        assert (await stack.client("risk").get("/v1/rules", headers=OPS)).json()["version"] == 1, (
            "nothing changed"
        )

        saved = await put(strict, {**RULES_ADMIN, "If-Match": '"rules-v1"'})
        assert (
            saved.status_code,
            saved.json()["created_by"],
            saved.json()["comment"],
            saved.headers["ETag"],
        ) == (200, "rules-admin-1", "from the dashboard", '"rules-v2"')
        history = (await dashboard.get("/v1/rules/versions", headers=OPS)).json()["items"]
        assert [item["version"] for item in history] == [2, 1, 0]
        assert (await dashboard.get("/v1/rules/versions/2", headers=OPS)).json()["rules"] == strict["rules"]
        assert_problem(await dashboard.get("/v1/rules/versions/99", headers=OPS), 404, "not-found")
        assert_problem(await dashboard.get("/v1/rules/versions/-1", headers=OPS), 422, "validation-error")

        restored = await dashboard.post(
            "/v1/rules/versions/1/restore",
            json={"comment": "back"},
            headers={**RULES_ADMIN, "If-Match": '"rules-v2"'},
        )
        assert (
            restored.status_code,
            restored.json()["version"],
            restored.json()["restored_from"],
            restored.headers["ETag"],
        ) == (200, 3, 1, '"rules-v3"')
        assert_problem(
            await dashboard.post("/v1/rules/versions/1/restore", headers=RULES_ADMIN),
            428,
            "precondition-required",
        )

        dry = await dashboard.post(
            "/v1/rules/simulate", json={"rules": strict["rules"], "days": 7}, headers=OPS
        )
        assert (dry.status_code, dry.json()["assessments"], dry.json()["rules_version"]) == (200, 0, 3)
        too_long = await dashboard.post(
            "/v1/rules/simulate", json={"rules": strict["rules"], "days": 31}, headers=OPS
        )
        assert assert_problem(too_long, 422, "window-too-long")["max_days"] == 30
        assert_problem(
            await dashboard.post("/v1/rules/simulate", json=["not", "an", "object"], headers=OPS),
            422,
            "validation-error",
        )


async def test_a_first_deny_passes_through_as_202_and_four_eyes_as_409(tmp_path: Path) -> None:
    topics, overrides = make_bus_topics("memory", None), {"risk": {"review_second_reviewer_score": 0}}
    async with (
        running_stack(topics, sqlite_urls(tmp_path), tmp_path, overrides=overrides) as stack,
        running_dashboard(topics, tmp_path, risk_app=stack.apps["risk"]) as (_, dashboard),
    ):
        await save_rules(stack.client("risk"), REVIEW_EVERYTHING["rules"])
        _, request_id = await request_unbind(stack)
        review = await pending_review_for(stack, request_id)
        assert (
            await dashboard.post(f"/v1/reviews/{review['id']}/claim", headers=REVIEWER)
        ).status_code == 200
        first = await dashboard.post(
            f"/v1/reviews/{review['id']}/decision",
            json={"decision": "deny", "reason": "identity_not_confirmed"},
            headers=REVIEWER,
        )
        assert first.status_code == 202 and first.json()["first_decision"]["reviewer"] == "ops-7", first.text
        assert_problem(
            await dashboard.post(f"/v1/reviews/{review['id']}/claim", headers=REVIEWER), 409, "four-eyes"
        )


async def test_the_stream_pushes_the_overview_then_each_matching_event(
    any_bus: BusTopics, tmp_path: Path
) -> None:
    async with (
        running_stack(any_bus, sqlite_urls(tmp_path), tmp_path) as stack,
        running_dashboard(any_bus, tmp_path, risk_app=stack.apps["risk"], push_interval_seconds=0.2) as (
            app,
            _,
        ),
        served(app) as url,
    ):
        customer = await customer_with_binding(stack)
        other, other_id = await request_unbind(stack)
        async with httpx.AsyncClient(base_url=url, headers=OPS, timeout=10) as client:
            async with client.stream(
                "GET", "/v1/stream", params={"type": ["UnbindRequested", "RiskAssessed"]}
            ) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                messages = server_sent_events(stream)
                first = await anext(messages)
                assert first[0] == "overview" and "funnel" in first[1]
                response = await stack.client("binding").post(
                    f"/v1/bindings/{customer.binding_id}/unbind-requests",
                    json=unbind_body(),
                    headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
                )
                request_id = response.json()["id"]
                published = time.monotonic()
                seen: list[str] = []
                async with asyncio.timeout(15):
                    async for kind, data in messages:
                        if kind == "feed" and data["request_id"] == request_id:
                            seen.append(data["type"])
                            if seen == ["UnbindRequested"]:
                                first_latency = time.monotonic() - published
                            if "RiskAssessed" in seen:
                                break
                        assert kind == "overview" or data["type"] in ("UnbindRequested", "RiskAssessed"), data
                assert seen == ["UnbindRequested", "RiskAssessed"]
                assert first_latency < 2.0
        assert other_id != request_id


async def server_sent_events(stream: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    kind, data = "", b""
    async for line in stream.aiter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:].encode()
        elif line == "" and kind:
            yield kind, orjson.loads(data)
            kind, data = "", b""


@pytest.mark.parametrize("path", ["/v1/overview", "/v1/events", "/v1/stream", "/v1/reviews"])
async def test_only_ops_see_the_dashboard(path: str, tmp_path: Path) -> None:
    topics = make_bus_topics("memory", None)
    expired = token("ops-1", "ops", ttl_seconds=-10)
    forged = token("ops-1", "ops", key=SigningKey.generate(new_kid()))
    async with running_dashboard(topics, tmp_path, risk_url=f"http://127.0.0.1:{closed_port()}") as (
        _,
        dashboard,
    ):
        for headers, status in [
            ({}, 401),
            ({"Authorization": f"Bearer {expired}"}, 401),
            ({"Authorization": f"Bearer {forged}"}, 401),
            ({"Authorization": "Bearer not-a-jwt"}, 401),
            (auth("u-zhangsan"), 403),
            (auth("binding", "service"), 403),
        ]:
            response = await dashboard.get(path, headers=headers)
            assert response.status_code == status, (headers, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON


async def test_sign_in_sets_a_strict_http_only_cookie_and_cookie_changes_must_come_from_the_page(
    tmp_path: Path,
) -> None:
    topics = make_bus_topics("memory", None)
    async with running_dashboard(topics, tmp_path, risk_url=f"http://127.0.0.1:{closed_port()}") as (
        _,
        dashboard,
    ):
        assert (await dashboard.get("/v1/session")).json() == {
            "signed_in": False,
            "subject": None,
            "expires_at": None,
        }
        for body, status in [
            ({"token": "nope"}, 401),
            ({"token": auth("u-zhangsan")["Authorization"][7:]}, 403),
            ({}, 422),
            ({"token": "x", "extra": 1}, 422),
        ]:
            refused = await dashboard.post("/v1/session", json=body)
            assert refused.status_code == status and refused.headers["content-type"] == PROBLEM_JSON
            assert "set-cookie" not in refused.headers

        signed = await dashboard.post("/v1/session", json={"token": OPS["Authorization"][7:]})
        assert signed.status_code == 200 and signed.json()["subject"] == "ops-7"
        cookie = signed.headers["set-cookie"]
        assert (
            re.search(r"HttpOnly", cookie, re.I)
            and re.search(r"SameSite=strict", cookie, re.I)
            and "Max-Age=" in cookie
        )
        assert (await dashboard.get("/v1/session")).json()["signed_in"] is True
        assert (await dashboard.get("/v1/overview")).status_code == 200

        foreign = await dashboard.post(
            "/v1/reviews/r-1/decision",
            json={"decision": "approve"},
            headers={"Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403 and foreign.json()["type"].endswith("/cross-origin")
        own = await dashboard.post(
            "/v1/reviews/r-1/decision", json={"decision": "approve"}, headers={"Origin": "http://dashboard"}
        )
        assert own.status_code == 503  # past the origin check: the (closed) risk service is called

        assert (await dashboard.delete("/v1/session")).status_code == 204
        assert (await dashboard.get("/v1/overview")).status_code == 401


async def test_a_sign_in_link_opens_an_ops_session_once_within_its_minutes(tmp_path: Path) -> None:
    topics = make_bus_topics("memory", None)
    links = tmp_path / "login-links"
    async with running_dashboard(topics, tmp_path) as (_, dashboard):
        code = write_login_link(links, token("ops-link", "ops"), 60)
        signed = await dashboard.get("/login", params={"code": code})
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        assert re.search(r"HttpOnly", signed.headers["set-cookie"], re.I)
        assert (await dashboard.get("/v1/session")).json()["subject"] == "ops-link"
        assert (await dashboard.get("/v1/overview")).status_code == 200
        assert list(links.iterdir()) == [], "a used link is gone"

        await dashboard.delete("/v1/session")
        again = await dashboard.get("/login", params={"code": code})
        assert (
            again.status_code == 401
            and again.headers["content-type"] == PROBLEM_JSON
            and "set-cookie" not in again.headers
        )
        # The code is no token: no service takes it as one.
        assert (
            await dashboard.get("/v1/overview", headers={"Authorization": f"Bearer {code}"})
        ).status_code == 401

        expired = write_login_link(links, token("ops-link", "ops"), -1)
        assert (await dashboard.get("/login", params={"code": expired})).status_code == 401
        customer = write_login_link(links, token("u-zhangsan"), 60)
        assert (await dashboard.get("/login", params={"code": customer})).status_code == 403, (
            "a link opens an ops session only"
        )
        for bad in ("", "x" * 200, "../../etc/passwd", "A" * 43):
            refused = await dashboard.get("/login", params={"code": bad})
            assert refused.status_code in (401, 422) and refused.headers["content-type"] == PROBLEM_JSON
        assert (await dashboard.get("/v1/session")).json()["signed_in"] is False


async def test_outside_development_the_session_cookie_is_secure(tmp_path: Path) -> None:
    async with running_dashboard(make_bus_topics("memory", None), tmp_path, env="production") as (
        _,
        dashboard,
    ):
        signed = await dashboard.post("/v1/session", json={"token": OPS["Authorization"][7:]})
        assert signed.status_code == 200 and re.search(r"; Secure", signed.headers["set-cookie"], re.I)


async def test_two_racing_clicks_on_one_link_sign_in_once(tmp_path: Path) -> None:
    topics = make_bus_topics("memory", None)
    async with running_dashboard(topics, tmp_path) as (_, dashboard):
        code = write_login_link(tmp_path / "login-links", token("ops-link", "ops"), 60)
        answers = await asyncio.gather(*(dashboard.get("/login", params={"code": code}) for _ in range(5)))
        assert sorted(answer.status_code for answer in answers) == [303, 401, 401, 401, 401]


async def test_without_a_link_folder_no_link_signs_in(tmp_path: Path) -> None:
    async with running_dashboard(make_bus_topics("memory", None), tmp_path, login_link_dir=None) as (
        _,
        dashboard,
    ):
        code = write_login_link(tmp_path / "login-links", token("ops-link", "ops"), 60)
        assert (await dashboard.get("/login", params={"code": code})).status_code == 401


async def test_an_unreachable_risk_service_and_bad_filters_get_clear_problems(tmp_path: Path) -> None:
    topics = make_bus_topics("memory", None)
    async with running_dashboard(topics, tmp_path, risk_url=f"http://127.0.0.1:{closed_port()}") as (
        _,
        dashboard,
    ):
        down = await dashboard.get("/v1/reviews", headers=OPS)
        assert (
            down.status_code == 503
            and down.headers["content-type"] == PROBLEM_JSON
            and down.headers["retry-after"] == "2"
        )
        for params in [
            {"type": "NoSuchEvent"},
            {"request_id": "../../etc"},
            {"limit": "0"},
            {"limit": "many"},
        ]:
            bad = await dashboard.get("/v1/events", params=params, headers=OPS)
            assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM_JSON, (params, bad.text)
        bad_body = await dashboard.post("/v1/reviews/r-1/decision", json={"decision": "maybe"}, headers=OPS)
        assert bad_body.status_code == 422


async def test_the_page_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    async with running_dashboard(make_bus_topics("memory", None), tmp_path) as (_, dashboard):
        page = await dashboard.get("/")
        assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
        # Links within the page (`#/reviews`) load nothing; every asset is the dashboard's own.
        for asset in re.findall(r'(?:src|href)="([^"#][^"]*)"', page.text):
            assert asset.startswith("/static/"), asset
            assert (await dashboard.get(asset)).status_code == 200
    for path in STATIC.iterdir():
        # No inline script or style: the CSP would block it.
        assert path.suffix != ".html" or not re.search(
            r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", path.read_text()
        ), path.name
        urls = set(re.findall(r"https?://[^\s\"'`)]+", path.read_text())) - {"http://www.w3.org/2000/svg"}
        assert not urls, (path.name, urls)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
