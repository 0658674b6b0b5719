"""CloudEvents 1.0 envelopes carried on Kafka in *binary* content mode.

Binary mode (the Kafka protocol binding's default) puts the context attributes in `ce_*` record
headers and only the event data, as JSON, in the record value. Consumers route on the `ce_type`
header without parsing the value, and the value stays the plain event model. The record key is the
CloudEvent `subject` (the binding id, or the user id for an event about a customer's device), so
every event of one binding lands on one partition in order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from pydantic import ValidationError

from shared.events import EVENT_TYPES, Event

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

Headers = list[tuple[str, bytes]]


class MalformedEvent(Exception):
    """A record that is not a CloudEvent of a known type with valid data (a poison message)."""


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

    def to_record(self) -> tuple[bytes, bytes, Headers]:
        """(key, value, headers) of the Kafka record in binary content mode."""
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
            problems = "; ".join(f"{'.'.join(map(str, error['loc'])) or 'data'}: {error['msg']}" for error in exc.errors(include_input=False, include_url=False))
            raise MalformedEvent(f"invalid {event_type.__name__} data: {problems}") from exc
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise MalformedEvent(f"invalid {event_type.__name__} data: {exc}") from exc
        return cls(data=data, source=attributes["ce_source"], id=attributes["ce_id"], time=time)


def header_map(headers: Headers | tuple) -> dict[str, str]:
    """Record headers as a dict of text values (undecodable values are dropped)."""
    result: dict[str, str] = {}
    for name, raw in headers or ():
        try:
            result[name] = raw.decode() if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError:
            continue
    return result
