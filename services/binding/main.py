"""App factory of the binding service (port 8001)."""

from __future__ import annotations

from fastapi import FastAPI

from services.binding import api, handlers
from services.binding.config import BindingSettings
from services.binding.models import InboxEntry, OutboxMessage
from shared.app import build_service_app
from shared.bus import EventBus


def create_app(settings: BindingSettings | None = None, *, bus: EventBus | None = None) -> FastAPI:
    return build_service_app(
        settings or BindingSettings(),
        title="unbind · binding",
        description="Bindings between mortgage repayment accounts and credit accounts, and the requests to unbind them.",
        routers=[api.router],
        outbox_model=OutboxMessage,
        inbox_model=InboxEntry,
        subscriptions=handlers.SUBSCRIPTIONS,
        bus=bus,
    )
