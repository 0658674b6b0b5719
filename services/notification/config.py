"""Settings of the notification service (environment prefix `UNBIND_`; see shared.settings)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from shared.settings import DEVELOPMENT_JWT_SECRET, ServiceSettings

DEVELOPMENT_WEBHOOK_SECRET = "development-only-lender-webhook-secret-never-use-in-production"


class NotificationSettings(ServiceSettings):
    service_name = "notification"
    default_port = 8004
    development_secrets: ClassVar[dict[str, str]] = {"jwt_secret": DEVELOPMENT_JWT_SECRET, "institution_webhook_secret": DEVELOPMENT_WEBHOOK_SECRET}

    database_url: str = Field("", validation_alias="UNBIND_NOTIFICATION_DATABASE_URL")
    # Development SMS gateway: one JSON line {to, text, at} per message. Default: <var_dir>/sms.jsonl.
    sms_sink_path: Path | None = None
    # Real providers, when configured; otherwise the development sinks under the var dir.
    sms_gateway_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "unbind@localhost"
    institution_webhook_url: str | None = None
    institution_webhook_secret: SecretStr = SecretStr(DEVELOPMENT_WEBHOOK_SECRET)
    # Failed sends: this many attempts in all, with exponential backoff from this base (and jitter):
    # 8 attempts from 15 s span about 30 minutes.
    delivery_max_attempts: int = Field(8, ge=1, le=20)
    delivery_backoff_seconds: float = Field(15.0, gt=0)
    # The reminder to check the repayment status, this long after UnbindCompleted.
    reminder_delay_seconds: int = Field(86_400, ge=1)
    dispatch_interval_seconds: float = Field(0.5, gt=0, le=60)

    @property
    def sms_sink(self) -> Path:
        return self.sms_sink_path or self.var_dir / "sms.jsonl"
