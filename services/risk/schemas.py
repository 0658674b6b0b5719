"""Response models of the risk API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.events import ReviewOutcome, RiskReason
from shared.fields import FreeText, Instant


class AssessmentOut(BaseModel):
    request_id: str
    binding_id: str
    user_id: str
    signals: dict[str, Any]
    score: int
    level: str
    decision: str
    reasons: list[RiskReason]
    required_methods: list[str]
    rules_version: int
    matched_rule: str | None
    created_at: datetime


class ReviewOut(BaseModel):
    id: str
    request_id: str
    binding_id: str
    user_id: str
    origin: str = Field(description="risk (the score asked for a human) or appeal (the customer disputes a rejection)")
    status: str
    reviewer: str | None
    note: str | None = Field(description="The reviewer's note: for ops only, never on the event stream")
    created_at: datetime
    decided_at: datetime | None
    waiting_seconds: int = Field(0, description="How long it waited (until decided, or until now)")


class ReviewList(BaseModel):
    items: list[ReviewOut]


class ReviewDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: ReviewOutcome
    note: FreeText = Field("", max_length=1000)


class RuleSetOut(BaseModel):
    version: int = Field(description="0: the built-in defaults, before ops saved any version")
    rules: list[dict[str, Any]]
    created_by: str
    created_at: datetime | None


class RulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[dict[str, Any]] = Field(
        max_length=100, description='Each {"name"?, "action": step_up|allow|deny|review, "if": "<signal> <op> <value> [and ...]"}'
    )


class FlagOut(BaseModel):
    id: int
    user_id: str
    reason: str
    request_id: str
    flagged_at: datetime
    cleared_at: datetime | None
    cleared_by: str | None


class FlagList(BaseModel):
    items: list[FlagOut]


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_opened_at: Instant | None = None
    phone_changed_at: Instant | None = None

    @field_validator("account_opened_at", "phone_changed_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone")
        return value
