"""Request and response models of the binding API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.binding.agreements import VERSION_PATTERN
from shared.account_numbers import normalise_account_number
from shared.events import Code, DisputeReason, RequestKind, UnbindReason, VerificationMethod
from shared.fields import FreeText

DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class CreditAccountOut(BaseModel):
    id: str
    credit_limit: int = Field(description="Current credit limit, CNY")


class RepaymentAccountOut(BaseModel):
    id: str
    lender: str = Field(description="The lender's name, in the answer's language")
    lender_id: str | None = Field(
        description=(
            "The lender's id in the directory (`GET /v1/lenders`); null for an account bound before lenders "
            "had ids"
        )
    )
    account_number: str = Field(description="Masked, e.g. `6222 **** **** 4821`")
    monthly_instalment: int = Field(description="CNY")
    due_day: int


class BindingOut(BaseModel):
    id: str
    status: str = Field(
        description=(
            "pending (waiting for the SMS code), failed (the code was never confirmed), active, unbinding, "
            "changing (a pause or switch request is open) or unbound"
        )
    )
    auto_debit: bool = Field(
        description="True while an auto-debit mandate is active (confirmed by the lender)"
    )
    mandate_status: str | None = Field(
        None,
        description=(
            "The binding's latest auto-debit mandate: pending (waiting for the lender), active, suspended "
            "(paused), refused (by the lender) or cancelled; null without one"
        ),
    )
    verification_id: str | None = Field(
        None,
        description=(
            "While pending: the verification whose SMS code binds the account (`POST "
            "/v1/verifications/{id}/otp` at the verification service)"
        ),
    )
    auto_debit_resumes_on: date | None = Field(
        None,
        description=(
            "While the customer has paused the auto-debit: the day (Asia/Shanghai) it resumes by itself"
        ),
    )
    credit_limit_contribution: int = Field(
        description="Part of the credit limit granted because of this binding, CNY"
    )
    credit_account: CreditAccountOut
    repayment_account: RepaymentAccountOut
    agreement_version: str = Field(
        description="The version of the agreement the customer accepted (`GET /v1/agreements/{version}`)"
    )
    created_at: datetime


class BindingList(BaseModel):
    items: list[BindingOut]


class RequestIn(BaseModel):
    """What every request on a binding (an unbind, a pause, a switch) carries: the impact's blockers
    the customer accepts, the device it comes from and the impact the customer saw."""

    model_config = ConfigDict(extra="forbid")

    acknowledged: list[str] = Field(
        default_factory=list, max_length=20, description="Codes of the impact blockers the customer accepts"
    )
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN)
    impact_hash: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="The impact the customer saw; refused (409) if it has changed since",
    )


class UnbindRequestIn(RequestIn):
    reason: UnbindReason
    note: FreeText | None = Field(None, max_length=500)


class PauseRequestIn(RequestIn):
    months: int = Field(
        ge=1, le=3, description="How long the auto-debit stops: 1 to 3 months; it resumes by itself"
    )


class RiskOut(BaseModel):
    summary: str = Field(
        description=(
            "What the security check asks of the customer, in their language (never a score, a signal or a "
            "rule)"
        )
    )


class VerificationOut(BaseModel):
    id: str
    methods: list[VerificationMethod]
    expires_at: datetime | None


class TimelineEntryOut(BaseModel):
    status: str
    event_type: str
    actor: str
    detail: str = Field(description="What happened, in the customer's language")
    at: datetime


class FollowUpAction(BaseModel):
    label: str
    href: str = Field(description="What the app opens, e.g. `tel:4000009555`")


class FollowUpOut(BaseModel):
    code: str
    title: str
    body: str
    action: FollowUpAction | None


class DisputeOut(BaseModel):
    reason: DisputeReason
    message: str | None = Field(
        description="The customer's words, numbers masked (the owner and ops only; never on the event stream)"
    )
    disputed_at: datetime


class UnbindRequestOut(BaseModel):
    id: str
    binding_id: str
    kind: RequestKind = Field(
        description=(
            "unbind, pause (the auto-debit, for `pause_months`) or switch (to `new_repayment_account`)"
        )
    )
    status: str
    pause_months: int | None = None
    new_repayment_account: RepaymentAccountOut | None = None
    reason: UnbindReason
    note: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    risk: RiskOut | None
    verification: VerificationOut | None
    outcome_code: str | None = Field(
        description=(
            "Why the request was declined, as a code for the app: `risk_denied`, `review_denied`, "
            "`verification_failed:<why>`"
        )
    )
    outcome_reason: str | None = Field(description="The same in the customer's language")
    appeal_message: str | None = Field(
        description=(
            "The customer's appeal, numbers masked (the owner and ops only; never on the event stream)"
        )
    )
    appealed_at: datetime | None
    dispute_until: datetime | None = Field(description="A completed unbind can be disputed, once, until then")
    dispute: DisputeOut | None
    follow_up: list[FollowUpOut] = Field(
        description="What to do after unbinding, naming the lender and its hotline"
    )
    timeline: list[TimelineEntryOut]


class RequestPage(BaseModel):
    items: list[UnbindRequestOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class AuditEntryOut(BaseModel):
    id: int
    action: str
    from_status: str | None
    to_status: str
    actor: str
    actor_type: str
    reason: str | None
    at: datetime


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: FreeText = Field(min_length=1, max_length=1000, description="Why the rejection is wrong")


class LenderOut(BaseModel):
    id: str = Field(description="What `POST /v1/bindings` and the events name the lender by")
    name: str = Field(description="Its name, in the answer's language")
    hotline: str = Field(description="Its customer-service hotline")


class LenderList(BaseModel):
    items: list[LenderOut]


class DisputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: DisputeReason
    message: FreeText | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="What went wrong, in the customer's words (stays in binding)",
    )


class RepaymentAccountIn(BaseModel):
    """A repayment account to bind, or to switch a binding to."""

    model_config = ConfigDict(extra="forbid")

    lender: FreeText = Field(
        min_length=1,
        max_length=128,
        description="A lender of `GET /v1/lenders`: its id, or its name in either language",
    )
    account_number: str = Field(
        min_length=12,
        max_length=40,
        description=(
            "12 to 19 digits; spaces, dashes and dots allowed, full-width digits read as digits; 16 to 19 "
            "digits is a card number and must pass the Luhn check"
        ),
    )

    @field_validator("account_number")
    @classmethod
    def _normalised(cls, value: str) -> str:
        return normalise_account_number(value)


class BindingIn(RepaymentAccountIn):
    monthly_instalment: int = Field(gt=0, le=1_000_000, description="CNY")
    due_day: int = Field(ge=1, le=28)
    auto_debit: bool = True
    agreement_version: str = Field(
        pattern=VERSION_PATTERN,
        description="The agreement version the customer accepted; only the current one is (422 otherwise)",
    )


class SwitchRequestIn(RequestIn, RepaymentAccountIn):
    """Move the binding, its benefits and its auto-debit to another repayment account of the customer's."""

    monthly_instalment: int | None = Field(
        None, gt=0, le=1_000_000, description="CNY; the current account's when not given"
    )
    due_day: int | None = Field(None, ge=1, le=28, description="The current account's when not given")


class RepaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int = Field(gt=0, le=1_000_000, description="CNY; must equal the instalment due")


class MandateOut(BaseModel):
    id: str
    kind: str = Field(description="auto_debit: the platform collects each instalment")
    status: str = Field(
        description=(
            "pending (waiting for the lender), active, suspended (paused), refused (by the lender) or "
            "cancelled"
        )
    )
    created_at: datetime
    cancelled_at: datetime | None
    resumes_at: datetime | None = Field(None, description="While suspended: when it resumes by itself")
    decided_at: datetime | None = Field(None, description="When the lender confirmed or refused it")


class LenderCallbackIn(BaseModel):
    """What a lender says of a mandate; the raw body is what its signature covers."""

    model_config = ConfigDict(extra="forbid")

    callback_id: str = Field(
        pattern=r"^[A-Za-z0-9._:-]{8,64}$",
        description="The lender's id of this callback: the same one again changes nothing",
    )
    mandate_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    decision: Literal["confirmed", "refused"]
    reason: Code | None = Field(
        None,
        description=(
            "The lender's code for a refusal (e.g. account_closed); kept for ops, never shown to the customer"
        ),
    )


class LenderCallbackOut(BaseModel):
    mandate_id: str
    status: str = Field(
        description="The mandate's status now: active (confirmed), refused, or what it was when a replay came"
    )
    decided_at: datetime | None


class InstalmentOut(BaseModel):
    period: str = Field(description="YYYY-MM")
    amount: int = Field(description="CNY")
    due_date: date
    status: str = Field(description="unpaid, paid or overdue")
    paid_at: datetime | None = None
    paid_by: str | None = Field(None, description="auto_debit or manual")


class BenefitOut(BaseModel):
    code: str
    description: str


class BlockerOut(BaseModel):
    code: str
    message: str
    acknowledgeable: bool = Field(
        description="True when acknowledging it in the unbind request lets the request through"
    )


class AlternativeOut(BaseModel):
    """A gentler way than unbinding, with what it keeps and what it gives up."""

    kind: RequestKind = Field(description="pause or switch")
    title: str
    summary: str
    keeps: list[str]
    loses: list[str]
    available: bool
    unavailable_reason: str | None = Field(description="Why it cannot be asked for now, when it cannot")
    request_path: str = Field(
        description="Where to ask for it (POST, with an Idempotency-Key, like an unbind request)"
    )


class AgreementRefOut(BaseModel):
    version: str
    title: str = Field(description="In the response's locale")
    href: str = Field(description="Where its text is, e.g. `/v1/agreements/2026-12`")


class AgreementOut(BaseModel):
    version: str
    locale: str
    title: str
    text: str = Field(description="Markdown")
    in_force_from: date
    current: bool = Field(description="False for a superseded version: new bindings accept `current_version`")
    current_version: str


class ImpactOut(BaseModel):
    binding_id: str
    locale: str
    assessed_at: datetime
    credit_record_effect: str
    current_instalment: InstalmentOut | None
    auto_debit: bool
    benefits_lost: list[BenefitOut]
    credit_limit_before: int
    credit_limit_after: int
    blockers: list[BlockerOut]
    alternatives: list[AlternativeOut] = Field(
        default_factory=list,
        description=(
            "What the customer may do instead of unbinding (none once unbound); the blockers apply to them "
            "too"
        ),
    )
    agreement: AgreementRefOut = Field(description="The agreement the binding was made under")
    impact_hash: str = Field(description="SHA-256 of this snapshot; recorded with the unbind request")


class AccountReport(BaseModel):
    """The account information report the seed advises downloading before unbinding."""

    generated_at: datetime
    locale: str
    user_id: str
    binding: BindingOut
    mandates: list[MandateOut]
    instalments: list[InstalmentOut] = Field(description="Most recent first")
    impact: ImpactOut


class OpsUnbindRequestOut(UnbindRequestOut):
    """A request as ops read it: the customer's view, plus what the customer saw and what risk said."""

    user_id: str
    impact: ImpactOut | None = Field(
        description=(
            "The impact the customer saw when asking, in their language; null for requests made before it "
            "was kept"
        )
    )
    risk_decision: str | None = Field(
        description="allow, step_up, review or deny; null until risk has scored the request"
    )
    risk_score: int | None
    acknowledged: list[str] | None = Field(
        description="The blockers the customer accepted; null for requests made before it was kept"
    )
    device_id: str | None = Field(description="The device the request came from, as the app named it")
    channel: str
    dispute_message: str | None = Field(description="The customer's words when disputing, numbers masked")


class OpsCustomerOut(BaseModel):
    """What binding knows of a customer, for the ops on the phone with them."""

    user_id: str
    bindings: list[BindingOut]
    requests: list[UnbindRequestOut] = Field(description="Newest first (at most 100)")
