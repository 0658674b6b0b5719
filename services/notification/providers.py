"""Channel providers behind one interface. Development providers append JSON lines under the var
dir (`sms.jsonl` is design.md's SMS sink); the real ones are configuration: an HTTP SMS gateway,
SMTP for email, and the lender's webhook, signed with HMAC-SHA256 of the body."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import smtplib
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import httpx
import orjson

from shared.db import utcnow

SIGNATURE_HEADER = "X-Unbind-Signature"


class DeliveryError(Exception):
    """The provider did not take the message; the delivery is retried or falls back."""


@dataclass(frozen=True)
class Outgoing:
    recipient: str
    title: str
    body: str
    payload: dict | None = None


class Provider(Protocol):
    async def send(self, message: Outgoing) -> None: ...


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class JsonLinesProvider:
    """Development channel: one JSON object per message (`to`, `text`, `at`; plus `title`)."""

    path: Path

    async def send(self, message: Outgoing) -> None:
        line = (
            orjson.dumps(
                {
                    "to": message.recipient,
                    "title": message.title,
                    "text": message.body,
                    "at": utcnow().isoformat(),
                }
            )
            + b"\n"
        )
        await asyncio.to_thread(_append, self.path, line)


@dataclass(frozen=True)
class SmsSinkProvider:
    """Development SMS gateway, exactly design.md's sink: `{to, text, at}` per line in sms.jsonl."""

    path: Path

    async def send(self, message: Outgoing) -> None:
        line = (
            orjson.dumps({"to": message.recipient, "text": message.body, "at": utcnow().isoformat()}) + b"\n"
        )
        await asyncio.to_thread(_append, self.path, line)


@dataclass(frozen=True)
class SignedSms:
    """Every SMS, whatever sends it, begins with the sender's signature."""

    gateway: Provider
    signature: str

    async def send(self, message: Outgoing) -> None:
        await self.gateway.send(replace(message, body=self.signature + message.body))


def _append(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as sink:
        sink.write(line)


@dataclass(frozen=True)
class HttpSmsGateway:
    client: httpx.AsyncClient
    url: str

    async def send(self, message: Outgoing) -> None:
        try:
            response = await self.client.post(self.url, json={"to": message.recipient, "text": message.body})
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS gateway unreachable: {type(exc).__name__}") from exc
        if not response.is_success:
            raise DeliveryError(f"SMS gateway answered {response.status_code}")


@dataclass(frozen=True)
class SmtpEmail:
    host: str
    port: int
    sender: str

    async def send(self, message: Outgoing) -> None:
        email = EmailMessage()
        email["From"], email["To"], email["Subject"] = self.sender, message.recipient, message.title
        email.set_content(message.body)
        try:
            await asyncio.to_thread(self._deliver, email)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP failed: {type(exc).__name__}") from exc

    def _deliver(self, email: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.send_message(email)


@dataclass(frozen=True)
class InstitutionWebhook:
    """Tells the lender an account was unbound: POST of the JSON payload, signed."""

    secret: str
    url: str | None = None
    client: httpx.AsyncClient | None = None
    sink: Path | None = None  # development: record the request instead of sending it

    async def send(self, message: Outgoing) -> None:
        body = orjson.dumps(message.payload or {}, option=orjson.OPT_SORT_KEYS)
        signature = sign(self.secret, body)
        if self.url and self.client:
            try:
                response = await self.client.post(
                    self.url,
                    content=body,
                    headers={"Content-Type": "application/json", SIGNATURE_HEADER: signature},
                )
            except httpx.HTTPError as exc:
                raise DeliveryError(f"lender webhook unreachable: {type(exc).__name__}") from exc
            if not response.is_success:
                raise DeliveryError(f"lender webhook answered {response.status_code}")
            return
        assert self.sink is not None, "a development webhook needs a sink"
        line = (
            orjson.dumps(
                {
                    "to": message.recipient,
                    "body": body.decode(),
                    "signature": signature,
                    "at": utcnow().isoformat(),
                }
            )
            + b"\n"
        )
        await asyncio.to_thread(_append, self.sink, line)
