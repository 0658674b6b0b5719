"""Request and response models of the binding API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.events import UnbindReason, VerificationMethod

DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class CreditAccountOut(BaseModel):
    id: str
    credit_limit: int = Field(description="Current credit limit, CNY")


class RepaymentAccountOut(BaseModel):
    id: str
    lender: str
    account_number: str = Field(description="Masked, e.g. `6222 **** **** 4821`")
    monthly_instalment: int = Field(description="CNY")
    due_day: int


class BindingOut(BaseModel):
    id: str
    status: str
    auto_debit: bool
    credit_limit_contribution: int = Field(description="Part of the credit limit granted because of this binding, CNY")
    credit_account: CreditAccountOut
    repayment_account: RepaymentAccountOut
    created_at: datetime


class BindingList(BaseModel):
    items: list[BindingOut]


class UnbindRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: UnbindReason
    note: str | None = Field(None, max_length=500)
    acknowledged: list[str] = Field(default_factory=list, max_length=20, description="Codes of the impact blockers the customer accepts")
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN)


class RiskOut(BaseModel):
    decision: str
    reasons: list[str] = Field(description="Human-readable reasons shown to the customer")


class VerificationOut(BaseModel):
    id: str
    methods: list[VerificationMethod]
    expires_at: datetime | None


class TimelineEntryOut(BaseModel):
    status: str
    event_type: str
    actor: str
    detail: str | None
    at: datetime


class UnbindRequestOut(BaseModel):
    id: str
    binding_id: str
    status: str
    reason: UnbindReason
    note: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    risk: RiskOut | None
    verification: VerificationOut | None
    outcome_reason: str | None
    follow_up: list[str]
    timeline: list[TimelineEntryOut]
