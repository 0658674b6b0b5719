"""Request and response models of the notification API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.notification.templates import CHANNELS, KINDS, LOCALES
from shared.fields import FreeText


class MessageIn(BaseModel):
    """A message another service asks to send. Only templates the caller may use are accepted."""

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(pattern=r"^[A-Za-z0-9:._-]{1,128}$", description="Idempotency key: a repeated id sends nothing new")
    user_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    template: Literal["otp_code", "device_enrolment_code"]
    params: dict[str, FreeText] = Field(default_factory=dict, max_length=10)


class ReviewMessageIn(BaseModel):
    """What a reviewer wrote to a customer, handed over by risk: sent with the review's outcome."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    request_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,36}$")
    message: FreeText = Field(min_length=1, max_length=500)


class MessageAccepted(BaseModel):
    message_id: str
    status: str
    channel: str
    to: str = Field(description="Masked destination")


class NotificationOut(BaseModel):
    id: str
    kind: str
    request_id: str | None
    title: str
    body: str
    created_at: datetime
    read: bool = False


class NotificationList(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None = None


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["22:00"])
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["08:00"])


class PreferencesOut(BaseModel):
    locale: str
    timezone: str
    quiet_hours: QuietHours
    opt_out: dict[str, list[str]] = Field(description="Message kind -> channels turned off")


class PreferencesIn(BaseModel):
    """Only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    locale: Literal[LOCALES] | None = None  # type: ignore[valid-type]
    timezone: str | None = Field(None, max_length=64)
    quiet_hours: QuietHours | None = None
    opt_out: dict[str, list[Literal[CHANNELS]]] | None = Field(None, max_length=len(KINDS))  # type: ignore[valid-type]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown IANA time zone") from exc
        return value

    @field_validator("opt_out")
    @classmethod
    def _kinds(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if value and (unknown := sorted(set(value) - set(KINDS))):
            raise ValueError(f"unknown message kinds: {', '.join(unknown)}")
        return value
