"""Tables of the notification service: contacts, the in-app inbox and SMS deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.consumer import InboxMixin
from shared.db import UTCDateTime, utcnow
from shared.outbox import OutboxMixin


class Base(DeclarativeBase):
    pass


class OutboxMessage(OutboxMixin, Base):
    pass


class InboxEntry(InboxMixin, Base):
    pass


class Contact(Base):
    """How to reach a customer. The phone number never leaves this service unmasked, except to the SMS gateway."""

    __tablename__ = "contacts"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    phone: Mapped[str] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN")


class Notification(Base):
    """A message in the customer's in-app inbox."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_created", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SmsDelivery(Base):
    """One SMS handed to the gateway, keyed by the caller's message id so a retried call sends once."""

    __tablename__ = "sms_deliveries"

    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    template: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
