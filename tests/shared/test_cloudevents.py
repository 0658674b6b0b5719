"""CloudEvents binary mode on Kafka: every event type survives the trip, and anything else is refused."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from shared.cloudevents import Envelope, MalformedEvent, header_map
from shared.events import (
    EVENT_TYPES,
    AutoDebitPaused,
    AutoDebitResumed,
    BindingCreated,
    BindingEvent,
    BindingRequested,
    BindingVerificationFailed,
    BindingVerified,
    BiometricCounterRegressed,
    DeviceEnrolled,
    DeviceRevoked,
    MandateConfirmed,
    MandateRefused,
    MandateRequested,
    PreferencesChanged,
    RepaymentAccountSwitched,
    ReviewDecided,
    RiskAssessed,
    RiskReason,
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

COMMON = {"request_id": "r-1", "binding_id": "b-zhangsan-mortgage", "user_id": "u-zhangsan"}
DEVICE = {"user_id": "u-zhangsan", "device_id": "d-zhangsan-phone"}
MANDATE = {"mandate_id": "m-1", "lender": "example_bank", "account_last4": "4821"}
SAMPLES = [
    BindingRequested(
        **COMMON,
        verification_id="v-1",
        lender="example_bank",
        account_last4="4821",
        monthly_instalment=6500,
        auto_debit=True,
    ),
    BindingVerified(**COMMON, verification_id="v-1"),
    BindingVerificationFailed(**COMMON, verification_id="v-1", reason="expired"),
    BindingCreated(
        **COMMON, lender="example_bank", account_last4="4821", monthly_instalment=6500, auto_debit=True
    ),
    MandateRequested(**COMMON, **MANDATE, monthly_instalment=6500, due_day=15),
    MandateConfirmed(**COMMON, **MANDATE, credit_limit_before=20300, credit_limit_after=30000),
    MandateRefused(**COMMON, **MANDATE, reason="account_not_found"),
    UnbindAppealed(**COMMON),
    PreferencesChanged(user_id="u-zhangsan", locale="en"),
    BiometricCounterRegressed(**COMMON, verification_id="v-1", device_id="d-1", counter=3, last_counter=7),
    DeviceEnrolled(**DEVICE),
    DeviceRevoked(**DEVICE),
    UnbindRequested(
        **COMMON,
        reason="fund_planning",
        impact_hash="ab" * 32,
        lender="example_bank",
        account_last4="4821",
        device_id="d-1",
        channel="app",
    ),
    RiskAssessed(
        **COMMON,
        score=45,
        level="elevated",
        decision="step_up",
        reasons=[RiskReason(code="night_request", weight=10, detail="night")],
        required_methods=["otp", "biometric"],
    ),
    ReviewDecided(**COMMON, decision="approve", reviewer="ops-1", required_methods=["otp"]),
    ReviewDecided(
        **COMMON,
        decision="deny",
        reviewer="ops-1",
        review_id="rv-1",
        origin="appeal",
        reason="identity_not_confirmed",
        customer_message=True,
    ),
    VerificationRequested(
        **COMMON, verification_id="v-1", methods=["otp"], expires_at=datetime(2026, 11, 28, 12, tzinfo=UTC)
    ),
    Verified(**COMMON, verification_id="v-1", methods=["otp"]),
    VerificationFailed(**COMMON, verification_id="v-1", reason="too_many_attempts"),
    UnbindCompleted(
        **COMMON,
        mandates_cancelled=1,
        credit_limit_before=30000,
        credit_limit_after=20000,
        follow_up=["check_mortgage_repayment_status"],
    ),
    AutoDebitPaused(**COMMON, mandate_id="m-1", months=2, resumes_on=date(2027, 1, 28)),
    AutoDebitResumed(**COMMON, mandate_id="m-1"),
    RepaymentAccountSwitched(
        **COMMON,
        previous_account_last4="4821",
        account_last4="7733",
        lender="harbour_bank",
        mandates_cancelled=1,
    ),
    UnbindRejected(**COMMON, reason="risk_denied"),
    UnbindCancelled(**COMMON),
    UnbindDisputed(**COMMON, reason="not_requested_by_me"),
    UnbindExpired(**COMMON),
]


def test_every_event_type_has_a_sample_and_a_docstring() -> None:
    assert {type(sample).__name__ for sample in SAMPLES} == set(EVENT_TYPES)
    for name, event_type in EVENT_TYPES.items():
        assert event_type.__doc__ and "Emitted by" in event_type.__doc__, f"{name} says when it is emitted"


# Event types this project added to the contract of design.md (see the issue notes).
ADDED_TO_THE_CONTRACT = {
    "BindingCreated",
    "UnbindAppealed",
    "BiometricCounterRegressed",
    "DeviceEnrolled",
    "DeviceRevoked",
    "PreferencesChanged",
    "UnbindDisputed",
}
# Binding takes a code and the lender's confirmation (issue 16).
ADDED_TO_THE_CONTRACT |= {
    "BindingRequested",
    "BindingVerified",
    "BindingVerificationFailed",
    "MandateRequested",
    "MandateConfirmed",
    "MandateRefused",
}
# The gentler alternatives to an unbind: a pause of the auto-debit, a switch of the account (issue 16).
ADDED_TO_THE_CONTRACT |= {"AutoDebitPaused", "AutoDebitResumed", "RepaymentAccountSwitched"}


def test_the_design_contract_and_the_models_agree() -> None:
    design = Path(__file__).resolve().parents[2] / "docs" / "design.md"
    in_design = set(re.findall(r"^\| `(\w+)` \|", design.read_text(), flags=re.MULTILINE))
    assert in_design == set(EVENT_TYPES) - ADDED_TO_THE_CONTRACT


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: type(event).__name__)
def test_round_trip_in_binary_mode(event) -> None:
    envelope = Envelope.emit(event)
    key, value, headers = envelope.to_record()
    attributes = header_map(headers)

    # An event about a binding is keyed by it; one about a customer's device, by the customer.
    subject = "b-zhangsan-mortgage" if isinstance(event, BindingEvent) else "u-zhangsan"
    assert key == subject.encode()
    assert attributes["ce_specversion"] == "1.0"
    assert attributes["ce_type"] == type(event).__name__
    assert attributes["ce_source"] == f"/services/{event.emitted_by}"
    assert attributes["ce_subject"] == subject
    assert attributes["content-type"] == "application/json"
    assert orjson.loads(value) == event.model_dump(mode="json"), "the value is the event data itself"

    parsed = Envelope.from_record(value, headers)
    assert parsed == envelope


def _headers(**overrides: str | None) -> list[tuple[str, bytes]]:
    _, _, headers = Envelope.emit(SAMPLES[-1]).to_record()
    attributes = header_map(headers) | overrides
    return [(name, value.encode()) for name, value in attributes.items() if value is not None]


@pytest.mark.parametrize(
    ("value", "headers", "message"),
    [
        (b"{}", _headers(ce_specversion=None), "ce_specversion"),
        (b"{}", _headers(ce_specversion="0.3"), "ce_specversion"),
        (b"{}", _headers(ce_id=None), "ce_id"),
        (b"{}", _headers(ce_type="UnbindApproved"), "unknown event type"),
        (b"not json", _headers(), "invalid UnbindExpired"),
        (b'{"request_id": "r-1"}', _headers(), "invalid UnbindExpired"),
        (None, _headers(), "invalid UnbindExpired"),
        (b"{}", _headers(ce_time="yesterday"), "invalid UnbindExpired"),
    ],
)
def test_anything_else_is_a_malformed_event(value, headers, message) -> None:
    with pytest.raises(MalformedEvent, match=message):
        Envelope.from_record(value, headers)


def test_a_malformed_event_is_described_without_its_data() -> None:
    # The error goes to the DLQ headers and the logs: a customer's free text must not.
    with pytest.raises(MalformedEvent) as raised:
        Envelope.from_record(
            b'{"request_id": "r-1", "binding_id": "b-1", "note": "call me, Zhang San"}', _headers()
        )
    assert (
        "user_id" in str(raised.value)
        and "Zhang San" not in str(raised.value)
        and "call me" not in str(raised.value)
    )


def test_unknown_data_fields_are_ignored_for_forward_compatibility() -> None:
    _, value, headers = Envelope.emit(SAMPLES[-1]).to_record()
    data = orjson.loads(value) | {"added_in_a_later_version": True}
    assert Envelope.from_record(orjson.dumps(data), headers).data == SAMPLES[-1]
