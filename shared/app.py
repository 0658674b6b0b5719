"""The app factory every service builds on: database, outbox relay, consumer, health, metrics,
problem+json errors, correlation ids and the per-request unit of work.

A service's `main.create_app` reads its settings and hands its routers, tables and subscriptions
here. Nothing is created at import time: each app owns its engine, clients and background tasks,
which start in the lifespan and stop with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import httpx
from aiokafka import TopicPartition
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import Principal, authenticate
from shared.bus import EventBus, KafkaBus
from shared.consumer import EventConsumer, InboxMixin, Subscriptions
from shared.db import create_engine, create_session_factory, is_transient, utcnow
from shared.http import service_client
from shared.i18n import Catalogue, negotiate, resolve
from shared.keys import KeySet
from shared.limits import SizeLimitMiddleware
from shared.logging import configure_logging, correlation_id, redact
from shared.metrics import HTTP_METHODS, ConsumerMetrics
from shared.outbox import Outbox, OutboxMixin, OutboxRelay
from shared.problems import install_problem_handlers, problem_response, problem_responses, unexpected_error
from shared.settings import ServiceKeys, ServiceSettings
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)

# The locale a customer saved, as the service knows it (None: not known).
SavedLocale = Callable[[AsyncSession, str], Awaitable[str | None]]
# Builds the long-lived resources (HTTP clients...) handed to event handlers; default: the settings.
ResourcesFactory = Callable[["ServiceRuntime"], AbstractAsyncContextManager[Any]]
Worker = Callable[["ServiceRuntime"], Any]


@dataclass
class ServiceRuntime:
    """Everything one running service instance owns."""

    settings: ServiceSettings
    keys: ServiceKeys
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    outbox: Outbox
    relay: OutboxRelay
    consumer: EventConsumer | None
    registry: CollectorRegistry
    deps: Any = None
    tasks: list[asyncio.Task] = field(default_factory=list)
    saved_locale: SavedLocale | None = None

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.session_factory, self.outbox, on_commit=self.relay.wake)

    def client(
        self, callee: str, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> httpx.AsyncClient:
        """A client to the service `callee` that signs as this service (open it in the lifespan)."""
        if self.keys.signing is None:
            raise RuntimeError(f"{self.settings.service_name} cannot call {callee} without its signing key")
        return service_client(self.settings, self.keys.signing, callee, base_url, transport=transport)


def runtime_of(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


async def request_unit_of_work(request: Request) -> AsyncIterator[UnitOfWork]:
    async with runtime_of(request).unit_of_work() as uow:
        yield uow


# scope="function": the transaction commits before the response is sent, so a 2xx means durable.
RequestUnitOfWork = Annotated[UnitOfWork, Depends(request_unit_of_work, scope="function")]
Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]


async def request_locale(
    request: Request, principal: Annotated[Principal, Depends(authenticate)], uow: RequestUnitOfWork
) -> str:
    """The language to answer the caller in: Accept-Language, else the locale they saved (read in the
    request's own unit of work), else zh-CN. Kept on the request, so the problems it may raise later
    are in the same language."""
    runtime = runtime_of(request)
    header = request.headers.get("accept-language")
    saved = None
    # Only a customer has a saved locale; a service's or an ops user's lookup would find nothing.
    if negotiate(header) is None and runtime.saved_locale is not None and principal.has_role("customer"):
        saved = await runtime.saved_locale(uow.session, principal.subject)
    request.state.locale = resolve(header, saved)
    return request.state.locale


# A router of customer routes depends on it (`dependencies=[Depends(request_locale)]`) and a route
# that words its answer takes it as a parameter.
RequestLocale = Annotated[str, Depends(request_locale)]


def build_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    outbox_model: type[OutboxMixin],
    inbox_model: type[InboxMixin] | None = None,
    subscriptions: Subscriptions | None = None,
    resources: ResourcesFactory | None = None,
    workers: Sequence[Worker] = (),
    bus: EventBus | None = None,
    registry: CollectorRegistry | None = None,
    texts: Catalogue | None = None,
    saved_locale: SavedLocale | None = None,
) -> FastAPI:
    """`registry` is the app's own metrics registry: a service that counts its own business
    events registers them on it in `create_app` and hands it here (default: a fresh one).
    A service that answers customers hands its catalogue (`texts`: the words of its problems) and
    how it finds a customer's saved locale (`saved_locale`)."""
    configure_logging(settings.service_name, settings.log_level)
    keys = settings.load_keys()
    bus = bus or KafkaBus(
        settings.kafka_bootstrap_servers,
        settings.kafka_security(),
        client_id=f"unbind-{settings.service_name}",
    )
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    session_factory = create_session_factory(engine)
    registry = registry or CollectorRegistry()
    relay = OutboxRelay(
        session_factory=session_factory, model=outbox_model, bus=bus, batch_size=settings.relay_batch_size
    )
    outbox = Outbox(outbox_model, settings.topic, keys.signing)
    runtime = ServiceRuntime(
        settings, keys, engine, session_factory, outbox, relay, None, registry, saved_locale=saved_locale
    )
    if subscriptions:
        assert inbox_model is not None, "a consuming service needs an inbox table"
        runtime.consumer = EventConsumer(
            bus=bus,
            group_id=settings.consumer_group,
            topic=settings.topic,
            dlq_topic=settings.dlq_topic,
            unit_of_work=runtime.unit_of_work,
            inbox_model=inbox_model,
            subscriptions=subscriptions,
            keys=keys.trusted,
            max_attempts=settings.consumer_max_attempts,
            metrics=ConsumerMetrics(registry),
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with resources(runtime) if resources else nullcontext(settings) as deps:
            runtime.deps = deps
            if runtime.consumer is not None:
                runtime.consumer.deps = deps
            if settings.run_workers:
                runtime.tasks.append(asyncio.create_task(relay.run(), name=f"{settings.service_name}-relay"))
                if runtime.consumer is not None:
                    runtime.tasks.append(
                        asyncio.create_task(runtime.consumer.run(), name=f"{settings.service_name}-consumer")
                    )
                runtime.tasks.extend(
                    asyncio.create_task(worker(runtime), name=f"{settings.service_name}-{worker.__name__}")
                    for worker in workers
                )
            log.info(
                "service started",
                extra={
                    "database": engine.url.render_as_string(hide_password=True),
                    "kafka": settings.kafka_bootstrap_servers,
                },
            )
            try:
                yield
            finally:
                for task in runtime.tasks:
                    task.cancel()
                _, stuck = await asyncio.wait(runtime.tasks, timeout=10) if runtime.tasks else (set(), set())
                for task in stuck:
                    log.error(
                        "background task did not stop",
                        extra={"task": task.get_name(), "stack": repr(task.get_stack(limit=5))},
                    )
                runtime.tasks.clear()
        await engine.dispose()

    async def database_ready() -> dict[str, Any]:
        try:
            async with runtime.session_factory() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:
            raise NotReady(f"database unreachable: {type(exc).__name__}") from exc
        consumer = runtime.consumer
        return {
            "database": "ok",
            "relay_connected": runtime.relay.connected,
            "consumer_connected": consumer.connected if consumer else None,
        }

    app = build_http_app(
        settings,
        title=title,
        description=description,
        routers=routers,
        lifespan=lifespan,
        keys=keys.trusted,
        registry=registry,
        readiness=database_ready,
        refresh_metrics=_runtime_metrics(runtime),
        state={"runtime": runtime},
        texts=texts,
    )

    @app.exception_handler(DBAPIError)
    async def _database_unavailable(request: Request, exc: DBAPIError) -> JSONResponse:
        if not is_transient(exc):
            return unexpected_error(request, exc)
        # The unit of work rolled back and nothing changed, so the client may simply retry.
        log.warning(
            "database unavailable", extra={"path": request.url.path, "error": type(exc.orig).__name__}
        )
        return problem_response(
            request,
            503,
            "service-unavailable",
            "Service unavailable",
            detail="The database did not answer; retry shortly.",
            headers={"Retry-After": "1"},
        )

    return app


class NotReady(Exception):
    """Raised by a readiness check: `/readyz` answers 503 with this message."""


Readiness = Callable[[], Awaitable[dict[str, Any]]]


def build_http_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    keys: KeySet,
    registry: CollectorRegistry,
    readiness: Readiness,
    refresh_metrics: Callable[[], Awaitable[None]] | None = None,
    state: dict[str, Any] | None = None,
    texts: Catalogue | None = None,
) -> FastAPI:
    """The HTTP shell every service shares: problem+json errors, size limits, correlation ids,
    request metrics, `/healthz`, `/readyz` (the service's own `readiness` check) and `/metrics`."""
    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    # The JWKS every bearer token is checked against (shared.auth).
    app.state.keys = keys
    for name, value in (state or {}).items():
        setattr(app.state, name, value)
    install_problem_handlers(app, texts)
    # Inside the observability middleware: a refused request is counted and gets its request id too.
    app.add_middleware(SizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(_ObservabilityMiddleware, registry=registry)
    app.include_router(_operations_router(registry, readiness, refresh_metrics))
    for router in routers:
        app.include_router(router)
    return app


def _runtime_metrics(runtime: ServiceRuntime) -> Callable[[], Awaitable[None]]:
    """Gauges read from the relay, the consumer and the outbox when `/metrics` is scraped: the
    cost is one query and a look at the consumer client per scrape, nothing per event."""
    outbox_pending = Gauge(
        "unbind_outbox_pending", "Outbox rows not yet published", registry=runtime.registry
    )
    oldest_unsent = Gauge(
        "unbind_outbox_oldest_unsent_age_seconds",
        "Age of the oldest outbox row not yet published (0 when none)",
        registry=runtime.registry,
    )
    runtime.registry.register(_PublishedCounter(runtime.relay))
    lag = consumer_lag_gauge(runtime.registry)
    model = runtime.outbox.model

    async def refresh() -> None:
        async with runtime.session_factory() as session:
            pending, oldest = (
                await session.execute(
                    select(func.count(), func.min(model.created_at)).where(model.published_at.is_(None))
                )
            ).one()
        outbox_pending.set(pending)
        oldest_unsent.set(max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0)
        if runtime.consumer is not None:
            await refresh_consumer_lag(lag, runtime.consumer)

    return refresh


class _PublishedCounter(Collector):
    """The relay's running count, read at scrape time: a counter without a hook in the relay loop."""

    def __init__(self, relay: OutboxRelay):
        self._relay = relay

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "unbind_events_published",
            "Outbox rows this instance published since start",
            value=self._relay.published_total,
        )


class LagSource(Protocol):
    async def lag(self) -> dict[TopicPartition, int]: ...


def consumer_lag_gauge(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "unbind_consumer_lag",
        "Records on the partition not yet processed by this instance (highwater as of the last fetch minus "
        "the committed offset or, for the dashboard, its view's position)",
        ["topic", "partition"],
        registry=registry,
    )


async def refresh_consumer_lag(gauge: Gauge, source: LagSource) -> None:
    """Set the lag gauge from a consumer's view, at scrape time."""
    # Partitions come and go with rebalances: only those held now are shown.
    try:
        async with asyncio.timeout(2):
            lags = await source.lag()
    except (
        Exception
    ) as exc:  # a rebalance under way, a position not known yet: the scrape answers without lag
        log.debug("consumer lag unavailable", extra={"error": redact(repr(exc))})
        lags = {}
    gauge.clear()
    for tp, behind in lags.items():
        gauge.labels(tp.topic, str(tp.partition)).set(behind)


def _operations_router(
    registry: CollectorRegistry, readiness: Readiness, refresh_metrics: Callable[[], Awaitable[None]] | None
) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: the service's dependencies answer; Kafka connectivity is reported",
        responses=problem_responses((503, "Not ready")),
    )
    async def readyz(request: Request) -> Any:
        try:
            details = await readiness()
        except NotReady as exc:
            return problem_response(request, 503, "not-ready", "Not ready", detail=str(exc))
        return {"status": "ready", **details}

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        if refresh_metrics is not None:
            await refresh_metrics()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


class _ObservabilityMiddleware:
    """Correlation id per request (`X-Request-ID`, generated when absent) and request metrics."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter(
            "unbind_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "unbind_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        request_id = (
            incoming
            if incoming and len(incoming) <= 64 and incoming.replace("-", "").isalnum()
            else str(uuid.uuid4())
        )
        token = correlation_id.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The route template, never the raw path or a method a client made up: labels stay a closed set.
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            self.requests.labels(method, path, str(status)).inc()
            self.latency.labels(method, path).observe(time.perf_counter() - started)
            correlation_id.reset(token)
