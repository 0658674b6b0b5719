"""Business rules of the notification service: what to send, on which channels, when; and the
dispatcher that sends it, exactly once per (event, channel, recipient).

Planning (in the handled event's transaction) writes one `Delivery` per channel: the inbox copy
is written at once; the others are queued, due now, or at the end of the customer's quiet hours
for non-security messages, or suppressed where the customer turned that channel off. The
dispatcher (a worker) sends what is due; a failed send is retried with exponential backoff and
jitter up to `delivery_max_attempts`, then marked failed; a failed push falls back to SMS.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter

from services.notification import repository
from services.notification.config import NotificationSettings
from services.notification.models import Contact, Delivery, DeliveryStatus, KnownRequest, Notification, ReviewMessage
from services.notification.providers import DeliveryError, Outgoing, Provider
from services.notification.schemas import MessageAccepted, MessageIn, NotificationList, NotificationOut, PreferencesIn, PreferencesOut, QuietHours, ReviewMessageIn
from services.notification.templates import DEFAULT_LOCALE, KINDS, SECURITY_KINDS, render
from shared.auth import Principal
from shared.cloudevents import EventRejected
from shared.db import utcnow
from shared.events import BindingEvent, Event, ReviewDecided, ReviewOrigin, ReviewOutcome, UnbindCompleted, UnbindRequested
from shared.logging import redact
from shared.masking import mask_phone
from shared.pagination import decode_cursor, encode_cursor
from shared.population import SyntheticCustomer
from shared.problems import Problem, not_found
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)

# A failed attempt that will be tried again (the delivery stays queued).
RETRYING = "retrying"


class NotificationMetrics:
    """Collectors of one notification app, on its registry."""

    def __init__(self, registry: CollectorRegistry):
        self.deliveries = Counter(
            "unbind_notification_deliveries",
            "Deliveries by channel and outcome, counted once committed: sent, suppressed (opted out), "
            f"failed (for good: attempts spent, a push that fell back to SMS, a code SMS the gateway refused), {RETRYING} (a failed attempt, tried again later)",
            ["channel", "status"],
            registry=registry,
        )

    def count_after_commit(self, uow: UnitOfWork, outcomes: list[tuple[str, str]]) -> None:
        """Count (channel, status) pairs once the transaction that recorded them is durable."""
        if outcomes:
            uow.after_commit(lambda: self._count(outcomes))

    def _count(self, outcomes: list[tuple[str, str]]) -> None:
        for channel, status in outcomes:
            self.deliveries.labels(channel, status).inc()


@dataclass(frozen=True)
class NotificationDeps:
    settings: NotificationSettings
    providers: dict[str, Provider]
    metrics: NotificationMetrics


# --- planning ------------------------------------------------------------------------------


def quiet_until(contact: Contact | None, now: datetime) -> datetime | None:
    """The end of the customer's quiet hours if `now` falls inside them, else None."""
    zone = ZoneInfo(contact.timezone if contact else "Asia/Shanghai")
    start, end = (time.fromisoformat(contact.quiet_start), time.fromisoformat(contact.quiet_end)) if contact else (time(22), time(8))
    local = now.astimezone(zone)
    clock = local.time()
    inside = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not inside or start == end:
        return None
    end_at = datetime.combine(local.date(), end, zone)
    return end_at if end_at > local else end_at + timedelta(days=1)


async def plan(
    uow: UnitOfWork, metrics: NotificationMetrics, event_id: str, kind: str, event: Event, params: dict[str, Any], *, not_before: datetime | None = None
) -> int:
    """Write the deliveries of one message; returns how many were new (a replay writes none)."""
    session = uow.session
    contact = await repository.get_contact(session, event.user_id)
    locale = contact.locale if contact else DEFAULT_LOCALE
    title, body = render(kind, locale, params)
    now = utcnow()
    due = not_before or now
    if not KINDS[kind].security and (until := quiet_until(contact, due)):
        due = until
    opted_out = set((contact.opt_out or {}).get(kind, [])) if contact else set()
    recipients = {"inapp": event.user_id, "push": event.user_id, "sms": contact.phone if contact else None, "email": contact.email if contact else None}
    # One query for the whole message, not one per channel: a replay finds every pair already there.
    existing = await repository.delivered_to(session, event_id)
    # An event about a customer's device belongs to no request.
    request_id = event.request_id if isinstance(event, BindingEvent) else None
    created = 0
    outcomes: list[tuple[str, str]] = []
    for channel in KINDS[kind].channels:
        recipient = recipients[channel]
        if recipient is None or (channel, recipient) in existing:
            continue
        delivery = Delivery(
            event_id=event_id, channel=channel, recipient=recipient, user_id=event.user_id, kind=kind, request_id=request_id, title=title, body=body, created_at=now
        )
        if channel in opted_out and kind not in SECURITY_KINDS:
            delivery.status = DeliveryStatus.SUPPRESSED
            outcomes.append((channel, DeliveryStatus.SUPPRESSED))
        elif channel == "inapp" and due <= now:
            _to_inbox(uow, delivery, now)
            outcomes.append((channel, DeliveryStatus.SENT))
        else:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.QUEUED, due
        session.add(delivery)
        created += 1
    metrics.count_after_commit(uow, outcomes)
    return created


def _to_inbox(uow: UnitOfWork, delivery: Delivery, now: datetime) -> None:
    uow.session.add(
        Notification(id=str(uuid.uuid4()), user_id=delivery.user_id, kind=delivery.kind, request_id=delivery.request_id, title=delivery.title, body=delivery.body, created_at=now)
    )
    delivery.status, delivery.sent_at, delivery.attempts = DeliveryStatus.SENT, now, 1


async def remember_request(uow: UnitOfWork, event: UnbindRequested) -> None:
    if await uow.session.get(KnownRequest, event.request_id) is None:
        uow.session.add(KnownRequest(request_id=event.request_id, binding_id=event.binding_id, user_id=event.user_id))


async def require_known_request(uow: UnitOfWork, event: BindingEvent) -> None:
    """EventRejected unless the event is about a request binding opened, for that binding and customer:
    no message, no inbox row and no lender webhook for a binding or customer nobody asked about."""
    known = await uow.session.get(KnownRequest, event.request_id)
    if known is None or known.user_id != event.user_id or (known.binding_id is not None and known.binding_id != event.binding_id):
        raise EventRejected("state", f"{type(event).__name__} is about an unbind request no UnbindRequested opened for this binding and customer")


async def notify_lender(uow: UnitOfWork, event_id: str, event: UnbindCompleted) -> None:
    """The lender learns the mandate is gone, through its signed webhook."""
    if await repository.delivery_exists(uow.session, event_id, "institution", "lender"):
        return
    payload = {"type": "UnbindCompleted", "event_id": event_id, "binding_id": event.binding_id, "mandates_cancelled": event.mandates_cancelled, "at": utcnow().isoformat()}
    uow.session.add(
        Delivery(
            event_id=event_id,
            channel="institution",
            recipient="lender",
            user_id=event.user_id,
            kind="unbind_completed",
            request_id=event.request_id,
            title="UnbindCompleted",
            body="",
            payload=payload,
            status=DeliveryStatus.QUEUED,
            next_attempt_at=utcnow(),
        )
    )


async def schedule_reminder(uow: UnitOfWork, deps: NotificationDeps, event_id: str, event: UnbindCompleted) -> None:
    when = utcnow() + timedelta(seconds=deps.settings.reminder_delay_seconds)
    await plan(uow, deps.metrics, f"{event_id}:reminder", "follow_up_reminder", event, {}, not_before=when)


def event_params(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="json")


# --- review outcomes -----------------------------------------------------------------------


async def keep_review_message(uow: UnitOfWork, review_id: str, body: ReviewMessageIn) -> None:
    """Keep what a reviewer wrote to a customer until its `ReviewDecided` arrives. A decision tried
    again (risk's first attempt did not commit) replaces the message."""
    message = await uow.session.get(ReviewMessage, review_id)
    if message is None:
        message = ReviewMessage(review_id=review_id)
        uow.session.add(message)
    # Masked like every number a person typed: the customer's phone or account may be in it.
    message.user_id, message.request_id, message.message, message.received_at = body.user_id, body.request_id, redact(body.message), utcnow()


async def review_notice(uow: UnitOfWork, event: ReviewDecided) -> tuple[str, dict[str, Any]]:
    """The kind and parameters of the message telling the customer what ops decided, with the
    reviewer's message to them, if they wrote one."""
    if event.origin == ReviewOrigin.DISPUTE:
        kind, params = "dispute_closed", {"dispute_outcome": event.decision}
    elif event.decision == ReviewOutcome.APPROVE:
        kind, params = "review_approved", {}
    else:
        kind, params = "appeal_denied" if event.origin == ReviewOrigin.APPEAL else "review_denied", {"denial_reason": event.reason or "other"}
    if event.customer_message:
        message = await uow.session.get(ReviewMessage, event.review_id) if event.review_id else None
        if message is not None and message.request_id == event.request_id and message.user_id == event.user_id:
            params["reviewer_message"] = message.message
        else:
            # Risk hands the message over before it commits the decision, so this is not expected;
            # the customer still learns the outcome.
            log.warning("the reviewer's message to the customer is missing", extra={"request_id": event.request_id, "review_id": event.review_id})
    return kind, params


# --- dispatching ---------------------------------------------------------------------------


def backoff(settings: NotificationSettings, attempts: int) -> timedelta:
    """Exponential from the base, with +-20 % jitter so retries of many messages spread out."""
    return timedelta(seconds=settings.delivery_backoff_seconds * 2 ** (attempts - 1) * random.uniform(0.8, 1.2))


async def dispatch_due(uow: UnitOfWork, deps: NotificationDeps, *, limit: int = 200) -> int:
    """Send the deliveries that are due. The sends of a round go out together: a gateway that
    takes 50 ms per call would otherwise cap a service at 20 messages a second."""
    now = utcnow()
    due = await repository.due_deliveries(uow.session, now, limit)
    outside = [delivery for delivery in due if delivery.channel != "inapp"]
    errors = await asyncio.gather(*(_send(deps, delivery) for delivery in outside))
    for delivery in due:
        delivery.attempts += 1
        if delivery.channel == "inapp":
            _to_inbox(uow, delivery, now)
    for delivery, error in zip(outside, errors, strict=True):
        if error is None:
            delivery.status, delivery.sent_at = DeliveryStatus.SENT, now
            continue
        delivery.last_error = redact(str(error))[:500]
        if delivery.channel == "push":
            delivery.status = DeliveryStatus.FAILED
            await _fall_back_to_sms(uow, delivery, now)
        elif delivery.attempts >= deps.settings.delivery_max_attempts:
            delivery.status = DeliveryStatus.FAILED
        else:
            delivery.next_attempt_at = now + backoff(deps.settings, delivery.attempts)
    deps.metrics.count_after_commit(uow, [(delivery.channel, delivery.status if delivery.status != DeliveryStatus.QUEUED else RETRYING) for delivery in due])
    return len(due)


async def _send(deps: NotificationDeps, delivery: Delivery) -> DeliveryError | None:
    try:
        await deps.providers[delivery.channel].send(Outgoing(delivery.recipient, delivery.title, delivery.body, delivery.payload))
    except DeliveryError as exc:
        return exc
    return None


async def _fall_back_to_sms(uow: UnitOfWork, push: Delivery, now: datetime) -> None:
    contact = await repository.get_contact(uow.session, push.user_id)
    if contact is None or await repository.delivery_exists(uow.session, push.event_id, "sms", contact.phone):
        return
    uow.session.add(
        Delivery(
            event_id=push.event_id,
            channel="sms",
            recipient=contact.phone,
            user_id=push.user_id,
            kind=push.kind,
            request_id=push.request_id,
            title=push.title,
            body=push.body,
            status=DeliveryStatus.QUEUED,
            next_attempt_at=now,
            created_at=now,
        )
    )


# --- internal send (codes) -----------------------------------------------------------------


async def send_message(uow: UnitOfWork, deps: NotificationDeps, message: MessageIn) -> MessageAccepted:
    """Send a service's code SMS, once per message id; only its redacted text is kept."""
    contact = await repository.get_contact(uow.session, message.user_id)
    if contact is None:
        raise Problem(422, "unknown-recipient", "Unknown recipient", "No contact details are on file for this user.")
    masked = mask_phone(contact.phone)
    if await repository.delivery_exists(uow.session, message.message_id, "sms", contact.phone):
        return MessageAccepted(message_id=message.message_id, status="sent", channel="sms", to=masked)
    try:
        title, text = render(message.template, contact.locale, dict(message.params))
    except KeyError as exc:
        raise Problem(422, "template-parameters", "Template parameters missing", str(exc)) from exc
    try:
        # Gateway first, then the record: a crash in between may send twice, never zero times.
        await deps.providers["sms"].send(Outgoing(contact.phone, title, text))
    except DeliveryError as exc:
        # Counted at once: the gateway refused, and the rollback below does not undo that.
        deps.metrics.deliveries.labels("sms", DeliveryStatus.FAILED).inc()
        raise Problem(503, "sms-unavailable", "SMS gateway unavailable", "The code was not sent; retry.", headers={"Retry-After": "2"}) from exc
    now = utcnow()
    uow.session.add(
        Delivery(
            event_id=message.message_id,
            channel="sms",
            recipient=contact.phone,
            user_id=message.user_id,
            kind=message.template,
            title=title,
            body=redact(text),
            status=DeliveryStatus.SENT,
            attempts=1,
            created_at=now,
            sent_at=now,
        )
    )
    deps.metrics.count_after_commit(uow, [("sms", DeliveryStatus.SENT)])
    return MessageAccepted(message_id=message.message_id, status="sent", channel="sms", to=masked)


# --- customer API --------------------------------------------------------------------------


async def list_notifications(uow: UnitOfWork, principal: Principal, limit: int, cursor: str | None) -> NotificationList:
    rows = await repository.list_notifications(uow.session, principal.subject, limit + 1, decode_cursor(cursor) if cursor else None)
    page = rows[:limit]
    return NotificationList(
        items=[NotificationOut.model_validate(row, from_attributes=True).model_copy(update={"read": row.read_at is not None}) for row in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None,
    )


async def mark_read(uow: UnitOfWork, principal: Principal, notification_id: str) -> NotificationOut:
    notification = await uow.session.get(Notification, notification_id)
    if notification is None or notification.user_id != principal.subject:
        raise not_found("The notification")
    notification.read_at = notification.read_at or utcnow()
    return NotificationOut.model_validate(notification, from_attributes=True).model_copy(update={"read": True})


def preferences_out(contact: Contact) -> PreferencesOut:
    return PreferencesOut(
        locale=contact.locale, timezone=contact.timezone, quiet_hours=QuietHours(start=contact.quiet_start, end=contact.quiet_end), opt_out=contact.opt_out or {}
    )


async def _own_contact(uow: UnitOfWork, principal: Principal) -> Contact:
    contact = await repository.get_contact(uow.session, principal.subject)
    if contact is None:
        raise not_found("Contact details")
    return contact


async def get_preferences(uow: UnitOfWork, principal: Principal) -> PreferencesOut:
    return preferences_out(await _own_contact(uow, principal))


async def update_preferences(uow: UnitOfWork, principal: Principal, body: PreferencesIn) -> PreferencesOut:
    if security := sorted(kind for kind, channels in (body.opt_out or {}).items() if channels and kind in SECURITY_KINDS):
        raise Problem(422, "security-message", "Security messages cannot be turned off", "These messages protect your account and are always sent.", kinds=security)
    contact = await _own_contact(uow, principal)
    if body.locale is not None:
        contact.locale = body.locale
    if body.timezone is not None:
        contact.timezone = body.timezone
    if body.quiet_hours is not None:
        contact.quiet_start, contact.quiet_end = body.quiet_hours.start, body.quiet_hours.end
    if body.opt_out is not None:
        contact.opt_out = {kind: sorted(set(channels)) for kind, channels in body.opt_out.items() if channels}
    return preferences_out(contact)


async def seed_customers(uow: UnitOfWork, customers: Sequence[SyntheticCustomer]) -> None:
    """Contact details of synthetic customers (load and chaos runs)."""
    uow.session.add_all([Contact(user_id=customer.user_id, phone=customer.phone, locale="zh-CN") for customer in customers])


async def seed_demo_data(uow: UnitOfWork) -> bool:
    """Contact details of Zhang San and Li Si; only into an empty database."""
    if await repository.count_contacts(uow.session):
        return False
    uow.session.add_all(
        [
            Contact(user_id="u-zhangsan", phone="+8613812345678", email="zhangsan@example.com", locale="zh-CN"),
            Contact(user_id="u-lisi", phone="+8613987654321", locale="en"),
        ]
    )
    return True
