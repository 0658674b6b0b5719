"""No event can carry free text: every string in every event's schema is an id, a code or a time."""

from __future__ import annotations

from typing import Any

import pytest

from shared.events import EVENT_TYPES

# Strings that are identifiers (minted by a service, or a hash or address) rather than text, and
# RiskReason.detail: risk renders it from a fixed template per code and a count (see shared/events.py).
IDENTIFIERS = {
    "request_id",
    "binding_id",
    "user_id",
    "verification_id",
    "device_id",
    "mandate_id",
    "review_id",
    "reviewer",
    "impact_hash",
    "client_ip",
    "account_last4",
    "detail",
}


def free_text_fields(schema: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    """The paths of string properties that are neither an identifier nor constrained to a code
    (an enum, a const, a pattern or a format)."""
    found = []
    for name, spec in schema.get("properties", {}).items():
        for option in spec.get("anyOf", [spec]):
            found += _free_text(name, option, defs, f"{path}.{name}")
    return found


def _free_text(name: str, spec: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    if "$ref" in spec:
        target = defs[spec["$ref"].rsplit("/", 1)[-1]]
        return (
            free_text_fields(target, defs, path)
            if "properties" in target
            else _free_text(name, target, defs, path)
        )
    if spec.get("type") == "array":
        return _free_text(name, spec.get("items", {}), defs, f"{path}[]")
    if (
        spec.get("type") != "string"
        or name in IDENTIFIERS
        or {"enum", "const", "pattern", "format"} & spec.keys()
    ):
        return []
    return [path]


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_no_event_field_holds_free_text(name: str) -> None:
    schema = EVENT_TYPES[name].model_json_schema()
    assert free_text_fields(schema, schema.get("$defs", {}), name) == []


def test_the_check_finds_free_text_where_there_is_some() -> None:
    schema = {
        "properties": {
            "note": {"type": "string"},
            "reason": {"type": "string", "pattern": "^[a-z_]+$"},
            "reasons": {"type": "array", "items": {"$ref": "#/$defs/Reason"}},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
            "request_id": {"type": "string"},
        }
    }
    defs = {"Reason": {"properties": {"code": {"type": "string", "enum": ["a"]}, "text": {"type": "string"}}}}
    assert free_text_fields(schema, defs, "E") == ["E.note", "E.reasons[].text", "E.tags[]"]
