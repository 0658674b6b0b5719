"""CloudEvents 1.0 envelopes carried on Kafka in *binary* content mode.

Binary mode (the Kafka protocol binding's default) puts the context attributes in `ce_*` record
headers and only the event data, as JSON, in the record value. Consumers route on the `ce_type`
header without parsing the value, and the value stays the plain event model. The record key is the
CloudEvent `subject` (the binding id, or the user id for an event about a customer's device), so
every event of one binding lands on one partition in order.

Every event is signed by the service that emits it: Ed25519 over its id, type, source, time, subject
and data as published, carried in two extension attributes, `signature` (base64url) and `keyid` (the
kid of the service's key in the JWKS). A consumer accepts each type only from its one legitimate
source, signed with that source's key (`verify_signature`); anything else is an `EventRejected`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import ValidationError

from shared.encoding import b64url, b64url_decode
from shared.events import EVENT_TYPES, Event
from shared.keys import KeySet, SigningKey

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

Headers = list[tuple[str, bytes]]
SIGNATURE_HEADER = "ce_signature"
KEY_ID_HEADER = "ce_keyid"
# Signed before the attributes, so these bytes can never be mistaken for any other signed message.
SIGNATURE_DOMAIN = b"unbind-cloudevent-signature-v1"
_SIGNED_ATTRIBUTES = ("ce_id", "ce_type", "ce_source", "ce_time", "ce_subject")
# Why an event is refused; a closed set, as it labels a metric.
RejectionReason = Literal["unsigned", "wrong-source", "unknown-key", "wrong-key", "bad-signature", "state"]


class MalformedEvent(Exception):
    """A record that is not a CloudEvent of a known type with valid data (a poison message)."""


class EventRejected(Exception):
    """A well-formed event a consumer refuses for good: not signed by its one legitimate source, or
    at odds with the consumer's own state. It goes to the dead-letter topic at once, with its
    reason, and changes nothing."""

    def __init__(self, reason: RejectionReason, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Envelope:
    """One CloudEvent: context attributes plus the typed event as data."""

    data: Event
    source: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def type(self) -> str:
        return type(self.data).__name__

    @property
    def subject(self) -> str:
        return self.data.subject

    @classmethod
    def emit(cls, data: Event) -> Envelope:
        """A new envelope for an event emitted by the service that owns its type."""
        return cls(data=data, source=f"/services/{data.emitted_by}")

    def to_record(self, signer: SigningKey | None = None) -> tuple[bytes, bytes, Headers]:
        """(key, value, headers) of the Kafka record in binary content mode, signed by `signer`
        (a service's own key; unsigned only for documents and tests of refusal)."""
        headers: Headers = [
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.type.encode()),
            ("ce_time", self.time.isoformat().encode()),
            ("ce_subject", self.subject.encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        value = orjson.dumps(self.data.model_dump(mode="json"))
        if signer is not None:
            signature = signer.sign(signing_input(header_map(headers), value))
            headers += [(KEY_ID_HEADER, signer.kid.encode()), (SIGNATURE_HEADER, b64url(signature).encode())]
        return self.subject.encode(), value, headers

    @classmethod
    def from_record(cls, value: bytes | None, headers: Headers | tuple) -> Envelope:
        """Parse a record; raises MalformedEvent for anything that is not a valid known event."""
        attributes = header_map(headers)
        if attributes.get("ce_specversion") != SPEC_VERSION:
            raise MalformedEvent("missing or unsupported ce_specversion header")
        missing = [name for name in ("ce_id", "ce_source", "ce_type", "ce_time") if not attributes.get(name)]
        if missing:
            raise MalformedEvent(f"missing CloudEvent headers: {', '.join(missing)}")
        event_type = EVENT_TYPES.get(attributes["ce_type"])
        if event_type is None:
            raise MalformedEvent(f"unknown event type {attributes['ce_type']!r}")
        try:
            data = event_type.model_validate(orjson.loads(value or b""))
            time = datetime.fromisoformat(attributes["ce_time"])
        except ValidationError as exc:
            # Field paths and messages only: the input may hold a customer's free text.
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'data'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
            raise MalformedEvent(f"invalid {event_type.__name__} data: {problems}") from exc
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise MalformedEvent(f"invalid {event_type.__name__} data: {exc}") from exc
        return cls(data=data, source=attributes["ce_source"], id=attributes["ce_id"], time=time)


def signing_input(attributes: dict[str, str], value: bytes) -> bytes:
    """The bytes a signature covers: the domain, the context attributes consumers act on and the
    data as published, each length-prefixed (so no two different events give the same bytes)."""
    parts = [SIGNATURE_DOMAIN, *(attributes.get(name, "").encode() for name in _SIGNED_ATTRIBUTES), value]
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


async def verify_signature(
    keys: KeySet, envelope: Envelope, value: bytes | None, headers: Headers | tuple
) -> None:
    """Raise EventRejected unless the event was signed by the one service that emits its type.
    Raises KeySetUnavailable when the keys cannot be loaded (not the event's fault)."""
    attributes = header_map(headers)
    emitter = type(envelope.data).emitted_by
    if envelope.source != f"/services/{emitter}":
        raise EventRejected(
            "wrong-source", f"{envelope.type} is emitted by {emitter} only, not by {envelope.source[:100]!r}"
        )
    kid, signature = attributes.get(KEY_ID_HEADER), attributes.get(SIGNATURE_HEADER)
    if not kid or not signature:
        raise EventRejected("unsigned", f"{envelope.type} carries no signature")
    key = await keys.get(kid)
    if key is None:
        raise EventRejected(
            "unknown-key", f"{envelope.type} is signed with a key the JWKS does not hold ({kid[:100]!r})"
        )
    if key.service != emitter:
        raise EventRejected(
            "wrong-key",
            f"{envelope.type} is signed with a key of {key.service or 'an identity provider'}, not of "
            f"{emitter}",
        )
    try:
        raw = b64url_decode(signature)
    except ValueError:
        raw = b""
    if not key.verifies(raw, signing_input(attributes, value or b"")):
        raise EventRejected("bad-signature", f"{envelope.type}'s signature does not match its content")


def header_map(headers: Headers | tuple) -> dict[str, str]:
    """Record headers as a dict of text values (undecodable values are dropped)."""
    result: dict[str, str] = {}
    for name, raw in headers or ():
        try:
            result[name] = raw.decode() if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError:
            continue
    return result
