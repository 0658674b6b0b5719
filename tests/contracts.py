"""The event contract that `unbind docs` commits under docs/, as validators: the e2e tests hold
every record on their topic to it, so what the services put on the wire is what outside tools are
told (docs/asyncapi.json for the headers and key, docs/events/<type>.schema.json for the value)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

from shared import events
from shared.cloudevents import header_map
from tools import docs

DOCS = Path(__file__).resolve().parent.parent / "docs"
ASYNCAPI_URI = docs.ID_BASE + docs.ASYNCAPI_FILE


@dataclass
class Contract:
    """The AsyncAPI document and the event schemas of one docs folder, resolvable by their ids."""

    asyncapi: dict[str, Any]
    registry: jsonschema_rs.Registry
    _validators: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path = DOCS) -> Contract:
        asyncapi = json.loads((folder / docs.ASYNCAPI_FILE).read_bytes())
        schemas = [json.loads(path.read_bytes()) for path in folder.glob(docs.schema_path("*"))]
        # The AsyncAPI document sits under the same base as the schemas, so its relative payload
        # references resolve to their $id, as they resolve to the files beside it.
        return cls(
            asyncapi,
            jsonschema_rs.Registry(
                [(ASYNCAPI_URI, asyncapi), *((schema["$id"], schema) for schema in schemas)]
            ),
        )

    def validator(self, pointer: str) -> Any:
        """A draft 2020-12 validator (formats checked) of the schema at `pointer` in the AsyncAPI document."""
        if pointer not in self._validators:
            schema = {"$schema": docs.SCHEMA_DIALECT, "$ref": f"{ASYNCAPI_URI}#{pointer}"}
            self._validators[pointer] = jsonschema_rs.validator_for(
                schema, registry=self.registry, validate_formats=True
            )
        return self._validators[pointer]

    def problems(self, record: Any, channel: str = docs.EVENTS_CHANNEL) -> list[str]:
        """What is wrong with one Kafka record (key, value, headers) as a message of `channel`."""
        headers = header_map(record.headers)
        event_type = headers.get("ce_type", "")
        messages = self.asyncapi["channels"][channel]["messages"]
        # The DLQ names its messages after the event type they carry.
        name = next((name for name in (event_type, f"{event_type}DeadLetter") if name in messages), None)
        if name is None:
            return [f"no message of type {event_type!r} on the {channel} channel"]
        message = messages[name]["$ref"].removeprefix("#")
        found = [f"headers: {error}" for error in self.validator(f"{message}/headers").iter_errors(headers)]
        try:
            value = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError as exc:
            return [*found, f"value is no JSON: {exc}"]
        found += [f"value: {error}" for error in self.validator(f"{message}/payload").iter_errors(value)]
        # The Kafka key is the subject field of the data (the message's kafka binding), like ce_subject.
        subject_field = events.EVENT_TYPES[event_type].subject_field
        subject = value.get(subject_field) if isinstance(value, dict) else None
        if record.key is None or record.key.decode() != subject:
            found.append(f"key {record.key!r} is not the {subject_field} of the data")
        return found


def assert_records_follow_contract(records: Iterable[Any], contract: Contract | None = None) -> None:
    """Every record is a message the AsyncAPI document lists, its headers and value valid against their
    schemas."""
    contract = contract or Contract.load()
    records = list(records)
    assert records, "no record to check against the contract"
    failures = [
        f"{record.topic}[{record.partition}]@{record.offset}: {problem}"
        for record in records
        for problem in contract.problems(record)
    ]
    assert not failures, "records on the topic break the contract in docs/ (`unbind docs`):\n" + "\n".join(
        failures
    )
