"""Settings of the notification service (environment prefix `UNBIND_`; see shared.settings)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    service_name = "notification"
    default_port = 8004
    # It emits PreferencesChanged (the customer's language, for the services that answer them).
    required_secrets: ClassVar[tuple[str, ...]] = ("institution_webhook_secret",)

    database_url: str = Field("", validation_alias="UNBIND_NOTIFICATION_DATABASE_URL")
    # Development SMS gateway: one JSON line {to, text, at} per message. Default: <var_dir>/sms.jsonl.
    sms_sink_path: Path | None = None
    # Real providers, when configured; otherwise the development sinks under the var dir.
    sms_gateway_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "unbind@localhost"
    # The sender's signature every SMS begins with, whatever its language, as carriers require: the
    # brand the customer knows, in 【】.
    sms_signature: str = Field("【unbind】", min_length=1, max_length=20)
    institution_webhook_url: str | None = None
    # HMAC key of the webhook to the lender, shared with the lender (who checks it).
    institution_webhook_secret: SecretStr | None = None
    institution_webhook_secret_file: Path | None = None
    # Failed sends: this many attempts in all, with exponential backoff from this base (and jitter):
    # 8 attempts from 15 s span about 30 minutes.
    delivery_max_attempts: int = Field(8, ge=1, le=20)
    delivery_backoff_seconds: float = Field(15.0, gt=0)
    # The reminder to check the repayment status, this long after UnbindCompleted.
    reminder_delay_seconds: int = Field(86_400, ge=1)
    # What a customer whose request goes to a person (review, appeal) is told to expect: an answer within this
    # many hours.
    review_expected_hours: int = Field(24, ge=1, le=720)
    # The dispatcher sleeps until the next queued delivery is due, and a delivery this instance
    # queues wakes it at once; this is the longest it sleeps, for what another instance queued.
    dispatch_interval_seconds: float = Field(5.0, gt=0, le=60)
    # How long a code message waits for its request's UnbindRequested to be handled before a 409; below
    # the 5 s read timeout of verification's client.
    code_wait_seconds: float = Field(3.0, ge=0, le=4.5)

    @property
    def sms_sink(self) -> Path:
        return self.sms_sink_path or self.var_dir / "sms.jsonl"
