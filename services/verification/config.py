"""Settings of the verification service (environment prefix `UNBIND_`; see shared.settings)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class VerificationSettings(ServiceSettings):
    service_name = "verification"
    default_port = 8002
    required_secrets: ClassVar[tuple[str, ...]] = ("otp_hmac_key",)

    database_url: str = Field("", validation_alias="UNBIND_VERIFICATION_DATABASE_URL")
    notification_url: str = "http://127.0.0.1:8004"
    # One-time codes are stored only as HMAC-SHA256 under this key.
    otp_hmac_key: SecretStr | None = None
    otp_hmac_key_file: Path | None = None
    otp_ttl_seconds: int = Field(300, ge=1, le=900)
    otp_max_attempts: int = Field(5, ge=1, le=10)
    # Resend limits: a pause between two sends, and a cap per customer per window.
    otp_resend_interval_seconds: int = Field(30, ge=0)
    otp_sends_per_window: int = Field(5, ge=1)
    otp_send_window_seconds: int = Field(600, ge=1)
    # A code that did not reach notification is sent again (as a new code) this many times, with backoff.
    otp_delivery_retries: int = Field(5, ge=0, le=20)
    otp_delivery_backoff_seconds: float = Field(2.0, gt=0)
    challenge_ttl_seconds: int = Field(120, ge=1, le=600)
    biometric_max_failures: int = Field(5, ge=1, le=10)
    verification_ttl_seconds: int = Field(900, ge=1)
    # The sweep sleeps until the next verification deadline or code re-send is due, and a failed
    # send in this instance wakes it; this is the longest it sleeps, for what another instance did.
    sweep_seconds: float = Field(5.0, gt=0, le=60)
