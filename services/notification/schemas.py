"""Request and response models of the notification API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MessageIn(BaseModel):
    """A message another service asks to send. Only templates the caller may use are accepted."""

    model_config = ConfigDict(extra="forbid")

    message_id: str = Field(pattern=r"^[A-Za-z0-9:._-]{1,128}$", description="Idempotency key: a repeated id sends nothing new")
    user_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    template: Literal["otp_code"]
    params: dict[str, str] = Field(default_factory=dict, max_length=10)


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


class NotificationList(BaseModel):
    items: list[NotificationOut]
