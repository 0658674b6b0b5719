"""Every query of the verification service."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.verification.models import Verification, VerificationStatus


async def get(session: AsyncSession, verification_id: str, *, for_update: bool = False) -> Verification | None:
    query = select(Verification).where(Verification.id == verification_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def live_for_request(session: AsyncSession, request_id: str, *, for_update: bool = False) -> Verification | None:
    """The request's verification that is still pending or has passed, if any."""
    query = select(Verification).where(
        Verification.request_id == request_id, Verification.status.in_((VerificationStatus.PENDING, VerificationStatus.VERIFIED))
    )
    return await session.scalar(query.with_for_update() if for_update else query)


async def set_delivery(session: AsyncSession, verification_id: str, send_number: int, delivery: str) -> None:
    # Only the latest send's outcome counts: a slow answer for an older code must not overwrite it.
    await session.execute(update(Verification).where(Verification.id == verification_id, Verification.otp_sends == send_number).values(otp_delivery=delivery))
