"""App factory of the dashboard (port 8005): the ops page on the event stream.

Unlike the other services it has no database: its state is a projection of the topic, rebuilt
from the beginning of the retained stream on every start (see projection.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.dashboard import api, service
from services.dashboard.config import DashboardSettings
from services.dashboard.projection import Projection
from services.dashboard.service import DashboardDeps
from services.dashboard.stream import LiveHub, Projector, StreamReader
from shared import events
from shared.app import build_http_app, consumer_lag_gauge, refresh_consumer_lag
from shared.bus import EventBus, KafkaBus
from shared.db import utcnow
from shared.logging import configure_logging

# Everything the page loads comes from this service: no CDN, no inline script or style.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

SUBSCRIPTIONS: dict[type[events.Event], Projector] = {
    **dict.fromkeys(
        (
            events.BindingRequested,
            events.BindingVerified,
            events.BindingVerificationFailed,
            events.BindingCreated,
            events.MandateRequested,
            events.MandateConfirmed,
            events.MandateRefused,
        ),
        service.on_binding_flow,
    ),
    events.UnbindRequested: service.on_unbind_requested,
    events.RiskAssessed: service.on_risk_assessed,
    events.ReviewDecided: service.on_review_decided,
    events.VerificationRequested: service.on_verification_requested,
    events.Verified: service.on_verified,
    events.VerificationFailed: service.on_verification_failed,
    events.BiometricCounterRegressed: service.on_biometric_counter_regressed,
    events.UnbindCompleted: service.on_unbind_completed,
    events.AutoDebitPaused: service.on_alternative_completed,
    events.RepaymentAccountSwitched: service.on_alternative_completed,
    events.AutoDebitResumed: service.on_auto_debit_resumed,
    events.UnbindRejected: service.on_unbind_rejected,
    events.UnbindCancelled: service.on_unbind_cancelled,
    events.UnbindExpired: service.on_unbind_expired,
    events.UnbindAppealed: service.on_unbind_appealed,
    events.UnbindDisputed: service.on_unbind_disputed,
    events.DeviceEnrolled: service.on_device_changed,
    events.DeviceRevoked: service.on_device_changed,
}


def create_app(
    settings: DashboardSettings | None = None,
    *,
    bus: EventBus | None = None,
    clock: Callable[[], datetime] = utcnow,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    """`clock` is "now" for the time windows (tests pass their own); `transports` (by service name)
    let tests wire the services in-process."""
    settings = settings or DashboardSettings()
    configure_logging(settings.service_name, settings.log_level)
    keys = settings.load_keys()
    bus = bus or KafkaBus(
        settings.kafka_bootstrap_servers, settings.kafka_security(), client_id="unbind-dashboard"
    )
    projection = Projection(feed_size=settings.feed_size, finished_kept=settings.finished_requests_kept)
    hub = LiveHub(projection, settings, clock, subscriptions=SUBSCRIPTIONS)
    reader = StreamReader(
        bus, settings, keys.trusted, projection, hub=hub, clock=clock, subscriptions=SUBSCRIPTIONS
    )
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wired = transports or {}
        async with AsyncExitStack() as clients:
            services = {
                service: await clients.enter_async_context(
                    httpx.AsyncClient(
                        base_url=url,
                        transport=wired.get(service) or httpx.AsyncHTTPTransport(retries=1),
                        timeout=httpx.Timeout(5.0, connect=2.0),
                    )
                )
                for service, url in settings.service_urls().items()
            }
            app.state.deps = DashboardDeps(settings, hub, reader, services)
            tasks = []
            if settings.run_workers:
                tasks = [
                    asyncio.create_task(reader.run(), name="dashboard-reader"),
                    asyncio.create_task(hub.push_overviews(), name="dashboard-push"),
                ]
            try:
                yield
            finally:
                hub.close()
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with suppress(asyncio.CancelledError):
                        await task

    async def readiness() -> dict[str, Any]:
        return {"consumer_connected": reader.connected, "events_applied": projection.events_total}

    app = build_http_app(
        settings,
        title="unbind · dashboard",
        description=(
            "The ops dashboard on the event stream: live feed, funnel, stage latency, throughput, outcomes, "
            "review queue, stuck requests and dead letters."
        ),
        routers=[api.router],
        lifespan=lifespan,
        keys=keys.trusted,
        registry=registry,
        readiness=readiness,
        refresh_metrics=_metrics(registry, projection, hub, reader),
    )
    app.mount("/static", StaticFiles(directory=api.STATIC), name="static")
    app.add_middleware(_SecurityHeaders)
    return app


def _metrics(
    registry: CollectorRegistry, projection: Projection, hub: LiveHub, reader: StreamReader
) -> Callable[[], Any]:
    applied = Gauge(
        "unbind_dashboard_events_applied", "Events applied to the view since start", registry=registry
    )
    open_requests = Gauge(
        "unbind_dashboard_open_requests", "Unbind requests not yet finished", registry=registry
    )
    dead_letters = Gauge(
        "unbind_dashboard_dead_letters", "Records seen on the dead-letter topic", registry=registry
    )
    pages = Gauge("unbind_dashboard_live_pages", "Pages connected to the live stream", registry=registry)
    lag = consumer_lag_gauge(registry)

    async def refresh() -> None:
        applied.set(projection.events_total)
        open_requests.set(len(projection.open))
        dead_letters.set(projection.dead_letter_total)
        pages.set(len(hub.subscribers))
        await refresh_consumer_lag(lag, reader)

    return refresh


class _SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
