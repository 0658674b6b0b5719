"""Business rules of the risk service: behaviour signals, a weighted score, a decision.

Score = sum of the weights of the signals present, capped at 100. Weights:
  prior unbind requests in 24 h: 20 each (at most 60) · failed verifications in 24 h: 15 each
  (at most 45) · rejected requests in 30 days: 10 each (at most 30) · request between 00:00 and
  06:00 Asia/Shanghai: 10.
Decision by thresholds (settings): below step_up -> allow [otp]; below review -> step_up
[otp, biometric]; below deny -> review; else deny.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.risk import repository
from services.risk.config import RiskSettings
from services.risk.models import Assessment, ObservedEvent
from services.risk.schemas import AssessmentOut
from shared.db import utcnow
from shared.events import Event, RiskAssessed, RiskDecision, RiskLevel, RiskReason, UnbindRequested, VerificationMethod
from shared.problems import not_found
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
        "requests_24h": await repository.count_events_since(session, event.user_id, "UnbindRequested", now - timedelta(hours=24), excluding_request=event.request_id),
        "failed_verifications_24h": await repository.count_events_since(session, event.user_id, "VerificationFailed", now - timedelta(hours=24)),
        "rejections_30d": await repository.count_events_since(session, event.user_id, "UnbindRejected", now - timedelta(days=30)),
        "night_request": now.astimezone(SHANGHAI).hour < 6,
    }


def score(signals: dict[str, int | bool]) -> tuple[int, list[RiskReason]]:
    reasons: list[RiskReason] = []
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
