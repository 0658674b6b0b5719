"""Business rules of the binding service.

Every function works inside the caller's unit of work: it writes state and stages events with
`uow.emit`, and never commits. Transitions are guarded by the request's current status, so an
event that arrives late or twice (from another path than the inbox) cannot move a request back,
and every transition is written to the append-only audit log.

Binding is no easier to abuse than unbinding: a binding asked for is `pending` until the customer
confirms the SMS code verification sends (BindingRequested -> BindingVerified), and its auto-debit
mandate stays `pending` until the lender confirms it through a signed callback. Only then does the
credit limit rise.

Credit limit rule: a binding whose mandate the lender confirmed raises the credit limit by 1.5 times
the monthly instalment, rounded down to 100 CNY and capped at 20,000 CNY. A customer's bindings
together raise it by at most `max_total_limit_uplift`: past that, the mandate still goes active but
the binding grants only what is left of the cap, possibly nothing. A binding without auto-debit, or
whose mandate the lender refused, grants nothing. The amount granted is kept on the binding and
withdrawn, exactly, when the binding is unbound.

One account, one binding: account numbers are normalised (shared.account_numbers) before they are
stored or compared, and a number is held, across all customers, from the bind request until its
binding is unbound (or its code was never confirmed).
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import time
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
    LenderCallback,
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
    AlternativeOut,
    AuditEntryOut,
    BenefitOut,
    BindingIn,
    BindingList,
    BindingOut,
    BlockerOut,
    CreditAccountOut,
    DisputeOut,
    FollowUpAction,
    FollowUpOut,
    ImpactOut,
    InstalmentOut,
    LenderCallbackIn,
    LenderCallbackOut,
    LenderList,
    LenderOut,
    MandateOut,
    OpsCustomerOut,
    OpsUnbindRequestOut,
    PauseRequestIn,
    RepaymentAccountIn,
    RepaymentAccountOut,
    RepaymentIn,
    RequestPage,
    RiskOut,
    SwitchRequestIn,
    TimelineEntryOut,
    UnbindRequestIn,
    UnbindRequestOut,
    VerificationOut,
)
from shared.auth import Principal
from shared.cloudevents import EventRejected
from shared.db import utcnow
from shared.denials import denial_reason
from shared.events import (
    AutoDebitPaused,
    AutoDebitResumed,
    BindingCreated,
    BindingEvent,
    BindingRequested,
    BindingVerificationFailed,
    BindingVerified,
    DisputeReason,
    MandateConfirmed,
    MandateRefused,
    MandateRequested,
    RepaymentAccountSwitched,
    RequestKind,
    ReviewDecided,
    ReviewOutcome,
    RiskAssessed,
    RiskDecision,
    UnbindAppealed,
    UnbindCancelled,
    UnbindCompleted,
    UnbindDisputed,
    UnbindExpired,
    UnbindReason,
    UnbindRejected,
    UnbindRequested,
    VerificationFailed,
    VerificationRequested,
    Verified,
)
from shared.i18n import join, money
from shared.lenders import (
    LENDER_HEADER,
    LENDERS,
    SIGNATURE_HEADER,
    Lender,
    callback_signature_valid,
    find_lender,
)
from shared.logging import redact
from shared.masking import mask_account_number
from shared.pagination import decode_cursor, encode_cursor
from shared.problems import Problem, conflict, not_found
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DUE_SOON_DAYS = 3
LIMIT_UPLIFT_CAP = 20_000
# Bindings a customer may have waiting for their SMS code at once.
MAX_PENDING_BINDINGS = 3
# What to do after unbinding, pausing the auto-debit or switching the account (texts `follow_up.<code>.*`,
# naming the lender and its hotline).
FOLLOW_UP_AFTER_UNBIND = ["check_repayment", "repay_on_time", "adjust_plan", "dispute"]
FOLLOW_UP_AFTER_PAUSE = ["repay_during_pause"]
FOLLOW_UP_AFTER_SWITCH = ["until_new_auto_debit"]
# The items whose action is a call to the lender's hotline.
CALL_THE_LENDER = frozenset({"check_repayment", "adjust_plan", "until_new_auto_debit"})
# The audit reason of VerificationRequested names the methods after this (the timeline words them).
METHODS_NOTE = "methods: "
# The requests of a customer ops see at once (newest first).
OPS_REQUESTS_SHOWN = 100
# A completed unbind can be disputed, once, for this long (the completion notice says 7 days).
DISPUTE_WINDOW = timedelta(days=7)
# Blockers the customer may accept by naming them in `acknowledged`; the others always refuse.
ACKNOWLEDGEABLE = frozenset({"INSTALMENT_DUE_SOON"})
# The blockers of a binding with an open request (an unbind; a pause or a switch).
IN_PROGRESS = frozenset({"UNBIND_IN_PROGRESS", "CHANGE_IN_PROGRESS"})
REQUEST_KINDS: dict[type[BaseModel], RequestKind] = {
    UnbindRequestIn: RequestKind.UNBIND,
    PauseRequestIn: RequestKind.PAUSE,
    SwitchRequestIn: RequestKind.SWITCH,
}
# The reason an alternative records: the seed's reason each one answers.
KIND_REASONS = {RequestKind.PAUSE: UnbindReason.FUND_PLANNING, RequestKind.SWITCH: UnbindReason.LENDER_CHANGE}


def credit_limit_contribution(monthly_instalment: int) -> int:
    """The documented rule: 1.5 x the instalment, down to 100 CNY, at most 20,000 CNY."""
    return min(LIMIT_UPLIFT_CAP, monthly_instalment * 3 // 2 // 100 * 100)


def today() -> date:
    return datetime.now(SHANGHAI).date()


def _new_id() -> str:
    return str(uuid.uuid4())


# --- bindings ------------------------------------------------------------------------------


def lender_of(repayment: RepaymentAccount) -> Lender | None:
    """The account's lender in the directory; None for a name typed before there was one."""
    return LENDERS.get(repayment.lender_id) if repayment.lender_id else None


def lender_name(repayment: RepaymentAccount, locale: str) -> str:
    lender = lender_of(repayment)
    return lender.name(locale) if lender else repayment.lender


def list_lenders(locale: str) -> LenderList:
    return LenderList(
        items=[
            LenderOut(id=lender.id, name=lender.name(locale), hotline=lender.hotline)
            for lender in LENDERS.values()
        ]
    )


def binding_out(
    binding: Binding,
    repayment: RepaymentAccount,
    credit: CreditAccount,
    *,
    auto_debit: bool,
    mandate_status: str | None,
    locale: str,
    resumes_at: datetime | None = None,
) -> BindingOut:
    return BindingOut(
        id=binding.id,
        status=binding.status,
        auto_debit=auto_debit,
        mandate_status=mandate_status,
        auto_debit_resumes_on=resumes_at.astimezone(SHANGHAI).date() if resumes_at else None,
        verification_id=binding.verification_id if binding.status == BindingStatus.PENDING else None,
        credit_limit_contribution=binding.credit_limit_contribution,
        credit_account=CreditAccountOut(id=credit.id, credit_limit=credit.credit_limit),
        agreement_version=binding.agreement_version,
        repayment_account=repayment_account_out(repayment, locale),
        created_at=binding.created_at,
    )


def repayment_account_out(repayment: RepaymentAccount, locale: str) -> RepaymentAccountOut:
    return RepaymentAccountOut(
        id=repayment.id,
        lender=lender_name(repayment, locale),
        lender_id=repayment.lender_id,
        account_number=mask_account_number(repayment.account_number),
        monthly_instalment=repayment.monthly_instalment,
        due_day=repayment.due_day,
    )


async def list_bindings(uow: UnitOfWork, principal: Principal, locale: str) -> BindingList:
    return await _binding_list(uow, await repository.list_bindings(uow.session, principal.subject), locale)


async def _binding_list(uow: UnitOfWork, views: Sequence[repository.BindingView], locale: str) -> BindingList:
    ids = [view[0].id for view in views]
    with_auto_debit = await repository.auto_debit_on(uow.session, ids)
    mandates = await repository.latest_mandate_status(uow.session, ids)
    paused = await repository.paused_until(uow.session, ids)
    return BindingList(
        items=[
            binding_out(
                *view,
                auto_debit=view[0].id in with_auto_debit,
                mandate_status=mandates.get(view[0].id),
                locale=locale,
                resumes_at=paused.get(view[0].id),
            )
            for view in views
        ]
    )


async def _owned_view(uow: UnitOfWork, principal: Principal, binding_id: str) -> repository.BindingView:
    """The binding if the principal may see it: its owner, or ops. Anyone else gets 404."""
    view = await repository.get_binding_view(uow.session, binding_id)
    if view is None or (view[0].user_id != principal.subject and not principal.has_role("ops")):
        raise not_found("The binding")
    return view


async def get_binding(uow: UnitOfWork, principal: Principal, binding_id: str, locale: str) -> BindingOut:
    return await _binding_out(uow, *(await _owned_view(uow, principal, binding_id)), locale=locale)


async def _binding_out(
    uow: UnitOfWork, binding: Binding, repayment: RepaymentAccount, credit: CreditAccount, *, locale: str
) -> BindingOut:
    session = uow.session
    auto_debit = bool(await repository.active_mandates(session, binding.id))
    mandate_status = (await repository.latest_mandate_status(session, [binding.id])).get(binding.id)
    resumes_at = (await repository.paused_until(session, [binding.id])).get(binding.id)
    return binding_out(
        binding,
        repayment,
        credit,
        auto_debit=auto_debit,
        mandate_status=mandate_status,
        locale=locale,
        resumes_at=resumes_at,
    )


def next_due_date(due_day: int, on: date) -> date:
    """The first due date on or after `on` for an instalment due on `due_day` of each month."""
    day = min(due_day, 28)
    candidate = on.replace(day=day)
    if candidate < on:
        candidate = (candidate.replace(day=1) + timedelta(days=32)).replace(day=day)
    return candidate


def _already_bound() -> Problem:
    return conflict("already-bound", "This repayment account is already bound.")


async def create_binding(uow: UnitOfWork, principal: Principal, body: BindingIn, locale: str) -> BindingOut:
    """Ask to bind a repayment account (its number normalised by the schema) at a lender of the directory. The
    binding is pending, holding the number, until the customer confirms the SMS code verification sends
    for it; its auto-debit mandate waits for the lender after that. Nothing about the credit limit
    changes yet. Emits BindingRequested."""
    session = uow.session
    lender = _lender_of(body)
    # Locked: a customer's bindings are created one at a time, so the pending count below holds under races.
    credit = await repository.credit_account_of(session, principal.subject, for_update=True)
    if credit is None:
        raise Problem(
            422,
            "no-credit-account",
            "No credit account",
            "Open a credit account before binding a repayment account.",
        )
    agreements.require_current(body.agreement_version)
    if await repository.account_number_held(session, body.account_number):
        raise _already_bound()
    # Each asks for an SMS code: a stolen token must not turn into a stream of them.
    if await repository.count_pending_bindings(session, principal.subject) >= MAX_PENDING_BINDINGS:
        raise conflict(
            "too-many-pending-bindings",
            f"{MAX_PENDING_BINDINGS} bindings already wait for their SMS code: confirm one, or wait until "
            f"they lapse.",
        )
    repayment = await _hold_account(
        uow, principal.subject, lender, body, monthly_instalment=body.monthly_instalment, due_day=body.due_day
    )
    binding = Binding(
        id=f"b-{uuid.uuid4().hex[:12]}",
        user_id=principal.subject,
        credit_account_id=credit.id,
        repayment_account_id=repayment.id,
        status=BindingStatus.PENDING,
        credit_limit_contribution=0,
        agreement_version=body.agreement_version,
        bind_request_id=_new_id(),
        verification_id=_new_id(),
    )
    session.add(binding)
    await session.flush()
    _first_instalment(uow, repayment)
    if body.auto_debit:
        session.add(
            Mandate(id=_new_id(), binding_id=binding.id, kind="auto_debit", status=MandateStatus.PENDING)
        )
    uow.emit(
        BindingRequested(
            **_about_binding(binding),
            verification_id=binding.verification_id,
            lender=lender.id,
            account_last4=body.account_number[-4:],
            monthly_instalment=body.monthly_instalment,
            auto_debit=body.auto_debit,
        )
    )
    return binding_out(
        binding,
        repayment,
        credit,
        auto_debit=False,
        mandate_status=MandateStatus.PENDING if body.auto_debit else None,
        locale=locale,
    )


async def _hold_account(
    uow: UnitOfWork,
    user_id: str,
    lender: Lender,
    body: RepaymentAccountIn,
    *,
    monthly_instalment: int,
    due_day: int,
) -> RepaymentAccount:
    """A new repayment account at `lender`, holding its number (a bind request's, or a switch's): 409
    if it was bound by someone since the caller checked (the unique index on held numbers decides)."""
    repayment = RepaymentAccount(
        id=_new_id(),
        user_id=user_id,
        lender=lender.names["en"],
        lender_id=lender.id,
        account_number=body.account_number,
        monthly_instalment=monthly_instalment,
        due_day=due_day,
    )
    uow.session.add(repayment)
    try:
        await uow.session.flush()
    except IntegrityError as exc:
        raise _already_bound() from exc
    return repayment


def _lender_of(body: RepaymentAccountIn) -> Lender:
    """The lender of the directory the body names, or 422."""
    lender = find_lender(body.lender)
    if lender is None:
        raise Problem(
            422,
            "unknown-lender",
            "Unknown lender",
            "`lender` must be an id or a name of `GET /v1/lenders`.",
            lenders=list(LENDERS),
        )
    return lender


def _first_instalment(uow: UnitOfWork, repayment: RepaymentAccount) -> None:
    """A newly bound account's first instalment: the next one due."""
    due = next_due_date(repayment.due_day, today())
    uow.session.add(
        Instalment(
            id=_new_id(),
            repayment_account_id=repayment.id,
            period=due.strftime("%Y-%m"),
            amount=repayment.monthly_instalment,
            due_date=due,
        )
    )


def _about_binding(binding: Binding) -> dict[str, str]:
    """The fields every event about a binding's creation and mandate carries."""
    assert binding.bind_request_id is not None, "a binding made through the API has its bind request"
    return {"request_id": binding.bind_request_id, "binding_id": binding.id, "user_id": binding.user_id}


def _fingerprint(binding_id: str, body: BaseModel) -> str:
    """What an Idempotency-Key stands for: the binding and the request body."""
    return hashlib.sha256(
        orjson.dumps({"binding_id": binding_id, **body.model_dump(mode="json")}, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


def _key_reused() -> Problem:
    return Problem(
        422,
        "idempotency-key-reused",
        "Idempotency-Key reused",
        "This Idempotency-Key was used for a different request.",
    )


async def repay_current_instalment(
    uow: UnitOfWork,
    principal: Principal,
    binding_id: str,
    body: RepaymentIn,
    *,
    idempotency_key: str,
    locale: str,
) -> tuple[InstalmentOut, bool]:
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
    if (
        paid := await repository.instalment_paid_with_key(uow.session, principal.subject, idempotency_key)
    ) is not None:
        if paid.payment_fingerprint != fingerprint:
            raise _key_reused()
        return instalment_out(paid), False
    if not unpaid:
        raise conflict("nothing-due", "No instalment is waiting to be paid.")
    instalment = unpaid[0]
    if body.amount != instalment.amount:
        raise Problem(
            422, "amount-mismatch", "Amount does not match",
            f"The instalment for {instalment.period} is {instalment.amount} CNY.",
            amount_due=instalment.amount, words={"amount_due": money(instalment.amount, locale)},
        )  # fmt: skip
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


async def assess_impact(
    uow: UnitOfWork, binding: Binding, repayment: RepaymentAccount, credit: CreditAccount, *, locale: str
) -> ImpactOut:
    session = uow.session
    on = today()
    auto_debit = bool(await repository.active_mandates(session, binding.id))
    unpaid = await repository.unpaid_instalments(session, repayment.id)
    recent = await repository.instalments(session, repayment.id, limit=1)
    current = unpaid[0] if unpaid else (recent[0] if recent else None)
    overdue = [instalment for instalment in unpaid if instalment.due_date < on]

    blockers: list[tuple[str, dict[str, object]]] = []
    if overdue:
        blockers.append(
            (
                "OVERDUE",
                {
                    "amount": money(overdue[0].amount, locale),
                    "due_date": texts.day(overdue[0].due_date, locale),
                },
            )
        )
    if (
        auto_debit
        and current is not None
        and current.paid_at is None
        and on <= current.due_date <= on + timedelta(days=DUE_SOON_DAYS)
    ):
        blockers.append(
            (
                "INSTALMENT_DUE_SOON",
                {"amount": money(current.amount, locale), "due_date": texts.day(current.due_date, locale)},
            )
        )
    open_request = await repository.open_request_for_binding(session, binding.id)
    busy = open_request is not None or binding.status in (BindingStatus.UNBINDING, BindingStatus.CHANGING)
    if busy:
        changing = binding.status == BindingStatus.CHANGING or (
            open_request is not None and open_request.kind != RequestKind.UNBIND
        )
        blockers.append(("CHANGE_IN_PROGRESS" if changing else "UNBIND_IN_PROGRESS", {}))

    lost = [] if binding.status == BindingStatus.UNBOUND else await repository.benefits(session, binding.id)
    limit_after = credit.credit_limit - (
        0 if binding.status == BindingStatus.UNBOUND else binding.credit_limit_contribution
    )
    effect = texts.text("credit.effect", locale) + (
        " " + texts.text("credit.effect.overdue", locale) if overdue else ""
    )
    facts = {
        "binding_id": binding.id,
        "status": binding.status,
        "auto_debit": auto_debit,
        "current_instalment": [
            current.period,
            current.amount,
            current.due_date.isoformat(),
            instalment_status(current, on),
        ]
        if current
        else None,
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
        benefits_lost=[BenefitOut(code=b.code, description=_benefit(b, locale)) for b in lost],
        credit_limit_before=credit.credit_limit,
        credit_limit_after=limit_after,
        blockers=[
            BlockerOut(
                code=code,
                message=texts.text(f"blocker.{code}", locale, **values),
                acknowledgeable=code in ACKNOWLEDGEABLE,
            )
            for code, values in blockers
        ],
        alternatives=await _alternatives(
            uow, binding, repayment, credit, kept=lost, busy=busy, auto_debit=auto_debit, locale=locale
        ),
        agreement=agreement_ref(binding.agreement_version, locale),
        impact_hash=hashlib.sha256(orjson.dumps(facts, option=orjson.OPT_SORT_KEYS)).hexdigest(),
    )


def _benefit(benefit: Benefit, locale: str) -> str:
    return texts.text(
        f"benefit.{benefit.code}", locale, value=benefit.value, amount=money(benefit.value, locale)
    )


async def _alternatives(
    uow: UnitOfWork,
    binding: Binding,
    repayment: RepaymentAccount,
    credit: CreditAccount,
    *,
    kept: Sequence[Benefit],
    busy: bool,
    auto_debit: bool,
    locale: str,
) -> list[AlternativeOut]:
    """The gentler ways than unbinding a bound account has: pausing its auto-debit, and switching it
    to another account; each with what it keeps and gives up, and why it cannot be asked for now."""
    if binding.status not in (BindingStatus.ACTIVE, BindingStatus.UNBINDING, BindingStatus.CHANGING):
        return []
    keeps = [
        texts.text("alternative.keeps.binding", locale),
        *(_benefit(benefit, locale) for benefit in kept),
        texts.text("alternative.keeps.limit", locale, amount=money(credit.credit_limit, locale)),
    ]
    paused = (await repository.paused_until(uow.session, [binding.id])).get(binding.id)
    unavailable: dict[RequestKind, str | None] = {RequestKind.PAUSE: None, RequestKind.SWITCH: None}
    if busy:
        unavailable = dict.fromkeys(unavailable, texts.text("alternative.unavailable.in_progress", locale))
    elif paused is not None:
        unavailable[RequestKind.PAUSE] = texts.text(
            "alternative.unavailable.paused",
            locale,
            resumes_on=texts.day(paused.astimezone(SHANGHAI).date(), locale),
        )
    elif not auto_debit:
        unavailable[RequestKind.PAUSE] = texts.text("alternative.unavailable.no_auto_debit", locale)
    loses = {
        RequestKind.PAUSE: [texts.text("alternative.pause.loses", locale)],
        RequestKind.SWITCH: [
            texts.text("alternative.switch.loses.old_mandate", locale, last4=repayment.account_number[-4:]),
            texts.text("alternative.switch.loses.lender", locale),
        ],
    }
    return [
        AlternativeOut(
            kind=kind,
            title=texts.text(f"alternative.{kind}.title", locale),
            summary=texts.text(f"alternative.{kind}.summary", locale),
            keeps=keeps,
            loses=loses[kind],
            available=unavailable[kind] is None,
            unavailable_reason=unavailable[kind],
            request_path=f"/v1/bindings/{binding.id}/{kind}-requests",
        )
        for kind in (RequestKind.PAUSE, RequestKind.SWITCH)
    ]


def agreement_ref(version: str, locale: str) -> AgreementRefOut:
    agreement = agreements.agreement(version, locale)
    assert agreement is not None, "a binding records a published version"
    return AgreementRefOut(version=version, title=agreement.title, href=f"/v1/agreements/{version}")


def get_agreement(version: str, locale: str) -> AgreementOut:
    agreement = agreements.agreement(version, locale)
    if agreement is None:
        raise Problem(
            404,
            "not-found",
            "Not found",
            f"There is no version {version} of the agreement; the current one is {agreements.CURRENT}.",
        )
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
    return await assess_impact(uow, *(await _owned_view(uow, principal, binding_id)), locale=locale)


async def account_report(
    uow: UnitOfWork, principal: Principal, binding_id: str, locale: str
) -> AccountReport:
    binding, repayment, credit = await _owned_view(uow, principal, binding_id)
    impact = await assess_impact(uow, binding, repayment, credit, locale=locale)
    on = today()
    return AccountReport(
        generated_at=utcnow(),
        locale=locale,
        user_id=binding.user_id,
        binding=await _binding_out(uow, binding, repayment, credit, locale=locale),
        mandates=[
            MandateOut.model_validate(mandate, from_attributes=True)
            for mandate in await repository.mandates(uow.session, binding.id)
        ],
        instalments=[
            instalment_out(instalment, on)
            for instalment in await repository.instalments(uow.session, repayment.id)
        ],
        impact=impact,
    )


# --- unbind requests -----------------------------------------------------------------------


AnyRequestIn = UnbindRequestIn | PauseRequestIn | SwitchRequestIn


async def open_request(
    uow: UnitOfWork,
    settings: BindingSettings,
    principal: Principal,
    binding_id: str,
    *,
    body: AnyRequestIn,
    idempotency_key: str,
    channel: str,
    client_ip: str | None,
    locale: str,
) -> tuple[UnbindRequestOut, bool]:
    """Open a request on a binding: an unbind, or one of its gentler alternatives (a pause of the
    auto-debit, a switch of the repayment account), whose kind the body says. Each goes through
    the same risk scoring and verification; only what completes it differs. Returns (request,
    created): a repeated Idempotency-Key with the same body returns the original request; with
    another body it is refused."""
    session = uow.session
    fingerprint = _fingerprint(binding_id, body)
    if (existing := await _replay(uow, principal, idempotency_key, fingerprint, locale=locale)) is not None:
        return existing, False

    view = await repository.get_binding_view(session, binding_id)
    if view is None or view[0].user_id != principal.subject:
        raise not_found("The binding")
    binding, repayment, credit = view
    if binding.status == BindingStatus.UNBOUND:
        raise conflict("binding-unbound", "This binding is already unbound.")
    if binding.status in (BindingStatus.PENDING, BindingStatus.FAILED):
        raise conflict(
            "binding-not-bound",
            "This account was never bound: its SMS code was not confirmed.",
            binding_status=binding.status,
        )
    # In the customer's language: it is kept with the request as the impact they saw.
    impact = await assess_impact(uow, binding, repayment, credit, locale=locale)
    codes = {blocker.code for blocker in impact.blockers}
    if codes & IN_PROGRESS:
        return await _in_progress(
            uow, principal, binding_id, idempotency_key, fingerprint=fingerprint, locale=locale
        ), False
    if "OVERDUE" in codes:
        raise conflict(
            "overdue",
            "An instalment is overdue: settle it before unbinding, pausing the auto-debit or switching the "
            "account.",
            blockers=["OVERDUE"],
        )
    if missing := sorted(codes & ACKNOWLEDGEABLE - set(body.acknowledged)):
        raise Problem(
            422,
            "blockers-not-acknowledged",
            "Blockers not acknowledged",
            "Acknowledge each blocker by its code in `acknowledged`.",
            missing=missing,
        )
    if body.impact_hash and body.impact_hash != impact.impact_hash:
        raise conflict(
            "impact-changed",
            "The impact changed since it was shown; review it again.",
            impact_hash=impact.impact_hash,
        )
    kind = REQUEST_KINDS[type(body)]
    if isinstance(body, PauseRequestIn):
        await _check_pause(uow, binding, locale)
    if not await repository.claim_binding(
        session, binding_id, BindingStatus.UNBINDING if kind == RequestKind.UNBIND else BindingStatus.CHANGING
    ):
        return await _in_progress(
            uow, principal, binding_id, idempotency_key, fingerprint=fingerprint, locale=locale
        ), False
    # Held once the binding is claimed: a replay answered above must not hold a number too.
    new_account = await _hold_new_account(uow, repayment, body) if isinstance(body, SwitchRequestIn) else None

    now = utcnow()
    accepted_blockers = sorted(codes & set(body.acknowledged))
    request = UnbindRequest(
        id=_new_id(),
        binding_id=binding_id,
        user_id=principal.subject,
        status=RequestStatus.PENDING_RISK,
        kind=kind,
        pause_months=body.months if isinstance(body, PauseRequestIn) else None,
        new_repayment_account_id=new_account.id if new_account else None,
        reason=body.reason if isinstance(body, UnbindRequestIn) else KIND_REASONS[kind],
        note=body.note if isinstance(body, UnbindRequestIn) else None,
        device_id=body.device_id,
        channel=channel,
        impact_hash=impact.impact_hash,
        impact_snapshot=impact.model_dump(mode="json"),
        acknowledged=accepted_blockers,
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
        raise conflict(
            "concurrent-request", "Another request with this Idempotency-Key is being processed; retry it."
        ) from exc
    acknowledged = f"; acknowledged {', '.join(accepted_blockers)}" if accepted_blockers else ""
    _audit(
        uow,
        request,
        None,
        "UnbindRequested",
        actor=principal.subject,
        actor_type=ActorType.CUSTOMER,
        reason=f"{_asked(request, new_account)}, reason {request.reason}{acknowledged}",
    )
    uow.emit(
        UnbindRequested(
            **_about(request),
            kind=kind,
            pause_months=request.pause_months,
            new_lender=new_account.lender_id if new_account else None,
            new_account_last4=new_account.account_number[-4:] if new_account else None,
            reason=request.reason,
            impact_hash=request.impact_hash,
            lender=repayment.lender_id,
            account_last4=repayment.account_number[-4:],
            device_id=body.device_id,
            channel=channel,
            acknowledged=accepted_blockers,
            client_ip=client_ip,
            monthly_instalment=repayment.monthly_instalment,
        )
    )
    return await request_out(uow, request, locale), True


def _asked(request: UnbindRequest, new_account: RepaymentAccount | None) -> str:
    """What the request asks, for its audit trail (the new account masked)."""
    if request.kind == RequestKind.PAUSE:
        return f"pause auto-debit for {request.pause_months} month(s)"
    if new_account is not None:
        return f"switch to {mask_account_number(new_account.account_number)} at {new_account.lender_id}"
    return "unbind"


async def _check_pause(uow: UnitOfWork, binding: Binding, locale: str) -> None:
    """A pause needs an auto-debit that runs: not one already paused, nor none at all."""
    if paused := await repository.suspended_mandates(uow.session, binding.id):
        resumes_at = paused[0].resumes_at
        resumes_on = texts.day(resumes_at.astimezone(SHANGHAI).date(), locale) if resumes_at else ""
        raise conflict(
            "auto-debit-paused",
            "The auto-debit of this binding is already paused.",
            resumes_at=resumes_at,
            words={"resumes_on": resumes_on},
        )
    if not await repository.active_mandates(uow.session, binding.id):
        raise conflict("no-auto-debit", "This binding has no auto-debit running: there is nothing to pause.")


async def _hold_new_account(
    uow: UnitOfWork, current: RepaymentAccount, body: SwitchRequestIn
) -> RepaymentAccount:
    """The account a switch moves to, holding its number while the request is open (as a bind
    request does): not the current one (422), nor one bound already, by anyone (409)."""
    lender = _lender_of(body)
    if body.account_number == current.account_number:
        raise Problem(
            422,
            "same-account",
            "Same account",
            "This is the account the binding already uses: name another one to switch to.",
        )
    if await repository.account_number_held(uow.session, body.account_number):
        raise _already_bound()
    instalment, due_day = (
        body.monthly_instalment or current.monthly_instalment,
        body.due_day or current.due_day,
    )
    return await _hold_account(
        uow, current.user_id, lender, body, monthly_instalment=instalment, due_day=due_day
    )


async def _in_progress(
    uow: UnitOfWork, principal: Principal, binding_id: str, key: str, *, fingerprint: str, locale: str
) -> UnbindRequestOut:
    """The binding has an open request: if a concurrent call with this same key opened it, answer
    as its replay; otherwise refuse with 409."""
    if (existing := await _replay(uow, principal, key, fingerprint, locale=locale)) is not None:
        return existing
    open_request = await repository.open_request_for_binding(uow.session, binding_id)
    raise conflict(
        "unbind-in-progress",
        "A request on this binding (an unbind, a pause or a switch) is already open.",
        request_id=open_request.id if open_request else None,
    )


async def _replay(
    uow: UnitOfWork, principal: Principal, key: str, fingerprint: str, *, locale: str
) -> UnbindRequestOut | None:
    existing = await repository.get_request_by_idempotency_key(uow.session, principal.subject, key)
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise _key_reused()
    return await request_out(uow, existing, locale)


async def _visible_request(
    uow: UnitOfWork, principal: Principal, request_id: str, *, for_update: bool = False
) -> UnbindRequest:
    request = await repository.get_request(uow.session, request_id, for_update=for_update)
    if request is None or (request.user_id != principal.subject and not principal.has_role("ops")):
        raise not_found("The unbind request")
    return request


async def _own_request(uow: UnitOfWork, principal: Principal, request_id: str) -> UnbindRequest:
    request = await repository.get_request(uow.session, request_id, for_update=True)
    if request is None or request.user_id != principal.subject:
        raise not_found("The unbind request")
    return request


async def get_request(
    uow: UnitOfWork, principal: Principal, request_id: str, locale: str
) -> UnbindRequestOut:
    return await request_out(uow, await _visible_request(uow, principal, request_id), locale)


async def request_out(uow: UnitOfWork, request: UnbindRequest, locale: str) -> UnbindRequestOut:
    """The request as its owner reads it, in `locale`: what the security check asks (never the score,
    a signal or a rule), what happened, why it was declined, what to do next."""
    entries = await repository.audit_entries(uow.session, request.id)
    new_account = (
        await uow.session.get(RepaymentAccount, request.new_repayment_account_id)
        if request.new_repayment_account_id
        else None
    )
    return UnbindRequestOut(
        id=request.id,
        binding_id=request.binding_id,
        kind=request.kind,
        status=request.status,
        pause_months=request.pause_months,
        new_repayment_account=repayment_account_out(new_account, locale) if new_account else None,
        reason=request.reason,
        note=request.note,
        created_at=request.created_at,
        updated_at=request.updated_at,
        expires_at=request.expires_at,
        risk=RiskOut(summary=texts.text(f"risk.{request.risk_decision}", locale))
        if request.risk_decision
        else None,
        verification=VerificationOut(
            id=request.verification_id,
            methods=request.verification_methods or [],
            expires_at=request.verification_expires_at,
        )
        if request.verification_id
        else None,
        outcome_code=request.outcome_reason,
        outcome_reason=_outcome(request.outcome_reason, locale) if request.outcome_reason else None,
        # Masked like every number in a response: the customer may have typed a phone or account number.
        appeal_message=redact(request.appeal_message) if request.appeal_message else None,
        appealed_at=request.appealed_at,
        dispute_until=request.completed_at + DISPUTE_WINDOW if request.completed_at else None,
        dispute=DisputeOut(
            reason=request.dispute_reason,
            message=redact(request.dispute_message) if request.dispute_message else None,
            disputed_at=request.disputed_at,
        )
        if request.disputed_at
        else None,
        follow_up=await _follow_up(uow, request, locale),
        timeline=[
            TimelineEntryOut(
                status=e.to_status,
                event_type=e.action,
                actor=_actor_for_customer(e),
                detail=_timeline_detail(e, locale, request.kind),
                at=e.at,
            )
            for e in entries
        ],
    )


def _outcome(code: str, locale: str) -> str:
    """Why a request was declined: `verification_failed:expired` or a reviewer's `review_denied:<reason>`
    in words, or its kind when that part has none."""
    kind, _, detail = code.partition(":")
    if kind == "review_denied" and detail:
        return texts.text("outcome.review_denied.because", locale, reason=denial_reason(detail, locale))
    return texts.text(
        f"outcome.{kind}.{detail}" if f"outcome.{kind}.{detail}" in texts.TEXTS else f"outcome.{kind}", locale
    )


def _actor_for_customer(entry: AuditEntry | AuditEntryOut) -> str:
    """Who acted, as a customer reads it: a member of staff is `ops`, never their login (which a
    customer could use to ask for them by name)."""
    return ActorType.OPS if entry.actor_type == ActorType.OPS else entry.actor


def _timeline_detail(entry: AuditEntry | AuditEntryOut, locale: str, kind: str) -> str:
    """What a step of a request of `kind` did, in words (a step's own words for a pause or a switch, where it
    has them)."""
    if entry.action == "RiskAssessed":
        return texts.text(f"timeline.RiskAssessed.{entry.to_status}", locale)
    if entry.action == "VerificationRequested":
        methods = (entry.reason or "").removeprefix(METHODS_NOTE).split(", ")
        return texts.text(
            "timeline.VerificationRequested",
            locale,
            methods=join([texts.text(f"method.{method}", locale) for method in methods], locale),
        )
    if entry.action == "UnbindRejected":
        return texts.text("timeline.UnbindRejected", locale, outcome=_outcome(entry.reason or "", locale))
    key = f"timeline.{entry.action}.{kind}"
    return texts.text(key if key in texts.TEXTS else f"timeline.{entry.action}", locale)


async def _follow_up(uow: UnitOfWork, request: UnbindRequest, locale: str) -> list[FollowUpOut]:
    if not request.follow_up:
        return []
    view = await repository.get_binding_view(uow.session, request.binding_id)
    assert view is not None, "a request always has its binding"
    repayment = view[1]
    lender = lender_of(repayment)
    words = {"lender": lender_name(repayment, locale), "hotline": lender.hotline if lender else ""}
    action = (
        FollowUpAction(
            label=texts.text("follow_up.call", locale, **words),
            href="tel:" + words["hotline"].replace("-", ""),
        )
        if lender
        else None
    )
    items = []
    for code in request.follow_up:
        body = (
            f"follow_up.{code}.body"
            if lender or f"follow_up.{code}.body.no_hotline" not in texts.TEXTS
            else f"follow_up.{code}.body.no_hotline"
        )
        items.append(
            FollowUpOut(
                code=code,
                title=texts.text(f"follow_up.{code}.title", locale),
                body=texts.text(body, locale, **words),
                action=action if code in CALL_THE_LENDER else None,
            )
        )
    return items


async def audit_trail(
    uow: UnitOfWork, principal: Principal, request_id: str, locale: str
) -> list[AuditEntryOut]:
    """Every transition. Ops read what was recorded (scores, codes, who decided); the customer reads
    each reason in words, and a member of staff as `ops`."""
    request = await _visible_request(uow, principal, request_id)
    entries = [
        AuditEntryOut.model_validate(entry, from_attributes=True)
        for entry in await repository.audit_entries(uow.session, request.id)
    ]
    if principal.has_role("ops"):
        return entries
    return [
        entry.model_copy(
            update={
                "reason": _timeline_detail(entry, locale, request.kind),
                "actor": _actor_for_customer(entry),
            }
        )
        for entry in entries
    ]


async def cancel(uow: UnitOfWork, principal: Principal, request_id: str, locale: str) -> UnbindRequestOut:
    request = await _own_request(uow, principal, request_id)
    if request.status not in OPEN_REQUEST_STATUSES:
        raise conflict(
            "not-open",
            f"The request is {request.status}; only an open request can be cancelled.",
            request_status=request.status,
        )
    await _end(
        uow,
        request,
        RequestStatus.CANCELLED,
        "UnbindCancelled",
        actor=principal.subject,
        actor_type=ActorType.CUSTOMER,
        reason="cancelled by the customer",
    )
    uow.emit(UnbindCancelled(**_about(request)))
    return await request_out(uow, request, locale)


async def expire_overdue(uow: UnitOfWork, *, limit: int = 100) -> int:
    """End open requests past their deadline; returns how many. Run by the sweep worker."""
    expired = await repository.overdue_open_requests(uow.session, utcnow(), limit)
    for request in expired:
        await _end(
            uow,
            request,
            RequestStatus.EXPIRED,
            "UnbindExpired",
            actor="binding",
            actor_type=ActorType.SYSTEM,
            reason=f"not completed by {request.expires_at.isoformat()}",
        )
        uow.emit(UnbindExpired(**_about(request)))
    return len(expired)


async def appeal(
    uow: UnitOfWork,
    settings: BindingSettings,
    principal: Principal,
    request_id: str,
    *,
    message: str,
    locale: str,
) -> UnbindRequestOut:
    request = await _own_request(uow, principal, request_id)
    if request.status != RequestStatus.REJECTED:
        raise conflict(
            "not-rejected", "Only a rejected request can be appealed.", request_status=request.status
        )
    if request.appealed_at is not None:
        raise conflict("already-appealed", "This request has already been appealed once.")
    if not await repository.claim_binding(
        uow.session,
        request.binding_id,
        BindingStatus.UNBINDING if request.kind == RequestKind.UNBIND else BindingStatus.CHANGING,
    ):
        raise conflict("binding-busy", "The binding has another open request or is no longer bound.")
    if request.new_repayment_account_id:
        # The switch holds its new number again, unless someone bound it since the rejection.
        try:
            await repository.hold_account_number(uow.session, request.new_repayment_account_id)
        except IntegrityError as exc:
            raise _already_bound() from exc
    request.appeal_message = message
    request.appealed_at = utcnow()
    request.outcome_reason = None
    request.expires_at = utcnow() + timedelta(seconds=settings.review_ttl_seconds)
    _transition(
        uow,
        request,
        RequestStatus.UNDER_REVIEW,
        "UnbindAppealed",
        actor=principal.subject,
        actor_type=ActorType.CUSTOMER,
        reason="appealed by the customer",
    )
    # The customer's words stay here, for them and ops (`appeal_message`); the event says only that they
    # appealed.
    uow.emit(UnbindAppealed(**_about(request)))
    return await request_out(uow, request, locale)


async def dispute(
    uow: UnitOfWork,
    principal: Principal,
    request_id: str,
    reason: DisputeReason,
    *,
    message: str | None,
    locale: str,
) -> UnbindRequestOut:
    """Dispute a completed unbind, once, within DISPUTE_WINDOW: an ops case opens (at risk, through
    `UnbindDisputed`); the customer's message stays here."""
    request = await _own_request(uow, principal, request_id)
    if request.status != RequestStatus.COMPLETED or request.completed_at is None:
        raise conflict(
            "not-completed", "Only a completed unbind can be disputed.", request_status=request.status
        )
    if request.disputed_at is not None:
        raise conflict(
            "already-disputed", "This unbind has already been disputed once; our team is looking into it."
        )
    if utcnow() > request.completed_at + DISPUTE_WINDOW:
        raise conflict(
            "dispute-window-closed",
            f"An unbind can be disputed within {DISPUTE_WINDOW.days} days of its completion; contact support "
            f"instead.",
        )
    request.disputed_at = utcnow()
    request.dispute_reason = reason
    request.dispute_message = message
    _audit(
        uow,
        request,
        request.status,
        "UnbindDisputed",
        actor=principal.subject,
        actor_type=ActorType.CUSTOMER,
        reason=f"disputed: {reason}",
    )
    uow.emit(UnbindDisputed(**_about(request), reason=reason))
    return await request_out(uow, request, locale)


async def search_requests(
    uow: UnitOfWork,
    *,
    status: str | None,
    user_id: str | None,
    since: datetime | None,
    cursor: str | None,
    limit: int,
    locale: str,
) -> RequestPage:
    after = decode_cursor(cursor) if cursor else None
    rows = await repository.search_requests(
        uow.session, status=status, user_id=user_id, since=since, after=after, limit=limit + 1
    )
    page: Sequence[UnbindRequest] = rows[:limit]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return RequestPage(
        items=[await request_out(uow, request, locale) for request in page], next_cursor=next_cursor
    )


# --- ops: a customer on the phone, a case ---------------------------------------------------


async def ops_customer(uow: UnitOfWork, user_id: str, locale: str) -> OpsCustomerOut:
    """A customer's bindings and requests (newest first), as ops see them; 404 for a customer binding never
    saw."""
    session = uow.session
    views = await repository.list_bindings(session, user_id)
    requests = await repository.search_requests(
        session, status=None, user_id=user_id, since=None, after=None, limit=OPS_REQUESTS_SHOWN
    )
    if not views and not requests and await repository.credit_account_of(session, user_id) is None:
        raise not_found("The customer")
    bindings = await _binding_list(uow, views, locale)
    return OpsCustomerOut(
        user_id=user_id,
        bindings=bindings.items,
        requests=[_masked_note(await request_out(uow, request, locale)) for request in requests],
    )


async def ops_request(uow: UnitOfWork, request_id: str, locale: str) -> OpsUnbindRequestOut:
    """A request with what the customer saw when asking (the impact kept with it) and what risk said."""
    request = await repository.get_request(uow.session, request_id)
    if request is None:
        raise not_found("The unbind request")
    seen = _masked_note(await request_out(uow, request, locale))
    return OpsUnbindRequestOut(
        **seen.model_dump(),
        user_id=request.user_id,
        impact=ImpactOut.model_validate(request.impact_snapshot) if request.impact_snapshot else None,
        risk_decision=request.risk_decision,
        risk_score=request.risk_score,
        acknowledged=request.acknowledged,
        device_id=request.device_id,
        channel=request.channel,
        dispute_message=redact(request.dispute_message) if request.dispute_message else None,
    )


def _masked_note(request: UnbindRequestOut) -> UnbindRequestOut:
    """The customer's note with its numbers masked: staff views show no full phone or account number."""
    return request.model_copy(update={"note": redact(request.note)}) if request.note else request


# --- events (each handler is called as (uow, settings, event), from main.SUBSCRIPTIONS) -------


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
        _transition(
            uow,
            request,
            RequestStatus.UNDER_REVIEW,
            "RiskAssessed",
            actor="risk",
            actor_type=ActorType.SERVICE,
            reason=f"score {event.score}: manual review",
        )
    else:
        _transition(
            uow,
            request,
            RequestStatus.PENDING_VERIFICATION,
            "RiskAssessed",
            actor="risk",
            actor_type=ActorType.SERVICE,
            reason=f"score {event.score}: {event.decision}",
        )


async def apply_review_decision(uow: UnitOfWork, settings: BindingSettings, event: ReviewDecided) -> None:
    request = await _request_in(uow, event, RequestStatus.UNDER_REVIEW)
    if request is None:
        return
    if event.decision == ReviewOutcome.DENY:
        # The reviewer's reason, a code from the fixed list, is what the customer is told.
        await _reject(
            uow,
            request,
            f"review_denied:{event.reason}" if event.reason else "review_denied",
            event.reviewer,
            actor_type=ActorType.OPS,
        )
    else:
        request.expires_at = utcnow() + timedelta(seconds=settings.unbind_request_ttl_seconds)
        # A fresh verification follows: forget the one an earlier round may have had.
        request.verification_id = request.verification_methods = request.verification_expires_at = None
        _transition(
            uow,
            request,
            RequestStatus.PENDING_VERIFICATION,
            "ReviewDecided",
            actor=event.reviewer,
            actor_type=ActorType.OPS,
            reason="approved after review",
        )


async def record_verification_issued(
    uow: UnitOfWork, settings: BindingSettings, event: VerificationRequested
) -> None:
    request = await _request_in(uow, event, RequestStatus.PENDING_VERIFICATION)
    if request is None:
        return
    request.verification_id = event.verification_id
    request.verification_methods = list(event.methods)
    request.verification_expires_at = event.expires_at
    _audit(
        uow,
        request,
        request.status,
        "VerificationRequested",
        actor="verification",
        actor_type=ActorType.SERVICE,
        reason=METHODS_NOTE + ", ".join(event.methods),
    )


async def complete_request(uow: UnitOfWork, settings: BindingSettings, event: Verified) -> None:
    """Complete the request (an unbind, a pause or a switch, by its kind) once the very verification
    it waits for has passed every method it asked for. A Verified for anything else is refused
    (dead-lettered, nothing changes), except a late one for the request's own verification after
    the request ended (a cancellation or expiry crossing it)."""
    request = await _request_of(uow, event)
    own = request.verification_id == event.verification_id
    if request.status != RequestStatus.PENDING_VERIFICATION:
        if own and request.status in (RequestStatus.CANCELLED, RequestStatus.EXPIRED):
            log.info(
                "Verified after the request ended; nothing changes",
                extra={"request_id": request.id, "status": request.status},
            )
            return
        raise EventRejected(
            "state", f"Verified for a request that is {request.status}, not waiting for a verification"
        )
    if not own:
        raise EventRejected("state", "Verified names another verification than the one the request waits for")
    if not set(request.verification_methods or ()) <= set(event.methods):
        raise EventRejected(
            "state", "Verified does not cover every method the request's verification asked for"
        )
    binding = await repository.get_binding(uow.session, request.binding_id, for_update=True)
    assert binding is not None, "a request always has its binding"
    await _COMPLETIONS[RequestKind(request.kind)](uow, request, binding)


async def _unbind(uow: UnitOfWork, request: UnbindRequest, binding: Binding) -> None:
    """The binding is unbound: its mandates cancelled, the credit it granted withdrawn, its number free."""
    credit = await repository.get_credit_account(uow.session, binding.credit_account_id, for_update=True)
    assert credit is not None, "a binding always has its credit account"
    now = utcnow()
    # A mandate still waiting for its lender goes too: the lender's answer then finds it cancelled.
    cancelled = await _cancel_mandates(uow, binding, now)
    limit_before = credit.credit_limit
    credit.credit_limit = max(0, limit_before - binding.credit_limit_contribution)
    binding.status = BindingStatus.UNBOUND
    await repository.release_account_number(uow.session, binding.repayment_account_id, now)
    request.follow_up = list(FOLLOW_UP_AFTER_UNBIND)
    request.completed_at = now
    _transition(
        uow,
        request,
        RequestStatus.COMPLETED,
        "UnbindCompleted",
        actor="verification",
        actor_type=ActorType.SERVICE,
        reason=f"{cancelled} mandate(s) cancelled",
    )
    uow.emit(
        UnbindCompleted(
            **_about(request),
            mandates_cancelled=cancelled,
            credit_limit_before=limit_before,
            credit_limit_after=credit.credit_limit,
            follow_up=request.follow_up,
        )
    )


def add_months(day: date, months: int) -> date:
    """The same day `months` later (the month's last day where it is shorter)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


async def _pause(uow: UnitOfWork, request: UnbindRequest, binding: Binding) -> None:
    """The auto-debit stops until the same day `pause_months` later (Shanghai), when the resume
    sweep starts it again; the binding, its benefits and its credit limit stay as they are."""
    mandates = await repository.active_mandates(uow.session, binding.id)
    binding.status = BindingStatus.ACTIVE
    if not mandates:  # none runs any more (the request checked one did): there is nothing to pause
        await _reject(uow, request, "no_auto_debit", "binding", actor_type=ActorType.SYSTEM)
        return
    months = request.pause_months or 1
    resumes_on = add_months(today(), months)
    for mandate in mandates:
        mandate.status, mandate.resumes_at, mandate.paused_by = (
            MandateStatus.SUSPENDED,
            datetime.combine(resumes_on, datetime.min.time(), SHANGHAI),
            request.id,
        )
    request.follow_up = list(FOLLOW_UP_AFTER_PAUSE)
    _transition(
        uow,
        request,
        RequestStatus.COMPLETED,
        "AutoDebitPaused",
        actor="verification",
        actor_type=ActorType.SERVICE,
        reason=f"auto-debit paused until {resumes_on.isoformat()}",
    )
    uow.emit(
        AutoDebitPaused(**_about(request), mandate_id=mandates[0].id, months=months, resumes_on=resumes_on)
    )


async def resume_paused(uow: UnitOfWork, *, limit: int = 100) -> int:
    """Start again the auto-debits whose pause has run out; returns how many. Run by the sweep
    worker: the deadline is a column, so a pause that ran out while the service was down resumes
    on the next sweep."""
    due = await repository.pauses_due(uow.session, utcnow(), limit)
    for mandate in due:
        binding = await repository.get_binding(uow.session, mandate.binding_id)
        request = await repository.get_request(uow.session, mandate.paused_by or "")
        assert binding is not None and request is not None, (
            "a paused mandate has its binding and its pause request"
        )
        mandate.status, mandate.resumes_at = MandateStatus.ACTIVE, None
        _audit(
            uow,
            request,
            request.status,
            "AutoDebitResumed",
            actor="binding",
            actor_type=ActorType.SYSTEM,
            reason="the pause ran out: auto-debit is on again",
        )
        uow.emit(AutoDebitResumed(**_about(request), mandate_id=mandate.id))
    return len(due)


async def _switch(uow: UnitOfWork, request: UnbindRequest, binding: Binding) -> None:
    """The binding moves, with its benefits and credit, to the account the request holds: the old
    account's mandates are cancelled and its number freed; the new account's mandate goes to its
    lender (MandateRequested), and its confirmation turns auto-debit on again."""
    session = uow.session
    old = await session.get(RepaymentAccount, binding.repayment_account_id)
    new = await session.get(RepaymentAccount, request.new_repayment_account_id or "")
    assert old is not None and new is not None, "a switch request holds its new account"
    now = utcnow()
    cancelled = await _cancel_mandates(uow, binding, now)
    await repository.release_account_number(session, old.id, now)
    binding.repayment_account_id, binding.status = new.id, BindingStatus.ACTIVE
    _first_instalment(uow, new)
    mandate = Mandate(
        id=_new_id(),
        binding_id=binding.id,
        kind="auto_debit",
        status=MandateStatus.PENDING,
        request_id=request.id,
    )
    session.add(mandate)
    moved = f"{mask_account_number(old.account_number)} -> {mask_account_number(new.account_number)}"
    request.follow_up = list(FOLLOW_UP_AFTER_SWITCH)
    _transition(
        uow,
        request,
        RequestStatus.COMPLETED,
        "RepaymentAccountSwitched",
        actor="verification",
        actor_type=ActorType.SERVICE,
        reason=f"{moved}; {cancelled} mandate(s) cancelled",
    )
    assert new.lender_id is not None, "a switch names a lender of the directory"
    uow.emit(
        RepaymentAccountSwitched(
            **_about(request),
            previous_account_last4=old.account_number[-4:],
            account_last4=new.account_number[-4:],
            lender=new.lender_id,
            mandates_cancelled=cancelled,
        )
    )
    uow.emit(
        MandateRequested(
            **_about_mandate(binding, new, mandate),
            monthly_instalment=new.monthly_instalment,
            due_day=new.due_day,
        )
    )


_COMPLETIONS = {RequestKind.UNBIND: _unbind, RequestKind.PAUSE: _pause, RequestKind.SWITCH: _switch}


async def _cancel_mandates(uow: UnitOfWork, binding: Binding, now: datetime) -> int:
    """Cancel the binding's open mandates (active, paused or waiting for their lender); returns how many."""
    mandates = await repository.open_mandates(uow.session, binding.id)
    for mandate in mandates:
        mandate.status, mandate.cancelled_at, mandate.resumes_at = MandateStatus.CANCELLED, now, None
    return len(mandates)


# --- a binding's code and mandate ----------------------------------------------------------


async def _pending_binding(
    uow: UnitOfWork, event: BindingVerified | BindingVerificationFailed
) -> Binding | None:
    """The binding whose bind request's verification the event is about, locked, if it still waits
    for its code (None for a late or repeated event). EventRejected if this service never asked
    for that verification."""
    binding = await repository.get_binding(uow.session, event.binding_id, for_update=True)
    if binding is None or (binding.user_id, binding.bind_request_id, binding.verification_id) != (
        event.user_id,
        event.request_id,
        event.verification_id,
    ):
        raise EventRejected(
            "state",
            f"{type(event).__name__} is about a verification no bind request of this binding asked for",
        )
    return binding if binding.status == BindingStatus.PENDING else None


async def confirm_binding(uow: UnitOfWork, settings: BindingSettings, event: BindingVerified) -> None:
    """The customer confirmed the code: the account is bound (BindingCreated), and its mandate goes
    to the lender (MandateRequested); the credit limit waits for the lender's confirmation."""
    binding = await _pending_binding(uow, event)
    if binding is None:
        return
    repayment = await uow.session.get(RepaymentAccount, binding.repayment_account_id)
    assert repayment is not None, "a binding always has its repayment account"
    binding.status = BindingStatus.ACTIVE
    mandates = await repository.open_mandates(uow.session, binding.id)
    last4 = repayment.account_number[-4:]
    uow.emit(
        BindingCreated(
            **_about_binding(binding),
            lender=repayment.lender_id,
            account_last4=last4,
            monthly_instalment=repayment.monthly_instalment,
            auto_debit=bool(mandates),
        )
    )
    for mandate in mandates:
        uow.emit(
            MandateRequested(
                **_about_mandate(binding, repayment, mandate),
                monthly_instalment=repayment.monthly_instalment,
                due_day=repayment.due_day,
            )
        )


async def abandon_binding(
    uow: UnitOfWork, settings: BindingSettings, event: BindingVerificationFailed
) -> None:
    """The code was never confirmed: nothing was bound. The binding fails, its mandate is cancelled
    and the account number is free again (verification's event tells the customer)."""
    binding = await _pending_binding(uow, event)
    if binding is None:
        return
    now = utcnow()
    binding.status = BindingStatus.FAILED
    await _cancel_mandates(uow, binding, now)
    await repository.release_account_number(uow.session, binding.repayment_account_id, now)


def _about_mandate(binding: Binding, repayment: RepaymentAccount, mandate: Mandate) -> dict[str, str]:
    """The fields of an event about a mandate: the request that asked for it (the bind request, or a
    switch)."""
    assert repayment.lender_id is not None, "a binding made through the API names its lender"
    about = (
        {"request_id": mandate.request_id, "binding_id": binding.id, "user_id": binding.user_id}
        if mandate.request_id
        else _about_binding(binding)
    )
    return {
        **about,
        "mandate_id": mandate.id,
        "lender": repayment.lender_id,
        "account_last4": repayment.account_number[-4:],
    }


def authenticate_lender(
    settings: BindingSettings, lender_id: str | None, signature: str | None, body: bytes
) -> str:
    """The lender that signed this callback body, or 401: an unknown lender, a wrong signature and a
    timestamp out of tolerance are refused alike, so a caller learns nothing from which it was."""
    secret = settings.lender_secret(lender_id) if lender_id else None
    if (
        secret is None
        or not signature
        or not callback_signature_valid(
            secret, signature, body, time.time(), tolerance_seconds=settings.lender_callback_tolerance_seconds
        )
    ):
        detail = (
            f"A lender callback must be signed by a lender of the directory ({LENDER_HEADER}, "
            f"{SIGNATURE_HEADER}), within the allowed time."
        )
        raise Problem(401, "invalid-signature", "Invalid signature", detail)
    assert lender_id is not None
    return lender_id


async def apply_lender_callback(
    uow: UnitOfWork,
    settings: BindingSettings,
    lender_id: str,
    callback: LenderCallbackIn,
    *,
    fingerprint: str,
) -> tuple[LenderCallbackOut, bool]:
    """A lender confirms or refuses a pending mandate of its own; returns (the mandate now, whether
    this callback changed it). The same callback again changes nothing and gets the same kind of
    answer; the same id with another body, a mandate that is not the lender's (404) or is no longer
    pending (409) is refused."""
    session = uow.session
    binding_id = await repository.binding_of_mandate(session, callback.mandate_id)
    # The binding locked first, as an unbind's completion takes it (the two never wait on each other),
    # and before anything is read, so what is read is what the last writer committed.
    if binding_id is not None:
        await repository.get_binding(session, binding_id, for_update=True)
    view = await repository.get_binding_view(session, binding_id) if binding_id else None
    mandate = await repository.get_mandate(session, callback.mandate_id, for_update=True)
    if view is None or mandate is None or view[1].lender_id != lender_id:
        raise not_found("The mandate")
    binding, repayment, _ = view
    if (seen := await repository.get_lender_callback(session, lender_id, callback.callback_id)) is not None:
        if seen.fingerprint != fingerprint:
            raise Problem(
                422,
                "callback-id-reused",
                "Callback id reused",
                "This callback id was used for another callback.",
            )
        return _callback_out(mandate), False
    if binding.status == BindingStatus.PENDING:
        raise conflict(
            "mandate-not-requested",
            "This mandate was not sent to the lender: the customer has not confirmed the binding's code yet.",
        )
    if mandate.status != MandateStatus.PENDING:
        raise conflict(
            "mandate-decided",
            f"The mandate is {mandate.status}: only a pending mandate can be confirmed or refused.",
            mandate_status=mandate.status,
        )
    session.add(
        LenderCallback(
            lender_id=lender_id,
            callback_id=callback.callback_id,
            mandate_id=mandate.id,
            fingerprint=fingerprint,
            received_at=utcnow(),
        )
    )
    try:
        await session.flush()
    except IntegrityError as exc:  # the same callback id, for another mandate, at the same moment
        raise conflict("callback-in-flight", "A callback with this id is being processed; retry it.") from exc
    mandate.decided_at = utcnow()
    if callback.decision == "confirmed":
        await _grant_uplift(uow, settings, binding, repayment, mandate=mandate)
    else:
        mandate.status = MandateStatus.REFUSED
        mandate.refusal_reason = callback.reason or "not_given"
        limit_before, limit_after = await _withdraw_uplift(uow, binding)
        uow.emit(
            MandateRefused(
                **_about_mandate(binding, repayment, mandate),
                reason=mandate.refusal_reason,
                credit_limit_before=limit_before,
                credit_limit_after=limit_after,
            )
        )
    return _callback_out(mandate), True


async def _grant_uplift(
    uow: UnitOfWork,
    settings: BindingSettings,
    binding: Binding,
    repayment: RepaymentAccount,
    *,
    mandate: Mandate,
) -> None:
    """The lender confirmed: auto-debit is on, and the credit limit rises by the rule, within the
    customer's cap (past it the binding grants what is left, possibly nothing)."""
    session = uow.session
    credit = await repository.get_credit_account(session, binding.credit_account_id, for_update=True)
    assert credit is not None, "a binding always has its credit account"
    # A binding keeps what it was granted (a switched one keeps its uplift): its mandate raises the
    # uplift to the rule's amount for its instalment at most, within what the cap leaves.
    held = await repository.limit_uplift_held(session, binding.user_id)
    target = min(
        credit_limit_contribution(repayment.monthly_instalment),
        settings.max_total_limit_uplift - held + binding.credit_limit_contribution,
    )
    contribution = max(0, target - binding.credit_limit_contribution)
    limit_before = credit.credit_limit
    credit.credit_limit = limit_before + contribution
    binding.credit_limit_contribution += contribution
    if contribution and (benefit := await repository.limit_uplift_benefit(session, binding.id)) is not None:
        benefit.value += contribution
    elif contribution:
        session.add(Benefit(id=_new_id(), binding_id=binding.id, code="limit_uplift", value=contribution))
    mandate.status = MandateStatus.ACTIVE
    uow.emit(
        MandateConfirmed(
            **_about_mandate(binding, repayment, mandate),
            credit_limit_before=limit_before,
            credit_limit_after=credit.credit_limit,
        )
    )


async def _withdraw_uplift(uow: UnitOfWork, binding: Binding) -> tuple[int, int]:
    """The lender refused the mandate: a binding without auto-debit grants nothing, so what it was
    granted before (a switched binding's uplift) is withdrawn. Returns the limit before and after."""
    credit = await repository.get_credit_account(uow.session, binding.credit_account_id, for_update=True)
    assert credit is not None, "a binding always has its credit account"
    limit_before = credit.credit_limit
    if binding.credit_limit_contribution:
        credit.credit_limit = max(0, limit_before - binding.credit_limit_contribution)
        binding.credit_limit_contribution = 0
        if (benefit := await repository.limit_uplift_benefit(uow.session, binding.id)) is not None:
            await uow.session.delete(benefit)
    return limit_before, credit.credit_limit


def _callback_out(mandate: Mandate) -> LenderCallbackOut:
    return LenderCallbackOut(mandate_id=mandate.id, status=mandate.status, decided_at=mandate.decided_at)


async def fail_verification(uow: UnitOfWork, settings: BindingSettings, event: VerificationFailed) -> None:
    request = await _request_in(uow, event, RequestStatus.PENDING_VERIFICATION)
    if request is not None:
        await _reject(
            uow, request, f"verification_failed:{event.reason}", "verification", actor_type=ActorType.SERVICE
        )


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


async def _reject(
    uow: UnitOfWork, request: UnbindRequest, reason: str, actor: str, *, actor_type: ActorType
) -> None:
    request.outcome_reason = reason
    await _end(
        uow,
        request,
        RequestStatus.REJECTED,
        "UnbindRejected",
        actor=actor,
        actor_type=actor_type,
        reason=reason,
    )
    uow.emit(UnbindRejected(**_about(request), reason=reason))


async def _end(
    uow: UnitOfWork,
    request: UnbindRequest,
    status: RequestStatus,
    action: str,
    *,
    actor: str,
    actor_type: ActorType,
    reason: str,
) -> None:
    """End an open request without completing it: the binding is active again, and the number a
    switch held is free."""
    _transition(uow, request, status, action, actor=actor, actor_type=actor_type, reason=reason)
    await repository.set_binding_status(uow.session, request.binding_id, BindingStatus.ACTIVE)
    if request.new_repayment_account_id:
        await repository.release_account_number(uow.session, request.new_repayment_account_id, utcnow())


def _about(request: UnbindRequest) -> dict[str, str]:
    """The fields every event about a request carries."""
    return {"request_id": request.id, "binding_id": request.binding_id, "user_id": request.user_id}


def _transition(
    uow: UnitOfWork,
    request: UnbindRequest,
    status: RequestStatus,
    action: str,
    *,
    actor: str,
    actor_type: ActorType,
    reason: str | None = None,
) -> None:
    previous = request.status
    request.status = status
    request.updated_at = utcnow()
    _audit(uow, request, previous, action, actor=actor, actor_type=actor_type, reason=reason)


def _audit(
    uow: UnitOfWork,
    request: UnbindRequest,
    from_status: str | None,
    action: str,
    *,
    actor: str,
    actor_type: ActorType,
    reason: str | None,
) -> None:
    uow.session.add(
        AuditEntry(
            request_id=request.id,
            action=action,
            from_status=from_status,
            to_status=request.status,
            actor=actor,
            actor_type=actor_type,
            reason=reason,
            at=utcnow(),
        )
    )
