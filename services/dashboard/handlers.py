"""What each event means for the dashboard's view: one function per event type, moving the
request through its states and stages. (Its feed line is `shared.describe.describe_event`.)"""

from __future__ import annotations

from collections.abc import Callable

from services.dashboard.projection import Projection
from shared.cloudevents import Envelope
from shared.events import (
    AutoDebitPaused,
    AutoDebitResumed,
    BindingCreated,
    BindingRequested,
    BindingVerificationFailed,
    BindingVerified,
    BiometricCounterRegressed,
    DeviceEnrolled,
    DeviceRevoked,
    Event,
    MandateConfirmed,
    MandateRefused,
    MandateRequested,
    RepaymentAccountSwitched,
    ReviewDecided,
    ReviewOrigin,
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

Handler = Callable[[Projection, Envelope], None]


def on_binding_flow(view: Projection, envelope: Envelope) -> None:
    """About binding an account or its mandate, not an unbind request: the feed shows it, no request moves."""


def on_device_changed(view: Projection, envelope: Envelope) -> None:
    """About a customer's device key, not an unbind request: the feed shows it, no request moves."""


def on_unbind_requested(view: Projection, envelope: Envelope) -> None:
    event: UnbindRequested = envelope.data
    view.set_kind(view.transition(envelope, stage="requested", state="pending_risk"), str(event.kind))


def on_risk_assessed(view: Projection, envelope: Envelope) -> None:
    event: RiskAssessed = envelope.data
    # A deny goes to a person, as a review does (binding holds the request for review).
    state = "under_review" if event.decision in (RiskDecision.REVIEW, RiskDecision.DENY) else "pending_verification"
    request = view.transition(envelope, stage="assessed", state=state)
    request.decision, request.score = str(event.decision), event.score


def on_review_decided(view: Projection, envelope: Envelope) -> None:
    event: ReviewDecided = envelope.data
    if event.origin == ReviewOrigin.DISPUTE:  # the request stays completed, whatever ops found
        view.transition(envelope)
        return
    request = view.transition(envelope, state="pending_verification" if event.decision == ReviewOutcome.APPROVE else None)
    request.reviewed = True
    request.reached.setdefault("review_decided", envelope.time)


def on_verification_requested(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, stage="verification_issued", state="pending_verification")


def on_verified(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, stage="verified")


def on_verification_failed(view: Projection, envelope: Envelope) -> None:
    # Binding rejects the request next (UnbindRejected); until then it only counts as activity.
    view.transition(envelope)


def on_biometric_counter_regressed(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope)


def on_unbind_completed(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, stage="completed", state="completed")


def on_alternative_completed(view: Projection, envelope: Envelope) -> None:
    """A pause or a switch completes its request as an unbind does; the hour counts it by kind too."""
    view.transition(envelope, stage="completed", state="completed")
    view.count_stage(envelope, {AutoDebitPaused: "paused", RepaymentAccountSwitched: "switched"}[type(envelope.data)])


def on_auto_debit_resumed(view: Projection, envelope: Envelope) -> None:
    # Months after its pause request completed: counted, moving no request.
    view.count_stage(envelope, "resumed")


def on_unbind_rejected(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, state="rejected")


def on_unbind_cancelled(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, state="cancelled")


def on_unbind_expired(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, state="expired")


def on_unbind_appealed(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, state="under_review")


def on_unbind_disputed(view: Projection, envelope: Envelope) -> None:
    """A completed unbind disputed: an ops case opens, the request stays completed."""
    view.transition(envelope)


SUBSCRIPTIONS: dict[type[Event], Handler] = {
    **dict.fromkeys((BindingRequested, BindingVerified, BindingVerificationFailed, BindingCreated, MandateRequested, MandateConfirmed, MandateRefused), on_binding_flow),
    UnbindRequested: on_unbind_requested,
    RiskAssessed: on_risk_assessed,
    ReviewDecided: on_review_decided,
    VerificationRequested: on_verification_requested,
    Verified: on_verified,
    VerificationFailed: on_verification_failed,
    BiometricCounterRegressed: on_biometric_counter_regressed,
    UnbindCompleted: on_unbind_completed,
    AutoDebitPaused: on_alternative_completed,
    RepaymentAccountSwitched: on_alternative_completed,
    AutoDebitResumed: on_auto_debit_resumed,
    UnbindRejected: on_unbind_rejected,
    UnbindCancelled: on_unbind_cancelled,
    UnbindExpired: on_unbind_expired,
    UnbindAppealed: on_unbind_appealed,
    UnbindDisputed: on_unbind_disputed,
    DeviceEnrolled: on_device_changed,
    DeviceRevoked: on_device_changed,
}
