"""Business rules of the binding service.

Every function works inside the caller's unit of work: it writes state and stages events with
`uow.emit`, and never commits. Transitions are guarded by the request's current status, so an
event that arrives late or twice (from another path than the inbox) cannot move a request back.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import orjson
from sqlalchemy.exc import IntegrityError

from services.binding import repository
from services.binding.config import BindingSettings
from services.binding.models import (
    OPEN_REQUEST_STATUSES,
    Binding,
    BindingStatus,
    CreditAccount,
    RepaymentAccount,
    RequestStatus,
    TimelineEntry,
    UnbindRequest,
)
from services.binding.schemas import (
    BindingList,
    BindingOut,
    CreditAccountOut,
    RepaymentAccountOut,
    RiskOut,
    TimelineEntryOut,
    UnbindRequestIn,
    UnbindRequestOut,
    VerificationOut,
)
from shared.auth import Principal
from shared.db import utcnow
from shared.events import (
    ReviewDecided,
    ReviewOutcome,
    RiskAssessed,
    RiskDecision,
    UnbindCompleted,
    UnbindRejected,
    UnbindRequested,
    VerificationFailed,
    VerificationRequested,
    Verified,
)
from shared.masking import mask_account_number
from shared.problems import Problem, conflict, not_found
from shared.uow import UnitOfWork

FOLLOW_UP_AFTER_UNBIND = [
    "check_mortgage_repayment_status",
    "repay_next_instalment_by_other_means",
    "ask_lender_to_adjust_repayment_plan",
]


def binding_out(binding: Binding, repayment: RepaymentAccount, credit: CreditAccount) -> BindingOut:
    return BindingOut(
        id=binding.id,
        status=binding.status,
        auto_debit=binding.auto_debit,
        credit_limit_contribution=binding.credit_limit_contribution,
        credit_account=CreditAccountOut(id=credit.id, credit_limit=credit.credit_limit),
        repayment_account=RepaymentAccountOut(
            id=repayment.id,
            lender=repayment.lender,
            account_number=mask_account_number(repayment.account_number),
            monthly_instalment=repayment.monthly_instalment,
            due_day=repayment.due_day,
        ),
        created_at=binding.created_at,
    )


async def list_bindings(uow: UnitOfWork, principal: Principal) -> BindingList:
    return BindingList(items=[binding_out(*row) for row in await repository.list_bindings(uow.session, principal.subject)])


async def get_binding(uow: UnitOfWork, principal: Principal, binding_id: str) -> BindingOut:
    view = await repository.get_binding_view(uow.session, binding_id)
    if view is None or view[0].user_id != principal.subject:
        raise not_found("The binding")
    return binding_out(*view)


def impact_hash(binding: Binding, repayment: RepaymentAccount, credit: CreditAccount) -> str:
    """Fingerprint of what the customer was shown before unbinding, recorded with the request."""
    facts = {
        "binding_id": binding.id,
        "auto_debit": binding.auto_debit,
        "credit_limit_before": credit.credit_limit,
        "credit_limit_after": credit.credit_limit - binding.credit_limit_contribution,
        "monthly_instalment": repayment.monthly_instalment,
        "due_day": repayment.due_day,
    }
    return hashlib.sha256(orjson.dumps(facts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _fingerprint(binding_id: str, body: UnbindRequestIn) -> str:
    return hashlib.sha256(orjson.dumps({"binding_id": binding_id, **body.model_dump(mode="json")}, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def request_unbind(
    uow: UnitOfWork, settings: BindingSettings, principal: Principal, binding_id: str, body: UnbindRequestIn, idempotency_key: str, channel: str
) -> tuple[UnbindRequestOut, bool]:
    """Open an unbind request; returns (request, created). A repeated Idempotency-Key with the
    same body returns the original request; with another body it is refused."""
    session = uow.session
    fingerprint = _fingerprint(binding_id, body)
    if (existing := await _replay(uow, principal, idempotency_key, fingerprint)) is not None:
        return existing, False

    view = await repository.get_binding_view(session, binding_id)
    if view is None or view[0].user_id != principal.subject:
        raise not_found("The binding")
    binding, repayment, credit = view
    if not await repository.claim_binding_for_unbind(session, binding_id):
        # A concurrent request with the same key may have won the race: answer as a replay.
        if (existing := await _replay(uow, principal, idempotency_key, fingerprint)) is not None:
            return existing, False
        await session.refresh(binding)
        if binding.status == BindingStatus.UNBOUND:
            raise conflict("binding-unbound", "This binding is already unbound.")
        open_request = await repository.open_request_for_binding(session, binding_id)
        raise conflict("unbind-in-progress", "An unbind request for this binding is already open.", request_id=open_request.id if open_request else None)

    now = utcnow()
    request = UnbindRequest(
        id=_new_id(),
        binding_id=binding_id,
        user_id=principal.subject,
        status=RequestStatus.PENDING_RISK,
        reason=body.reason,
        note=body.note,
        device_id=body.device_id,
        channel=channel,
        impact_hash=impact_hash(binding, repayment, credit),
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        expires_at=now + timedelta(seconds=settings.unbind_request_ttl_seconds),
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise conflict("concurrent-request", "Another request with this Idempotency-Key is being processed; retry it.") from exc
    _record(uow, request, "UnbindRequested", actor=principal.subject, detail=f"reason: {body.reason}")
    uow.emit(
        UnbindRequested(
            request_id=request.id,
            binding_id=binding_id,
            user_id=principal.subject,
            reason=body.reason,
            impact_hash=request.impact_hash,
            device_id=body.device_id,
            channel=channel,
        )
    )
    return await request_out(uow, request), True


async def _replay(uow: UnitOfWork, principal: Principal, key: str, fingerprint: str) -> UnbindRequestOut | None:
    existing = await repository.get_request_by_idempotency_key(uow.session, principal.subject, key)
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise Problem(422, "idempotency-key-reused", "Idempotency-Key reused", "This Idempotency-Key was used for a different request.")
    return await request_out(uow, existing)


async def get_request(uow: UnitOfWork, principal: Principal, request_id: str) -> UnbindRequestOut:
    request = await repository.get_request(uow.session, request_id)
    if request is None or (request.user_id != principal.subject and not principal.has_role("ops")):
        raise not_found("The unbind request")
    return await request_out(uow, request)


async def request_out(uow: UnitOfWork, request: UnbindRequest) -> UnbindRequestOut:
    entries = await repository.timeline(uow.session, request.id)
    return UnbindRequestOut(
        id=request.id,
        binding_id=request.binding_id,
        status=request.status,
        reason=request.reason,
        note=request.note,
        created_at=request.created_at,
        updated_at=request.updated_at,
        expires_at=request.expires_at,
        risk=RiskOut(decision=request.risk_decision, reasons=[reason["detail"] for reason in request.risk_reasons or []]) if request.risk_decision else None,
        verification=VerificationOut(id=request.verification_id, methods=request.verification_methods or [], expires_at=request.verification_expires_at)
        if request.verification_id
        else None,
        outcome_reason=request.outcome_reason,
        follow_up=request.follow_up or [],
        timeline=[TimelineEntryOut(status=e.status, event_type=e.event_type, actor=e.actor, detail=e.detail, at=e.at) for e in entries],
    )


async def apply_risk_assessment(uow: UnitOfWork, event: RiskAssessed) -> None:
    request = await _request_in(uow, event.request_id, RequestStatus.PENDING_RISK)
    if request is None:
        return
    request.risk_decision = event.decision
    request.risk_score = event.score
    request.risk_reasons = [reason.model_dump() for reason in event.reasons]
    if event.decision == RiskDecision.DENY:
        await _reject(uow, request, "risk_denied", actor="risk")
    elif event.decision == RiskDecision.REVIEW:
        _move(uow, request, RequestStatus.UNDER_REVIEW, "RiskAssessed", actor="risk", detail=f"score {event.score}: manual review")
    else:
        _move(uow, request, RequestStatus.PENDING_VERIFICATION, "RiskAssessed", actor="risk", detail=f"score {event.score}: {event.decision}")


async def apply_review_decision(uow: UnitOfWork, event: ReviewDecided) -> None:
    request = await _request_in(uow, event.request_id, RequestStatus.UNDER_REVIEW)
    if request is None:
        return
    if event.decision == ReviewOutcome.DENY:
        await _reject(uow, request, "review_denied", actor=event.reviewer)
    else:
        _move(uow, request, RequestStatus.PENDING_VERIFICATION, "ReviewDecided", actor=event.reviewer, detail="approved after review")


async def record_verification_issued(uow: UnitOfWork, event: VerificationRequested) -> None:
    request = await _request_in(uow, event.request_id, RequestStatus.PENDING_VERIFICATION)
    if request is None:
        return
    request.verification_id = event.verification_id
    request.verification_methods = list(event.methods)
    request.verification_expires_at = event.expires_at
    _record(uow, request, "VerificationRequested", actor="verification", detail="methods: " + ", ".join(event.methods))


async def complete_unbind(uow: UnitOfWork, event: Verified) -> None:
    request = await _request_in(uow, event.request_id, RequestStatus.PENDING_VERIFICATION)
    if request is None or (request.verification_id and request.verification_id != event.verification_id):
        return
    binding = await repository.get_binding(uow.session, request.binding_id, for_update=True)
    assert binding is not None, "a request always has its binding"
    credit = await repository.get_credit_account(uow.session, binding.credit_account_id, for_update=True)
    assert credit is not None, "a binding always has its credit account"
    limit_before = credit.credit_limit
    credit.credit_limit = max(0, limit_before - binding.credit_limit_contribution)
    mandates_cancelled = 1 if binding.auto_debit else 0
    binding.auto_debit = False
    binding.status = BindingStatus.UNBOUND
    request.follow_up = list(FOLLOW_UP_AFTER_UNBIND)
    _move(uow, request, RequestStatus.COMPLETED, "UnbindCompleted", actor="verification", detail=f"{mandates_cancelled} mandate(s) cancelled")
    uow.emit(
        UnbindCompleted(
            request_id=request.id,
            binding_id=binding.id,
            user_id=request.user_id,
            mandates_cancelled=mandates_cancelled,
            credit_limit_before=limit_before,
            credit_limit_after=credit.credit_limit,
            follow_up=request.follow_up,
        )
    )


async def fail_verification(uow: UnitOfWork, event: VerificationFailed) -> None:
    request = await _request_in(uow, event.request_id, RequestStatus.PENDING_VERIFICATION)
    if request is not None:
        await _reject(uow, request, f"verification_failed:{event.reason}", actor="verification")


async def _request_in(uow: UnitOfWork, request_id: str, status: RequestStatus) -> UnbindRequest | None:
    """The request, locked, if it is in `status`; None for a stale or out-of-order event."""
    request = await repository.get_request(uow.session, request_id, for_update=True)
    if request is None or request.status != status:
        return None
    return request


async def _reject(uow: UnitOfWork, request: UnbindRequest, reason: str, *, actor: str) -> None:
    request.outcome_reason = reason
    _move(uow, request, RequestStatus.REJECTED, "UnbindRejected", actor=actor, detail=reason)
    await repository.set_binding_status(uow.session, request.binding_id, BindingStatus.ACTIVE)
    uow.emit(UnbindRejected(request_id=request.id, binding_id=request.binding_id, user_id=request.user_id, reason=reason))


def _move(uow: UnitOfWork, request: UnbindRequest, status: RequestStatus, event_type: str, *, actor: str, detail: str | None = None) -> None:
    assert request.status in OPEN_REQUEST_STATUSES, f"request {request.id} is already {request.status}"
    request.status = status
    request.updated_at = utcnow()
    _record(uow, request, event_type, actor=actor, detail=detail)


def _record(uow: UnitOfWork, request: UnbindRequest, event_type: str, *, actor: str, detail: str | None = None) -> None:
    uow.session.add(TimelineEntry(request_id=request.id, status=request.status, event_type=event_type, actor=actor, detail=detail, at=utcnow()))


async def seed_demo_data(uow: UnitOfWork) -> bool:
    """Zhang San and Li Si, each with one active mortgage binding; only into an empty database."""
    if await repository.count_bindings(uow.session):
        return False
    for user_id, suffix, account_number, instalment, due_day in (
        ("u-zhangsan", "zhangsan", "6222021234564821", 6500, 15),
        ("u-lisi", "lisi", "6217001234567733", 4200, 5),
    ):
        uow.session.add_all(
            [
                CreditAccount(id=f"ca-{suffix}", user_id=user_id, credit_limit=30000),
                RepaymentAccount(id=f"ra-{suffix}", user_id=user_id, lender="Example Bank", account_number=account_number, monthly_instalment=instalment, due_day=due_day),
            ]
        )
        await uow.session.flush()
        uow.session.add(
            Binding(
                id=f"b-{suffix}-mortgage",
                user_id=user_id,
                credit_account_id=f"ca-{suffix}",
                repayment_account_id=f"ra-{suffix}",
                status=BindingStatus.ACTIVE,
                auto_debit=True,
                credit_limit_contribution=10000,
            )
        )
    return True


def _new_id() -> str:
    return str(uuid.uuid4())
