"""Request and response models of the verification API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.events import VerificationMethod


class VerificationOut(BaseModel):
    id: str
    request_id: str
    status: str
    methods: list[VerificationMethod]
    passed_methods: list[VerificationMethod]
    expires_at: datetime
    otp_expires_at: datetime | None = Field(description="When the current code stops working")
    otp_delivery: str | None = Field(description="sending, sent or failed: whether the SMS reached the gateway")
    otp_attempts_remaining: int
    failure_reason: str | None


class OtpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6}$", description="The 6-digit code from the SMS")
