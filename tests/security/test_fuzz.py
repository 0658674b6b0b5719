"""Schemathesis against the OpenAPI document of each of the five services, on SQLite and on
PostgreSQL: requests generated from the schema (valid, invalid, and valid with one string at the
edge of what a column holds), sent with a valid token, must never meet a 5xx, every error must be
problem+json, and every response must have a documented status, content type and body.

Schemathesis calls an ASGI app on an event loop thread of its own, while the services' database
connections and bus belong to the test's loop; `OnTestLoop` carries each request over to that loop.
Generation is derandomized (the same cases on every run) and bounded per operation."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.problems import PROBLEM_JSON
from tests.security.conftest import World, populated_world
from tests.stack import auth

# Verification first: its wrong codes lock the owner's request out, so binding's appeal then has a
# rejected request to act on (binding first would cancel it, leaving verification nothing pending).
SERVICES = ("verification", "binding", "risk", "notification", "dashboard")
# Per operation, drawn alike from schema-valid, schema-violating and at-the-edge cases.
EXAMPLES = 30
# An instant that leaves years 1-9999 once converted to UTC, as stored and compared.
EDGE_INSTANTS = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00")
# An event stream ends only with its token: a request would never return (the matrix covers it).
UNFUZZED = {("dashboard", "GET /v1/stream")}


class OnTestLoop:
    """An ASGI app running each request, whole, on `loop` and handing back what it sent."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop):
        self.app = app
        self.loop = loop

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the test runs the app's lifespan; this one only answers
            while (message := await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        for message in await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._on_loop(scope, body), self.loop)
        ):
            await send(message)

    async def _on_loop(self, scope: dict[str, Any], body: bytes) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        answered = asyncio.Event()
        pending = [{"type": "http.request", "body": body}]

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await answered.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered.set()

        try:
            await self.app(scope, receive, send)
        except Exception:
            if not sent:  # the app re-raises after its 500 went out: that 500 is what gets checked
                raise
        return sent


def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"


def problem_json(ctx: Any, response: Any, case: Any) -> None:
    """RFC 9457: an error is application/problem+json with at least type, title and its status."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == PROBLEM_JSON, f"a {response.status_code} answered as {content_type!r}"
    body = response.json()
    assert (
        isinstance(body.get("type"), str)
        and isinstance(body.get("title"), str)
        and body.get("status") == response.status_code
    ), body


CHECKS = [
    no_server_error,
    problem_json,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# The one caller each internal route admits.
INTERNAL_CALLERS = {
    "/internal/v1/messages": "verification",
    "/internal/v1/review-messages/{review_id}": "risk",
    "/internal/v1/profiles/{user_id}": "customer-system",
}


def headers_for(world: World, service: str, path: str) -> dict[str, str]:
    """A token of the role the operation is for (the authorization matrix tries the others)."""
    if path.startswith("/internal/"):
        return auth(INTERNAL_CALLERS[path], "service")
    if service in ("risk", "dashboard") or path.startswith("/v1/ops/"):
        return auth("ops-fuzz", "ops")
    return auth(world.owner.user_id)


def strings_in(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every string in a JSON value."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [
        found
        for key, item in items
        for found in ([(value, key)] if isinstance(item, str) else strings_in(item))
    ]


def at_the_edge(case: Any, choice: int) -> Any:
    """The case with one of its strings at the edge of what a database column holds (generated data
    rarely is): a NUL added (PostgreSQL's text refuses it) or, for an instant, one that does not exist in
    UTC."""
    strings = strings_in(case.body) + strings_in(case.query)
    if strings:
        container, key = strings[choice % len(strings)]
        try:
            datetime.fromisoformat(container[key])
            container[key] = EDGE_INSTANTS[choice % 2]
        except ValueError:
            container[key] += "\x00"
    return case


def fuzz_operation(operation: Any, headers: dict[str, str], ids: dict[str, str]) -> None:
    # Valid requests go to the world's real resources (a random id only meets a 404); invalid ones
    # keep their generated path.
    real = {
        parameter.name: ids[parameter.name]
        for parameter in operation.path_parameters
        if parameter.name in ids
    }
    valid = operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=real or None)
    invalid = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    edge = valid.flatmap(lambda case: st.integers(0, 63).map(lambda choice: at_the_edge(case, choice)))

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(edge, valid, invalid))
    def run(case: Any) -> None:
        case.validate_response(case.call(headers=headers), checks=CHECKS)

    run()


def fuzz(world: World, loop: asyncio.AbstractEventLoop) -> list[str]:
    failures = []
    for service in SERVICES:
        schema = schemathesis.openapi.from_asgi("/openapi.json", OnTestLoop(world.app(service), loop))
        for result in schema.get_all_operations():
            operation = result.ok()
            if (service, operation.label) in UNFUZZED:
                continue
            try:
                fuzz_operation(operation, headers_for(world, service, operation.path), world.ids)
            except (Exception, BaseExceptionGroup) as failure:  # schemathesis reports its failures as a group
                failures.append(f"{service} {operation.label}: {failure}")
    return failures


async def test_generated_requests_meet_the_contract(database_urls: dict[str, str], tmp_path: Path) -> None:
    async with populated_world(database_urls, tmp_path) as world:
        # In a thread: schemathesis blocks while the loop serves the requests it hands over.
        failures = await asyncio.to_thread(fuzz, world, asyncio.get_running_loop())
    assert not failures, "\n\n".join(failures)
