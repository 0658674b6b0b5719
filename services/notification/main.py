"""App factory of the notification service (port 8004)."""

from __future__ import annotations

from fastapi import FastAPI

from services.notification import api, handlers
from services.notification.config import NotificationSettings
from services.notification.models import InboxEntry, OutboxMessage
from shared.app import build_service_app
from shared.bus import EventBus


def create_app(settings: NotificationSettings | None = None, *, bus: EventBus | None = None) -> FastAPI:
    return build_service_app(
        settings or NotificationSettings(),
        title="unbind · notification",
        description="Messages to customers: SMS codes, the in-app inbox, and lifecycle notices.",
        routers=[api.router],
        outbox_model=OutboxMessage,
        inbox_model=InboxEntry,
        subscriptions=handlers.SUBSCRIPTIONS,
        bus=bus,
    )
