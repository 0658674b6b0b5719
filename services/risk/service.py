"""Business rules of the risk service: behaviour signals, a weighted score, a decision.

Score = sum of the weights of the signals present, capped at 100. Weights:
  request from a device this customer never unbound from before: 40 ·
  prior unbind requests in 24 h: 20 each (at most 60) · failed verifications in 24 h: 15 each
  (at most 45) · rejected requests in 30 days: 10 each (at most 30) · request between 00:00 and
  06:00 Asia/Shanghai: 10.
Decision by thresholds (settings): below step_up -> allow [otp]; below review -> step_up
[otp, biometric]; below deny -> review; else deny.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.risk import repository
from services.risk.config import RiskSettings
from services.risk.models import Assessment, KnownDevice, ObservedEvent, Review, ReviewStatus
from services.risk.schemas import AssessmentOut, ReviewList, ReviewOut
from shared.auth import Principal
from shared.db import utcnow
from shared.events import Event, ReviewDecided, ReviewOutcome, RiskAssessed, RiskDecision, RiskLevel, RiskReason, UnbindAppealed, UnbindRequested, VerificationMethod
from shared.problems import conflict, not_found
from shared.uow import UnitOfWork

SHANGHAI = ZoneInfo("Asia/Shanghai")
REQUIRED_METHODS = {
    RiskDecision.ALLOW: [VerificationMethod.OTP],
    RiskDecision.STEP_UP: [VerificationMethod.OTP, VerificationMethod.BIOMETRIC],
    RiskDecision.REVIEW: [],
    RiskDecision.DENY: [],
}


def observe(uow: UnitOfWork, event: Event, at: datetime | None = None) -> None:
    """Keep an event about a customer as a behaviour signal."""
    uow.session.add(ObservedEvent(user_id=event.user_id, event_type=type(event).__name__, request_id=event.request_id, occurred_at=at or utcnow()))


async def collect_signals(uow: UnitOfWork, event: UnbindRequested, now: datetime) -> dict[str, int | bool]:
    session = uow.session
    return {
        "new_device": bool(event.device_id) and await session.get(KnownDevice, (event.user_id, event.device_id)) is None,
        "requests_24h": await repository.count_events_since(session, event.user_id, "UnbindRequested", now - timedelta(hours=24), excluding_request=event.request_id),
        "failed_verifications_24h": await repository.count_events_since(session, event.user_id, "VerificationFailed", now - timedelta(hours=24)),
        "rejections_30d": await repository.count_events_since(session, event.user_id, "UnbindRejected", now - timedelta(days=30)),
        "night_request": now.astimezone(SHANGHAI).hour < 6,
    }


def score(signals: dict[str, int | bool]) -> tuple[int, list[RiskReason]]:
    reasons: list[RiskReason] = []
    if signals.get("new_device"):
        reasons.append(RiskReason(code="new_device", weight=40, detail="requested from a device not seen before for this customer"))
    if count := int(signals["requests_24h"]):
        reasons.append(RiskReason(code="repeated_requests", weight=min(60, 20 * count), detail=f"{count} earlier unbind request(s) in the last 24 hours"))
    if count := int(signals["failed_verifications_24h"]):
        reasons.append(RiskReason(code="failed_verifications", weight=min(45, 15 * count), detail=f"{count} failed verification(s) in the last 24 hours"))
    if count := int(signals["rejections_30d"]):
        reasons.append(RiskReason(code="earlier_rejections", weight=min(30, 10 * count), detail=f"{count} rejected request(s) in the last 30 days"))
    if signals["night_request"]:
        reasons.append(RiskReason(code="night_request", weight=10, detail="requested between 00:00 and 06:00 (Asia/Shanghai)"))
    return min(100, sum(reason.weight for reason in reasons)), reasons


def decide(settings: RiskSettings, total: int) -> tuple[RiskDecision, RiskLevel]:
    if total >= settings.threshold_deny:
        return RiskDecision.DENY, RiskLevel.HIGHEST
    if total >= settings.threshold_review:
        return RiskDecision.REVIEW, RiskLevel.HIGHEST
    if total >= settings.threshold_step_up:
        return RiskDecision.STEP_UP, RiskLevel.ELEVATED
    return RiskDecision.ALLOW, RiskLevel.NORMAL


async def assess(uow: UnitOfWork, settings: RiskSettings, event: UnbindRequested) -> None:
    if await repository.get_assessment(uow.session, event.request_id) is not None:
        return
    now = utcnow()
    signals = await collect_signals(uow, event, now)
    observe(uow, event, now)
    if signals["new_device"]:
        uow.session.add(KnownDevice(user_id=event.user_id, device_id=event.device_id, first_seen_at=now))
    total, reasons = score(signals)
    decision, level = decide(settings, total)
    methods = REQUIRED_METHODS[decision]
    uow.session.add(
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
            created_at=now,
        )
    )
    if decision == RiskDecision.REVIEW:
        open_review(uow, event, "risk")
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


async def get_assessment(uow: UnitOfWork, request_id: str) -> AssessmentOut:
    assessment = await repository.get_assessment(uow.session, request_id)
    if assessment is None:
        raise not_found("The assessment")
    return AssessmentOut.model_validate(assessment, from_attributes=True)


def open_review(uow: UnitOfWork, event: Event, origin: str, message: str | None = None) -> None:
    uow.session.add(
        Review(
            id=str(uuid.uuid4()),
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            origin=origin,
            status=ReviewStatus.PENDING,
            message=message,
            created_at=utcnow(),
        )
    )


async def open_appeal_review(uow: UnitOfWork, event: UnbindAppealed) -> None:
    observe(uow, event)
    open_review(uow, event, "appeal", event.message)


async def list_reviews(uow: UnitOfWork, status: str | None, limit: int) -> ReviewList:
    return ReviewList(items=[ReviewOut.model_validate(review, from_attributes=True) for review in await repository.list_reviews(uow.session, status, limit)])


async def decide_review(uow: UnitOfWork, principal: Principal, review_id: str, decision: ReviewOutcome, note: str) -> ReviewOut:
    """Close a pending review; an approval sends the request on to verification by SMS code."""
    review = await repository.get_review(uow.session, review_id, for_update=True)
    if review is None:
        raise not_found("The review")
    if review.status != ReviewStatus.PENDING:
        raise conflict("review-closed", f"This review is already {review.status}.", review_status=review.status)
    review.status = ReviewStatus.APPROVED if decision == ReviewOutcome.APPROVE else ReviewStatus.DENIED
    review.reviewer = principal.subject
    review.note = note or None
    review.decided_at = utcnow()
    uow.emit(
        ReviewDecided(
            request_id=review.request_id,
            binding_id=review.binding_id,
            user_id=review.user_id,
            decision=decision,
            reviewer=principal.subject,
            note=note,
            required_methods=[VerificationMethod.OTP] if decision == ReviewOutcome.APPROVE else [],
        )
    )
    return ReviewOut.model_validate(review, from_attributes=True)
