"""What each event means for the dashboard: one function per event type, moving the request's
view and returning the feed line.

Feed lines name fields one by one, never dump the event data, so only what an ops screen should
show reaches it: no client IP, no free text beyond what the emitter already redacted, and no
number long enough to be a phone or account number (the projection redacts each line again).
"""

from __future__ import annotations

from collections.abc import Callable

from services.dashboard.projection import Projection
from shared.cloudevents import Envelope
from shared.events import (
    BindingCreated,
    BiometricCounterRegressed,
    Event,
    ReviewDecided,
    RiskAssessed,
    RiskDecision,
    UnbindAppealed,
    UnbindCancelled,
    UnbindCompleted,
    UnbindExpired,
    UnbindRejected,
    UnbindRequested,
    VerificationFailed,
    VerificationRequested,
    Verified,
)

Handler = Callable[[Projection, Envelope], str]


def _methods(methods: list) -> str:
    return ", ".join(str(method) for method in methods) or "none"


def on_binding_created(view: Projection, envelope: Envelope) -> str:
    event: BindingCreated = envelope.data
    return f"bound {event.lender} ····{event.account_last4} · credit limit {event.credit_limit_before} → {event.credit_limit_after}"


def on_unbind_requested(view: Projection, envelope: Envelope) -> str:
    event: UnbindRequested = envelope.data
    view.transition(envelope, stage="requested", state="pending_risk")
    acknowledged = f" · acknowledged {', '.join(event.acknowledged)}" if event.acknowledged else ""
    return f"reason {event.reason} · channel {event.channel}{' · from a device' if event.device_id else ''}{acknowledged}"


def on_risk_assessed(view: Projection, envelope: Envelope) -> str:
    event: RiskAssessed = envelope.data
    # A denial stays pending_risk until binding rejects the request (UnbindRejected).
    state = {RiskDecision.REVIEW: "under_review", RiskDecision.DENY: None}.get(event.decision, "pending_verification")
    request = view.transition(envelope, stage="assessed", state=state)
    request.decision, request.score = str(event.decision), event.score
    reasons = ", ".join(f"{reason.code}(+{reason.weight})" for reason in event.reasons) or "no signal"
    return f"score {event.score} · {event.decision} · needs {_methods(event.required_methods)} · {reasons}"


def on_review_decided(view: Projection, envelope: Envelope) -> str:
    event: ReviewDecided = envelope.data
    request = view.transition(envelope, state="pending_verification" if event.decision == "approve" else None)
    request.reviewed = True
    request.reached.setdefault("review_decided", envelope.time)
    return f"{event.decision} by {event.reviewer} · needs {_methods(event.required_methods)}"


def on_verification_requested(view: Projection, envelope: Envelope) -> str:
    event: VerificationRequested = envelope.data
    view.transition(envelope, stage="verification_issued", state="pending_verification")
    return f"challenge {_methods(event.methods)} · expires {event.expires_at:%H:%M:%S} UTC"


def on_verified(view: Projection, envelope: Envelope) -> str:
    event: Verified = envelope.data
    view.transition(envelope, stage="verified")
    return f"passed {_methods(event.methods)}"


def on_verification_failed(view: Projection, envelope: Envelope) -> str:
    event: VerificationFailed = envelope.data
    view.transition(envelope)
    return f"failed: {event.reason}"


def on_biometric_counter_regressed(view: Projection, envelope: Envelope) -> str:
    event: BiometricCounterRegressed = envelope.data
    view.transition(envelope)
    return f"device counter went from {event.last_counter} to {event.counter}: possible cloned key"


def on_unbind_completed(view: Projection, envelope: Envelope) -> str:
    event: UnbindCompleted = envelope.data
    view.transition(envelope, stage="completed", state="completed")
    return f"unbound · {event.mandates_cancelled} mandate(s) cancelled · credit limit {event.credit_limit_before} → {event.credit_limit_after}"


def on_unbind_rejected(view: Projection, envelope: Envelope) -> str:
    event: UnbindRejected = envelope.data
    view.transition(envelope, state="rejected")
    return f"rejected: {event.reason}"


def on_unbind_cancelled(view: Projection, envelope: Envelope) -> str:
    view.transition(envelope, state="cancelled")
    return "cancelled by the customer"


def on_unbind_expired(view: Projection, envelope: Envelope) -> str:
    view.transition(envelope, state="expired")
    return "expired before it was verified"


def on_unbind_appealed(view: Projection, envelope: Envelope) -> str:
    event: UnbindAppealed = envelope.data
    view.transition(envelope, state="under_review")
    return f"appealed: {event.message[:120]}"


SUBSCRIPTIONS: dict[type[Event], Handler] = {
    BindingCreated: on_binding_created,
    UnbindRequested: on_unbind_requested,
    RiskAssessed: on_risk_assessed,
    ReviewDecided: on_review_decided,
    VerificationRequested: on_verification_requested,
    Verified: on_verified,
    VerificationFailed: on_verification_failed,
    BiometricCounterRegressed: on_biometric_counter_regressed,
    UnbindCompleted: on_unbind_completed,
    UnbindRejected: on_unbind_rejected,
    UnbindCancelled: on_unbind_cancelled,
    UnbindExpired: on_unbind_expired,
    UnbindAppealed: on_unbind_appealed,
}
