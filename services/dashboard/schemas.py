"""Request and response models of the dashboard API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.fields import FreeText


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(
        min_length=1, max_length=4096, description="An ops JWT, e.g. from `unbind token --role ops`"
    )


class SessionOut(BaseModel):
    signed_in: bool
    subject: str | None = None
    expires_at: datetime | None = None


class ReviewDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "deny"]
    reason: str | None = Field(
        None,
        max_length=64,
        description="Required: a code from the list that fits the decision (GET /v1/reviews/reasons)",
    )
    note: FreeText = Field("", max_length=500, description="Internal: for ops only")
    customer_message: FreeText | None = Field(
        None, min_length=1, max_length=500, description="Optional, sent to the customer with the outcome"
    )


class ResendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: FreeText = Field(
        min_length=1, max_length=200, description="Why it is resent: kept on the message and listed"
    )
