"""Settings of the notification service (environment prefix `UNBIND_`; see shared.settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    service_name = "notification"
    default_port = 8004

    database_url: str = Field("", validation_alias="UNBIND_NOTIFICATION_DATABASE_URL")
    # Development SMS gateway: one JSON line {to, text, at} per message. Default: <var_dir>/sms.jsonl.
    sms_sink_path: Path | None = None

    @property
    def sms_sink(self) -> Path:
        return self.sms_sink_path or self.var_dir / "sms.jsonl"
