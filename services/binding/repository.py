"""Every query of the binding service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.binding.models import (
    OPEN_MANDATE_STATUSES,
    OPEN_REQUEST_STATUSES,
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
    UnbindRequest,
)

BindingView = tuple[Binding, RepaymentAccount, CreditAccount]


def _binding_views() -> Select:
    return (
        select(Binding, RepaymentAccount, CreditAccount)
        .join(RepaymentAccount, Binding.repayment_account_id == RepaymentAccount.id)
        .join(CreditAccount, Binding.credit_account_id == CreditAccount.id)
    )


async def list_bindings(session: AsyncSession, user_id: str) -> Sequence[BindingView]:
    rows = await session.execute(
        _binding_views().where(Binding.user_id == user_id).order_by(Binding.created_at, Binding.id)
    )
    return [tuple(row) for row in rows.all()]  # type: ignore[misc]


async def get_binding_view(session: AsyncSession, binding_id: str) -> BindingView | None:
    row = (await session.execute(_binding_views().where(Binding.id == binding_id))).first()
    return tuple(row) if row else None  # type: ignore[return-value]


async def get_binding(session: AsyncSession, binding_id: str, *, for_update: bool = False) -> Binding | None:
    query = select(Binding).where(Binding.id == binding_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def get_credit_account(
    session: AsyncSession, account_id: str, *, for_update: bool = False
) -> CreditAccount | None:
    query = select(CreditAccount).where(CreditAccount.id == account_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def credit_account_of(
    session: AsyncSession, user_id: str, *, for_update: bool = False
) -> CreditAccount | None:
    query = (
        select(CreditAccount)
        .where(CreditAccount.user_id == user_id)
        .order_by(CreditAccount.created_at)
        .limit(1)
    )
    return await session.scalar(query.with_for_update() if for_update else query)


async def account_number_held(session: AsyncSession, account_number: str) -> bool:
    """Whether a binding (of any customer) still holds this normalised account number."""
    query = (
        select(func.count())
        .select_from(RepaymentAccount)
        .where(RepaymentAccount.account_number == account_number, RepaymentAccount.released_at.is_(None))
    )
    return bool(await session.scalar(query))


async def release_account_number(session: AsyncSession, repayment_account_id: str, at: datetime) -> None:
    await session.execute(
        update(RepaymentAccount).where(RepaymentAccount.id == repayment_account_id).values(released_at=at)
    )


async def hold_account_number(session: AsyncSession, repayment_account_id: str) -> None:
    """Hold a released number again; the unique index refuses it (IntegrityError) if it was bound since."""
    await session.execute(
        update(RepaymentAccount).where(RepaymentAccount.id == repayment_account_id).values(released_at=None)
    )


async def limit_uplift_held(session: AsyncSession, user_id: str) -> int:
    """The credit limit a customer's bindings that are not unbound have granted, CNY."""
    query = select(func.coalesce(func.sum(Binding.credit_limit_contribution), 0)).where(
        Binding.user_id == user_id, Binding.status != BindingStatus.UNBOUND
    )
    return int(await session.scalar(query) or 0)


async def claim_binding(session: AsyncSession, binding_id: str, status: BindingStatus) -> bool:
    """Atomically move an active binding to `status` (`unbinding`, or `changing` for a pause or a
    switch); False if it was not active (at most one open request per binding, even under
    concurrent requests)."""
    result = await session.execute(
        update(Binding)
        .where(Binding.id == binding_id, Binding.status == BindingStatus.ACTIVE)
        .values(status=status)
    )
    return result.rowcount == 1


async def set_binding_status(session: AsyncSession, binding_id: str, status: BindingStatus) -> None:
    await session.execute(update(Binding).where(Binding.id == binding_id).values(status=status))


async def active_mandates(session: AsyncSession, binding_id: str) -> Sequence[Mandate]:
    return (
        await session.scalars(
            select(Mandate).where(Mandate.binding_id == binding_id, Mandate.status == MandateStatus.ACTIVE)
        )
    ).all()


async def suspended_mandates(session: AsyncSession, binding_id: str) -> Sequence[Mandate]:
    return (
        await session.scalars(
            select(Mandate).where(Mandate.binding_id == binding_id, Mandate.status == MandateStatus.SUSPENDED)
        )
    ).all()


async def paused_until(session: AsyncSession, binding_ids: Sequence[str]) -> dict[str, datetime]:
    """When the paused auto-debit of each of these bindings resumes, for those paused."""
    rows = await session.execute(
        select(Mandate.binding_id, Mandate.resumes_at).where(
            Mandate.binding_id.in_(binding_ids), Mandate.status == MandateStatus.SUSPENDED
        )
    )
    return {binding_id: resumes_at for binding_id, resumes_at in rows.all() if resumes_at is not None}


async def pauses_due(session: AsyncSession, now: datetime, limit: int) -> Sequence[Mandate]:
    """Suspended mandates whose pause has run out, locked; SKIP LOCKED lets several instances sweep at
    once."""
    query = (
        select(Mandate)
        .where(Mandate.status == MandateStatus.SUSPENDED, Mandate.resumes_at <= now)
        .order_by(Mandate.resumes_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()


async def open_mandates(session: AsyncSession, binding_id: str) -> Sequence[Mandate]:
    """The binding's mandates that are active or still wait for their lender."""
    return (
        await session.scalars(
            select(Mandate).where(Mandate.binding_id == binding_id, Mandate.status.in_(OPEN_MANDATE_STATUSES))
        )
    ).all()


async def binding_of_mandate(session: AsyncSession, mandate_id: str) -> str | None:
    return await session.scalar(select(Mandate.binding_id).where(Mandate.id == mandate_id))


async def get_mandate(session: AsyncSession, mandate_id: str, *, for_update: bool = False) -> Mandate | None:
    query = select(Mandate).where(Mandate.id == mandate_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def latest_mandate_status(session: AsyncSession, binding_ids: Sequence[str]) -> dict[str, str]:
    """The status of each binding's newest mandate, for the bindings that have one."""
    rows = await session.execute(
        select(Mandate.binding_id, Mandate.status)
        .where(Mandate.binding_id.in_(binding_ids))
        .order_by(Mandate.created_at, Mandate.id)
    )
    return {binding_id: status for binding_id, status in rows.all()}


async def get_lender_callback(
    session: AsyncSession, lender_id: str, callback_id: str
) -> LenderCallback | None:
    return await session.scalar(
        select(LenderCallback).where(
            LenderCallback.lender_id == lender_id, LenderCallback.callback_id == callback_id
        )
    )


async def count_pending_bindings(session: AsyncSession, user_id: str) -> int:
    """A customer's bindings still waiting for their SMS code."""
    return (
        await session.scalar(
            select(func.count())
            .select_from(Binding)
            .where(Binding.user_id == user_id, Binding.status == BindingStatus.PENDING)
        )
        or 0
    )


async def mandates(session: AsyncSession, binding_id: str) -> Sequence[Mandate]:
    return (
        await session.scalars(
            select(Mandate).where(Mandate.binding_id == binding_id).order_by(Mandate.created_at, Mandate.id)
        )
    ).all()


async def auto_debit_on(session: AsyncSession, binding_ids: Sequence[str]) -> set[str]:
    """Which of these bindings have an active auto-debit mandate."""
    rows = await session.scalars(
        select(Mandate.binding_id).where(
            Mandate.binding_id.in_(binding_ids), Mandate.status == MandateStatus.ACTIVE
        )
    )
    return set(rows.all())


async def limit_uplift_benefit(session: AsyncSession, binding_id: str) -> Benefit | None:
    return await session.scalar(
        select(Benefit)
        .where(Benefit.binding_id == binding_id, Benefit.code == "limit_uplift")
        .order_by(Benefit.id)
        .limit(1)
    )


async def benefits(session: AsyncSession, binding_id: str) -> Sequence[Benefit]:
    return (
        await session.scalars(select(Benefit).where(Benefit.binding_id == binding_id).order_by(Benefit.code))
    ).all()


async def instalments(
    session: AsyncSession, repayment_account_id: str, *, limit: int = 12
) -> Sequence[Instalment]:
    """Most recent first."""
    query = (
        select(Instalment)
        .where(Instalment.repayment_account_id == repayment_account_id)
        .order_by(Instalment.due_date.desc())
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def unpaid_instalments(
    session: AsyncSession, repayment_account_id: str, *, for_update: bool = False
) -> Sequence[Instalment]:
    """Oldest first."""
    query = (
        select(Instalment)
        .where(Instalment.repayment_account_id == repayment_account_id, Instalment.paid_at.is_(None))
        .order_by(Instalment.due_date)
    )
    return (await session.scalars(query.with_for_update() if for_update else query)).all()


async def instalment_paid_with_key(session: AsyncSession, user_id: str, key: str) -> Instalment | None:
    """The instalment a customer's repayment with this Idempotency-Key paid, on any of their accounts."""
    query = (
        select(Instalment)
        .join(RepaymentAccount, Instalment.repayment_account_id == RepaymentAccount.id)
        .where(RepaymentAccount.user_id == user_id, Instalment.payment_key == key)
        .order_by(Instalment.paid_at)
        .limit(1)
    )
    return await session.scalar(query)


async def get_request(
    session: AsyncSession, request_id: str, *, for_update: bool = False
) -> UnbindRequest | None:
    query = select(UnbindRequest).where(UnbindRequest.id == request_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def get_request_by_idempotency_key(
    session: AsyncSession, user_id: str, key: str
) -> UnbindRequest | None:
    return await session.scalar(
        select(UnbindRequest).where(UnbindRequest.user_id == user_id, UnbindRequest.idempotency_key == key)
    )


async def open_request_for_binding(session: AsyncSession, binding_id: str) -> UnbindRequest | None:
    return await session.scalar(
        select(UnbindRequest).where(
            UnbindRequest.binding_id == binding_id, UnbindRequest.status.in_(OPEN_REQUEST_STATUSES)
        )
    )


async def overdue_open_requests(session: AsyncSession, now: datetime, limit: int) -> Sequence[UnbindRequest]:
    """Open requests past their expiry, locked; SKIP LOCKED lets several instances sweep at once."""
    query = (
        select(UnbindRequest)
        .where(UnbindRequest.status.in_(OPEN_REQUEST_STATUSES), UnbindRequest.expires_at <= now)
        .order_by(UnbindRequest.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()


async def audit_entries(session: AsyncSession, request_id: str) -> Sequence[AuditEntry]:
    return (
        await session.scalars(
            select(AuditEntry).where(AuditEntry.request_id == request_id).order_by(AuditEntry.id)
        )
    ).all()


async def search_requests(
    session: AsyncSession,
    *,
    status: str | None,
    user_id: str | None,
    since: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[UnbindRequest]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(UnbindRequest)
    if status:
        query = query.where(UnbindRequest.status == status)
    if user_id:
        query = query.where(UnbindRequest.user_id == user_id)
    if since:
        query = query.where(UnbindRequest.created_at >= since)
    if after:
        created_at, request_id = after
        query = query.where(
            or_(
                UnbindRequest.created_at < created_at,
                (UnbindRequest.created_at == created_at) & (UnbindRequest.id < request_id),
            )
        )
    return (
        await session.scalars(
            query.order_by(UnbindRequest.created_at.desc(), UnbindRequest.id.desc()).limit(limit)
        )
    ).all()


async def count_bindings(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Binding)) or 0
