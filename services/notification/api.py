"""Routes of the notification service: the customer's inbox and the internal send endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.notification import service
from services.notification.config import NotificationSettings
from services.notification.schemas import MessageAccepted, MessageIn, NotificationList
from shared.app import RequestUnitOfWork, Runtime
from shared.auth import Customer, Service

router = APIRouter()


@router.get("/v1/notifications", tags=["inbox"])
async def list_notifications(principal: Customer, uow: RequestUnitOfWork, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> NotificationList:
    return await service.list_notifications(uow, principal, limit)


@router.post("/internal/v1/messages", status_code=202, tags=["internal"])
async def send_message(message: MessageIn, principal: Service, uow: RequestUnitOfWork, runtime: Runtime) -> MessageAccepted:
    """Send a message on another service's behalf (service role only). Idempotent per message_id."""
    settings: NotificationSettings = runtime.settings  # type: ignore[assignment]
    return await service.send_message(uow, service.SmsSink(settings.sms_sink), message)
