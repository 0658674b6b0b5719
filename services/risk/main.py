"""App factory of the risk service (port 8003)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.risk import api, service
from services.risk.config import RiskSettings
from services.risk.models import InboxEntry, OutboxMessage
from services.risk.service import LEARNING_BATCH, ModelKeeper, RiskDeps, RiskMetrics
from shared.app import ServiceRuntime, build_service_app
from shared.bus import EventBus
from shared.consumer import Subscriptions
from shared.db import utcnow
from shared.events import (
    EVENT_TYPES,
    BindingEvent,
    DeviceEnrolled,
    DeviceRevoked,
    UnbindAppealed,
    UnbindCancelled,
    UnbindDisputed,
    UnbindExpired,
    UnbindRequested,
)
from shared.wakeup import wait_for_work

# Every event about a binding is behaviour; an UnbindRequested is scored, an UnbindAppealed or
# UnbindDisputed opens a case, and a cancelled or expired request withdraws its pending review. A
# customer's device keys, enrolled or revoked, are its known devices.
SUBSCRIPTIONS: Subscriptions = {
    **dict.fromkeys(
        (event_type for event_type in EVENT_TYPES.values() if issubclass(event_type, BindingEvent)),
        service.record_behaviour,
    ),
    UnbindRequested: service.assess,
    UnbindAppealed: service.open_appeal_review,
    UnbindDisputed: service.open_dispute_review,
    UnbindCancelled: service.withdraw_reviews,
    UnbindExpired: service.withdraw_reviews,
    DeviceEnrolled: service.learn_device,
    DeviceRevoked: service.forget_device,
}


log = logging.getLogger(__name__)
# Each instance learns what it queued itself; this long a wait picks up what a stopped one left.
LEARNING_IDLE_SECONDS = 300


async def learn(runtime: ServiceRuntime) -> None:
    """Train the anomaly model on the queued requests in batches, at most every model_train_seconds,
    and sleep while nothing is queued."""
    deps: RiskDeps = runtime.deps
    while True:
        await wait_for_work(deps.model.queued, None, LEARNING_IDLE_SECONDS)
        learned = 0
        try:
            async with runtime.unit_of_work() as uow:
                learned = await deps.model.learn(uow)
        except Exception:
            log.exception("learning failed; retrying")
        if learned == LEARNING_BATCH:
            deps.model.queued.set()
        await asyncio.sleep(deps.settings.model_train_seconds)


def create_app(
    settings: RiskSettings | None = None,
    *,
    bus: EventBus | None = None,
    clock: Callable[[], datetime] = utcnow,
    notification_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """`clock` is the time signals are read at (tests pass a fixed one)."""
    settings = settings or RiskSettings()
    registry = CollectorRegistry()
    metrics = RiskMetrics(registry)

    @asynccontextmanager
    async def resources(runtime: ServiceRuntime) -> AsyncIterator[RiskDeps]:
        client = runtime.client("notification", settings.notification_url, transport=notification_transport)
        async with client as notifier:
            yield RiskDeps(
                settings=settings,
                clock=clock,
                metrics=metrics,
                notifier=notifier,
                model=ModelKeeper(settings, metrics),
            )

    return build_service_app(
        settings,
        title="unbind · risk",
        description=(
            "Real-time risk scoring of unbind requests, editable rules, the ops review queue and account "
            "flags."
        ),
        routers=[api.router],
        outbox_model=OutboxMessage,
        inbox_model=InboxEntry,
        subscriptions=SUBSCRIPTIONS,
        resources=resources,
        workers=[learn],
        bus=bus,
        registry=registry,
    )
