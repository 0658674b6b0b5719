"""Response models of the risk API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.events import ReviewOutcome, RiskReason


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
    created_at: datetime


class ReviewOut(BaseModel):
    id: str
    request_id: str
    binding_id: str
    user_id: str
    origin: str = Field(description="risk (the score asked for a human) or appeal (the customer disputes a rejection)")
    status: str
    message: str | None = Field(description="The customer's appeal, digits masked")
    reviewer: str | None
    note: str | None
    created_at: datetime
    decided_at: datetime | None


class ReviewList(BaseModel):
    items: list[ReviewOut]


class ReviewDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: ReviewOutcome
    note: str = Field("", max_length=1000)
