"""Who may call what: every route of every service against five principals, checked on the running
apps with real data (design.md: a customer sees only their own bindings, requests,
verifications and notifications; ops and services act through their own endpoints).

A route missing from MATRIX fails the first test, so a new endpoint cannot ship without a row
saying who may call it; a row naming no route fails it too. Bad tokens get 401 everywhere."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from services.binding.main import create_app as create_binding_app
from services.dashboard.main import create_app as create_dashboard_app
from services.notification.main import create_app as create_notification_app
from services.risk.main import create_app as create_risk_app
from services.verification.main import create_app as create_verification_app
from shared.auth import audience_of, issue_token
from shared.keys import SigningKey, new_kid
from shared.login_links import write_login_link
from tests.dashboard.conftest import dashboard_settings
from tests.factories import CURRENT_AGREEMENT, card_number, idempotency_key, unbind_body
from tests.keys import ISSUER, service_key, token
from tests.security.conftest import REVIEW_EVERYTHING, World, populated_world
from tests.stack import auth, make_bus_topics, served, service_settings
from tools.device_simulator import DeviceSimulator
from tools.keys import signing_services

PRINCIPALS = ("anonymous", "other", "owner", "ops", "reviewer", "rules_admin", "service")
# The "service" principal is the one caller an internal route admits, else binding's service token.
INTERNAL_CALLERS = {
    ("notification", "POST /internal/v1/messages"): "verification",
    ("notification", "PUT /internal/v1/review-messages/{review_id}"): "risk",
    ("risk", "PUT /internal/v1/profiles/{user_id}"): "customer-system",
}
PUBLIC = (200,) * 7
# Staff roles add up: the reviewer and the rules admin of the matrix hold `ops` too, so they read what ops
# read.
OPS_ONLY = (401, 403, 403, 200, 200, 200, 403)
OWN = (
    401,
    404,
    200,
    403,
    403,
    403,
    403,
)  # a customer's own thing: another customer is told it does not exist
OWN_OR_OPS = (401, 404, 200, 200, 200, 200, 403)
CUSTOMER = (401, 200, 200, 403, 403, 403, 403)  # the caller's own list or settings
REVIEWER_ONLY = (401, 403, 403, 403, 200, 403, 403)
RULES_ADMIN_ONLY = (401, 403, 403, 403, 403, 200, 403)
UNCLAIMED_DECISION = (
    401,
    403,
    403,
    403,
    409,
    403,
    403,
)  # the reviewer released the case above: claim-required


def customer_only(wrong: int, owner: int) -> tuple[int, ...]:
    """A customer's action on their own thing: another customer gets `wrong`, staff and services 403."""
    return (401, wrong, owner, 403, 403, 403, 403)


def internal(status: int) -> tuple[int, ...]:
    """An internal route: only its one caller (the service principal) gets past authorization."""
    return (401, 403, 403, 403, 403, 403, status)


# (service, "METHOD path") -> statuses for (anonymous, another customer, the owner, ops, a reviewer,
# a rules admin, a service).
# Rows run in this order, each route's refusals before its successes; a 409 or 422 for an allowed
# caller means the request got past authorization and met the state of the owner's request.
MATRIX: dict[tuple[str, str], tuple[int, int, int, int, int]] = {
    # Probes and Prometheus carry no token: health and metrics are public by design.
    **{
        (service, f"GET {path}"): PUBLIC
        for service in ("verification", "notification", "dashboard", "risk", "binding")
        for path in ("/healthz", "/readyz", "/metrics")
    },
    ("verification", "GET /v1/verifications/{verification_id}"): OWN,
    ("verification", "POST /v1/verifications/{verification_id}/otp"): customer_only(404, 422),  # a wrong code
    ("verification", "POST /v1/verifications/{verification_id}/otp/resend"): OWN,
    ("verification", "POST /v1/verifications/{verification_id}/biometric/challenge"): customer_only(
        404, 409
    ),  # SMS code only
    ("verification", "POST /v1/verifications/{verification_id}/biometric"): customer_only(404, 409),
    ("verification", "POST /v1/devices"): customer_only(202, 202),  # pending until its own SMS code
    ("verification", "GET /v1/devices"): CUSTOMER,
    ("verification", "GET /v1/devices/{device_id}"): OWN,
    ("verification", "DELETE /v1/devices/{device_id}"): customer_only(404, 204),
    ("notification", "GET /v1/notifications"): CUSTOMER,
    ("notification", "POST /v1/notifications/{notification_id}/read"): OWN,
    ("notification", "GET /v1/preferences"): CUSTOMER,
    ("notification", "PUT /v1/preferences"): CUSTOMER,
    ("notification", "POST /internal/v1/messages"): internal(202),
    ("notification", "PUT /internal/v1/review-messages/{review_id}"): internal(204),
    # The page, and the session that signs in (with the token in the body: each principal's own).
    ("dashboard", "GET /"): PUBLIC,
    ("dashboard", "GET /static/labels.js"): PUBLIC,  # the page's labels of codes: words, nobody's data
    ("dashboard", "GET /v1/session"): PUBLIC,
    ("dashboard", "POST /v1/session"): (401, 403, 403, 200, 200, 200, 403),
    ("dashboard", "GET /login"): (303,) * 7,  # a fresh one-time link each (the headers play no part)
    ("dashboard", "DELETE /v1/session"): (204,) * 7,
    ("dashboard", "GET /v1/overview"): OPS_ONLY,
    ("dashboard", "GET /v1/events"): OPS_ONLY,
    ("dashboard", "GET /v1/stream"): OPS_ONLY,
    ("dashboard", "GET /v1/reviews"): OPS_ONLY,
    ("dashboard", "GET /v1/reviews/reasons"): OPS_ONLY,
    # A reviewer claims and releases the case; deciding then needs a claim (409 claim-required).
    ("dashboard", "POST /v1/reviews/{review_id}/claim"): REVIEWER_ONLY,
    ("dashboard", "DELETE /v1/reviews/{review_id}/claim"): REVIEWER_ONLY,
    ("dashboard", "POST /v1/reviews/{review_id}/decision"): UNCLAIMED_DECISION,
    # The dashboard forwards the rules as the signed-in user: risk decides who may change them.
    ("dashboard", "GET /v1/rules"): OPS_ONLY,
    ("dashboard", "PUT /v1/rules"): RULES_ADMIN_ONLY,
    ("dashboard", "GET /v1/rules/versions"): OPS_ONLY,
    ("dashboard", "GET /v1/rules/versions/{version}"): OPS_ONLY,
    ("dashboard", "POST /v1/rules/versions/{version}/restore"): RULES_ADMIN_ONLY,
    ("dashboard", "POST /v1/rules/simulate"): OPS_ONLY,
    ("risk", "GET /v1/assessments/{request_id}"): OPS_ONLY,
    ("risk", "GET /v1/rules"): OPS_ONLY,
    ("risk", "PUT /v1/rules"): RULES_ADMIN_ONLY,
    ("risk", "GET /v1/rules/versions"): OPS_ONLY,
    ("risk", "GET /v1/rules/versions/{version}"): OPS_ONLY,
    ("risk", "POST /v1/rules/versions/{version}/restore"): RULES_ADMIN_ONLY,
    ("risk", "POST /v1/rules/simulate"): OPS_ONLY,
    ("risk", "GET /v1/reviews"): OPS_ONLY,
    ("risk", "GET /v1/reviews/{review_id}"): OPS_ONLY,
    ("risk", "GET /v1/reviews/reasons"): OPS_ONLY,
    ("risk", "POST /v1/reviews/{review_id}/claim"): REVIEWER_ONLY,
    ("risk", "DELETE /v1/reviews/{review_id}/claim"): REVIEWER_ONLY,
    ("risk", "POST /v1/reviews/{review_id}/decision"): UNCLAIMED_DECISION,
    ("risk", "GET /v1/customers/{user_id}/risk"): OPS_ONLY,
    ("risk", "GET /v1/model"): OPS_ONLY,
    # An evaluation replays a synthetic population: it reads the rules in force, so their admin runs it.
    ("risk", "POST /v1/model/evaluations"): RULES_ADMIN_ONLY,
    ("risk", "GET /v1/flags"): OPS_ONLY,
    ("risk", "POST /v1/flags/{user_id}/clear"): REVIEWER_ONLY,  # clearing a flag is a reviewer's decision
    ("risk", "PUT /internal/v1/profiles/{user_id}"): internal(204),
    ("binding", "GET /v1/lenders"): CUSTOMER,
    # The agreement is read before binding, by anyone: it holds nothing about anyone.
    ("binding", "GET /v1/agreements/{version}"): PUBLIC,
    ("binding", "GET /v1/bindings"): CUSTOMER,
    ("binding", "POST /v1/bindings"): customer_only(
        202, 202
    ),  # pending until its SMS code, then the lender's confirmation
    # A lender's callback carries no token: it is authenticated by the lender's HMAC signature alone
    # (tests/binding/test_bind.py), so every bearer, however good, is refused without one.
    ("binding", "POST /v1/lenders/callbacks"): (401,) * 7,
    ("binding", "GET /v1/bindings/{binding_id}"): OWN_OR_OPS,
    ("binding", "POST /v1/bindings/{binding_id}/repayments"): customer_only(404, 201),
    ("binding", "GET /v1/bindings/{binding_id}/impact"): OWN_OR_OPS,
    ("binding", "GET /v1/bindings/{binding_id}/report"): OWN_OR_OPS,
    ("binding", "POST /v1/bindings/{binding_id}/unbind-requests"): customer_only(
        404, 409
    ),  # one is open already
    ("binding", "POST /v1/bindings/{binding_id}/pause-requests"): customer_only(
        404, 409
    ),  # the same open one stops them
    ("binding", "POST /v1/bindings/{binding_id}/switch-requests"): customer_only(404, 409),
    ("binding", "GET /v1/unbind-requests/{request_id}"): OWN_OR_OPS,
    ("binding", "POST /v1/unbind-requests/{request_id}/cancel"): OWN,
    ("binding", "POST /v1/unbind-requests/{request_id}/appeal"): customer_only(
        404, 409
    ),  # cancelled, not rejected
    ("binding", "POST /v1/unbind-requests/{request_id}/dispute"): customer_only(
        404, 409
    ),  # cancelled, not completed
    ("binding", "GET /v1/unbind-requests/{request_id}/audit"): OWN_OR_OPS,
    ("binding", "GET /v1/ops/unbind-requests"): OPS_ONLY,
    ("binding", "GET /v1/ops/unbind-requests/{request_id}"): OPS_ONLY,
    ("binding", "GET /v1/ops/customers/{user_id}"): OPS_ONLY,
    ("verification", "GET /v1/ops/verifications"): OPS_ONLY,
    ("verification", "GET /v1/ops/customers/{user_id}/devices"): OPS_ONLY,
    ("notification", "GET /v1/ops/notifications"): OPS_ONLY,
    ("notification", "GET /v1/ops/customers"): OPS_ONLY,
    # Support resends a message the customer lost (each staff principal once: a new delivery each).
    ("notification", "POST /v1/ops/notifications/{delivery_id}/resend"): (401, 403, 403, 202, 202, 202, 403),
    ("dashboard", "GET /v1/cases/{request_id}"): OPS_ONLY,
    ("dashboard", "GET /v1/customers"): OPS_ONLY,
    ("dashboard", "GET /v1/customers/{user_id}"): OPS_ONLY,
    ("dashboard", "POST /v1/notifications/{message_id}/resend"): (401, 403, 403, 202, 202, 202, 403),
}
SCHEMA_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
Request = Callable[[World, dict[str, str]], dict[str, Any]]


def wrong_code(world: World) -> str:
    return f"{(int(world.stack.latest_code(world.owner.phone)) + 1) % 10**6:06d}"


def own_token(headers: dict[str, str]) -> str:
    return headers.get("Authorization", "Bearer not-a-token").removeprefix("Bearer ")


# Each a valid request, so that an allowed caller gets past validation; by default none is needed.
REQUESTS: dict[str, Request] = {
    "POST /v1/verifications/{verification_id}/otp": lambda world, _: {"json": {"code": wrong_code(world)}},
    "POST /v1/devices": lambda *_: {
        "json": DeviceSimulator.generate(f"d-{uuid.uuid4().hex[:8]}").enrolment()
    },
    "POST /v1/verifications/{verification_id}/biometric": lambda *_: {
        "json": {"device_id": "d-1", "challenge": "A" * 43, "signature": "A" * 64, "counter": 1}
    },
    "PUT /v1/preferences": lambda *_: {"json": {"locale": "en"}},
    "POST /internal/v1/messages": lambda world, _: {
        "json": {
            "message_id": f"m-{uuid.uuid4()}",
            "user_id": world.owner.user_id,
            "template": "otp_code",
            "request_id": world.ids["request_id"],
            "params": {"code": "123456", "ttl_minutes": "5"},
        }
    },
    "POST /v1/session": lambda _, headers: {"json": {"token": own_token(headers)}},
    "GET /login": lambda world, _: {
        "params": {
            "code": write_login_link(
                world.dashboard.state.settings.login_link_dir, token("ops-matrix", "ops"), 60
            )
        }
    },
    "POST /v1/reviews/{review_id}/decision": lambda *_: {
        "json": {"decision": "deny", "reason": "identity_not_confirmed", "note": "authorization matrix"}
    },
    # Saving or restoring the world's set in force again adds no version, so its tag stays good.
    "PUT /v1/rules": lambda world, _: {
        "json": REVIEW_EVERYTHING,
        "headers": {"If-Match": f'"rules-v{world.ids["rules_version"]}"'},
    },
    "GET /v1/rules/versions/{version}": lambda world, _: {
        "path": {"version": world.ids["rules_version"]}
    },  # {version} is the agreement's elsewhere
    "POST /v1/rules/versions/{version}/restore": lambda world, _: {
        "headers": {"If-Match": f'"rules-v{world.ids["rules_version"]}"'},
        "path": {"version": world.ids["rules_version"]},
    },
    "POST /v1/rules/simulate": lambda *_: {"json": {**REVIEW_EVERYTHING, "days": 7}},
    "POST /v1/model/evaluations": lambda *_: {"json": {"population": 400, "window": 40}},
    "GET /v1/ops/verifications": lambda world, _: {"params": {"request_id": world.ids["request_id"]}},
    "GET /v1/ops/notifications": lambda world, _: {"params": {"user_id": world.owner.user_id}},
    "GET /v1/ops/customers": lambda world, _: {"params": {"user_id": world.owner.user_id}},
    "GET /v1/customers": lambda world, _: {"params": {"user_id": world.owner.user_id}},
    "POST /v1/ops/notifications/{delivery_id}/resend": lambda *_: {
        "json": {"reason": "lost on the way (authorization matrix)"}
    },
    "POST /v1/notifications/{message_id}/resend": lambda world, _: {
        "json": {"reason": "lost (matrix)"},
        "path": {"message_id": world.ids["delivery_id"]},
    },
    "PUT /internal/v1/profiles/{user_id}": lambda *_: {
        "json": {"account_opened_at": "2020-01-01T00:00:00+08:00"}
    },
    "POST /v1/bindings": lambda *_: {
        "json": {
            "lender": "Example Bank",
            "account_number": card_number(),
            "monthly_instalment": 5000,
            "due_day": 10,
            "agreement_version": CURRENT_AGREEMENT,
        }
    },
    # A well-formed callback, so that only the missing signature refuses it.
    "POST /v1/lenders/callbacks": lambda *_: {
        "json": {"callback_id": f"cb-{uuid.uuid4()}", "mandate_id": "m-1", "decision": "confirmed"}
    },
    "POST /v1/bindings/{binding_id}/repayments": lambda *_: {
        "json": {"amount": 6500},
        "headers": {"Idempotency-Key": idempotency_key()},
    },
    "POST /v1/bindings/{binding_id}/unbind-requests": lambda *_: {
        "json": unbind_body(),
        "headers": {"Idempotency-Key": idempotency_key()},
    },
    "POST /v1/bindings/{binding_id}/pause-requests": lambda *_: {
        "json": {"months": 2},
        "headers": {"Idempotency-Key": idempotency_key()},
    },
    "POST /v1/bindings/{binding_id}/switch-requests": lambda *_: {
        "json": {"lender": "Harbour Bank", "account_number": card_number()},
        "headers": {"Idempotency-Key": idempotency_key()},
    },
    "POST /v1/unbind-requests/{request_id}/appeal": lambda *_: {"json": {"message": "Please look again."}},
    "POST /v1/unbind-requests/{request_id}/dispute": lambda *_: {"json": {"reason": "not_requested_by_me"}},
    "PUT /internal/v1/review-messages/{review_id}": lambda world, _: {
        "json": {
            "user_id": world.other.user_id,
            "request_id": str(uuid.uuid4()),
            "message": "We will call you back today.",
        }
    },
}


def routes_of(app: FastAPI) -> set[str]:
    contexts = iter_route_contexts(app.routes)
    return {
        f"{method} {route.path}"
        for route in contexts
        if not isinstance(route.original_route, Mount) and route.path not in SCHEMA_ROUTES
        for method in route.methods or ()
    }


def test_the_matrix_has_a_row_for_every_route_and_no_other(tmp_path: Path) -> None:
    topics = make_bus_topics("memory", None)
    factories = {
        "binding": create_binding_app,
        "verification": create_verification_app,
        "risk": create_risk_app,
        "notification": create_notification_app,
    }
    # Built, not started: the route table is all that is read.
    apps = {
        service: factory(
            service_settings(service, f"sqlite+aiosqlite:///{tmp_path}/{service}.db", topics, tmp_path),
            bus=topics.bus,
        )
        for service, factory in factories.items()
    }
    apps["dashboard"] = create_dashboard_app(dashboard_settings(topics, tmp_path), bus=topics.bus)
    routes = {(service, route) for service, app in apps.items() for route in routes_of(app)}
    assert {
        "missing from the matrix": sorted(routes - set(MATRIX)),
        "not a route": sorted(set(MATRIX) - routes),
    } == {"missing from the matrix": [], "not a route": []}


def principal_headers(world: World, service: str = "", route: str = "") -> dict[str, dict[str, str]]:
    return {
        "anonymous": {},
        "other": auth(world.other.user_id),
        "owner": auth(world.owner.user_id),
        "ops": auth("ops-matrix", "ops"),
        "reviewer": auth("reviewer-matrix", "ops", "reviewer"),
        "rules_admin": auth("rules-matrix", "ops", "rules_admin"),
        "service": auth(INTERNAL_CALLERS.get((service, route), "binding"), "service"),
    }


async def call(
    client: httpx.AsyncClient, world: World, route: str, headers: dict[str, str]
) -> tuple[int, bytes]:
    method, template = route.split(" ", 1)
    options = REQUESTS.get(route, lambda *_: {})(world, headers)
    headers = {**headers, **options.pop("headers", {})}
    ids = {**world.ids, **options.pop("path", {})}
    # Streamed: the status of the endless event stream is read without waiting for its end.
    async with client.stream(method, template.format(**ids), headers=headers, **options) as response:
        event_stream = response.headers.get("content-type", "").startswith("text/event-stream")
        return response.status_code, b"" if event_stream else await response.aread()


@pytest.mark.parametrize(
    "database_urls", ["sqlite"], indirect=True
)  # who may call what does not depend on the backend
async def test_each_principal_gets_the_status_of_the_matrix_on_every_route(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with populated_world(database_urls, tmp_path) as world, served(world.dashboard) as dashboard_url:
        clients = {**world.stack.clients, "dashboard": httpx.AsyncClient(base_url=dashboard_url)}
        owners = [
            world.owner.binding_id,
            world.owner.account_number,
            *(world.ids[name] for name in ("request_id", "verification_id", "notification_id", "device_id")),
        ]
        mismatches, leaks = [], []
        for (service, route), expected in MATRIX.items():
            # Refusals first: a caller who may act (cancel, decide...) changes what the next one meets.
            for principal, status in sorted(
                zip(PRINCIPALS, expected, strict=True), key=lambda pair: pair[1] < 400
            ):
                got, body = await call(
                    clients[service], world, route, principal_headers(world, service, route)[principal]
                )
                if got != status:
                    mismatches.append((service, route, principal, status, got, body[:200]))
                if principal == "other" and got < 400:
                    leaks.extend((service, route, value) for value in owners if value.encode() in body)
        await clients["dashboard"].aclose()
    assert mismatches == []
    assert leaks == []


def forged(claims: dict[str, Any], *, key: SigningKey = ISSUER) -> str:
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any]) -> str:
    return f"{b64url({'alg': 'none', 'typ': 'JWT', 'kid': ISSUER.kid})}.{b64url(claims)}."


def bad_tokens() -> dict[str, str]:
    now = int(time.time())
    audiences = [
        audience_of(service) for service in ("binding", "verification", "risk", "notification", "dashboard")
    ]
    # Every role but service (which the issuer's key cannot sign), so that the token itself is the only reason
    # to refuse it.
    good = {
        "sub": "u-intruder",
        "roles": ["customer", "ops"],
        "iss": "unbind",
        "aud": audiences,
        "iat": now,
        "exp": now + 600,
    }

    def without(claim: str) -> dict[str, Any]:
        return {name: value for name, value in good.items() if name != claim}

    return {
        "expired": issue_token(ISSUER, "u-intruder", good["roles"], audience=audiences, ttl_seconds=-60),
        "signed by a key the JWKS does not hold": forged(good, key=SigningKey.generate(new_kid())),
        "a customer token signed by a service's key": forged(good, key=service_key("binding")),
        "alg none": unsigned(good),
        # What an attacker tried first: HS256 with the development secret this repository once published.
        "hs256 with the once-published secret": jwt.encode(
            good,
            "development-only-jwt-secret-never-use-in-production",
            algorithm="HS256",
            headers={"kid": ISSUER.kid},
        ),
        "no sub": forged(without("sub")),
        "no exp": forged(without("exp")),
        "no aud": forged(without("aud")),
        "meant for another deployment (aud)": forged({**good, "aud": ["unbind-elsewhere"]}),
        "no roles": forged(without("roles")),
        "wrong issuer": forged({**good, "iss": "someone-else"}),
        # Subjects are ids of at most 64 characters; a longer one was a 500 on PostgreSQL where it is
        # recorded.
        "subject over 64 characters": forged({**good, "sub": "u-" + "x" * 63}),
    }


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_a_bad_token_gets_401_on_every_authenticated_route(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    authenticated = [key for key, expected in MATRIX.items() if expected[0] == 401]
    async with populated_world(database_urls, tmp_path) as world, served(world.dashboard) as dashboard_url:
        clients = {**world.stack.clients, "dashboard": httpx.AsyncClient(base_url=dashboard_url)}
        answers = {}
        for name, token in bad_tokens().items():
            for service, route in authenticated:
                status, _ = await call(clients[service], world, route, {"Authorization": f"Bearer {token}"})
                answers[(name, service, route)] = status
        await clients["dashboard"].aclose()
    assert len(authenticated) > 30
    assert {key: status for key, status in answers.items() if status != 401} == {}


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_an_internal_route_admits_its_one_caller_and_no_other_service(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with populated_world(database_urls, tmp_path) as world:
        refused = {}
        for (service, route), caller in INTERNAL_CALLERS.items():
            for other in signing_services():
                if other != caller:
                    status, _ = await call(
                        world.stack.clients[service],
                        world,
                        route,
                        {"Authorization": f"Bearer {token(other, 'service')}"},
                    )
                    refused[(service, route, other)] = status
    assert refused and set(refused.values()) == {403}, refused
