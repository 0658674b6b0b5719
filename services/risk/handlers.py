"""Event handlers of the risk service: one function per consumed event, and the subscriptions."""

from __future__ import annotations

from services.risk import service
from services.risk.config import RiskSettings
from shared.consumer import Subscriptions
from shared.events import BiometricCounterRegressed, UnbindAppealed, UnbindRejected, UnbindRequested, VerificationFailed
from shared.uow import UnitOfWork


async def on_unbind_requested(event: UnbindRequested, uow: UnitOfWork, settings: RiskSettings) -> None:
    await service.assess(uow, settings, event)


async def on_verification_failed(event: VerificationFailed, uow: UnitOfWork, settings: RiskSettings) -> None:
    service.observe(uow, event)


async def on_unbind_rejected(event: UnbindRejected, uow: UnitOfWork, settings: RiskSettings) -> None:
    service.observe(uow, event)


async def on_unbind_appealed(event: UnbindAppealed, uow: UnitOfWork, settings: RiskSettings) -> None:
    await service.open_appeal_review(uow, event)


async def on_biometric_counter_regressed(event: BiometricCounterRegressed, uow: UnitOfWork, settings: RiskSettings) -> None:
    service.observe(uow, event)


SUBSCRIPTIONS: Subscriptions = {
    BiometricCounterRegressed: on_biometric_counter_regressed,
    UnbindAppealed: on_unbind_appealed,
    UnbindRequested: on_unbind_requested,
    VerificationFailed: on_verification_failed,
    UnbindRejected: on_unbind_rejected,
}
