"""Business rules of the binding service.

Every function works inside the caller's unit of work: it writes state and stages events with
`uow.emit`, and never commits. Transitions are guarded by the request's current status, so an
event that arrives late or twice (from another path than the inbox) cannot move a request back,
and every transition is written to the append-only audit log.

Credit limit rule: binding a mortgage repayment account raises the credit limit by 1.5 times the
monthly instalment, rounded down to 100 CNY and capped at 20,000 CNY. A customer's bindings together
raise it by at most `max_total_limit_uplift`: past that, a binding still binds (auto-debit and all)
but grants only what is left of the cap, possibly nothing. The amount granted is kept on the
binding and withdrawn, exactly, when the binding is unbound.

One account, one binding: account numbers are normalised (shared.account_numbers) before they are
stored or compared, and a number is held, across all customers, until its binding is unbound.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from services.binding import agreements, repository, texts
from services.binding.config import BindingSettings
from services.binding.models import (
    OPEN_REQUEST_STATUSES,
    ActorType,
    AuditEntry,
    Benefit,
    Binding,
    BindingStatus,
    CreditAccount,
    Instalment,
    Mandate,
    MandateStatus,
    RepaymentAccount,
    RequestStatus,
    UnbindRequest,
)
from services.binding.schemas import (
    AccountReport,
    AgreementOut,
    AgreementRefOut,
    AuditEntryOut,
    BenefitOut,
    BindingIn,
    BindingList,
    BindingOut,
    BlockerOut,
    CreditAccountOut,
    DisputeOut,
    ImpactOut,
    InstalmentOut,
    MandateOut,
    RepaymentAccountOut,
    RepaymentIn,
    RequestPage,
    RiskOut,
    TimelineEntryOut,
    UnbindRequestIn,
    UnbindRequestOut,
    VerificationOut,
)
from shared.auth import Principal
from shared.cloudevents import EventRejected
from shared.db import utcnow
from shared.events import (
    BindingCreated,
    BindingEvent,
    DisputeReason,
    ReviewDecided,
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
from shared.logging import correlation_id, redact
from shared.masking import mask_account_number
from shared.pagination import decode_cursor, encode_cursor
from shared.population import SyntheticCustomer
from shared.problems import Problem, conflict, not_found
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DUE_SOON_DAYS = 3
LIMIT_UPLIFT_CAP = 20_000
FOLLOW_UP_AFTER_UNBIND = [
    "check_repayment_status_at_lender",
    "ask_lender_to_adjust_repayment_plan_if_needed",
    "dispute_from_the_request_page_within_7_days",
]
# A completed unbind can be disputed, once, for this long (the completion notice says 7 days).
DISPUTE_WINDOW = timedelta(days=7)
# Blockers the customer may accept by naming them in `acknowledged`; the others always refuse.
ACKNOWLEDGEABLE = frozenset({"INSTALMENT_DUE_SOON"})


def credit_limit_contribution(monthly_instalment: int) -> int:
    """The documented rule: 1.5 x the instalment, down to 100 CNY, at most 20,000 CNY."""
    return min(LIMIT_UPLIFT_CAP, monthly_instalment * 3 // 2 // 100 * 100)


def today() -> date:
    return datetime.now(SHANGHAI).date()


def _new_id() -> str:
    return str(uuid.uuid4())


# --- bindings ------------------------------------------------------------------------------


def binding_out(binding: Binding, repayment: RepaymentAccount, credit: CreditAccount, auto_debit: bool) -> BindingOut:
    return BindingOut(
        id=binding.id,
        status=binding.status,
        auto_debit=auto_debit,
        credit_limit_contribution=binding.credit_limit_contribution,
        credit_account=CreditAccountOut(id=credit.id, credit_limit=credit.credit_limit),
        agreement_version=binding.agreement_version,
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
    views = await repository.list_bindings(uow.session, principal.subject)
    with_auto_debit = await repository.auto_debit_on(uow.session, [view[0].id for view in views])
    return BindingList(items=[binding_out(*view, auto_debit=view[0].id in with_auto_debit) for view in views])


async def _owned_view(uow: UnitOfWork, principal: Principal, binding_id: str) -> repository.BindingView:
    """The binding if the principal may see it: its owner, or ops. Anyone else gets 404."""
    view = await repository.get_binding_view(uow.session, binding_id)
    if view is None or (view[0].user_id != principal.subject and not principal.has_role("ops")):
        raise not_found("The binding")
    return view


async def get_binding(uow: UnitOfWork, principal: Principal, binding_id: str) -> BindingOut:
    binding, repayment, credit = await _owned_view(uow, principal, binding_id)
    return binding_out(binding, repayment, credit, bool(await repository.active_mandates(uow.session, binding.id)))


def next_due_date(due_day: int, on: date) -> date:
    """The first due date on or after `on` for an instalment due on `due_day` of each month."""
    day = min(due_day, 28)
    candidate = on.replace(day=day)
    if candidate < on:
        candidate = (candidate.replace(day=1) + timedelta(days=32)).replace(day=day)
    return candidate


def _already_bound() -> Problem:
    return conflict("already-bound", "This repayment account is already bound.")


async def create_binding(uow: UnitOfWork, settings: BindingSettings, principal: Principal, body: BindingIn) -> BindingOut:
    """Bind a repayment account (its number normalised by the schema): grant the credit limit by the
    rule within the customer's cap, set up auto-debit, record the current instalment, emit BindingCreated."""
    session = uow.session
    # Locked: a customer's bindings are created one at a time, so the cap below holds under races.
    credit = await repository.credit_account_of(session, principal.subject, for_update=True)
    if credit is None:
        raise Problem(422, "no-credit-account", "No credit account", "Open a credit account before binding a repayment account.")
    agreements.require_current(body.agreement_version)
    if await repository.account_number_held(session, body.account_number):
        raise _already_bound()
    left = max(0, settings.max_total_limit_uplift - await repository.limit_uplift_held(session, principal.subject))
    contribution = min(credit_limit_contribution(body.monthly_instalment), left)
    limit_before = credit.credit_limit
    credit.credit_limit = limit_before + contribution
    repayment = RepaymentAccount(
        id=_new_id(), user_id=principal.subject, lender=body.lender, account_number=body.account_number, monthly_instalment=body.monthly_instalment, due_day=body.due_day
    )
    binding = Binding(
        id=f"b-{uuid.uuid4().hex[:12]}",
        user_id=principal.subject,
        credit_account_id=credit.id,
        repayment_account_id=repayment.id,
        status=BindingStatus.ACTIVE,
        credit_limit_contribution=contribution,
        agreement_version=body.agreement_version,
    )
    due = next_due_date(body.due_day, today())
    session.add(repayment)
    try:
        await session.flush()
    except IntegrityError as exc:  # another customer bound the same number since the check above
        raise _already_bound() from exc
    session.add(binding)
    await session.flush()
    session.add(Instalment(id=_new_id(), repayment_account_id=repayment.id, period=due.strftime("%Y-%m"), amount=body.monthly_instalment, due_date=due))
    if contribution:
        session.add(Benefit(id=_new_id(), binding_id=binding.id, code="limit_uplift", value=contribution))
    if body.auto_debit:
        session.add(Mandate(id=_new_id(), binding_id=binding.id, kind="auto_debit", status=MandateStatus.ACTIVE))
    uow.emit(
        BindingCreated(
            request_id=correlation_id.get() or _new_id(),
            binding_id=binding.id,
            user_id=principal.subject,
            account_last4=body.account_number[-4:],
            monthly_instalment=body.monthly_instalment,
            auto_debit=body.auto_debit,
            credit_limit_before=limit_before,
            credit_limit_after=credit.credit_limit,
        )
    )
    return binding_out(binding, repayment, credit, body.auto_debit)


def _fingerprint(binding_id: str, body: BaseModel) -> str:
    """What an Idempotency-Key stands for: the binding and the request body."""
    return hashlib.sha256(orjson.dumps({"binding_id": binding_id, **body.model_dump(mode="json")}, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _key_reused() -> Problem:
    return Problem(422, "idempotency-key-reused", "Idempotency-Key reused", "This Idempotency-Key was used for a different request.")


async def repay_current_instalment(uow: UnitOfWork, principal: Principal, binding_id: str, body: RepaymentIn, idempotency_key: str) -> tuple[InstalmentOut, bool]:
    """Repay the oldest unpaid instalment by hand; returns (instalment, paid now). The same
    Idempotency-Key with the same request returns the instalment it paid instead of paying another;
    with another request (amount, binding) it is refused."""
    binding, repayment, _ = await _owned_view(uow, principal, binding_id)
    if binding.user_id != principal.subject:
        raise not_found("The binding")
    fingerprint = _fingerprint(binding_id, body)
    # Locked before the key is looked up: a concurrent payment with this key has then committed,
    # and is replayed, instead of paying the next instalment too.
    unpaid = await repository.unpaid_instalments(uow.session, repayment.id, for_update=True)
    if (paid := await repository.instalment_paid_with_key(uow.session, principal.subject, idempotency_key)) is not None:
        if paid.payment_fingerprint != fingerprint:
            raise _key_reused()
        return instalment_out(paid), False
    if not unpaid:
        raise conflict("nothing-due", "No instalment is waiting to be paid.")
    instalment = unpaid[0]
    if body.amount != instalment.amount:
        raise Problem(422, "amount-mismatch", "Amount does not match", f"The instalment for {instalment.period} is {instalment.amount} CNY.", amount_due=instalment.amount)
    instalment.paid_at = utcnow()
    instalment.paid_by = "manual"
    instalment.payment_key = idempotency_key
    instalment.payment_fingerprint = fingerprint
    return instalment_out(instalment), True


def instalment_status(instalment: Instalment, on: date) -> str:
    if instalment.paid_at is not None:
        return "paid"
    return "overdue" if instalment.due_date < on else "unpaid"


def instalment_out(instalment: Instalment, on: date | None = None) -> InstalmentOut:
    return InstalmentOut(
        period=instalment.period,
        amount=instalment.amount,
        due_date=instalment.due_date,
        status=instalment_status(instalment, on or today()),
        paid_at=instalment.paid_at,
        paid_by=instalment.paid_by,
    )


# --- impact and report ---------------------------------------------------------------------


async def assess_impact(uow: UnitOfWork, binding: Binding, repayment: RepaymentAccount, credit: CreditAccount, locale: str) -> ImpactOut:
    session = uow.session
    on = today()
    auto_debit = bool(await repository.active_mandates(session, binding.id))
    unpaid = await repository.unpaid_instalments(session, repayment.id)
    recent = await repository.instalments(session, repayment.id, limit=1)
    current = unpaid[0] if unpaid else (recent[0] if recent else None)
    overdue = [instalment for instalment in unpaid if instalment.due_date < on]

    blockers: list[tuple[str, dict[str, object]]] = []
    if overdue:
        blockers.append(("OVERDUE", {"amount": overdue[0].amount, "due_date": overdue[0].due_date.isoformat()}))
    if auto_debit and current is not None and current.paid_at is None and on <= current.due_date <= on + timedelta(days=DUE_SOON_DAYS):
        blockers.append(("INSTALMENT_DUE_SOON", {"amount": current.amount, "due_date": current.due_date.isoformat()}))
    if binding.status == BindingStatus.UNBINDING or await repository.open_request_for_binding(session, binding.id):
        blockers.append(("UNBIND_IN_PROGRESS", {}))

    lost = [] if binding.status == BindingStatus.UNBOUND else await repository.benefits(session, binding.id)
    limit_after = credit.credit_limit - (0 if binding.status == BindingStatus.UNBOUND else binding.credit_limit_contribution)
    effect = texts.text("credit.effect", locale) + (" " + texts.text("credit.effect.overdue", locale) if overdue else "")
    facts = {
        "binding_id": binding.id,
        "status": binding.status,
        "auto_debit": auto_debit,
        "current_instalment": [current.period, current.amount, current.due_date.isoformat(), instalment_status(current, on)] if current else None,
        "benefits": [[benefit.code, benefit.value] for benefit in lost],
        "credit_limit_before": credit.credit_limit,
        "credit_limit_after": limit_after,
        "blockers": [code for code, _ in blockers],
        "agreement_version": binding.agreement_version,
    }
    return ImpactOut(
        binding_id=binding.id,
        locale=locale,
        assessed_at=utcnow(),
        credit_record_effect=effect,
        current_instalment=instalment_out(current, on) if current else None,
        auto_debit=auto_debit,
        benefits_lost=[BenefitOut(code=b.code, description=texts.text(f"benefit.{b.code}", locale, value=b.value)) for b in lost],
        credit_limit_before=credit.credit_limit,
        credit_limit_after=limit_after,
        blockers=[BlockerOut(code=code, message=texts.text(f"blocker.{code}", locale, **values), acknowledgeable=code in ACKNOWLEDGEABLE) for code, values in blockers],
        agreement=agreement_ref(binding.agreement_version, locale),
        impact_hash=hashlib.sha256(orjson.dumps(facts, option=orjson.OPT_SORT_KEYS)).hexdigest(),
    )


def agreement_ref(version: str, locale: str) -> AgreementRefOut:
    agreement = agreements.agreement(version, locale)
    assert agreement is not None, "a binding records a published version"
    return AgreementRefOut(version=version, title=agreement.title, href=f"/v1/agreements/{version}")


def get_agreement(version: str, locale: str) -> AgreementOut:
    agreement = agreements.agreement(version, locale)
    if agreement is None:
        raise Problem(404, "not-found", "Not found", f"There is no version {version} of the agreement; the current one is {agreements.CURRENT}.")
    return AgreementOut(
        version=version,
        locale=locale,
        title=agreement.title,
        text=agreement.text,
        in_force_from=agreements.VERSIONS[version],
        current=version == agreements.CURRENT,
        current_version=agreements.CURRENT,
    )


async def get_impact(uow: UnitOfWork, principal: Principal, binding_id: str, locale: str) -> ImpactOut:
    return await assess_impact(uow, *(await _owned_view(uow, principal, binding_id)), locale)


async def account_report(uow: UnitOfWork, principal: Principal, binding_id: str, locale: str) -> AccountReport:
    binding, repayment, credit = await _owned_view(uow, principal, binding_id)
    impact = await assess_impact(uow, binding, repayment, credit, locale)
    on = today()
    return AccountReport(
        generated_at=utcnow(),
        locale=locale,
        user_id=binding.user_id,
        binding=binding_out(binding, repayment, credit, impact.auto_debit),
        mandates=[MandateOut.model_validate(mandate, from_attributes=True) for mandate in await repository.mandates(uow.session, binding.id)],
        instalments=[instalment_out(instalment, on) for instalment in await repository.instalments(uow.session, repayment.id)],
        impact=impact,
    )


# --- unbind requests -----------------------------------------------------------------------


async def request_unbind(
    uow: UnitOfWork,
    settings: BindingSettings,
    principal: Principal,
    binding_id: str,
    body: UnbindRequestIn,
    idempotency_key: str,
    channel: str,
    client_ip: str | None = None,
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
    if binding.status == BindingStatus.UNBOUND:
        raise conflict("binding-unbound", "This binding is already unbound.")
    impact = await assess_impact(uow, binding, repayment, credit, texts.DEFAULT_LOCALE)
    codes = {blocker.code for blocker in impact.blockers}
    if "UNBIND_IN_PROGRESS" in codes:
        return await _in_progress(uow, principal, binding_id, idempotency_key, fingerprint), False
    if "OVERDUE" in codes:
        raise conflict("overdue", "An instalment is overdue: settle it before unbinding.", blockers=["OVERDUE"])
    if missing := sorted(codes & ACKNOWLEDGEABLE - set(body.acknowledged)):
        raise Problem(422, "blockers-not-acknowledged", "Blockers not acknowledged", "Acknowledge each blocker by its code in `acknowledged`.", missing=missing)
    if body.impact_hash and body.impact_hash != impact.impact_hash:
        raise conflict("impact-changed", "The impact changed since it was shown; review it again.", impact_hash=impact.impact_hash)
    if not await repository.claim_binding_for_unbind(session, binding_id):
        return await _in_progress(uow, principal, binding_id, idempotency_key, fingerprint), False

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
        impact_hash=impact.impact_hash,
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
    accepted_blockers = sorted(codes & set(body.acknowledged))
    acknowledged = f"; acknowledged {', '.join(accepted_blockers)}" if accepted_blockers else ""
    _audit(uow, request, None, "UnbindRequested", principal.subject, ActorType.CUSTOMER, f"reason {body.reason}{acknowledged}")
    uow.emit(
        UnbindRequested(
            request_id=request.id,
            binding_id=binding_id,
            user_id=principal.subject,
            reason=body.reason,
            impact_hash=request.impact_hash,
            device_id=body.device_id,
            channel=channel,
            acknowledged=accepted_blockers,
            client_ip=client_ip,
        )
    )
    return await request_out(uow, request), True


async def _in_progress(uow: UnitOfWork, principal: Principal, binding_id: str, key: str, fingerprint: str) -> UnbindRequestOut:
    """The binding has an open request: if a concurrent call with this same key opened it, answer
    as its replay; otherwise refuse with 409."""
    if (existing := await _replay(uow, principal, key, fingerprint)) is not None:
        return existing
    open_request = await repository.open_request_for_binding(uow.session, binding_id)
    raise conflict("unbind-in-progress", "An unbind request for this binding is already open.", request_id=open_request.id if open_request else None)


async def _replay(uow: UnitOfWork, principal: Principal, key: str, fingerprint: str) -> UnbindRequestOut | None:
    existing = await repository.get_request_by_idempotency_key(uow.session, principal.subject, key)
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise _key_reused()
    return await request_out(uow, existing)


async def _visible_request(uow: UnitOfWork, principal: Principal, request_id: str, *, for_update: bool = False) -> UnbindRequest:
    request = await repository.get_request(uow.session, request_id, for_update=for_update)
    if request is None or (request.user_id != principal.subject and not principal.has_role("ops")):
        raise not_found("The unbind request")
    return request


async def _own_request(uow: UnitOfWork, principal: Principal, request_id: str) -> UnbindRequest:
    request = await repository.get_request(uow.session, request_id, for_update=True)
    if request is None or request.user_id != principal.subject:
        raise not_found("The unbind request")
    return request


async def get_request(uow: UnitOfWork, principal: Principal, request_id: str) -> UnbindRequestOut:
    return await request_out(uow, await _visible_request(uow, principal, request_id))


async def request_out(uow: UnitOfWork, request: UnbindRequest) -> UnbindRequestOut:
    entries = await repository.audit_entries(uow.session, request.id)
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
        # Masked like every number in a response: the customer may have typed a phone or account number.
        appeal_message=redact(request.appeal_message) if request.appeal_message else None,
        appealed_at=request.appealed_at,
        dispute_until=request.completed_at + DISPUTE_WINDOW if request.completed_at else None,
        dispute=DisputeOut(reason=request.dispute_reason, message=redact(request.dispute_message) if request.dispute_message else None, disputed_at=request.disputed_at)
        if request.disputed_at
        else None,
        follow_up=request.follow_up or [],
        timeline=[TimelineEntryOut(status=e.to_status, event_type=e.action, actor=e.actor, detail=e.reason, at=e.at) for e in entries],
    )


async def audit_trail(uow: UnitOfWork, principal: Principal, request_id: str) -> list[AuditEntryOut]:
    request = await _visible_request(uow, principal, request_id)
    return [AuditEntryOut.model_validate(entry, from_attributes=True) for entry in await repository.audit_entries(uow.session, request.id)]


async def cancel(uow: UnitOfWork, principal: Principal, request_id: str) -> UnbindRequestOut:
    request = await _own_request(uow, principal, request_id)
    if request.status not in OPEN_REQUEST_STATUSES:
        raise conflict("not-open", f"The request is {request.status}; only an open request can be cancelled.", request_status=request.status)
    await _end(uow, request, RequestStatus.CANCELLED, "UnbindCancelled", principal.subject, ActorType.CUSTOMER, "cancelled by the customer")
    uow.emit(UnbindCancelled(**_about(request)))
    return await request_out(uow, request)


async def expire_overdue(uow: UnitOfWork, *, limit: int = 100) -> int:
    """End open requests past their deadline; returns how many. Run by the sweep worker."""
    expired = await repository.overdue_open_requests(uow.session, utcnow(), limit)
    for request in expired:
        await _end(uow, request, RequestStatus.EXPIRED, "UnbindExpired", "binding", ActorType.SYSTEM, f"not completed by {request.expires_at.isoformat()}")
        uow.emit(UnbindExpired(**_about(request)))
    return len(expired)


async def appeal(uow: UnitOfWork, settings: BindingSettings, principal: Principal, request_id: str, message: str) -> UnbindRequestOut:
    request = await _own_request(uow, principal, request_id)
    if request.status != RequestStatus.REJECTED:
        raise conflict("not-rejected", "Only a rejected request can be appealed.", request_status=request.status)
    if request.appealed_at is not None:
        raise conflict("already-appealed", "This request has already been appealed once.")
    if not await repository.claim_binding_for_unbind(uow.session, request.binding_id):
        raise conflict("binding-busy", "The binding has another open request or is no longer bound.")
    request.appeal_message = message
    request.appealed_at = utcnow()
    request.outcome_reason = None
    request.expires_at = utcnow() + timedelta(seconds=settings.review_ttl_seconds)
    _transition(uow, request, RequestStatus.UNDER_REVIEW, "UnbindAppealed", principal.subject, ActorType.CUSTOMER, "appealed by the customer")
    # The customer's words stay here, for them and ops (`appeal_message`); the event says only that they appealed.
    uow.emit(UnbindAppealed(**_about(request)))
    return await request_out(uow, request)


async def dispute(uow: UnitOfWork, principal: Principal, request_id: str, reason: DisputeReason, message: str | None) -> UnbindRequestOut:
    """Dispute a completed unbind, once, within DISPUTE_WINDOW: an ops case opens (at risk, through
    `UnbindDisputed`); the customer's message stays here."""
    request = await _own_request(uow, principal, request_id)
    if request.status != RequestStatus.COMPLETED or request.completed_at is None:
        raise conflict("not-completed", "Only a completed unbind can be disputed.", request_status=request.status)
    if request.disputed_at is not None:
        raise conflict("already-disputed", "This unbind has already been disputed once; our team is looking into it.")
    if utcnow() > request.completed_at + DISPUTE_WINDOW:
        raise conflict("dispute-window-closed", f"An unbind can be disputed within {DISPUTE_WINDOW.days} days of its completion; contact support instead.")
    request.disputed_at = utcnow()
    request.dispute_reason = reason
    request.dispute_message = message
    _audit(uow, request, request.status, "UnbindDisputed", principal.subject, ActorType.CUSTOMER, f"disputed: {reason}")
    uow.emit(UnbindDisputed(**_about(request), reason=reason))
    return await request_out(uow, request)


async def search_requests(uow: UnitOfWork, *, status: str | None, user_id: str | None, since: datetime | None, cursor: str | None, limit: int) -> RequestPage:
    after = decode_cursor(cursor) if cursor else None
    rows = await repository.search_requests(uow.session, status=status, user_id=user_id, since=since, after=after, limit=limit + 1)
    page: Sequence[UnbindRequest] = rows[:limit]
    return RequestPage(items=[await request_out(uow, request) for request in page], next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None)


# --- events --------------------------------------------------------------------------------


async def apply_risk_assessment(uow: UnitOfWork, settings: BindingSettings, event: RiskAssessed) -> None:
    request = await _request_in(uow, event, RequestStatus.PENDING_RISK)
    if request is None:
        return
    request.risk_decision = event.decision
    request.risk_score = event.score
    request.risk_reasons = [reason.model_dump() for reason in event.reasons]
    # No machine says a final no: risk sends what it would deny to a person (a `deny` from a risk
    # of an earlier version is held for review too, never a rejection).
    if event.decision in (RiskDecision.REVIEW, RiskDecision.DENY):
        request.expires_at = utcnow() + timedelta(seconds=settings.review_ttl_seconds)
        _transition(uow, request, RequestStatus.UNDER_REVIEW, "RiskAssessed", "risk", ActorType.SERVICE, f"score {event.score}: manual review")
    else:
        _transition(uow, request, RequestStatus.PENDING_VERIFICATION, "RiskAssessed", "risk", ActorType.SERVICE, f"score {event.score}: {event.decision}")


async def apply_review_decision(uow: UnitOfWork, settings: BindingSettings, event: ReviewDecided) -> None:
    request = await _request_in(uow, event, RequestStatus.UNDER_REVIEW)
    if request is None:
        return
    if event.decision == ReviewOutcome.DENY:
        # The reviewer's reason, a code from the fixed list, is what the customer is told.
        await _reject(uow, request, f"review_denied:{event.reason}" if event.reason else "review_denied", event.reviewer, ActorType.OPS)
    else:
        request.expires_at = utcnow() + timedelta(seconds=settings.unbind_request_ttl_seconds)
        # A fresh verification follows: forget the one an earlier round may have had.
        request.verification_id = request.verification_methods = request.verification_expires_at = None
        _transition(uow, request, RequestStatus.PENDING_VERIFICATION, "ReviewDecided", event.reviewer, ActorType.OPS, "approved after review")


async def record_verification_issued(uow: UnitOfWork, event: VerificationRequested) -> None:
    request = await _request_in(uow, event, RequestStatus.PENDING_VERIFICATION)
    if request is None:
        return
    request.verification_id = event.verification_id
    request.verification_methods = list(event.methods)
    request.verification_expires_at = event.expires_at
    _audit(uow, request, request.status, "VerificationRequested", "verification", ActorType.SERVICE, "methods: " + ", ".join(event.methods))


async def complete_unbind(uow: UnitOfWork, event: Verified) -> None:
    """Complete the request once the very verification it waits for has passed every method it asked
    for. A Verified for anything else is refused (dead-lettered, nothing changes), except a late one
    for the request's own verification after the request ended (a cancellation or expiry crossing it)."""
    request = await _request_of(uow, event)
    own = request.verification_id == event.verification_id
    if request.status != RequestStatus.PENDING_VERIFICATION:
        if own and request.status in (RequestStatus.CANCELLED, RequestStatus.EXPIRED):
            log.info("Verified after the request ended; nothing changes", extra={"request_id": request.id, "status": request.status})
            return
        raise EventRejected("state", f"Verified for a request that is {request.status}, not waiting for a verification")
    if not own:
        raise EventRejected("state", "Verified names another verification than the one the request waits for")
    if not set(request.verification_methods or ()) <= set(event.methods):
        raise EventRejected("state", "Verified does not cover every method the request's verification asked for")
    binding = await repository.get_binding(uow.session, request.binding_id, for_update=True)
    assert binding is not None, "a request always has its binding"
    credit = await repository.get_credit_account(uow.session, binding.credit_account_id, for_update=True)
    assert credit is not None, "a binding always has its credit account"
    now = utcnow()
    cancelled = 0
    for mandate in await repository.active_mandates(uow.session, binding.id):
        mandate.status = MandateStatus.CANCELLED
        mandate.cancelled_at = now
        cancelled += 1
    limit_before = credit.credit_limit
    credit.credit_limit = max(0, limit_before - binding.credit_limit_contribution)
    binding.status = BindingStatus.UNBOUND
    await repository.release_account_number(uow.session, binding.repayment_account_id, now)
    request.follow_up = list(FOLLOW_UP_AFTER_UNBIND)
    request.completed_at = now
    _transition(uow, request, RequestStatus.COMPLETED, "UnbindCompleted", "verification", ActorType.SERVICE, f"{cancelled} mandate(s) cancelled")
    uow.emit(
        UnbindCompleted(
            request_id=request.id,
            binding_id=binding.id,
            user_id=request.user_id,
            mandates_cancelled=cancelled,
            credit_limit_before=limit_before,
            credit_limit_after=credit.credit_limit,
            follow_up=request.follow_up,
        )
    )


async def fail_verification(uow: UnitOfWork, event: VerificationFailed) -> None:
    request = await _request_in(uow, event, RequestStatus.PENDING_VERIFICATION)
    if request is not None:
        await _reject(uow, request, f"verification_failed:{event.reason}", "verification", ActorType.SERVICE)


async def _request_of(uow: UnitOfWork, event: BindingEvent) -> UnbindRequest:
    """The request an event is about, locked. EventRejected if this service never opened it, or the
    event names another binding or customer than the request's."""
    request = await repository.get_request(uow.session, event.request_id, for_update=True)
    if request is None or request.binding_id != event.binding_id or request.user_id != event.user_id:
        raise EventRejected("state", f"{type(event).__name__} is about a request this service never opened")
    return request


async def _request_in(uow: UnitOfWork, event: BindingEvent, status: RequestStatus) -> UnbindRequest | None:
    """The request of `event`, locked, if it is in `status`; None for a stale or out-of-order event."""
    request = await _request_of(uow, event)
    return request if request.status == status else None


async def _reject(uow: UnitOfWork, request: UnbindRequest, reason: str, actor: str, actor_type: ActorType) -> None:
    request.outcome_reason = reason
    await _end(uow, request, RequestStatus.REJECTED, "UnbindRejected", actor, actor_type, reason)
    uow.emit(UnbindRejected(**_about(request), reason=reason))


async def _end(uow: UnitOfWork, request: UnbindRequest, status: RequestStatus, action: str, actor: str, actor_type: ActorType, reason: str) -> None:
    """End an open request without completing it: the binding is active again."""
    _transition(uow, request, status, action, actor, actor_type, reason)
    await repository.set_binding_status(uow.session, request.binding_id, BindingStatus.ACTIVE)


def _about(request: UnbindRequest) -> dict[str, str]:
    """The fields every event about a request carries."""
    return {"request_id": request.id, "binding_id": request.binding_id, "user_id": request.user_id}


def _transition(uow: UnitOfWork, request: UnbindRequest, status: RequestStatus, action: str, actor: str, actor_type: ActorType, reason: str | None = None) -> None:
    previous = request.status
    request.status = status
    request.updated_at = utcnow()
    _audit(uow, request, previous, action, actor, actor_type, reason)


def _audit(uow: UnitOfWork, request: UnbindRequest, from_status: str | None, action: str, actor: str, actor_type: ActorType, reason: str | None) -> None:
    uow.session.add(
        AuditEntry(request_id=request.id, action=action, from_status=from_status, to_status=request.status, actor=actor, actor_type=actor_type, reason=reason, at=utcnow())
    )


# --- demo data -----------------------------------------------------------------------------


async def seed_customers(uow: UnitOfWork, customers: Sequence[SyntheticCustomer]) -> None:
    """Synthetic customers (load and chaos runs): a credit account and one active mortgage binding
    each, with auto-debit and an instalment due in 20 days, so no blocker needs acknowledging."""
    due = today() + timedelta(days=20)
    for customer in customers:
        contribution = credit_limit_contribution(customer.monthly_instalment)
        suffix = customer.binding_id.removeprefix("b-")
        uow.session.add_all(
            [
                CreditAccount(id=f"ca-{suffix}", user_id=customer.user_id, credit_limit=30_000),
                RepaymentAccount(
                    id=f"ra-{suffix}", user_id=customer.user_id, lender="Example Bank", account_number=customer.account_number,
                    monthly_instalment=customer.monthly_instalment, due_day=due.day,
                ),
            ]
        )  # fmt: skip
        await uow.session.flush()
        uow.session.add(
            Binding(
                id=customer.binding_id, user_id=customer.user_id, credit_account_id=f"ca-{suffix}", repayment_account_id=f"ra-{suffix}",
                status=BindingStatus.ACTIVE, credit_limit_contribution=contribution, agreement_version=agreements.CURRENT,
            )
        )  # fmt: skip
        await uow.session.flush()
        uow.session.add_all(
            [
                Mandate(id=_new_id(), binding_id=customer.binding_id, kind="auto_debit", status=MandateStatus.ACTIVE),
                Benefit(id=_new_id(), binding_id=customer.binding_id, code="limit_uplift", value=contribution),
                Instalment(id=_new_id(), repayment_account_id=f"ra-{suffix}", period=due.strftime("%Y-%m"), amount=customer.monthly_instalment, due_date=due),
            ]
        )


async def seed_demo_data(uow: UnitOfWork) -> bool:
    """Zhang San (instalment due in 2 days under auto-debit: the INSTALMENT_DUE_SOON blocker) and
    Li Si (an overdue instalment: the OVERDUE blocker), each with one active mortgage binding;
    only into an empty database."""
    if await repository.count_bindings(uow.session):
        return False
    on = today()
    for user_id, suffix, account_number, instalment, due in (
        ("u-zhangsan", "zhangsan", "6222021234514821", 6500, on + timedelta(days=2)),
        ("u-lisi", "lisi", "6217001234507733", 4200, on - timedelta(days=5)),
    ):
        contribution = credit_limit_contribution(instalment)
        uow.session.add_all(
            [
                CreditAccount(id=f"ca-{suffix}", user_id=user_id, credit_limit=30_000),
                RepaymentAccount(id=f"ra-{suffix}", user_id=user_id, lender="Example Bank", account_number=account_number, monthly_instalment=instalment, due_day=due.day),
            ]
        )
        await uow.session.flush()
        binding_id = f"b-{suffix}-mortgage"
        uow.session.add(
            Binding(
                id=binding_id,
                user_id=user_id,
                credit_account_id=f"ca-{suffix}",
                repayment_account_id=f"ra-{suffix}",
                status=BindingStatus.ACTIVE,
                credit_limit_contribution=contribution,
                agreement_version=agreements.CURRENT,
            )
        )
        await uow.session.flush()
        previous = (due.replace(day=1) - timedelta(days=1)).replace(day=min(due.day, 28))
        uow.session.add_all(
            [
                Mandate(id=_new_id(), binding_id=binding_id, kind="auto_debit", status=MandateStatus.ACTIVE),
                Benefit(id=_new_id(), binding_id=binding_id, code="limit_uplift", value=contribution),
                Benefit(id=_new_id(), binding_id=binding_id, code="interest_free_days", value=10),
                Instalment(
                    id=_new_id(),
                    repayment_account_id=f"ra-{suffix}",
                    period=previous.strftime("%Y-%m"),
                    amount=instalment,
                    due_date=previous,
                    paid_at=datetime.combine(previous, datetime.min.time(), SHANGHAI),
                    paid_by="auto_debit",
                ),
                Instalment(id=_new_id(), repayment_account_id=f"ra-{suffix}", period=due.strftime("%Y-%m"), amount=instalment, due_date=due),
            ]
        )
    return True
