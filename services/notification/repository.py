"""Every query of the notification service."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.models import Contact, Notification, SmsDelivery


async def get_contact(session: AsyncSession, user_id: str) -> Contact | None:
    return await session.get(Contact, user_id)


async def get_sms_delivery(session: AsyncSession, message_id: str) -> SmsDelivery | None:
    return await session.get(SmsDelivery, message_id)


async def list_notifications(session: AsyncSession, user_id: str, limit: int) -> Sequence[Notification]:
    return (await session.scalars(select(Notification).where(Notification.user_id == user_id).order_by(Notification.created_at.desc(), Notification.id).limit(limit))).all()


async def count_contacts(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Contact)) or 0
