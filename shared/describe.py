"""One line of what an event says, for people: the dashboard's live feed and `unbind demo`.

Fields are named one by one, never dumped, so a line shows only what an ops screen or a terminal
should: no client IP, and no one-time code, full phone or account number, nor free text (no
event holds any).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    RiskAssessed,
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

# `emphasize(text, kind)` may colour a word: kind is "decision" (allow, review, approve...) or "failure".
Emphasis = Callable[[str, str], str]


def _plain(text: str, kind: str) -> str:
    return text


def methods_text(methods: list[Any]) -> str:
    return " + ".join(str(method) for method in methods) or "nothing"


def describe_event(data: Event, emphasize: Emphasis = _plain) -> str:
    if isinstance(data, UnbindRequested):
        device = f"from {data.device_id}" if data.device_id else "no device named"
        switch = f"switch to account ···· {data.new_account_last4} at {data.new_lender}"
        asks = {"pause": f"pause auto-debit {data.pause_months} month(s)", "switch": switch}.get(data.kind, "unbind")
        return f"{asks} · {data.reason} · {device} · acknowledged {', '.join(data.acknowledged) or 'nothing'} · channel {data.channel}"
    if isinstance(data, RiskAssessed):
        needs = "needs an ops review" if data.decision in ("review", "deny") else f"needs {methods_text(data.required_methods)}"
        reasons = " ".join(f"{reason.code}(+{reason.weight})" for reason in data.reasons) or "no signals"
        return f"score {data.score} · {emphasize(data.decision, 'decision')} · {needs} · {reasons}"
    if isinstance(data, ReviewDecided):
        needs = f" · needs {methods_text(data.required_methods)}" if data.required_methods else ""
        case = f" · {data.origin} case" if data.origin != "risk" else ""
        reason = f" · {data.reason}" if data.reason else ""
        message = " · wrote to the customer" if data.customer_message else ""
        return f"{emphasize(data.decision, 'decision')} by {data.reviewer}{case}{reason}{needs}{message}"
    if isinstance(data, VerificationRequested):
        return f"verification {data.verification_id} · {methods_text(data.methods)} · expires {data.expires_at:%H:%M:%S} UTC"
    if isinstance(data, Verified):
        return f"{methods_text(data.methods)} passed"
    if isinstance(data, VerificationFailed | UnbindRejected):
        return emphasize(data.reason, "failure")
    if isinstance(data, BiometricCounterRegressed):
        return f"device {data.device_id} signed with counter {data.counter}, not above {data.last_counter}"
    if isinstance(data, UnbindCompleted):
        return f"{data.mandates_cancelled} mandate(s) cancelled · credit limit {data.credit_limit_before} -> {data.credit_limit_after} CNY"
    if isinstance(data, AutoDebitPaused):
        return f"mandate {data.mandate_id} paused for {data.months} month(s) · resumes {data.resumes_on.isoformat()}"
    if isinstance(data, AutoDebitResumed):
        return f"mandate {data.mandate_id} active again: the pause ran out"
    if isinstance(data, RepaymentAccountSwitched):
        moved = f"account ···· {data.previous_account_last4} -> ···· {data.account_last4} at {data.lender}"
        return f"{moved} · {data.mandates_cancelled} mandate(s) cancelled · the new one awaits the lender"
    if isinstance(data, UnbindAppealed):
        return "appealed by the customer: under review again"
    if isinstance(data, BindingRequested):
        return f"account ···· {data.account_last4} at {data.lender} · auto-debit {'asked' if data.auto_debit else 'not asked'} · code for verification {data.verification_id}"
    if isinstance(data, BindingVerified):
        return "code confirmed"
    if isinstance(data, BindingVerificationFailed):
        return emphasize(data.reason, "failure")
    if isinstance(data, MandateRefused):
        return f"mandate {data.mandate_id} refused by {data.lender} · {emphasize(data.reason, 'failure')}"
    if isinstance(data, UnbindDisputed):
        return f"completed unbind disputed by the customer ({data.reason}): an ops case opens"
    if isinstance(data, BindingCreated):
        return f"account ···· {data.account_last4} bound · auto-debit {'awaits the lender' if data.auto_debit else 'not asked'}"
    if isinstance(data, MandateRequested):
        return f"mandate {data.mandate_id} sent to {data.lender} · account ···· {data.account_last4}"
    if isinstance(data, MandateConfirmed):
        return f"mandate {data.mandate_id} confirmed by {data.lender} · credit limit {data.credit_limit_before} -> {data.credit_limit_after} CNY"
    if isinstance(data, UnbindCancelled):
        return "cancelled by the customer"
    if isinstance(data, UnbindExpired):
        return "expired before it was verified"
    if isinstance(data, DeviceEnrolled):
        return f"device {data.device_id} added (its SMS code confirmed)"
    if isinstance(data, DeviceRevoked):
        return f"device {data.device_id} revoked"
    return ""
