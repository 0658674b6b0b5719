"""Every query of the verification service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.verification.models import (
    Challenge,
    DeliveryStatus,
    Device,
    DeviceAudit,
    OtpSend,
    Purpose,
    Verification,
    VerificationAttempt,
    VerificationStatus,
)


async def get(
    session: AsyncSession, verification_id: str, *, for_update: bool = False
) -> Verification | None:
    query = select(Verification).where(Verification.id == verification_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def live_for_request(
    session: AsyncSession, request_id: str, *, for_update: bool = False
) -> Verification | None:
    """The request's verification that is still pending or has passed, if any."""
    query = select(Verification).where(
        Verification.request_id == request_id,
        Verification.status.in_((VerificationStatus.PENDING, VerificationStatus.VERIFIED)),
    )
    return await session.scalar(query.with_for_update() if for_update else query)


async def codes_to_send_again(
    session: AsyncSession, now: datetime, max_retries: int
) -> Sequence[Verification]:
    query = (
        select(Verification)
        .where(
            Verification.status == VerificationStatus.PENDING,
            Verification.otp_delivery.in_((DeliveryStatus.FAILED, DeliveryStatus.SENDING)),
            Verification.next_delivery_at <= now,
            Verification.delivery_retries < max_retries,
        )
        .limit(100)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()


async def next_sweep_due(session: AsyncSession, max_retries: int) -> datetime | None:
    """The soonest of the pending verifications' deadlines and of their codes' re-sends."""
    pending = Verification.status == VerificationStatus.PENDING
    deadline, resend = (
        await session.execute(
            select(
                select(func.min(Verification.expires_at)).where(pending).scalar_subquery(),
                select(func.min(Verification.next_delivery_at))
                .where(
                    pending,
                    Verification.otp_delivery.in_((DeliveryStatus.FAILED, DeliveryStatus.SENDING)),
                    Verification.delivery_retries < max_retries,
                )
                .scalar_subquery(),
            )
        )
    ).one()
    return min((due for due in (deadline, resend) if due is not None), default=None)


async def pending_past_deadline(session: AsyncSession, now: datetime) -> Sequence[Verification]:
    query = (
        select(Verification)
        .where(Verification.status == VerificationStatus.PENDING, Verification.expires_at <= now)
        .limit(100)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()


async def sends_since(session: AsyncSession, user_id: str, since: datetime) -> Sequence[datetime]:
    """When this customer asked for codes since `since`, oldest first."""
    return (
        await session.scalars(
            select(OtpSend.sent_at)
            .where(OtpSend.user_id == user_id, OtpSend.sent_at > since)
            .order_by(OtpSend.sent_at)
        )
    ).all()


async def challenge_for(session: AsyncSession, verification_id: str, challenge: str) -> Challenge | None:
    return await session.scalar(
        select(Challenge)
        .where(Challenge.verification_id == verification_id, Challenge.challenge == challenge)
        .with_for_update()
    )


async def get_device(session: AsyncSession, device_id: str, *, for_update: bool = False) -> Device | None:
    query = select(Device).where(Device.id == device_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def devices_of(session: AsyncSession, user_id: str) -> Sequence[Device]:
    return (
        await session.scalars(
            select(Device).where(Device.user_id == user_id).order_by(Device.created_at, Device.id)
        )
    ).all()


async def device_history(session: AsyncSession, device_id: str) -> Sequence[DeviceAudit]:
    return (
        await session.scalars(
            select(DeviceAudit)
            .where(DeviceAudit.device_id == device_id)
            .order_by(DeviceAudit.at, DeviceAudit.id)
        )
    ).all()


async def pending_enrolment(session: AsyncSession, device_id: str) -> Verification | None:
    """The device's enrolment verification still waiting for its code, if any."""
    query = select(Verification).where(
        Verification.purpose == Purpose.DEVICE_ENROLMENT,
        Verification.device_id == device_id,
        Verification.status == VerificationStatus.PENDING,
    )
    return await session.scalar(query.with_for_update())


async def count_devices(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Device)) or 0


async def of_request(session: AsyncSession, request_id: str) -> Sequence[Verification]:
    """Every verification of a request (an appealed request approved again has several), oldest first."""
    return (
        await session.scalars(
            select(Verification)
            .where(Verification.request_id == request_id)
            .order_by(Verification.created_at, Verification.id)
        )
    ).all()


async def attempts_of(
    session: AsyncSession, verification_ids: Sequence[str]
) -> Sequence[VerificationAttempt]:
    query = (
        select(VerificationAttempt)
        .where(VerificationAttempt.verification_id.in_(verification_ids))
        .order_by(VerificationAttempt.at, VerificationAttempt.id)
    )
    return (await session.scalars(query)).all()


async def device_histories(session: AsyncSession, device_ids: Sequence[str]) -> Sequence[DeviceAudit]:
    return (
        await session.scalars(
            select(DeviceAudit)
            .where(DeviceAudit.device_id.in_(device_ids))
            .order_by(DeviceAudit.at, DeviceAudit.id)
        )
    ).all()
