"""Business rules of the risk service: behaviour signals, an explainable score, rules, a decision,
the review queue and account anomaly flags.

Every event on the topic is kept as behaviour (`observe`); `UnbindRequested` is scored:
score = the sum of the weights of the signals present (table `SIGNALS`), capped at 100. Rules
(`rules.py`) decide first; without a matching rule the thresholds decide: below step_up -> allow
[otp]; below review -> step_up [otp, biometric]; below deny -> review; else deny. The level
follows the score: below step_up normal, below review elevated, else highest.

No machine says a final no: a deny (score or rule) goes to review like a review does, and only a
person denies, choosing a reason from a fixed list; an approval asks for both methods. A request
that reaches review flags the account; an open flag is itself a signal, and it closes when ops
approve the review of the request that raised it. A customer's enrolled device keys
(`DeviceEnrolled`, `DeviceRevoked`) are known devices.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from prometheus_client import CollectorRegistry, Counter

from services.risk import repository
from services.risk.config import RiskSettings
from services.risk.models import AccountFlag, ApprovalReason, Assessment, CustomerProfile, DisputeFinding, KnownDevice, ObservedEvent, Review, ReviewStatus, RuleSet
from services.risk.rules import DEFAULT_RULES, InvalidRule, Rule, first_match, parse_rules
from services.risk.schemas import (
    AssessmentOut,
    CustomerRiskOut,
    FirstDecisionOut,
    FlagList,
    FlagOut,
    KnownDeviceOut,
    ProfileIn,
    ProfileOut,
    ReviewDecisionIn,
    ReviewList,
    ReviewOut,
    ReviewReasons,
    RuleSetOut,
)
from shared.auth import Principal
from shared.db import utcnow
from shared.events import (
    BindingEvent,
    DenialReason,
    DeviceEnrolled,
    DeviceRevoked,
    ReviewDecided,
    ReviewOrigin,
    ReviewOutcome,
    RiskAssessed,
    RiskDecision,
    RiskLevel,
    RiskReason,
    UnbindAppealed,
    UnbindDisputed,
    UnbindRequested,
    VerificationMethod,
)
from shared.problems import Problem, conflict, not_found
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
REQUIRED_METHODS = {
    RiskDecision.ALLOW: [VerificationMethod.OTP],
    RiskDecision.STEP_UP: [VerificationMethod.OTP, VerificationMethod.BIOMETRIC],
    RiskDecision.REVIEW: [],
    RiskDecision.DENY: [],
}
# A request a human has looked at still proves both factors before anything is unbound.
APPROVED_AFTER_REVIEW = [VerificationMethod.OTP, VerificationMethod.BIOMETRIC]


@dataclass(frozen=True)
class Signal:
    weight: Callable[[int], int]
    detail: Callable[[int], str]


# The documented weights (README "Risk signals"). Values are integers; booleans are 0 or 1.
SIGNALS: dict[str, Signal] = {
    "device_unknown": Signal(lambda v: 40 * bool(v), lambda v: "requested from a device not seen before for this customer"),
    "device_recent": Signal(lambda v: 15 * bool(v), lambda v: "requested from a device first seen less than 7 days ago"),
    "phone_changed_recently": Signal(lambda v: 25 * bool(v), lambda v: "the phone number changed in the last 30 days"),
    "requests_24h": Signal(lambda v: min(60, 20 * v), lambda v: f"{v} earlier unbind request(s) in the last 24 hours"),
    "failed_verifications_24h": Signal(lambda v: min(45, 15 * v), lambda v: f"{v} failed verification(s) in the last 24 hours"),
    "counter_regressions_24h": Signal(lambda v: min(60, 30 * v), lambda v: f"{v} device counter regression(s) in the last 24 hours"),
    "night_request": Signal(lambda v: 10 * bool(v), lambda v: "requested between 00:00 and 06:00 (Asia/Shanghai)"),
    "instalment_due_soon": Signal(lambda v: 10 * bool(v), lambda v: "an instalment is due within 3 days"),
    "account_age_days": Signal(lambda v: 20 if 0 <= v < 90 else 0, lambda v: f"the account is {v} day(s) old"),
    "ip_changed": Signal(lambda v: 10 * bool(v), lambda v: "the request came from another IP address than the last one"),
    "rejections_30d": Signal(lambda v: min(30, 10 * v), lambda v: f"{v} rejected request(s) in the last 30 days"),
    "appeals_30d": Signal(lambda v: 15 * bool(v), lambda v: f"{v} appeal(s) in the last 30 days"),
    "account_flagged": Signal(lambda v: 30 * bool(v), lambda v: "the account carries an anomaly flag"),
}


class RiskMetrics:
    """Collectors of one risk app, on its registry."""

    def __init__(self, registry: CollectorRegistry):
        self.decisions = Counter("unbind_risk_decisions", "Risk assessments committed, by decision (allow, step_up, review, deny)", ["decision"], registry=registry)
        self.reviews = Counter("unbind_risk_reviews", "Reviews decided by ops, committed, by outcome (approve, deny)", ["outcome"], registry=registry)


@dataclass(frozen=True)
class RiskDeps:
    settings: RiskSettings
    clock: Callable[[], datetime]
    metrics: RiskMetrics
    # Notification's internal API, which takes the reviewers' messages to customers.
    notifier: httpx.AsyncClient


def observe(uow: UnitOfWork, event: BindingEvent, at: datetime | None = None) -> None:
    """Keep an event about a customer as behaviour."""
    uow.session.add(ObservedEvent(user_id=event.user_id, event_type=type(event).__name__, request_id=event.request_id, occurred_at=at or utcnow()))


async def collect_signals(uow: UnitOfWork, event: UnbindRequested, now: datetime) -> dict[str, int]:
    session = uow.session
    device = await session.get(KnownDevice, (event.user_id, event.device_id)) if event.device_id else None
    if device is not None and device.revoked_at is not None:
        device = None
    profile = await session.get(CustomerProfile, event.user_id)
    day, month = now - timedelta(hours=24), now - timedelta(days=30)
    windows = {"UnbindRequested": day, "VerificationFailed": day, "BiometricCounterRegressed": day, "UnbindRejected": month, "UnbindAppealed": month}
    counts = await repository.count_recent_events(session, event.user_id, windows, excluding=("UnbindRequested", event.request_id))
    return {
        "device_unknown": int(bool(event.device_id) and device is None),
        "device_recent": int(device is not None and now - device.first_seen_at < timedelta(days=7)),
        "phone_changed_recently": int(bool(profile and profile.phone_changed_at and now - profile.phone_changed_at < timedelta(days=30))),
        "requests_24h": counts["UnbindRequested"],
        "failed_verifications_24h": counts["VerificationFailed"],
        "counter_regressions_24h": counts["BiometricCounterRegressed"],
        "night_request": int(now.astimezone(SHANGHAI).hour < 6),
        "instalment_due_soon": int("INSTALMENT_DUE_SOON" in event.acknowledged),
        "account_age_days": (now - profile.account_opened_at).days if profile and profile.account_opened_at else -1,
        "ip_changed": int(bool(profile and profile.last_ip and event.client_ip and profile.last_ip != event.client_ip)),
        "rejections_30d": counts["UnbindRejected"],
        "appeals_30d": counts["UnbindAppealed"],
        "account_flagged": int(await repository.active_flag(session, event.user_id) is not None),
    }


def score(signals: dict[str, int]) -> tuple[int, list[RiskReason]]:
    """The capped weighted sum, with a reason for every signal that contributed."""
    reasons = []
    for name, signal in SIGNALS.items():
        value = int(signals.get(name, 0))
        if weight := signal.weight(value):
            reasons.append(RiskReason(code=name, weight=weight, detail=signal.detail(value)))
    return min(100, sum(reason.weight for reason in reasons)), reasons


def level_of(settings: RiskSettings, total: int) -> RiskLevel:
    if total >= settings.threshold_review:
        return RiskLevel.HIGHEST
    if total >= settings.threshold_step_up:
        return RiskLevel.ELEVATED
    return RiskLevel.NORMAL


def decide(settings: RiskSettings, total: int, signals: dict[str, int] | None = None, rules: list[Rule] = ()) -> tuple[RiskDecision, RiskLevel, Rule | None]:
    """Rules first (first match in Radar's order), then the thresholds."""
    rule = first_match(list(rules), signals or {})
    if rule is not None:
        return RiskDecision(rule.action), level_of(settings, total), rule
    if total >= settings.threshold_deny:
        decision = RiskDecision.DENY
    elif total >= settings.threshold_review:
        decision = RiskDecision.REVIEW
    elif total >= settings.threshold_step_up:
        decision = RiskDecision.STEP_UP
    else:
        decision = RiskDecision.ALLOW
    return decision, level_of(settings, total), None


async def current_rules(uow: UnitOfWork) -> tuple[int, list[Rule]]:
    latest = await repository.latest_rule_set(uow.session)
    raw = latest.rules if latest else DEFAULT_RULES
    return (latest.version if latest else 0), parse_rules(raw, set(SIGNALS))


async def assess(uow: UnitOfWork, deps: RiskDeps, event: UnbindRequested) -> None:
    session = uow.session
    if await repository.get_assessment(session, event.request_id) is not None:
        return
    now = deps.clock()
    signals = await collect_signals(uow, event, now)
    observe(uow, event, now)
    await _remember_context(uow, event, now, new_device=bool(signals["device_unknown"]))
    total, reasons = score(signals)
    version, rules = await current_rules(uow)
    decision, level, rule = decide(deps.settings, total, signals, rules)
    why = f"rule '{rule.name}'" if rule else f"score {total}"
    if decision == RiskDecision.DENY:
        # No machine says a final no: a person decides, and an approval asks for both methods.
        decision, why = RiskDecision.REVIEW, f"deny by {why}"
    if decision == RiskDecision.REVIEW:
        session.add(AccountFlag(user_id=event.user_id, reason=f"review by {why}", request_id=event.request_id, flagged_at=now))
        open_review(uow, event, ReviewOrigin.RISK, at=now)
    methods = REQUIRED_METHODS[decision]
    # Counted once the assessment is durable: a rolled-back (then retried) one would count twice.
    uow.after_commit(deps.metrics.decisions.labels(decision.value).inc)
    session.add(
        Assessment(
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            signals=signals,
            score=total,
            level=level,
            decision=decision,
            reasons=[reason.model_dump() for reason in reasons],
            required_methods=list(methods),
            rules_version=version,
            matched_rule=rule.name if rule else None,
            created_at=now,
        )
    )
    uow.emit(
        RiskAssessed(
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            score=total,
            level=level,
            decision=decision,
            reasons=reasons,
            required_methods=methods,
        )
    )


async def _remember_context(uow: UnitOfWork, event: UnbindRequested, now: datetime, *, new_device: bool) -> None:
    # A revoked key is not learned back from a request: only enrolling it again makes it known.
    if new_device and event.device_id and await uow.session.get(KnownDevice, (event.user_id, event.device_id)) is None:
        uow.session.add(KnownDevice(user_id=event.user_id, device_id=event.device_id, first_seen_at=now))
    if event.client_ip:
        profile = await uow.session.get(CustomerProfile, event.user_id)
        if profile is None:
            uow.session.add(CustomerProfile(user_id=event.user_id, last_ip=event.client_ip))
        else:
            profile.last_ip = event.client_ip


async def learn_device(uow: UnitOfWork, event: DeviceEnrolled, now: datetime) -> None:
    """An enrolled (active) device key is the customer's own: a request from it is not from a new device."""
    device = await uow.session.get(KnownDevice, (event.user_id, event.device_id))
    if device is None:
        uow.session.add(KnownDevice(user_id=event.user_id, device_id=event.device_id, first_seen_at=now, enrolled_at=now))
    else:
        device.enrolled_at, device.revoked_at = now, None


async def forget_device(uow: UnitOfWork, event: DeviceRevoked, now: datetime) -> None:
    device = await uow.session.get(KnownDevice, (event.user_id, event.device_id))
    if device is None:
        uow.session.add(KnownDevice(user_id=event.user_id, device_id=event.device_id, first_seen_at=now, revoked_at=now))
    else:
        device.revoked_at = now


async def get_assessment(uow: UnitOfWork, request_id: str) -> AssessmentOut:
    assessment = await repository.get_assessment(uow.session, request_id)
    if assessment is None:
        raise not_found("The assessment")
    return AssessmentOut.model_validate(assessment, from_attributes=True)


# --- rules ---------------------------------------------------------------------------------


async def get_rules(uow: UnitOfWork) -> RuleSetOut:
    latest = await repository.latest_rule_set(uow.session)
    if latest is None:
        return RuleSetOut(version=0, rules=DEFAULT_RULES, created_by="default", created_at=None)
    return RuleSetOut.model_validate(latest, from_attributes=True)


async def replace_rules(uow: UnitOfWork, principal: Principal, raw: list[dict[str, Any]]) -> RuleSetOut:
    """Validate the whole set; on success it becomes the next version, in force at once."""
    try:
        parse_rules(raw, set(SIGNALS))
    except InvalidRule as exc:
        raise Problem(422, "invalid-rules", "Invalid rule set", f"{exc}. The rules in force are unchanged.") from exc
    latest = await repository.latest_rule_set(uow.session)
    rule_set = RuleSet(version=(latest.version if latest else 0) + 1, rules=raw, created_by=principal.subject, created_at=utcnow())
    uow.session.add(rule_set)
    return RuleSetOut.model_validate(rule_set, from_attributes=True)


# --- reviews and flags ---------------------------------------------------------------------

# The fixed lists a decision's reason comes from: the customer is told only a denial's.
REVIEW_REASONS = ReviewReasons(approve=list(ApprovalReason), deny=list(DenialReason), close_dispute=list(DisputeFinding))


def open_review(uow: UnitOfWork, event: BindingEvent, origin: ReviewOrigin, at: datetime) -> None:
    uow.session.add(
        Review(
            id=str(uuid.uuid4()),
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            origin=origin,
            status=ReviewStatus.PENDING,
            created_at=at,
        )
    )


async def open_appeal_review(uow: UnitOfWork, event: UnbindAppealed, now: datetime) -> None:
    observe(uow, event, now)
    # The appeal's text stays in binding (`appeal_message` of the request, for ops and its owner).
    open_review(uow, event, ReviewOrigin.APPEAL, at=now)


async def open_dispute_review(uow: UnitOfWork, event: UnbindDisputed, now: datetime) -> None:
    observe(uow, event, now)
    # Likewise the customer's message about the dispute (`dispute` of the request, at binding).
    open_review(uow, event, ReviewOrigin.DISPUTE, at=now)


def _holder(review: Review, now: datetime) -> str | None:
    """Who holds a pending case now: nobody once the claim lapsed."""
    live = review.status == ReviewStatus.PENDING and review.claim_expires_at is not None and review.claim_expires_at > now
    return review.claimed_by if live else None


def _release(review: Review) -> None:
    review.claimed_by = review.claimed_at = review.claim_expires_at = None


def review_out(review: Review, *, score: int | None, settings: RiskSettings, now: datetime) -> ReviewOut:
    waited = int(((review.decided_at or now) - review.created_at).total_seconds())
    sla = settings.review_sla_minutes * 60
    pending = review.status == ReviewStatus.PENDING
    held = _holder(review, now) is not None
    first = None
    if review.first_reviewer and review.first_reason and review.first_decided_at:
        first = FirstDecisionOut(
            reviewer=review.first_reviewer,
            decision=ReviewOutcome.DENY,
            reason=review.first_reason,
            note=review.first_note,
            customer_message=review.first_customer_message,
            decided_at=review.first_decided_at,
        )
    return ReviewOut.model_validate(review, from_attributes=True).model_copy(
        update={
            "waiting_seconds": waited,
            "claimed_by": review.claimed_by if held else None,
            "claimed_at": review.claimed_at if held else None,
            "claim_expires_at": review.claim_expires_at if held else None,
            "sla_seconds": sla,
            "late": pending and waited > sla,
            "score": score,
            "first_decision": first,
            "awaiting_second_reviewer": pending and first is not None,
        }
    )


def _now(deps: RiskDeps) -> datetime:
    return deps.clock().astimezone(UTC)


async def _review_out(uow: UnitOfWork, deps: RiskDeps, review: Review, now: datetime) -> ReviewOut:
    return review_out(review, score=await repository.score_of(uow.session, review.request_id), settings=deps.settings, now=now)


async def list_reviews(uow: UnitOfWork, deps: RiskDeps, *, status: str | None, request_id: str | None, user_id: str | None, limit: int) -> ReviewList:
    now = _now(deps)
    rows = await repository.list_reviews(uow.session, status=status, request_id=request_id, user_id=user_id, limit=limit)
    return ReviewList(items=[review_out(review, score=score, settings=deps.settings, now=now) for review, score in rows])


async def get_review(uow: UnitOfWork, deps: RiskDeps, review_id: str) -> ReviewOut:
    review = await repository.get_review(uow.session, review_id)
    if review is None:
        raise not_found("The review")
    return await _review_out(uow, deps, review, _now(deps))


async def _pending_review(uow: UnitOfWork, review_id: str) -> Review:
    review = await repository.get_review(uow.session, review_id, for_update=True)
    if review is None:
        raise not_found("The review")
    if review.status != ReviewStatus.PENDING:
        raise conflict("review-closed", f"This review is already {review.status}.", review_status=review.status)
    return review


async def _check_four_eyes(uow: UnitOfWork, review: Review, principal: Principal) -> None:
    """Whoever denied a request (first of two, or alone) decides neither its second review nor its appeal."""
    if review.origin != ReviewOrigin.DISPUTE and principal.subject in await repository.deniers_of(uow.session, review.request_id):
        raise conflict("four-eyes", "You denied this request: another reviewer decides this case.")


def _claimed_by_other(review: Review) -> Problem:
    return conflict("review-claimed", f"{review.claimed_by} holds this review.", claimed_by=review.claimed_by, claim_expires_at=review.claim_expires_at)


async def claim_review(uow: UnitOfWork, deps: RiskDeps, principal: Principal, review_id: str) -> ReviewOut:
    """Take a case (or renew one's own claim) for UNBIND_REVIEW_CLAIM_MINUTES."""
    now = _now(deps)
    review = await _pending_review(uow, review_id)
    await _check_four_eyes(uow, review, principal)
    holder = _holder(review, now)
    if holder not in (None, principal.subject):
        raise _claimed_by_other(review)
    if holder is None:
        review.claimed_by, review.claimed_at = principal.subject, now
    review.claim_expires_at = now + timedelta(minutes=deps.settings.review_claim_minutes)
    return await _review_out(uow, deps, review, now)


async def release_review(uow: UnitOfWork, deps: RiskDeps, principal: Principal, review_id: str) -> ReviewOut:
    now = _now(deps)
    review = await _pending_review(uow, review_id)
    holder = _holder(review, now)
    if holder is None:
        raise conflict("not-claimed", "Nobody holds this review.")
    if holder != principal.subject:
        raise _claimed_by_other(review)
    _release(review)
    return await _review_out(uow, deps, review, now)


def _check_decision(origin: ReviewOrigin, body: ReviewDecisionIn, message: str | None) -> None:
    """Every decision takes a reason from the list that fits it; `other` says why in the message to the customer."""
    allowed = REVIEW_REASONS.close_dispute if origin == ReviewOrigin.DISPUTE else getattr(REVIEW_REASONS, body.decision.value)
    if body.reason not in allowed:
        what = "closing a dispute" if origin == ReviewOrigin.DISPUTE else f"the decision {body.decision.value}"
        raise Problem(422, "invalid-reason", "Reason required", f"Choose the reason for {what} from the list (`reason`).", allowed=[str(code) for code in allowed])
    if body.reason == DenialReason.OTHER and not message:
        raise Problem(422, "customer-message-required", "Message required", "With the reason `other`, tell the customer why in `customer_message`.")


async def _hand_message_to_notification(deps: RiskDeps, review: Review, message: str) -> None:
    """Give notification the reviewer's message before the decision commits: it goes out with the
    outcome once `ReviewDecided` arrives, and never travels on the topic. If notification does not
    take it, nothing is decided (503): ops try again."""
    body = {"user_id": review.user_id, "request_id": review.request_id, "message": message}
    try:
        response = await deps.notifier.put(f"/internal/v1/review-messages/{review.id}", json=body)
    except httpx.HTTPError as exc:
        log.warning("notification unreachable; the decision is not recorded", extra={"review_id": review.id, "error": type(exc).__name__})
        response = None
    if response is None or not response.is_success:
        if response is not None:
            log.warning("notification refused the customer message", extra={"review_id": review.id, "status": response.status_code})
        detail = "The message to the customer could not be handed over; nothing was decided. Try again."
        raise Problem(503, "notification-unavailable", "Message not delivered", detail, headers={"Retry-After": "2"})


async def decide_review(uow: UnitOfWork, deps: RiskDeps, principal: Principal, review_id: str, body: ReviewDecisionIn) -> ReviewOut:
    """Close a pending case, once, under the caller's claim. A deny of a request that scored at
    least UNBIND_REVIEW_SECOND_REVIEWER_SCORE is first only recorded (the case stays pending, nothing
    is emitted) until a second, different reviewer confirms or overrides it. An approval of a risk
    or appeal case goes on to verification with both methods and closes the account flag its request raised."""
    now = _now(deps)
    review = await _pending_review(uow, review_id)
    await _check_four_eyes(uow, review, principal)
    if _holder(review, now) != principal.subject:
        raise conflict("claim-required", "Claim the review before deciding it.", claimed_by=_holder(review, now))
    origin = ReviewOrigin(review.origin)
    denies_request = body.decision == ReviewOutcome.DENY and origin != ReviewOrigin.DISPUTE
    # A confirming deny without a message of its own sends the first reviewer's.
    message = body.customer_message or (review.first_customer_message if denies_request else None)
    _check_decision(origin, body, message)
    score = await repository.score_of(uow.session, review.request_id)
    if denies_request and review.first_reviewer is None and score is not None and score >= deps.settings.review_second_reviewer_score:
        review.first_reviewer, review.first_reason, review.first_note = principal.subject, body.reason, body.note or None
        review.first_customer_message, review.first_decided_at = body.customer_message, now
        _release(review)
        return review_out(review, score=score, settings=deps.settings, now=now)
    if message:
        await _hand_message_to_notification(deps, review, message)
    approved = body.decision == ReviewOutcome.APPROVE
    review.status = ReviewStatus.APPROVED if approved else ReviewStatus.DENIED
    review.reviewer = principal.subject
    review.note = body.note or None
    review.reason = body.reason
    review.customer_message = message
    review.decided_at = now
    _release(review)
    clears_request = approved and origin != ReviewOrigin.DISPUTE
    if clears_request:
        await close_flags_of_request(uow, review)
    uow.emit(
        ReviewDecided(
            request_id=review.request_id,
            binding_id=review.binding_id,
            user_id=review.user_id,
            decision=body.decision,
            reviewer=principal.subject,
            required_methods=APPROVED_AFTER_REVIEW if clears_request else [],
            review_id=review.id,
            origin=origin,
            # Only a denial's reason is the customer's to know; the others stay in risk.
            reason=DenialReason(body.reason) if denies_request else None,
            customer_message=bool(message),
        )
    )
    uow.after_commit(deps.metrics.reviews.labels(body.decision.value).inc)
    return review_out(review, score=score, settings=deps.settings, now=now)


async def close_flags_of_request(uow: UnitOfWork, review: Review) -> None:
    """Ops approved the request: the flag its assessment raised no longer counts against the
    customer. The flag keeps who closed it, when, and by which review."""
    for flag in await repository.active_flags(uow.session, review.user_id, request_id=review.request_id):
        flag.cleared_at, flag.cleared_by, flag.cleared_reason = review.decided_at, review.reviewer, f"review {review.id} approved"


async def withdraw_reviews(uow: UnitOfWork, event: BindingEvent, now: datetime) -> None:
    """A request that ended (cancelled, expired) leaves nothing to decide: its pending review is
    withdrawn, so the queue no longer shows it and an approval can no longer be given."""
    for review in await repository.pending_reviews_of(uow.session, event.request_id):
        review.status = ReviewStatus.WITHDRAWN
        review.decided_at = now
        review.note = f"withdrawn: {type(event).__name__}"
        _release(review)


async def customer_risk(uow: UnitOfWork, deps: RiskDeps, user_id: str) -> CustomerRiskOut:
    """What risk knows of a customer, for the ops case view."""
    session = uow.session
    profile = await session.get(CustomerProfile, user_id)
    devices = await repository.known_devices_of(session, user_id)
    return CustomerRiskOut(
        user_id=user_id,
        profile=ProfileOut.model_validate(profile, from_attributes=True) if profile else None,
        flags=[FlagOut.model_validate(flag, from_attributes=True) for flag in await repository.flags_of(session, user_id)],
        known_devices=[KnownDeviceOut.model_validate(device, from_attributes=True) for device in devices],
        reviews=(await list_reviews(uow, deps, status=None, request_id=None, user_id=user_id, limit=200)).items,
    )


async def list_flags(uow: UnitOfWork, active_only: bool) -> FlagList:
    return FlagList(items=[FlagOut.model_validate(flag, from_attributes=True) for flag in await repository.list_flags(uow.session, active_only)])


async def clear_flags(uow: UnitOfWork, principal: Principal, user_id: str) -> FlagList:
    flags = await repository.active_flags(uow.session, user_id)
    if not flags:
        raise not_found("An active flag for this customer")
    for flag in flags:
        flag.cleared_at = utcnow()
        flag.cleared_by = principal.subject
        flag.cleared_reason = "cleared by hand"
    return FlagList(items=[FlagOut.model_validate(flag, from_attributes=True) for flag in flags])


async def update_profile(uow: UnitOfWork, user_id: str, body: ProfileIn) -> None:
    """Profile facts pushed by the customer system (account opening, phone changes)."""
    profile = await uow.session.get(CustomerProfile, user_id)
    if profile is None:
        profile = CustomerProfile(user_id=user_id)
        uow.session.add(profile)
    for field in body.model_fields_set:
        setattr(profile, field, getattr(body, field))


async def seed_demo_data(uow: UnitOfWork) -> bool:
    """Profiles of Zhang San (a customer since 2019) and Li Si, and Zhang San's phone, whose key
    verification seeds active (seeded, it announced no DeviceEnrolled); only into an empty database."""
    if await repository.count_profiles(uow.session):
        return False
    now = utcnow()
    uow.session.add_all(
        [
            CustomerProfile(user_id="u-zhangsan", account_opened_at=datetime(2019, 3, 1, tzinfo=SHANGHAI)),
            CustomerProfile(user_id="u-lisi", account_opened_at=datetime(2023, 9, 12, tzinfo=SHANGHAI)),
            KnownDevice(user_id="u-zhangsan", device_id="d-zhangsan-phone", first_seen_at=now, enrolled_at=now),
        ]
    )
    return True
