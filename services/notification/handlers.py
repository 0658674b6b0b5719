"""Event handlers of the notification service: one function per consumed event, and the subscriptions."""

from __future__ import annotations

from services.notification import service
from services.notification.config import NotificationSettings
from shared.consumer import Subscriptions
from shared.events import UnbindCompleted, UnbindRejected
from shared.uow import UnitOfWork


async def on_unbind_completed(event: UnbindCompleted, uow: UnitOfWork, settings: NotificationSettings) -> None:
    await service.notify_completed(uow, event)


async def on_unbind_rejected(event: UnbindRejected, uow: UnitOfWork, settings: NotificationSettings) -> None:
    await service.notify_rejected(uow, event)


SUBSCRIPTIONS: Subscriptions = {
    UnbindCompleted: on_unbind_completed,
    UnbindRejected: on_unbind_rejected,
}
