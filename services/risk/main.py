"""App factory of the risk service (port 8003)."""

from __future__ import annotations

from fastapi import FastAPI

from services.risk import api, handlers
from services.risk.config import RiskSettings
from services.risk.models import InboxEntry, OutboxMessage
from shared.app import build_service_app
from shared.bus import EventBus


def create_app(settings: RiskSettings | None = None, *, bus: EventBus | None = None) -> FastAPI:
    return build_service_app(
        settings or RiskSettings(),
        title="unbind · risk",
        description="Real-time risk scoring of unbind requests and the ops review queue.",
        routers=[api.router],
        outbox_model=OutboxMessage,
        inbox_model=InboxEntry,
        subscriptions=handlers.SUBSCRIPTIONS,
        bus=bus,
    )
