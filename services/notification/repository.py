"""Every query of the notification service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.models import Contact, Delivery, DeliveryStatus, KnownRequest, Notification


async def get_contact(session: AsyncSession, user_id: str) -> Contact | None:
    return await session.get(Contact, user_id)


async def saved_locale(session: AsyncSession, user_id: str) -> str | None:
    return await session.scalar(select(Contact.locale).where(Contact.user_id == user_id))


async def delivery_exists(session: AsyncSession, event_id: str, channel: str, recipient: str) -> bool:
    query = select(Delivery.id).where(
        Delivery.event_id == event_id, Delivery.channel == channel, Delivery.recipient == recipient
    )
    return await session.scalar(query) is not None


async def delivered_to(session: AsyncSession, event_id: str) -> set[tuple[str, str]]:
    """The (channel, recipient) pairs that already have a delivery of this event."""
    rows = await session.execute(
        select(Delivery.channel, Delivery.recipient).where(Delivery.event_id == event_id)
    )
    return {(channel, recipient) for channel, recipient in rows}


async def request_sms(session: AsyncSession, request_id: str, kind: str) -> Sequence[Delivery]:
    """The SMS deliveries of one kind about a request, locked: the dispatcher skips them meanwhile."""
    query = (
        select(Delivery)
        .where(Delivery.request_id == request_id, Delivery.kind == kind, Delivery.channel == "sms")
        .with_for_update()
    )
    return (await session.scalars(query)).all()


async def due_deliveries(session: AsyncSession, now: datetime, limit: int) -> Sequence[Delivery]:
    query = (
        select(Delivery)
        .where(Delivery.status == DeliveryStatus.QUEUED, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()


async def next_delivery_due(session: AsyncSession) -> datetime | None:
    """When the soonest queued delivery falls due (None: nothing is queued)."""
    return await session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(Delivery.status == DeliveryStatus.QUEUED)
    )


async def request_stages(session: AsyncSession, request_ids: set[str]) -> dict[str, str | None]:
    """The current stage (the id of the event that last moved it on) of each of these requests."""
    rows = await session.execute(
        select(KnownRequest.request_id, KnownRequest.stage_event_id).where(
            KnownRequest.request_id.in_(request_ids)
        )
    )
    return dict(rows.tuples().all())


async def list_notifications(
    session: AsyncSession, user_id: str, limit: int, after: tuple[datetime, str] | None
) -> Sequence[Notification]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(Notification).where(Notification.user_id == user_id)
    if after:
        created_at, notification_id = after
        query = query.where(
            or_(
                Notification.created_at < created_at,
                (Notification.created_at == created_at) & (Notification.id < notification_id),
            )
        )
    return (
        await session.scalars(
            query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
        )
    ).all()


async def count_contacts(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Contact)) or 0


async def deliveries_of(
    session: AsyncSession, *, user_id: str | None, request_id: str | None, limit: int
) -> Sequence[Delivery]:
    """A customer's or a request's deliveries, newest first."""
    query = select(Delivery)
    if user_id:
        query = query.where(Delivery.user_id == user_id)
    if request_id:
        query = query.where(Delivery.request_id == request_id)
    return (
        await session.scalars(query.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit))
    ).all()


async def contacts_by_phone_key(session: AsyncSession, key: str) -> Sequence[Contact]:
    return (
        await session.scalars(
            select(Contact).where(Contact.phone_key == key).order_by(Contact.user_id).limit(50)
        )
    ).all()


async def event_ids_of(session: AsyncSession, delivery_ids: set[int]) -> dict[int, str]:
    rows = await session.execute(select(Delivery.id, Delivery.event_id).where(Delivery.id.in_(delivery_ids)))
    return dict(rows.tuples().all())
