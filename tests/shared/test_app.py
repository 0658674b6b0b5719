"""What every service gets from the app factory: health, readiness, metrics, correlation ids, and
problem+json for errors nobody anticipated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy.exc import OperationalError, ProgrammingError

from tests.stack import Stack, on_memory_bus


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    urls = {"binding": f"sqlite+aiosqlite:///{tmp_path / 'binding.db'}"}
    async with on_memory_bus(urls, tmp_path, ("binding",)) as running:
        yield running


async def test_health_and_readiness(stack: Stack) -> None:
    client = stack.client("binding")
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["database"] == "ok"
    assert ready["relay_connected"] is True and ready["consumer_connected"] is True


async def test_metrics_are_prometheus_text(stack: Stack) -> None:
    client = stack.client("binding")
    await client.get("/v1/bindings")
    text = (await client.get("/metrics")).text
    assert "unbind_outbox_pending 0.0" in text
    assert 'unbind_http_requests_total{method="GET",route="/v1/bindings",status="401"} 1.0' in text


async def test_request_id_is_echoed_or_generated(stack: Stack) -> None:
    client = stack.client("binding")
    assert (await client.get("/healthz", headers={"X-Request-ID": "mobile-123"})).headers[
        "x-request-id"
    ] == "mobile-123"
    generated = (await client.get("/healthz", headers={"X-Request-ID": "<script>"})).headers["x-request-id"]
    assert generated != "<script>" and len(generated) == 36


async def test_an_unexpected_error_is_an_opaque_500_problem(stack: Stack) -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    app = stack.apps["binding"]
    app.include_router(router)
    # As under uvicorn: the 500 is sent, and the exception is not re-raised into the client.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://binding"
    ) as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text


async def test_a_database_that_does_not_answer_is_a_503_to_retry(stack: Stack) -> None:
    router = APIRouter()

    @router.get("/db-gone")
    async def db_gone() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    @router.get("/db-bug")
    async def db_bug() -> None:
        raise ProgrammingError("SELECT nonsense", {}, ValueError("syntax error"))

    app = stack.apps["binding"]
    app.include_router(router)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://binding"
    ) as client:
        gone = await client.get("/db-gone")
        bug = await client.get("/db-bug")
    assert gone.status_code == 503 and gone.headers["retry-after"] == "1"
    assert gone.headers["content-type"] == "application/problem+json" and gone.json()["type"].endswith(
        "/service-unavailable"
    )
    # A broken query is our fault, not an outage: no invitation to retry.
    assert bug.status_code == 500 and "retry-after" not in bug.headers
