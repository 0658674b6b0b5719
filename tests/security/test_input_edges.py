"""Inputs at the edge of what a database column holds, each once a 500 (on PostgreSQL, or on both
backends): a NUL character in free text (PostgreSQL's text refuses it), an instant that leaves
years 1-9999 once converted to UTC, a forged pagination cursor. Each must be refused up front with
a 422 problem, and leave nothing behind."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx

from tests.factories import RULES_ADMIN, customer_with_binding, idempotency_key, reviewer_auth, unbind_body
from tests.security.conftest import OPS, World, populated_world
from tests.stack import auth
from tools.device_simulator import DeviceSimulator

CUSTOMER_SYSTEM = auth("customer-system", "service")
VERIFICATION = auth("verification", "service")
EARLIEST = "0001-01-01T00:00:00+01:00"  # 31 December of year 0 in UTC
LATEST = "9999-12-31T23:59:59-01:00"  # year 10000 in UTC


def code_sms(user_id: str) -> dict[str, Any]:
    return {"message_id": "m-edge", "user_id": user_id, "template": "device_enrolment_code"}


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


FORGED_CURSORS = [
    cursor("2026-01-01T00:00:00|x"),
    cursor("0001-01-01T00:00:00+05:00|x"),
    cursor("2026-01-01T00:00:00+00:00|\x00"),
]


async def edge_requests(world: World) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(service, method, path, request options) that must each be answered 422."""
    owner, ids = auth(world.owner.user_id), world.ids
    # A binding with nothing open: a request for it is written, not refused as one too many.
    idle = await customer_with_binding(world.stack)
    device = DeviceSimulator.generate("d-edge").enrolment()
    rules_change = {
        **RULES_ADMIN,
        "If-Match": (await world.stack.client("risk").get("/v1/rules", headers=OPS)).headers["ETag"],
    }
    night = [{"name": "night", "action": "review", "if": "night_request == true"}]
    return [
        *[
            ("binding", "GET", "/v1/ops/unbind-requests", {"params": {"since": since}, "headers": OPS})
            for since in (EARLIEST, LATEST)
        ],
        *[
            ("binding", "GET", "/v1/ops/unbind-requests", {"params": {"cursor": forged}, "headers": OPS})
            for forged in FORGED_CURSORS
        ],
        *[
            ("notification", "GET", "/v1/notifications", {"params": {"cursor": forged}, "headers": owner})
            for forged in FORGED_CURSORS
        ],
        (
            "risk",
            "PUT",
            f"/internal/v1/profiles/{ids['user_id']}",
            {"json": {"account_opened_at": EARLIEST}, "headers": CUSTOMER_SYSTEM},
        ),
        (
            "risk",
            "PUT",
            f"/internal/v1/profiles/{ids['user_id']}",
            {"json": {"phone_changed_at": LATEST}, "headers": CUSTOMER_SYSTEM},
        ),
        (
            "binding",
            "POST",
            f"/v1/bindings/{idle.binding_id}/unbind-requests",
            {
                "json": unbind_body(note="moving\x00banks"),
                "headers": {**auth(idle.user_id), "Idempotency-Key": idempotency_key()},
            },
        ),
        (
            "binding",
            "POST",
            f"/v1/unbind-requests/{ids['request_id']}/appeal",
            {"json": {"message": "\x00"}, "headers": owner},
        ),
        ("verification", "POST", "/v1/devices", {"json": {**device, "name": "phone\x00"}, "headers": owner}),
        # The SMS went out before the record failed: the caller's retry sent it again.
        (
            "notification",
            "POST",
            "/internal/v1/messages",
            {
                "json": {**code_sms(ids["user_id"]), "params": {"code": "12\x003456", "ttl_minutes": "5"}},
                "headers": VERIFICATION,
            },
        ),
        (
            "risk",
            "POST",
            f"/v1/reviews/{ids['review_id']}/decision",
            {"json": {"decision": "deny", "note": "\x00"}, "headers": reviewer_auth()},
        ),
        (
            "dashboard",
            "POST",
            f"/v1/reviews/{ids['review_id']}/decision",
            {"json": {"decision": "deny", "note": "\x00"}, "headers": reviewer_auth()},
        ),
        # Accepted, a NUL in a rule's name broke every assessment it matched (PostgreSQL, in the consumer).
        (
            "risk",
            "PUT",
            "/v1/rules",
            {
                "json": {"rules": [{"name": "night\x00", "action": "review", "if": "night_request == true"}]},
                "headers": rules_change,
            },
        ),
        (
            "risk",
            "PUT",
            "/v1/rules",
            {"json": {"rules": night, "comment": "why\x00"}, "headers": rules_change},
        ),
        (
            "dashboard",
            "PUT",
            "/v1/rules",
            {"json": {"rules": night, "comment": "why\x00"}, "headers": rules_change},
        ),
    ]


async def test_inputs_no_column_can_hold_are_refused_up_front(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with populated_world(database_urls, tmp_path) as world:
        risk = world.stack.client("risk")
        rules_before = (await risk.get("/v1/rules", headers=OPS)).json()
        answers = []
        for service, method, path, options in await edge_requests(world):
            # The app's own exceptions come back as the 500 a client would see.
            transport = httpx.ASGITransport(app=world.app(service), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url=f"http://{service}") as client:
                response = await client.request(method, path, **options)
            answers.append((service, method, path, response.status_code, response.headers["content-type"]))
        assert [answer for answer in answers if answer[3:] != (422, "application/problem+json")] == []
        # Nothing was decided, written or sent on the way: the review still waits, the rules are the
        # same version, no SMS carries the NUL.
        pending = (await risk.get("/v1/reviews", params={"status": "pending"}, headers=OPS)).json()["items"]
        assert world.ids["review_id"] in [item["id"] for item in pending]
        assert (await risk.get("/v1/rules", headers=OPS)).json() == rules_before
        assert [message for message in world.stack.sms_messages() if "\x00" in message["text"]] == []
