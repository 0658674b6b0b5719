"""Business rules of the notification service: what to send, on which channels, when; and the
dispatcher that sends it, exactly once per (event, channel, recipient).

Planning (in the handled event's transaction) writes one `Delivery` per channel: the inbox copy
is written at once; the others are queued, due now, or at the end of the customer's quiet hours
for the kinds that can wait (templates.py), or suppressed where the customer turned that channel
off. The dispatcher (a worker) sends what is due; a failed send is retried with exponential backoff
and jitter up to `delivery_max_attempts`, then marked failed; a failed push falls back to SMS. A
due message about a request's stage the request has moved on from is not sent but superseded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter

from services.notification import repository
from services.notification.config import NotificationSettings
from services.notification.models import (
    Contact,
    Delivery,
    DeliveryStatus,
    DeviceName,
    KnownRequest,
    Notification,
    ReviewMessage,
)
from services.notification.providers import DeliveryError, Outgoing, Provider
from services.notification.schemas import (
    MessageAccepted,
    MessageIn,
    NotificationList,
    NotificationOut,
    OpsContactList,
    OpsContactOut,
    OpsMessageList,
    OpsMessageOut,
    PreferencesIn,
    PreferencesOut,
    QuietHours,
    ReviewMessageIn,
)
from services.notification.templates import (
    DEFAULT_LOCALE,
    KINDS,
    SECURITY_KINDS,
    STAGE_KINDS,
    AccountRef,
    render,
)
from shared.auth import Principal
from shared.cloudevents import EventRejected
from shared.consumer import current_envelope
from shared.db import utcnow
from shared.events import (
    AutoDebitPaused,
    AutoDebitResumed,
    BindingCreated,
    BindingEvent,
    BindingRequested,
    BindingVerificationFailed,
    BiometricCounterRegressed,
    DeviceEnrolled,
    DeviceRevoked,
    Event,
    MandateConfirmed,
    MandateEvent,
    MandateRefused,
    MandateRequested,
    PreferencesChanged,
    RepaymentAccountSwitched,
    ReviewDecided,
    ReviewOrigin,
    ReviewOutcome,
    RiskAssessed,
    RiskDecision,
    UnbindAppealed,
    UnbindCancelled,
    UnbindCompleted,
    UnbindDisputed,
    UnbindExpired,
    UnbindRejected,
    UnbindRequested,
    VerificationFailed,
    VerificationRequested,
    Verified,
)
from shared.logging import redact
from shared.masking import mask_email, mask_phone, phone_key
from shared.pagination import decode_cursor, encode_cursor
from shared.problems import Problem, conflict, not_found
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)

# A failed attempt that will be tried again (the delivery stays queued).
RETRYING = "retrying"
# The risk prompt: what a customer must read before the code of the request (`send_message`).
PROMPT_KIND = "unbind_requested"


class NotificationMetrics:
    """Collectors of one notification app, on its registry."""

    def __init__(self, registry: CollectorRegistry):
        self.deliveries = Counter(
            "unbind_notification_deliveries",
            "Deliveries by channel and outcome, counted once committed: sent, suppressed (opted out), "
            "superseded (stale before it could go), "
            f"failed (for good: attempts spent, a push that fell back to SMS, a code SMS the gateway "
            f"refused), {RETRYING} (a failed attempt, tried again later)",
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


# How often a waiting code message re-reads whether another instance learned its request.
CODE_WAIT_RECHECK_SECONDS = 1.0


class RequestsLearned:
    """Wakes, in this instance, the code messages that wait for notification to learn their request
    (its UnbindRequested or BindingRequested handled)."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Event] = {}

    def learned(self, request_id: str) -> None:
        if (event := self._waiting.pop(request_id, None)) is not None:
            event.set()

    async def wait(self, request_id: str, timeout: float) -> None:
        event = self._waiting.setdefault(request_id, asyncio.Event())
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            if self._waiting.get(request_id) is event and not event.is_set():
                del self._waiting[request_id]


@dataclass(frozen=True)
class NotificationDeps:
    settings: NotificationSettings
    providers: dict[str, Provider]
    metrics: NotificationMetrics
    requests_learned: RequestsLearned = field(default_factory=RequestsLearned)
    # Set once a unit of work that queued a delivery has committed: the dispatcher wakes for it.
    deliveries_queued: asyncio.Event = field(default_factory=asyncio.Event)

    def dispatch_after_commit(self, uow: UnitOfWork) -> None:
        uow.after_commit(self.deliveries_queued.set)


# --- planning ------------------------------------------------------------------------------


def quiet_until(contact: Contact | None, now: datetime) -> datetime | None:
    """The end of the customer's quiet hours if `now` falls inside them, else None (also when the
    customer turned them off)."""
    if contact is not None and (contact.quiet_start is None or contact.quiet_end is None):
        return None
    zone = ZoneInfo(contact.timezone if contact else "Asia/Shanghai")
    start, end = (
        (time.fromisoformat(contact.quiet_start), time.fromisoformat(contact.quiet_end))
        if contact
        else (time(22), time(8))
    )
    local = now.astimezone(zone)
    clock = local.time()
    inside = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not inside or start == end:
        return None
    end_at = datetime.combine(local.date(), end, zone)
    return end_at if end_at > local else end_at + timedelta(days=1)


def send_time(kind: str, contact: Contact | None, at: datetime) -> datetime:
    """When a message of `kind` due `at` goes out (not its inbox copy): after the customer's quiet
    hours if it can wait, else at once."""
    held = quiet_until(contact, at) if KINDS[kind].can_wait else None
    return held or at


async def plan(
    uow: UnitOfWork,
    deps: NotificationDeps,
    event_id: str,
    kind: str,
    *,
    event: Event,
    facts: dict[str, Any],
    request_kind: str | None = None,
    not_before: datetime | None = None,
) -> int:
    """Write the deliveries of one message, in the customer's language (its words for a request of
    `request_kind`); returns how many were new (a replay writes none)."""
    session = uow.session
    contact = await repository.get_contact(session, event.user_id)
    locale, timezone = (contact.locale, contact.timezone) if contact else (DEFAULT_LOCALE, "Asia/Shanghai")
    title, body = render(kind, locale, facts, timezone, request_kind=request_kind)
    now = utcnow()
    due = not_before or now
    held = send_time(kind, contact, due)
    opted_out = set((contact.opt_out or {}).get(kind, [])) if contact else set()
    recipients = {
        "inapp": event.user_id,
        "push": event.user_id,
        "sms": contact.phone if contact else None,
        "email": contact.email if contact else None,
    }
    # One query for the whole message, not one per channel: a replay finds every pair already there.
    existing = await repository.delivered_to(session, event_id)
    # An event about a customer's device belongs to no request.
    request_id = event.request_id if isinstance(event, BindingEvent) else None
    created = queued = 0
    outcomes: list[tuple[str, str]] = []
    for channel in KINDS[kind].channels:
        recipient = recipients[channel]
        if recipient is None or (channel, recipient) in existing:
            continue
        delivery = Delivery(
            event_id=event_id,
            channel=channel,
            recipient=recipient,
            user_id=event.user_id,
            kind=kind,
            request_id=request_id,
            title=title,
            body=body,
            created_at=now,
        )
        if channel in opted_out and kind not in SECURITY_KINDS:
            delivery.status = DeliveryStatus.SUPPRESSED
            outcomes.append((channel, DeliveryStatus.SUPPRESSED))
        elif channel == "inapp" and due <= now:  # the inbox never waits for the end of quiet hours
            _to_inbox(uow, delivery, now)
            outcomes.append((channel, DeliveryStatus.SENT))
        else:
            delivery.status, delivery.next_attempt_at = (
                DeliveryStatus.QUEUED,
                due if channel == "inapp" else held,
            )
            queued += 1
        session.add(delivery)
        created += 1
    deps.metrics.count_after_commit(uow, outcomes)
    if queued:
        deps.dispatch_after_commit(uow)
    return created


def _to_inbox(uow: UnitOfWork, delivery: Delivery, now: datetime) -> None:
    uow.session.add(
        Notification(
            id=str(uuid.uuid4()),
            user_id=delivery.user_id,
            kind=delivery.kind,
            request_id=delivery.request_id,
            title=delivery.title,
            body=delivery.body,
            created_at=now,
        )
    )
    delivery.status, delivery.sent_at, delivery.attempts = DeliveryStatus.SENT, now, 1


async def remember_request(
    uow: UnitOfWork, deps: NotificationDeps, event: UnbindRequested | BindingRequested
) -> None:
    event_id = current_envelope.get().id
    if await uow.session.get(KnownRequest, event.request_id) is None:
        uow.session.add(
            KnownRequest(
                request_id=event.request_id,
                binding_id=event.binding_id,
                user_id=event.user_id,
                stage_event_id=event_id,
                lender=event.lender,
                account_last4=event.account_last4,
                kind=str(event.kind) if isinstance(event, UnbindRequested) else "bind",
            )
        )
        uow.after_commit(lambda: deps.requests_learned.learned(event.request_id))


async def follow_request(uow: UnitOfWork, event_id: str, event: BindingEvent) -> KnownRequest:
    """EventRejected unless the event is about a request binding opened (an unbind or a bind request),
    for that binding and customer: no message, no inbox row and no lender webhook for a binding or
    customer nobody asked about.
    Then the event is the request's stage, unless it says nothing of where the request stands (a
    refused device signature): what was queued about an earlier stage is stale. The events of a
    request share a partition, so they come here in order."""
    known = await uow.session.get(KnownRequest, event.request_id)
    if (
        known is None
        or known.user_id != event.user_id
        or (known.binding_id is not None and known.binding_id != event.binding_id)
    ):
        raise EventRejected(
            "state",
            f"{type(event).__name__} is about a request no UnbindRequested or BindingRequested opened for "
            f"this binding and customer",
        )
    if not isinstance(event, BiometricCounterRegressed):
        known.stage_event_id = event_id
    return known


# What the lender is told of each event, field by field: a mandate to set up (its id, to confirm or
# refuse on binding's `POST /v1/lenders/callbacks`), the mandates an unbind or a switch cancelled, a
# mandate paused (until when) or resumed.
LENDER_FIELDS: dict[type[BindingEvent], tuple[str, ...]] = {
    MandateRequested: ("mandate_id", "lender", "account_last4", "monthly_instalment", "due_day"),
    UnbindCompleted: ("mandates_cancelled",),
    RepaymentAccountSwitched: ("previous_account_last4", "mandates_cancelled"),
    AutoDebitPaused: ("mandate_id", "resumes_on"),
    AutoDebitResumed: ("mandate_id",),
}


def lender_payload(event: BindingEvent) -> dict[str, Any]:
    facts = event.model_dump(mode="json")
    return {name: facts[name] for name in LENDER_FIELDS[type(event)]}


async def notify_lender(
    uow: UnitOfWork, deps: NotificationDeps, event: BindingEvent, *, event_id: str, kind: str
) -> None:
    """The lender learns of a mandate to set up, paused or resumed, or that its mandates are gone,
    through its signed webhook."""
    if await repository.delivery_exists(uow.session, event_id, "institution", "lender"):
        return
    event_type = type(event).__name__
    payload = {
        "type": event_type,
        "event_id": event_id,
        "binding_id": event.binding_id,
        **lender_payload(event),
        "at": utcnow().isoformat(),
    }
    uow.session.add(
        Delivery(
            event_id=event_id,
            channel="institution",
            recipient="lender",
            user_id=event.user_id,
            kind=kind,
            request_id=event.request_id,
            title=event_type,
            body="",
            payload=payload,
            status=DeliveryStatus.QUEUED,
            next_attempt_at=utcnow(),
        )
    )
    deps.dispatch_after_commit(uow)


async def schedule_reminder(
    uow: UnitOfWork, deps: NotificationDeps, event_id: str, event: UnbindCompleted
) -> None:
    when = utcnow() + timedelta(seconds=deps.settings.reminder_delay_seconds)
    await plan(
        uow,
        deps,
        f"{event_id}:reminder",
        "follow_up_reminder",
        event=event,
        facts=await facts_of(uow, event),
        not_before=when,
    )


async def facts_of(uow: UnitOfWork, event: Event) -> dict[str, Any]:
    """What a message about `event` may say: the event's fields, the account it is about (lender and
    last four digits: the event's own, or from the event that opened the request; a switch's new
    account, and the one it left) and the name of the device it names."""
    facts = event.model_dump(mode="json")
    if isinstance(event, BindingCreated | MandateEvent | RepaymentAccountSwitched):
        facts["account"] = AccountRef(event.lender, event.account_last4)
    if isinstance(event, RepaymentAccountSwitched):
        facts["previous_account"] = await _account_of(uow, event.request_id)
    elif isinstance(event, BindingEvent) and "account" not in facts:
        facts["account"] = await _account_of(uow, event.request_id)
    if isinstance(event, UnbindRequested) and event.new_account_last4:
        facts["new_account"] = AccountRef(event.new_lender, event.new_account_last4)
    if device_id := facts.get("device_id"):
        facts["device"] = await _device_name(uow, device_id)
    return facts


async def _account_of(uow: UnitOfWork, request_id: str) -> AccountRef | None:
    known = await uow.session.get(KnownRequest, request_id)
    return AccountRef(known.lender, known.account_last4) if known else None


async def _device_name(uow: UnitOfWork, device_id: str) -> str | None:
    device = await uow.session.get(DeviceName, device_id)
    return device.name if device else None


# --- review outcomes -----------------------------------------------------------------------


async def keep_review_message(uow: UnitOfWork, review_id: str, body: ReviewMessageIn) -> None:
    """Keep what a reviewer wrote to a customer until its `ReviewDecided` arrives. A decision tried
    again (risk's first attempt did not commit) replaces the message."""
    message = await uow.session.get(ReviewMessage, review_id)
    if message is None:
        message = ReviewMessage(review_id=review_id)
        uow.session.add(message)
    # Masked like every number a person typed: the customer's phone or account may be in it.
    message.user_id, message.request_id, message.message, message.received_at = (
        body.user_id,
        body.request_id,
        redact(body.message),
        utcnow(),
    )


async def review_notice(uow: UnitOfWork, event: ReviewDecided) -> tuple[str, dict[str, Any]]:
    """The kind and parameters of the message telling the customer what ops decided, with the
    reviewer's message to them, if they wrote one."""
    if event.origin == ReviewOrigin.DISPUTE:
        kind, params = "dispute_closed", {"dispute_outcome": event.decision}
    elif event.decision == ReviewOutcome.APPROVE:
        kind, params = "review_approved", {}
    else:
        kind, params = (
            "appeal_denied" if event.origin == ReviewOrigin.APPEAL else "review_denied",
            {"denial_reason": event.reason or "other"},
        )
    if event.customer_message:
        message = await uow.session.get(ReviewMessage, event.review_id) if event.review_id else None
        if (
            message is not None
            and message.request_id == event.request_id
            and message.user_id == event.user_id
        ):
            params["reviewer_message"] = message.message
        else:
            # Risk hands the message over before it commits the decision, so this is not expected;
            # the customer still learns the outcome.
            log.warning(
                "the reviewer's message to the customer is missing",
                extra={"request_id": event.request_id, "review_id": event.review_id},
            )
    return kind, params


# --- the events it hears of (each handler is called as (uow, deps, event), from main.SUBSCRIPTIONS)

# The message each event sends its customer, where the event alone says which (`notify`).
NOTICES: dict[type[Event], str] = {
    BindingVerificationFailed: "binding_verification_failed",
    BindingCreated: "binding_created",
    MandateRequested: "mandate_requested",
    MandateConfirmed: "mandate_confirmed",
    MandateRefused: "mandate_refused",
    UnbindRequested: PROMPT_KIND,
    VerificationRequested: "verification_requested",
    Verified: "verified",
    VerificationFailed: "verification_failed",
    BiometricCounterRegressed: "biometric_counter_regressed",
    DeviceEnrolled: "device_enrolled",
    DeviceRevoked: "device_revoked",
    AutoDebitPaused: "auto_debit_paused",
    AutoDebitResumed: "auto_debit_resumed",
    RepaymentAccountSwitched: "repayment_account_switched",
    UnbindCompleted: "unbind_completed",
    UnbindRejected: "unbind_rejected",
    UnbindCancelled: "unbind_cancelled",
    UnbindExpired: "unbind_expired",
    UnbindAppealed: "unbind_appealed",
    UnbindDisputed: "dispute_received",
}


async def _follow(uow: UnitOfWork, event: Event) -> tuple[str, str | None]:
    """The id of the handled event, once checked against the requests notification knows, and the
    kind of its request (an unbind, a pause, a switch, a bind request; None for a device event)."""
    event_id = current_envelope.get().id
    # Only BindingRequested and UnbindRequested bring new request ids; every other event about a request
    # must be about one they opened (a device event is about the customer alone).
    if isinstance(event, UnbindRequested):
        return event_id, str(event.kind)
    if isinstance(event, BindingEvent):
        return event_id, (await follow_request(uow, event_id, event)).kind
    return event_id, None


async def _notify(uow: UnitOfWork, deps: NotificationDeps, kind: str, event: Event, **params: object) -> None:
    event_id, request_kind = await _follow(uow, event)
    await plan(
        uow,
        deps,
        event_id,
        kind,
        event=event,
        facts=await facts_of(uow, event) | params,
        request_kind=request_kind,
    )


async def notify(uow: UnitOfWork, deps: NotificationDeps, event: Event, **params: object) -> None:
    """The customer's message about `event`, of the kind NOTICES names."""
    await _notify(uow, deps, NOTICES[type(event)], event, **params)


async def notify_with_lender(uow: UnitOfWork, deps: NotificationDeps, event: BindingEvent) -> None:
    """The customer's message, and the lender's webhook of the same kind (LENDER_FIELDS)."""
    await notify(uow, deps, event)
    await notify_lender(uow, deps, event, event_id=current_envelope.get().id, kind=NOTICES[type(event)])


async def open_request(uow: UnitOfWork, deps: NotificationDeps, event: UnbindRequested) -> None:
    await remember_request(uow, deps, event)
    await notify(uow, deps, event)


async def complete_request(uow: UnitOfWork, deps: NotificationDeps, event: UnbindCompleted) -> None:
    await notify_with_lender(uow, deps, event)
    await schedule_reminder(uow, deps, current_envelope.get().id, event)


async def notify_assessment(uow: UnitOfWork, deps: NotificationDeps, event: RiskAssessed) -> None:
    # The customer hears of a review (with when to expect an answer); of a score, never.
    if event.decision == RiskDecision.REVIEW:
        await _notify(
            uow, deps, "unbind_under_review", event, expected_hours=deps.settings.review_expected_hours
        )
    else:
        await _follow(uow, event)


async def notify_rejection(uow: UnitOfWork, deps: NotificationDeps, event: UnbindRejected) -> None:
    if event.reason.startswith("review_denied"):
        # The reviewer's decision told the customer already, with its reason and their message.
        await _follow(uow, event)
        return
    await notify(uow, deps, event)


async def notify_appeal(uow: UnitOfWork, deps: NotificationDeps, event: UnbindAppealed) -> None:
    await notify(uow, deps, event, expected_hours=deps.settings.review_expected_hours)


async def notify_review_decision(uow: UnitOfWork, deps: NotificationDeps, event: ReviewDecided) -> None:
    kind, params = await review_notice(uow, event)
    await _notify(uow, deps, kind, event, **params)


# --- dispatching ---------------------------------------------------------------------------


def backoff(settings: NotificationSettings, attempts: int) -> timedelta:
    """Exponential from the base, with +-20 % jitter so retries of many messages spread out."""
    return timedelta(
        seconds=settings.delivery_backoff_seconds * 2 ** (attempts - 1) * random.uniform(0.8, 1.2)
    )


async def dispatch_due(uow: UnitOfWork, deps: NotificationDeps, *, limit: int = 200) -> int:
    """Send the deliveries that are due. The sends of a round go out together: a gateway that
    takes 50 ms per call would otherwise cap a service at 20 messages a second."""
    now = utcnow()
    claimed = await repository.due_deliveries(uow.session, now, limit)
    stale = await _stale(uow, claimed)
    for delivery in stale:
        delivery.status = DeliveryStatus.SUPERSEDED
    due = [delivery for delivery in claimed if delivery not in stale]
    outside = [delivery for delivery in due if delivery.channel != "inapp"]
    suppressed: list[tuple[str, str]] = []
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
            if await _fall_back_to_sms(uow, delivery, now) == DeliveryStatus.SUPPRESSED:
                suppressed.append(("sms", DeliveryStatus.SUPPRESSED))
        elif delivery.attempts >= deps.settings.delivery_max_attempts:
            delivery.status = DeliveryStatus.FAILED
        else:
            delivery.next_attempt_at = now + backoff(deps.settings, delivery.attempts)
    outcomes = [
        (delivery.channel, delivery.status if delivery.status != DeliveryStatus.QUEUED else RETRYING)
        for delivery in claimed
    ]
    deps.metrics.count_after_commit(uow, outcomes + suppressed)
    return len(claimed)


async def _stale(uow: UnitOfWork, deliveries: Sequence[Delivery]) -> list[Delivery]:
    """The deliveries about a request's stage (STAGE_KINDS) from an event that is no longer the
    request's stage: "verify it is you" after the request completed, expired, was cancelled or
    rejected, or was verified. Security messages are never stale: they go whatever happened since."""
    about_stage = [
        delivery
        for delivery in deliveries
        if delivery.kind in STAGE_KINDS and delivery.request_id is not None
    ]
    if not about_stage:
        return []
    stages = await repository.request_stages(
        uow.session, {delivery.request_id for delivery in about_stage if delivery.request_id}
    )
    # A resend is about the stage of the message it repeats.
    resent = {delivery.resend_of for delivery in about_stage if delivery.resend_of is not None}
    repeated = await repository.event_ids_of(uow.session, resent) if resent else {}
    return [
        delivery
        for delivery in about_stage
        if (stage := stages.get(delivery.request_id)) is not None
        and stage != (repeated.get(delivery.resend_of) if delivery.resend_of else delivery.event_id)
    ]


async def _send(deps: NotificationDeps, delivery: Delivery) -> DeliveryError | None:
    try:
        await deps.providers[delivery.channel].send(
            Outgoing(delivery.recipient, delivery.title, delivery.body, delivery.payload)
        )
    except DeliveryError as exc:
        return exc
    return None


async def _fall_back_to_sms(uow: UnitOfWork, push: Delivery, now: datetime) -> DeliveryStatus | None:
    """The SMS standing in for a failed push (suppressed if the customer turned SMS off for its
    kind); its status, or None when there is none to send."""
    contact = await repository.get_contact(uow.session, push.user_id)
    if contact is None or await repository.delivery_exists(uow.session, push.event_id, "sms", contact.phone):
        return None
    opted_out = "sms" in (contact.opt_out or {}).get(push.kind, [])
    status = DeliveryStatus.SUPPRESSED if opted_out else DeliveryStatus.QUEUED
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
            status=status,
            next_attempt_at=None if opted_out else now,
            created_at=now,
        )
    )
    return status


# --- internal send (codes) -----------------------------------------------------------------


async def send_message(uow: UnitOfWork, deps: NotificationDeps, message: MessageIn) -> MessageAccepted:
    """Send a service's code SMS, once per message id; only its redacted text is kept."""
    contact = await repository.get_contact(uow.session, message.user_id)
    if contact is None:
        raise Problem(
            422, "unknown-recipient", "Unknown recipient", "No contact details are on file for this user."
        )
    masked = mask_phone(contact.phone)
    if await repository.delivery_exists(uow.session, message.message_id, "sms", contact.phone):
        return MessageAccepted(message_id=message.message_id, status="sent", channel="sms", to=masked)
    # A request's code says what the request asks (an unbind, a pause, a switch) and names its account
    # (known once notification has seen the request's UnbindRequested); the device is named by the
    # message itself. (Should it wait for that, `contact` is read on, detached: its columns are loaded.)
    known = (
        await _known_request(uow, deps, message.request_id, message.user_id)
        if message.request_id is not None
        else None
    )
    facts: dict[str, Any] = {
        **message.params,
        "account": AccountRef(known.lender, known.account_last4) if known else None,
        "device": None,
    }
    if message.device is not None:
        await _remember_device(uow, message.user_id, message.device.id, message.device.name)
        facts["device"] = message.device.name
    try:
        title, text = render(
            message.template,
            contact.locale,
            facts,
            contact.timezone,
            request_kind=known.kind if known else None,
        )
    except KeyError as exc:
        raise Problem(422, "template-parameters", "Template parameters missing", str(exc)) from exc
    if known is not None:
        await _prompt_first(uow, deps, known)
    try:
        # Gateway first, then the record: a crash in between may send twice, never zero times.
        await deps.providers["sms"].send(Outgoing(contact.phone, title, text))
    except DeliveryError as exc:
        # Counted at once: the gateway refused, and the rollback below does not undo that.
        deps.metrics.deliveries.labels("sms", DeliveryStatus.FAILED).inc()
        raise _sms_unavailable("The code was not sent; retry.") from exc
    now = utcnow()
    uow.session.add(
        Delivery(
            event_id=message.message_id,
            channel="sms",
            recipient=contact.phone,
            user_id=message.user_id,
            kind=message.template,
            request_id=message.request_id,
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


async def _known_request(
    uow: UnitOfWork, deps: NotificationDeps, request_id: str, user_id: str
) -> KnownRequest:
    """The request a code is for. Its risk prompt reaches the customer before its code, by
    construction: a code for a request whose UnbindRequested was not handled yet waits for it, up to
    `code_wait_seconds`, holding no database connection (this instance's consumer wakes it; another
    instance's work is seen at each re-read), then is refused (409, verification retries). Waiting
    here, not answering at once, keeps a lagging consumer from drawing a storm of retries."""
    known = await uow.session.get(KnownRequest, request_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deps.settings.code_wait_seconds
    while known is None and (left := deadline - loop.time()) > 0:
        await uow.release()
        await deps.requests_learned.wait(request_id, min(left, CODE_WAIT_RECHECK_SECONDS))
        known = await uow.session.get(KnownRequest, request_id)
    if known is None:
        raise Problem(
            409,
            "request-notice-pending",
            "The request's notice has not gone out yet",
            "A code is sent only after the notice of its unbind request; retry shortly.",
            headers={"Retry-After": "1"},
        )
    if known.user_id != user_id:
        raise Problem(
            422,
            "unknown-request",
            "Not this customer's request",
            "The code names an unbind request of another customer.",
        )
    return known


async def _prompt_first(uow: UnitOfWork, deps: NotificationDeps, known: KnownRequest) -> None:
    """A prompt still queued is sent here, before the code. Its rows stay locked until the code is
    recorded, so the dispatcher cannot send it a second time meanwhile. A prompt that failed for good
    holds no code back."""
    now = utcnow()
    for prompt in await repository.request_sms(uow.session, known.request_id, PROMPT_KIND):
        if prompt.status != DeliveryStatus.QUEUED:
            continue
        if error := await _send(deps, prompt):
            # Left queued for the dispatcher (this transaction rolls back); the code waits with it.
            raise _sms_unavailable("The request's notice, which goes first, was not sent; retry.") from error
        prompt.attempts += 1
        prompt.status, prompt.sent_at = DeliveryStatus.SENT, now
        deps.metrics.count_after_commit(uow, [("sms", DeliveryStatus.SENT)])


def _sms_unavailable(detail: str) -> Problem:
    return Problem(503, "sms-unavailable", "SMS gateway unavailable", detail, headers={"Retry-After": "2"})


async def _remember_device(uow: UnitOfWork, user_id: str, device_id: str, name: str) -> None:
    device = await uow.session.get(DeviceName, device_id)
    if device is None:
        uow.session.add(DeviceName(device_id=device_id, user_id=user_id, name=name, updated_at=utcnow()))
    elif device.user_id == user_id:
        device.name, device.updated_at = name, utcnow()


# --- customer API --------------------------------------------------------------------------


async def list_notifications(
    uow: UnitOfWork, principal: Principal, limit: int, cursor: str | None
) -> NotificationList:
    rows = await repository.list_notifications(
        uow.session, principal.subject, limit + 1, decode_cursor(cursor) if cursor else None
    )
    page = rows[:limit]
    return NotificationList(
        items=[
            NotificationOut.model_validate(row, from_attributes=True).model_copy(
                update={"read": row.read_at is not None}
            )
            for row in page
        ],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None,
    )


async def mark_read(uow: UnitOfWork, principal: Principal, notification_id: str) -> NotificationOut:
    notification = await uow.session.get(Notification, notification_id)
    if notification is None or notification.user_id != principal.subject:
        raise not_found("The notification")
    notification.read_at = notification.read_at or utcnow()
    return NotificationOut.model_validate(notification, from_attributes=True).model_copy(
        update={"read": True}
    )


def preferences_out(contact: Contact) -> PreferencesOut:
    quiet = (
        QuietHours(start=contact.quiet_start, end=contact.quiet_end)
        if contact.quiet_start is not None and contact.quiet_end is not None
        else None
    )
    return PreferencesOut(
        locale=contact.locale, timezone=contact.timezone, quiet_hours=quiet, opt_out=contact.opt_out or {}
    )


async def _own_contact(uow: UnitOfWork, principal: Principal) -> Contact:
    contact = await repository.get_contact(uow.session, principal.subject)
    if contact is None:
        raise not_found("Contact details")
    return contact


async def get_preferences(uow: UnitOfWork, principal: Principal) -> PreferencesOut:
    return preferences_out(await _own_contact(uow, principal))


async def update_preferences(uow: UnitOfWork, principal: Principal, body: PreferencesIn) -> PreferencesOut:
    if security := sorted(
        kind for kind, channels in (body.opt_out or {}).items() if channels and kind in SECURITY_KINDS
    ):
        raise Problem(
            422,
            "security-message",
            "Security messages cannot be turned off",
            "These messages protect your account and are always sent.",
            kinds=security,
        )
    contact = await _own_contact(uow, principal)
    given = body.model_fields_set  # the schema refuses null for all but quiet_hours, and an empty body
    if "locale" in given and body.locale != contact.locale:
        contact.locale = body.locale
        # The services that answer the customer keep a copy of their language.
        uow.emit(PreferencesChanged(user_id=contact.user_id, locale=body.locale))
    if "timezone" in given:
        contact.timezone = body.timezone
    if "quiet_hours" in given:
        contact.quiet_start, contact.quiet_end = (
            (body.quiet_hours.start, body.quiet_hours.end) if body.quiet_hours else (None, None)
        )
    if "opt_out" in given:
        contact.opt_out = {kind: sorted(set(channels)) for kind, channels in body.opt_out.items() if channels}
    return preferences_out(contact)


# --- ops: a customer on the phone ---------------------------------------------------------


# Messages that hold a one-time code: never resent (the customer asks for a new code in the app).
CODE_KINDS = frozenset({"otp_code", "device_enrolment_code", "binding_code"})
# What the destination of a channel without a number or an address is called.
DESTINATIONS = {"inapp": "inbox", "push": "app", "institution": "lender"}
OPS_MESSAGES_SHOWN = 200


def _destination(delivery: Delivery) -> str:
    if delivery.channel == "sms":
        return mask_phone(delivery.recipient)
    if delivery.channel == "email":
        return mask_email(delivery.recipient)
    return DESTINATIONS.get(delivery.channel, delivery.channel)


def ops_message_out(delivery: Delivery) -> OpsMessageOut:
    return OpsMessageOut(
        id=delivery.id,
        kind=delivery.kind,
        channel=delivery.channel,
        status=delivery.status,
        destination=_destination(delivery),
        title=delivery.title,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        sent_at=delivery.sent_at,
        request_id=delivery.request_id,
        resend_of=delivery.resend_of,
        resent_by=delivery.resent_by,
        resent_at=delivery.resent_at,
        resend_reason=delivery.resend_reason,
    )


async def ops_messages(uow: UnitOfWork, *, user_id: str | None, request_id: str | None) -> OpsMessageList:
    """A customer's or a request's messages on every channel, newest first, masked and without their text."""
    if not user_id and not request_id:
        raise Problem(
            422,
            "filter-required",
            "Filter required",
            "Name a customer (`user_id`) or a request (`request_id`).",
        )
    rows = await repository.deliveries_of(
        uow.session, user_id=user_id, request_id=request_id, limit=OPS_MESSAGES_SHOWN
    )
    return OpsMessageList(items=[ops_message_out(row) for row in rows])


async def ops_customers(uow: UnitOfWork, *, phone: str | None, user_id: str | None) -> OpsContactList:
    """Customers found by their masked phone (`138****5678`: several may share it) or their exact user id."""
    if (phone is None) == (user_id is None):
        raise Problem(
            422,
            "one-filter",
            "One filter",
            "Look a customer up by `phone` (masked, e.g. 138****5678) or by `user_id`, not both.",
        )
    if phone is not None:
        contacts = await repository.contacts_by_phone_key(uow.session, phone_key(phone))
    else:
        contact = await repository.get_contact(uow.session, user_id or "")
        contacts = [contact] if contact else []
    return OpsContactList(
        items=[
            OpsContactOut(
                user_id=c.user_id,
                phone=mask_phone(c.phone),
                email=mask_email(c.email) if c.email else None,
                locale=c.locale,
            )
            for c in contacts
        ]
    )


def _not_resendable(detail: str) -> Problem:
    return conflict("not-resendable", detail)


async def resend(
    uow: UnitOfWork, deps: NotificationDeps, principal: Principal, delivery_id: int, *, reason: str
) -> OpsMessageOut:
    """Send a message the customer lost again, on its channel, to their contact as it is now: a new
    delivery, due at once, naming who resent it, when and why. A one-time code is never resent; nor
    is a message still on its way, or the lender's webhook (retried by the dispatcher)."""
    original = await uow.session.get(Delivery, delivery_id)
    if original is None:
        raise not_found("The message")
    if original.kind in CODE_KINDS:
        raise _not_resendable("A one-time code is never resent: the customer asks for a new code in the app.")
    if original.channel == "institution":
        raise _not_resendable("The lender's webhook is retried by the service itself.")
    if original.status == DeliveryStatus.QUEUED:
        raise _not_resendable("This message has not gone yet: it is still queued.")
    contact = await repository.get_contact(uow.session, original.user_id)
    recipient = {
        "inapp": original.user_id,
        "push": original.user_id,
        "sms": contact.phone if contact else None,
        "email": contact.email if contact else None,
    }
    to = recipient.get(original.channel)
    if to is None:
        raise _not_resendable(f"No {original.channel} contact is on file for this customer.")
    now = utcnow()
    copy = Delivery(
        event_id=f"resend:{uuid.uuid4()}", channel=original.channel, recipient=to, user_id=original.user_id,
        kind=original.kind,
        request_id=original.request_id, title=original.title, body=original.body,
        status=DeliveryStatus.QUEUED, next_attempt_at=now, created_at=now,
        resend_of=original.id, resent_by=principal.subject, resent_at=now, resend_reason=redact(reason),
    )  # fmt: skip
    uow.session.add(copy)
    await uow.session.flush()
    deps.dispatch_after_commit(uow)
    # Who, which message and why, never its text.
    log.info(
        "message resent by ops",
        extra={
            "delivery_id": copy.id,
            "resend_of": original.id,
            "kind": original.kind,
            "channel": original.channel,
            "resent_by": principal.subject,
        },
    )
    return ops_message_out(copy)
