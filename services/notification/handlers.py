"""Event handlers of the notification service: one function per consumed event, and the subscriptions."""

from __future__ import annotations

from services.notification import service
from services.notification.service import NotificationDeps
from shared.consumer import Subscriptions, current_envelope
from shared.events import (
    AutoDebitPaused,
    AutoDebitResumed,
    BindingCreated,
    BindingEvent,
    BindingRequested,
    BindingVerificationFailed,
    BiometricCounterRegressed,
    DeviceEnrolled,
    DeviceRevoked,
    Event,
    MandateConfirmed,
    MandateRefused,
    MandateRequested,
    RepaymentAccountSwitched,
    ReviewDecided,
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
from shared.uow import UnitOfWork


async def _follow(event: Event, uow: UnitOfWork) -> tuple[str, str | None]:
    """The id of the handled event, once checked against the requests notification knows, and the
    kind of its request (an unbind, a pause, a switch, a bind request; None for a device event)."""
    event_id = current_envelope.get().id
    # Only BindingRequested and UnbindRequested bring new request ids; every other event about a request
    # must be about one they opened (a device event is about the customer alone).
    if isinstance(event, UnbindRequested):
        return event_id, str(event.kind)
    if isinstance(event, BindingEvent):
        return event_id, (await service.follow_request(uow, event_id, event)).kind
    return event_id, None


async def _notify(kind: str, event: Event, uow: UnitOfWork, deps: NotificationDeps, **params: object) -> None:
    event_id, request_kind = await _follow(event, uow)
    await service.plan(uow, deps.metrics, event_id, kind, event, await service.facts_of(uow, event) | params, request_kind=request_kind)


async def on_binding_requested(event: BindingRequested, uow: UnitOfWork, deps: NotificationDeps) -> None:
    # No message: the code SMS verification sends is the customer's notice.
    await service.remember_request(uow, current_envelope.get().id, event)


async def on_binding_verification_failed(event: BindingVerificationFailed, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("binding_verification_failed", event, uow, deps)


async def on_binding_created(event: BindingCreated, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("binding_created", event, uow, deps)


async def on_mandate_requested(event: MandateRequested, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("mandate_requested", event, uow, deps)
    await service.notify_lender(uow, current_envelope.get().id, "mandate_requested", event)


async def on_mandate_confirmed(event: MandateConfirmed, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("mandate_confirmed", event, uow, deps)


async def on_mandate_refused(event: MandateRefused, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("mandate_refused", event, uow, deps)


async def on_unbind_requested(event: UnbindRequested, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await service.remember_request(uow, current_envelope.get().id, event)
    await _notify(service.PROMPT_KIND, event, uow, deps)


async def on_risk_assessed(event: RiskAssessed, uow: UnitOfWork, deps: NotificationDeps) -> None:
    # The customer hears of a review (with when to expect an answer); of a score, never.
    if event.decision == RiskDecision.REVIEW:
        await _notify("unbind_under_review", event, uow, deps, expected_hours=deps.settings.review_expected_hours)
    else:
        await _follow(event, uow)


async def on_verification_requested(event: VerificationRequested, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("verification_requested", event, uow, deps)


async def on_verified(event: Verified, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("verified", event, uow, deps)


async def on_verification_failed(event: VerificationFailed, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("verification_failed", event, uow, deps)


async def on_biometric_counter_regressed(event: BiometricCounterRegressed, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("biometric_counter_regressed", event, uow, deps)


async def on_device_enrolled(event: DeviceEnrolled, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("device_enrolled", event, uow, deps)


async def on_device_revoked(event: DeviceRevoked, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("device_revoked", event, uow, deps)


async def on_auto_debit_paused(event: AutoDebitPaused, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("auto_debit_paused", event, uow, deps)
    await service.notify_lender(uow, current_envelope.get().id, "auto_debit_paused", event)


async def on_auto_debit_resumed(event: AutoDebitResumed, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("auto_debit_resumed", event, uow, deps)
    await service.notify_lender(uow, current_envelope.get().id, "auto_debit_resumed", event)


async def on_repayment_account_switched(event: RepaymentAccountSwitched, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("repayment_account_switched", event, uow, deps)
    await service.notify_lender(uow, current_envelope.get().id, "repayment_account_switched", event)


async def on_unbind_completed(event: UnbindCompleted, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("unbind_completed", event, uow, deps)
    event_id = current_envelope.get().id
    await service.notify_lender(uow, event_id, "unbind_completed", event)
    await service.schedule_reminder(uow, deps, event_id, event)


async def on_unbind_rejected(event: UnbindRejected, uow: UnitOfWork, deps: NotificationDeps) -> None:
    if event.reason.startswith("review_denied"):
        # The reviewer's decision told the customer already, with its reason and their message.
        await _follow(event, uow)
        return
    await _notify("unbind_rejected", event, uow, deps)


async def on_unbind_cancelled(event: UnbindCancelled, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("unbind_cancelled", event, uow, deps)


async def on_unbind_expired(event: UnbindExpired, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("unbind_expired", event, uow, deps)


async def on_unbind_appealed(event: UnbindAppealed, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("unbind_appealed", event, uow, deps, expected_hours=deps.settings.review_expected_hours)


async def on_review_decided(event: ReviewDecided, uow: UnitOfWork, deps: NotificationDeps) -> None:
    kind, params = await service.review_notice(uow, event)
    await _notify(kind, event, uow, deps, **params)


async def on_unbind_disputed(event: UnbindDisputed, uow: UnitOfWork, deps: NotificationDeps) -> None:
    await _notify("dispute_received", event, uow, deps)


SUBSCRIPTIONS: Subscriptions = {
    BindingRequested: on_binding_requested,
    BindingVerificationFailed: on_binding_verification_failed,
    BindingCreated: on_binding_created,
    MandateRequested: on_mandate_requested,
    MandateConfirmed: on_mandate_confirmed,
    MandateRefused: on_mandate_refused,
    UnbindRequested: on_unbind_requested,
    RiskAssessed: on_risk_assessed,
    VerificationRequested: on_verification_requested,
    Verified: on_verified,
    VerificationFailed: on_verification_failed,
    BiometricCounterRegressed: on_biometric_counter_regressed,
    UnbindCompleted: on_unbind_completed,
    AutoDebitPaused: on_auto_debit_paused,
    AutoDebitResumed: on_auto_debit_resumed,
    RepaymentAccountSwitched: on_repayment_account_switched,
    UnbindRejected: on_unbind_rejected,
    UnbindCancelled: on_unbind_cancelled,
    UnbindExpired: on_unbind_expired,
    UnbindAppealed: on_unbind_appealed,
    ReviewDecided: on_review_decided,
    UnbindDisputed: on_unbind_disputed,
    DeviceEnrolled: on_device_enrolled,
    DeviceRevoked: on_device_revoked,
}
