"""Tables of the notification service: contacts, the in-app inbox and SMS deliveries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from shared.db import UTCDateTime, utcnow
from shared.masking import phone_key
from shared.tables import messaging_tables


class Base(DeclarativeBase):
    pass


OutboxMessage, InboxEntry = messaging_tables(Base)


class Contact(Base):
    """How to reach a customer. The phone number never leaves this service unmasked, except to the SMS
    gateway."""

    __tablename__ = "contacts"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    phone: Mapped[str] = mapped_column(String(32))
    # The digits the masked phone shows (first 3, last 4: `1385678`), indexed: ops find a customer by
    # `138****5678` without reading every number. Kept with the phone (`_keyed`).
    phone_key: Mapped[str] = mapped_column(String(8), index=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    # Messages that can wait are held back between these local times ("HH:MM"); both None: no quiet hours.
    quiet_start: Mapped[str | None] = mapped_column(String(5), nullable=True, default="22:00")
    quiet_end: Mapped[str | None] = mapped_column(String(5), nullable=True, default="08:00")
    # {message kind: [channels]} the customer turned off (never a security kind).
    opt_out: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)

    @validates("phone")
    def _keyed(self, _: str, phone: str) -> str:
        self.phone_key = phone_key(phone)
        return phone


class KnownRequest(Base):
    """A request binding opened (from its UnbindRequested, or the BindingRequested of a bind request):
    every later event about a request must name one of these, with its binding and customer, or it is
    refused."""

    __tablename__ = "known_requests"

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # None for the requests already open when this table was created (their binding was not recorded).
    binding_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_id: Mapped[str] = mapped_column(String(64))
    # The account, as every notice about the request names it: a lender code of shared.lenders and
    # the last four digits (None for requests recorded before the events carried them).
    lender: Mapped[str | None] = mapped_column(String(32), nullable=True)
    account_last4: Mapped[str | None] = mapped_column(String(4), nullable=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The latest event that moved the request on (its stage): a queued message about an earlier
    # stage is stale. None for the requests known before stages were recorded.
    stage_event_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # What the request asks: `unbind`, `pause` or `switch` (UnbindRequested `kind`), or `bind` (a bind
    # request): its messages say so (templates.Kind.variants).
    kind: Mapped[str] = mapped_column(String(16), default="unbind", server_default="unbind")


class DeviceName(Base):
    """The name a customer gave a device key, told by verification with the device's enrolment code
    (a name is the customer's free text: it never travels on the event stream). Device notices name it."""

    __tablename__ = "device_names"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewMessage(Base):
    """What a reviewer wrote to the customer when deciding a case, handed over by risk before the
    decision commits (free text never travels on the topic); sent with the outcome once
    `ReviewDecided` arrives. Numbers in it are masked on the way in."""

    __tablename__ = "review_messages"

    review_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(36))
    message: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


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
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    # Went stale before it could be sent: the request it was about has moved on.
    SUPERSEDED = "superseded"


class Delivery(Base):
    """One message on one channel to one recipient. The unique key makes a redelivered event (or
    a retried internal send) unable to produce a second delivery."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "channel", "recipient", name="uq_deliveries_event_channel_recipient"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(254))
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    # Indexed: the ops case lists a request's messages.
    request_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    title: Mapped[str] = mapped_column(String(200))
    # The rendered text; for a code SMS only its redacted form is kept.
    body: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A resend by ops (the customer lost the message): the delivery it repeats, who asked, when and why
    # (their words, numbers masked). Its own `event_id` is new, so the unique key lets it be.
    resend_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resent_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    resent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resend_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
