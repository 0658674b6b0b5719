"""App factory of the verification service (port 8002)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from services.verification import api, handlers
from services.verification.config import VerificationSettings
from services.verification.models import InboxEntry, OutboxMessage
from services.verification.service import VerificationDeps
from shared.app import ServiceRuntime, build_service_app
from shared.bus import EventBus
from shared.http import service_client


def create_app(
    settings: VerificationSettings | None = None, *, bus: EventBus | None = None, notification_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    settings = settings or VerificationSettings()

    @asynccontextmanager
    async def resources(runtime: ServiceRuntime) -> AsyncIterator[VerificationDeps]:
        async with service_client(settings, settings.notification_url, transport=notification_transport) as notifier:
            yield VerificationDeps(settings=settings, notifier=notifier, unit_of_work=runtime.unit_of_work)

    return build_service_app(
        settings,
        title="unbind · verification",
        description="Identity verification of unbind requests: SMS one-time codes and device-key biometrics.",
        routers=[api.router],
        outbox_model=OutboxMessage,
        inbox_model=InboxEntry,
        subscriptions=handlers.SUBSCRIPTIONS,
        resources=resources,
        bus=bus,
    )
