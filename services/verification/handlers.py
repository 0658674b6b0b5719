"""Event handlers of the verification service: one function per consumed event, and the subscriptions."""

from __future__ import annotations

from services.verification import service
from services.verification.models import CustomerLocale
from services.verification.service import VerificationDeps
from shared.consumer import Subscriptions, current_envelope
from shared.events import BindingRequested, PreferencesChanged, ReviewDecided, ReviewOutcome, RiskAssessed, RiskDecision, UnbindCancelled, UnbindExpired, UnbindRequested
from shared.i18n import remember_locales
from shared.uow import UnitOfWork


async def on_unbind_requested(event: UnbindRequested, uow: UnitOfWork, deps: VerificationDeps) -> None:
    # The CloudEvent time is when binding accepted the request: keys activated later cannot sign for it.
    await service.remember_request(uow, event, current_envelope.get().time)


async def on_risk_assessed(event: RiskAssessed, uow: UnitOfWork, deps: VerificationDeps) -> None:
    if event.decision in (RiskDecision.ALLOW, RiskDecision.STEP_UP):
        await service.issue(uow, deps, event, event.required_methods)


async def on_review_decided(event: ReviewDecided, uow: UnitOfWork, deps: VerificationDeps) -> None:
    # An approval that clears a request names its methods; the closing of a dispute names none.
    if event.decision == ReviewOutcome.APPROVE and event.required_methods:
        await service.issue(uow, deps, event, event.required_methods)


async def on_unbind_cancelled(event: UnbindCancelled, uow: UnitOfWork, deps: VerificationDeps) -> None:
    await service.close_request(uow, event)


async def on_unbind_expired(event: UnbindExpired, uow: UnitOfWork, deps: VerificationDeps) -> None:
    await service.close_request(uow, event)


async def on_binding_requested(event: BindingRequested, uow: UnitOfWork, deps: VerificationDeps) -> None:
    await service.issue_for_binding(uow, deps, event)


SUBSCRIPTIONS: Subscriptions = {
    BindingRequested: on_binding_requested,
    UnbindRequested: on_unbind_requested,
    RiskAssessed: on_risk_assessed,
    ReviewDecided: on_review_decided,
    UnbindCancelled: on_unbind_cancelled,
    UnbindExpired: on_unbind_expired,
    PreferencesChanged: remember_locales(CustomerLocale),
}
