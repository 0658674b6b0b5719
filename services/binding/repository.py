"""Every query of the binding service."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.binding.models import (
    OPEN_REQUEST_STATUSES,
    Binding,
    BindingStatus,
    CreditAccount,
    RepaymentAccount,
    TimelineEntry,
    UnbindRequest,
)


async def list_bindings(session: AsyncSession, user_id: str) -> Sequence[tuple[Binding, RepaymentAccount, CreditAccount]]:
    rows = await session.execute(
        select(Binding, RepaymentAccount, CreditAccount)
        .join(RepaymentAccount, Binding.repayment_account_id == RepaymentAccount.id)
        .join(CreditAccount, Binding.credit_account_id == CreditAccount.id)
        .where(Binding.user_id == user_id)
        .order_by(Binding.created_at, Binding.id)
    )
    return [tuple(row) for row in rows.all()]  # type: ignore[misc]


async def get_binding_view(session: AsyncSession, binding_id: str) -> tuple[Binding, RepaymentAccount, CreditAccount] | None:
    row = (
        await session.execute(
            select(Binding, RepaymentAccount, CreditAccount)
            .join(RepaymentAccount, Binding.repayment_account_id == RepaymentAccount.id)
            .join(CreditAccount, Binding.credit_account_id == CreditAccount.id)
            .where(Binding.id == binding_id)
        )
    ).first()
    return tuple(row) if row else None  # type: ignore[return-value]


async def get_binding(session: AsyncSession, binding_id: str, *, for_update: bool = False) -> Binding | None:
    query = select(Binding).where(Binding.id == binding_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def get_credit_account(session: AsyncSession, account_id: str, *, for_update: bool = False) -> CreditAccount | None:
    query = select(CreditAccount).where(CreditAccount.id == account_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def claim_binding_for_unbind(session: AsyncSession, binding_id: str) -> bool:
    """Atomically move an active binding to `unbinding`; False if it was not active (at most one
    open request per binding, even under concurrent requests)."""
    result = await session.execute(
        update(Binding).where(Binding.id == binding_id, Binding.status == BindingStatus.ACTIVE).values(status=BindingStatus.UNBINDING)
    )
    return result.rowcount == 1


async def set_binding_status(session: AsyncSession, binding_id: str, status: BindingStatus) -> None:
    await session.execute(update(Binding).where(Binding.id == binding_id).values(status=status))


async def get_request(session: AsyncSession, request_id: str, *, for_update: bool = False) -> UnbindRequest | None:
    query = select(UnbindRequest).where(UnbindRequest.id == request_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def get_request_by_idempotency_key(session: AsyncSession, user_id: str, key: str) -> UnbindRequest | None:
    return await session.scalar(select(UnbindRequest).where(UnbindRequest.user_id == user_id, UnbindRequest.idempotency_key == key))


async def open_request_for_binding(session: AsyncSession, binding_id: str) -> UnbindRequest | None:
    return await session.scalar(
        select(UnbindRequest).where(UnbindRequest.binding_id == binding_id, UnbindRequest.status.in_(OPEN_REQUEST_STATUSES))
    )


async def timeline(session: AsyncSession, request_id: str) -> Sequence[TimelineEntry]:
    return (await session.scalars(select(TimelineEntry).where(TimelineEntry.request_id == request_id).order_by(TimelineEntry.id))).all()


async def count_bindings(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Binding)) or 0
