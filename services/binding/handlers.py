"""Event handlers of the binding service: one function per consumed event, and the subscriptions."""

from __future__ import annotations

from services.binding import service
from services.binding.config import BindingSettings
from services.binding.models import CustomerLocale
from shared.consumer import Subscriptions
from shared.events import BindingVerificationFailed, BindingVerified, PreferencesChanged, ReviewDecided, RiskAssessed, VerificationFailed, VerificationRequested, Verified
from shared.i18n import remember_locales
from shared.uow import UnitOfWork


async def on_risk_assessed(event: RiskAssessed, uow: UnitOfWork, settings: BindingSettings) -> None:
    await service.apply_risk_assessment(uow, settings, event)


async def on_review_decided(event: ReviewDecided, uow: UnitOfWork, settings: BindingSettings) -> None:
    await service.apply_review_decision(uow, settings, event)


async def on_verification_requested(event: VerificationRequested, uow: UnitOfWork, settings: BindingSettings) -> None:
    await service.record_verification_issued(uow, event)


async def on_verified(event: Verified, uow: UnitOfWork, settings: BindingSettings) -> None:
    await service.complete_request(uow, event)


async def on_verification_failed(event: VerificationFailed, uow: UnitOfWork, settings: BindingSettings) -> None:
    await service.fail_verification(uow, event)


async def on_binding_verified(event: BindingVerified, uow: UnitOfWork, settings: BindingSettings) -> None:
    await service.confirm_binding(uow, event)


async def on_binding_verification_failed(event: BindingVerificationFailed, uow: UnitOfWork, settings: BindingSettings) -> None:
    await service.abandon_binding(uow, event)


SUBSCRIPTIONS: Subscriptions = {
    BindingVerified: on_binding_verified,
    BindingVerificationFailed: on_binding_verification_failed,
    RiskAssessed: on_risk_assessed,
    ReviewDecided: on_review_decided,
    VerificationRequested: on_verification_requested,
    Verified: on_verified,
    VerificationFailed: on_verification_failed,
    PreferencesChanged: remember_locales(CustomerLocale),
}
