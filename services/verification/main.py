"""App factory of the verification service (port 8002)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.verification import api, service, texts
from services.verification.config import VerificationSettings
from services.verification.models import CustomerLocale, InboxEntry, OutboxMessage
from services.verification.service import VerificationDeps, VerificationMetrics
from shared.app import ServiceRuntime, build_service_app
from shared.bus import EventBus
from shared.consumer import Subscriptions
from shared.events import (
    BindingRequested,
    PreferencesChanged,
    ReviewDecided,
    RiskAssessed,
    UnbindCancelled,
    UnbindExpired,
    UnbindRequested,
)
from shared.i18n import remember_locales, saved_locales
from shared.wakeup import wait_for_work

log = logging.getLogger(__name__)

SUBSCRIPTIONS: Subscriptions = {
    BindingRequested: service.issue_for_binding,
    UnbindRequested: service.remember_request,
    RiskAssessed: service.issue_after_assessment,
    ReviewDecided: service.issue_after_review,
    UnbindCancelled: service.close_request,
    UnbindExpired: service.close_request,
    PreferencesChanged: remember_locales(CustomerLocale),
}


async def sweep(runtime: ServiceRuntime) -> None:
    """Fail verifications past their deadline and re-send codes notification did not take. Both
    are driven by columns, so they survive restarts. It does not poll: between rounds it sleeps
    until the next deadline or re-send is due, or until a send fails here, and at most
    `sweep_seconds` (for what another instance did)."""
    deps: VerificationDeps = runtime.deps
    while True:
        next_due = None
        try:
            async with runtime.unit_of_work() as uow:
                expired = await service.expire_overdue(uow)
                resent = await service.retry_deliveries(uow, deps)
                if not (expired or resent):
                    next_due = await service.next_sweep_due(uow, deps.settings)
            if expired or resent:
                log.info("verification sweep", extra={"expired": expired, "codes_resent": resent})
                continue
        except Exception:
            log.exception("verification sweep failed; retrying")
        await wait_for_work(deps.sweep_due, next_due, deps.settings.sweep_seconds)


def create_app(
    settings: VerificationSettings | None = None,
    *,
    bus: EventBus | None = None,
    notification_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    settings = settings or VerificationSettings()
    registry = CollectorRegistry()
    metrics = VerificationMetrics(registry)

    @asynccontextmanager
    async def resources(runtime: ServiceRuntime) -> AsyncIterator[VerificationDeps]:
        client = runtime.client("notification", settings.notification_url, transport=notification_transport)
        async with client as notifier:
            yield VerificationDeps(
                settings=settings, notifier=notifier, unit_of_work=runtime.unit_of_work, metrics=metrics
            )

    return build_service_app(
        settings,
        title="unbind · verification",
        description="Identity verification of unbind requests: SMS one-time codes and device-key biometrics.",
        routers=[api.router],
        outbox_model=OutboxMessage,
        inbox_model=InboxEntry,
        subscriptions=SUBSCRIPTIONS,
        resources=resources,
        workers=[sweep],
        bus=bus,
        registry=registry,
        texts=texts.TEXTS,
        saved_locale=saved_locales(CustomerLocale),
    )
