"""Request and response models of the notification API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.notification.templates import CHANNELS, KINDS, LOCALES
from shared.fields import FreeText


class DeviceRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    name: FreeText = Field(
        min_length=1,
        max_length=128,
        description="The name the customer gave it; kept, and used by every notice about the device",
    )


# The codes that are for a request (the others are for a device).
REQUEST_CODES = frozenset({"otp_code", "binding_code"})


class MessageIn(BaseModel):
    """A message another service asks to send. Only templates the caller may use are accepted."""

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(
        pattern=r"^[A-Za-z0-9:._-]{1,128}$", description="Idempotency key: a repeated id sends nothing new"
    )
    user_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    template: Literal["otp_code", "device_enrolment_code", "binding_code"]
    params: dict[str, FreeText] = Field(default_factory=dict, max_length=10)
    request_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9-]{1,36}$",
        description=(
            "The unbind or bind request a code is for: the SMS names its account, and an unbind request's "
            "risk prompt goes first"
        ),
    )
    device: DeviceRef | None = Field(None, description="The device a code enrols: the SMS names it")

    @model_validator(mode="after")
    def _what_a_code_is_for(self) -> MessageIn:
        if (self.template in REQUEST_CODES) != (self.request_id is not None):
            raise ValueError("request_id names the request of an otp_code or binding_code, and only of one")
        if self.device is not None and self.template != "device_enrolment_code":
            raise ValueError("device names the device a device_enrolment_code enrols, and only that")
        return self


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
    quiet_hours: QuietHours | None = Field(
        description="Local times between which messages that can wait are held; null: off"
    )
    opt_out: dict[str, list[str]] = Field(description="Message kind -> channels turned off")


def opt_out_channels(kind: str) -> tuple[str, ...]:
    """The channels of a kind a customer can turn off: those it goes by, and SMS where SMS stands in for a
    failed push."""
    channels = KINDS[kind].channels
    return channels + ("sms",) if "push" in channels and "sms" not in channels else channels


class PreferencesIn(BaseModel):
    """Only the fields given change, and at least one must be: every field given is applied, or the
    whole update is refused (422). `quiet_hours: null` turns quiet hours off; `opt_out` replaces the
    whole map (`{}` turns every message back on). Locale, time zone and opt-out cannot be null."""

    model_config = ConfigDict(extra="forbid")

    # Not nullable, though absent by default: null is refused rather than read as "no change".
    locale: Literal[LOCALES] = None  # type: ignore[valid-type,assignment]
    timezone: str = Field(None, max_length=64)  # type: ignore[assignment]
    quiet_hours: QuietHours | None = None
    opt_out: dict[str, list[Literal[CHANNELS]]] = Field(None, max_length=len(KINDS))  # type: ignore[valid-type,assignment]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        # A directory of the time zone database ("Asia") is an OSError.
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError("unknown IANA time zone") from exc
        return value

    @field_validator("opt_out")
    @classmethod
    def _kinds(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if unknown := sorted(set(value) - set(KINDS)):
            raise ValueError(f"unknown message kinds: {', '.join(unknown)}")
        if unused := sorted(
            f"{kind} by {channel}"
            for kind, channels in value.items()
            for channel in set(channels) - set(opt_out_channels(kind))
        ):
            raise ValueError(f"never sent, so it cannot be turned off: {', '.join(unused)}")
        return value

    @model_validator(mode="after")
    def _applies(self) -> PreferencesIn:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give locale, timezone, quiet_hours or opt_out")
        if self.quiet_hours is not None and self.quiet_hours.start == self.quiet_hours.end:
            raise ValueError(
                "quiet hours that start when they end are none: send quiet_hours null to turn them off"
            )
        return self


class OpsMessageOut(BaseModel):
    """A message as ops see it: where and how it went, never its text (a code's least of all)."""

    id: int = Field(description="The delivery's id (what `POST /v1/ops/notifications/{id}/resend` takes)")
    kind: str
    channel: str = Field(description="inapp, push, sms, email, or institution (the lender's webhook)")
    status: str = Field(
        description=(
            "queued, sent, failed, suppressed (the customer turned it off) or superseded (stale before it "
            "could go)"
        )
    )
    destination: str = Field(
        description="Masked: `138****5678`, `z***@example.com`, `inbox`, `app` or `lender`"
    )
    title: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    request_id: str | None
    resend_of: int | None = Field(description="The message this one repeats, when ops resent it")
    resent_by: str | None
    resent_at: datetime | None
    resend_reason: str | None = Field(description="Why ops resent it, in their words (numbers masked)")


class OpsMessageList(BaseModel):
    items: list[OpsMessageOut] = Field(description="Newest first (at most 200)")


class OpsContactOut(BaseModel):
    user_id: str
    phone: str = Field(description="Masked, e.g. `138****5678`")
    email: str | None = Field(description="Masked, e.g. `z***@example.com`")
    locale: str


class OpsContactList(BaseModel):
    items: list[OpsContactOut]


class ResendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: FreeText = Field(
        min_length=1, max_length=200, description="Why it is resent (kept on the message, and listed)"
    )
