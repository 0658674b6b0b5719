"""App factory of the notification service (port 8004)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.notification import api, repository, service
from services.notification.config import NotificationSettings
from services.notification.models import InboxEntry, OutboxMessage
from services.notification.providers import (
    HttpSmsGateway,
    InstitutionWebhook,
    JsonLinesProvider,
    Provider,
    SignedSms,
    SmsSinkProvider,
    SmtpEmail,
)
from services.notification.service import NotificationDeps, NotificationMetrics
from services.notification.templates import PROBLEM_TEXTS
from shared.app import ServiceRuntime, build_service_app
from shared.bus import EventBus
from shared.consumer import Subscriptions
from shared.events import (
    AutoDebitPaused,
    AutoDebitResumed,
    BindingRequested,
    MandateRequested,
    RepaymentAccountSwitched,
    ReviewDecided,
    RiskAssessed,
    UnbindAppealed,
    UnbindCompleted,
    UnbindRejected,
    UnbindRequested,
)
from shared.wakeup import wait_for_work

log = logging.getLogger(__name__)

SUBSCRIPTIONS: Subscriptions = {
    # The customer's message of the event's kind, and nothing more ...
    **dict.fromkeys(service.NOTICES, service.notify),
    # ... except for these, which replace it with their own.
    # no message: the code SMS verification sends is the customer's notice
    BindingRequested: service.remember_request,
    UnbindRequested: service.open_request,
    MandateRequested: service.notify_with_lender,
    AutoDebitPaused: service.notify_with_lender,
    AutoDebitResumed: service.notify_with_lender,
    RepaymentAccountSwitched: service.notify_with_lender,
    UnbindCompleted: service.complete_request,
    RiskAssessed: service.notify_assessment,
    UnbindRejected: service.notify_rejection,
    UnbindAppealed: service.notify_appeal,
    ReviewDecided: service.notify_review_decision,
}


def default_providers(settings: NotificationSettings, client: httpx.AsyncClient) -> dict[str, Provider]:
    """Real providers where configured, development sinks under the var dir otherwise."""
    var = settings.var_dir
    secret = settings.institution_webhook_secret.get_secret_value()
    return {
        "sms": HttpSmsGateway(client, settings.sms_gateway_url)
        if settings.sms_gateway_url
        else SmsSinkProvider(settings.sms_sink),
        "push": JsonLinesProvider(var / "push.jsonl"),
        "email": SmtpEmail(settings.smtp_host, settings.smtp_port, settings.smtp_sender)
        if settings.smtp_host
        else JsonLinesProvider(var / "email.jsonl"),
        "institution": (
            InstitutionWebhook(secret, settings.institution_webhook_url, client)
            if settings.institution_webhook_url
            else InstitutionWebhook(secret, sink=var / "institution.jsonl")
        ),
    }


async def dispatcher(runtime: ServiceRuntime) -> None:
    """Send what is due. Deliveries are rows, so a restart loses nothing (reminders included). It
    does not poll: between rounds it sleeps until the next queued delivery is due, or until this
    instance queues one, and at most `dispatch_interval_seconds` (for another instance's)."""
    deps: NotificationDeps = runtime.deps
    while True:
        next_due = None
        try:
            async with runtime.unit_of_work() as uow:
                if await service.dispatch_due(uow, deps):
                    continue
                next_due = await repository.next_delivery_due(uow.session)
        except Exception:
            log.exception("dispatch round failed; retrying")
        await wait_for_work(deps.deliveries_queued, next_due, deps.settings.dispatch_interval_seconds)


def create_app(
    settings: NotificationSettings | None = None,
    *,
    bus: EventBus | None = None,
    providers: dict[str, Provider] | None = None,
) -> FastAPI:
    """`providers` replaces channels (tests pass failing ones)."""
    settings = settings or NotificationSettings()
    registry = CollectorRegistry()
    metrics = NotificationMetrics(registry)

    @asynccontextmanager
    async def resources(runtime: ServiceRuntime) -> AsyncIterator[NotificationDeps]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0)) as client:
            channels = default_providers(settings, client) | (providers or {})
            channels["sms"] = SignedSms(channels["sms"], settings.sms_signature)
            yield NotificationDeps(settings=settings, providers=channels, metrics=metrics)

    return build_service_app(
        settings,
        title="unbind · notification",
        description=(
            "Messages to customers and lenders: templates, channels with fallback, preferences and quiet "
            "hours, the inbox."
        ),
        routers=[api.router],
        outbox_model=OutboxMessage,
        inbox_model=InboxEntry,
        subscriptions=SUBSCRIPTIONS,
        resources=resources,
        workers=[dispatcher],
        bus=bus,
        registry=registry,
        texts=PROBLEM_TEXTS,
        saved_locale=repository.saved_locale,
    )
