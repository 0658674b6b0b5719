"""Request and response models of the dashboard API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.fields import FreeText


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=4096, description="An ops JWT, e.g. from `unbind token --role ops`")


class SessionOut(BaseModel):
    signed_in: bool
    subject: str | None = None
    expires_at: datetime | None = None


class ReviewDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "deny"]
    note: FreeText = Field("", max_length=500)
