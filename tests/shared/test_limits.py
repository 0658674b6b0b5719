"""Size limits of the HTTP shell: a body over the limit is 413 before it is parsed (announced, or
counted as a chunked body arrives), headers over 16 KiB are 431; problem+json, and nothing written.
In process and over real HTTP (uvicorn)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from starlette.types import Message, Receive, Scope, Send

from services.binding.models import Binding, UnbindRequest
from shared.problems import PROBLEM_TEXTS
from tests.binding.test_api import assert_problem
from tests.factories import Customer, customer_with_binding, idempotency_key
from tests.stack import Stack, auth, on_memory_bus, served

LIMIT = 64 * 1024
CHUNK = 16 * 1024


@pytest.fixture
async def stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with on_memory_bus(
        database_urls,
        tmp_path,
        ("binding",),
        overrides={"binding": {"run_workers": False}},
    ) as running:
        yield running


def oversized_binding() -> bytes:
    """Valid JSON for POST /v1/bindings, well over 64 KiB: were it parsed, it would be a 422."""
    return (
        b'{"lender": "'
        + b"x" * (10 * 1024 * 1024)
        + b'", "account_number": "6222021234514821", "monthly_instalment": 6500, "due_day": 10}'
    )


class Chunks:
    """A body of `count` chunks without a length (Transfer-Encoding: chunked); counts what was pulled."""

    def __init__(self, count: int):
        self.count = count
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield b"x" * CHUNK


async def written(stack: Stack) -> tuple[int, int]:
    async with stack.runtime("binding").session_factory() as session:
        bindings = await session.scalar(select(func.count()).select_from(Binding)) or 0
        requests = await session.scalar(select(func.count()).select_from(UnbindRequest)) or 0
    return bindings, requests


async def post_both(client: httpx.AsyncClient, customer: Customer, content: object) -> list[httpx.Response]:
    headers = {**auth(customer.user_id), "Content-Type": "application/json"}
    return [
        await client.post(
            "/v1/bindings", content=content() if callable(content) else content, headers=headers
        ),
        await client.post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            content=content() if callable(content) else content,
            headers={**headers, "Idempotency-Key": idempotency_key()},
        ),
    ]


async def test_an_announced_body_over_the_limit_is_413_before_it_is_read(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    before = await written(stack)
    for response in await post_both(stack.client("binding"), customer, oversized_binding()):
        problem = assert_problem(response, 413, "payload-too-large")
        # Binding answers customers: the detail is in their words (zh-CN by default), the limit a field.
        assert (
            problem["detail"] == PROBLEM_TEXTS.render("problem.payload-too-large", "zh-CN")
            and problem["max_bytes"] == LIMIT
        )
        assert response.headers["x-request-id"]
    assert await written(stack) == before


async def test_a_chunked_body_is_counted_and_refused_at_the_limit(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    before = await written(stack)
    bodies: list[Chunks] = []

    def body() -> Chunks:
        bodies.append(Chunks(1024))  # 16 MiB, never announced
        return bodies[-1]

    for response in await post_both(stack.client("binding"), customer, body):
        assert_problem(response, 413, "payload-too-large")
    # The in-process transport hands a chunk over only when the app asks for one.
    assert [chunks.pulled for chunks in bodies] == [LIMIT // CHUNK + 1] * 2
    assert await written(stack) == before


async def test_a_body_within_the_limit_is_read(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    almost = (
        b'{"lender": "'
        + b"x" * (LIMIT - 200)
        + b'", "account_number": "6222021234514821", "monthly_instalment": 6500, "due_day": 10}'
    )
    response = await stack.client("binding").post(
        "/v1/bindings", content=almost, headers={**auth(customer.user_id), "Content-Type": "application/json"}
    )
    assert_problem(response, 422, "validation-error")  # read and parsed: the lender is too long


async def test_the_body_limit_is_a_setting(database_urls: dict[str, str], tmp_path: Path) -> None:
    async with on_memory_bus(
        database_urls,
        tmp_path,
        ("binding",),
        overrides={"binding": {"run_workers": False, "max_body_bytes": 1024}},
    ) as stack:
        customer = await customer_with_binding(stack)
        body = b'{"reason": "other", "note": "' + b"n" * 1100 + b'"}'
        response = await stack.client("binding").post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            content=body,
            headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
        )
        assert_problem(response, 413, "payload-too-large")
        assert await written(stack) == (1, 0)


async def test_headers_over_16_kib_are_431(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    client = stack.client("binding")
    many = {f"X-Padding-{index}": "p" * 1000 for index in range(17)}
    assert_problem(
        await client.get("/v1/bindings", headers={**auth(customer.user_id), **many}),
        431,
        "request-header-fields-too-large",
    )
    one = {"X-Padding": "p" * 16 * 1024}
    assert_problem(
        await client.get("/v1/bindings", headers={**auth(customer.user_id), **one}),
        431,
        "request-header-fields-too-large",
    )
    assert (
        await client.get("/v1/bindings", headers={**auth(customer.user_id), "X-Padding": "p" * 8 * 1024})
    ).status_code == 200


async def test_a_malformed_content_length_is_400(stack: Stack) -> None:
    transport = httpx.ASGITransport(app=stack.apps["binding"])
    async with httpx.AsyncClient(transport=transport, base_url="http://binding") as client:
        request = client.build_request("POST", "/v1/bindings", content=b"{}", headers=auth("u-1"))
        request.headers["Content-Length"] = "2, 2"
        assert_problem(await client.send(request), 400, "bad-request")


class Received:
    """Counts the body bytes the server hands the app, under the size limit's own middleware."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.body_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            self.body_bytes += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


async def test_over_real_http_both_bodies_are_refused_without_being_read(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    before = await written(stack)
    received = Received(stack.apps["binding"])
    async with (
        served(received) as base,
        httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as client,
    ):  # type: ignore[arg-type]
        announced = await post_both(client, customer, oversized_binding())
        assert received.body_bytes == 0, "an announced oversized body is refused before any of it is read"
        chunked = await post_both(client, customer, lambda: Chunks(1024))
        headers = await client.get(
            "/v1/bindings", headers={**auth(customer.user_id), "X-Padding": "p" * 17 * 1024}
        )
    for response in [*announced, *chunked]:
        assert_problem(response, 413, "payload-too-large")
    assert_problem(headers, 431, "request-header-fields-too-large")
    # Two chunked bodies of 16 MiB each: the server stops handing them over near the limit.
    assert 2 * LIMIT < received.body_bytes < 2 * 8 * LIMIT, received.body_bytes
    assert await written(stack) == before
