"""`unbind docs [--out DIR] [--check]`: the contracts for outside tools, from the event models and the apps.

    <out>/events/<EventType>.schema.json   the JSON Schema (draft 2020-12) of each event's data
    <out>/asyncapi.json                    an AsyncAPI 3.0 document of the topic and its DLQ
    <out>/openapi/<app>.json               each app's OpenAPI document, as it serves it on /openapi.json

No list of event types or services is kept here: the schemas come from `shared.events`, who sends
a type from its `emitted_by`, who receives it from each app's `SUBSCRIPTIONS` (services/<app>/
main.py), the topics and the broker from the settings defaults. The header schemas are written
here; tests/cli/test_docs.py holds their names to what shared.cloudevents and shared.consumer write.
The OpenAPI documents are FastAPI's, from each app built (never started) with keys made for the run.
The output is byte-stable (same models, same bytes), so the committed documents can be compared with
a fresh run: `--check` does that and exits 1 naming the files that differ.

JSON rather than YAML: PyYAML is no dependency of the project (only of a test tool).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from shared import cloudevents, events
from shared.migrations import SERVICES
from shared.settings import ServiceSettings
from tools.keys import InstallationKeys
from tools.services import APPS, settings_class

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# A name, not a location (.example is reserved, RFC 2606). The documents sit under it as they sit
# in the docs folder, so the payload references of asyncapi.json resolve to these ids, as files or as URIs.
ID_BASE = "https://unbind.example/docs/"
ASYNCAPI_FILE = "asyncapi.json"
EVENTS_DIR = "events"
OPENAPI_DIR = "openapi"
KAFKA_BINDING_VERSION = "0.5.0"
EVENTS_CHANNEL = "events"
DLQ_CHANNEL = "deadLetters"
# The one reader of the DLQ among the apps; it projects both topics itself (services/dashboard/stream.py).
DLQ_READER = "dashboard"


def schema_path(event_type: str) -> str:
    return f"{EVENTS_DIR}/{event_type}.schema.json"


def openapi_path(app: str) -> str:
    return f"{OPENAPI_DIR}/{app}.json"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def event_schema(model: type[events.Event]) -> dict[str, Any]:
    """The JSON Schema of one event type's data: pydantic's, with an id, a dialect and one-line
    description."""
    generated = model.model_json_schema()
    head = {
        "$schema": SCHEMA_DIALECT,
        "$id": ID_BASE + schema_path(model.__name__),
        "title": model.__name__,
        "description": _one_line(model.__doc__),
    }
    # $defs last: a reader meets the event's own fields first.
    rest = sorted((key for key in generated if key not in head), key=lambda key: key == "$defs")
    return head | {key: generated[key] for key in rest}


def _ref(pointer: str) -> dict[str, str]:
    return {"$ref": pointer}


def _cloudevent_headers() -> dict[str, Any]:
    # As Envelope.to_record writes them; tests/cli/test_docs.py holds the two to the same names.
    properties = {
        "ce_specversion": {"const": cloudevents.SPEC_VERSION, "description": "CloudEvents spec version."},
        "ce_id": {
            "type": "string",
            "format": "uuid",
            "description": (
                "Unique per event; consumers skip an id they have handled (inbox), so a redelivery changes "
                "nothing."
            ),
        },
        "ce_source": {
            "type": "string",
            "pattern": "^/services/[a-z]+$",
            "description": "The emitting service, `/services/<name>`.",
        },
        "ce_type": {
            "type": "string",
            "description": "The event type: the message name, and the name of its payload schema.",
        },
        "ce_time": {
            "type": "string",
            "format": "date-time",
            "description": "When the event happened (RFC 3339, UTC).",
        },
        "ce_subject": {
            "type": "string",
            "description": (
                "What the event is about, as in the record key: the binding id, or the user id for an event "
                "about a customer's device."
            ),
        },
        "content-type": {"const": cloudevents.CONTENT_TYPE, "description": "Media type of the record value."},
        cloudevents.KEY_ID_HEADER: {
            "type": "string",
            "pattern": "^svc\\.[a-z-]+\\..+$",
            "description": (
                "Extension attribute `keyid`: the kid, in the JWKS, of the emitting service's key "
                "(`svc.<service>.<suffix>`)."
            ),
        },
        cloudevents.SIGNATURE_HEADER: {
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]{86}$",
            "description": (
                "Extension attribute `signature`: Ed25519 (base64url) over the id, type, source, time, "
                "subject and the record value; a consumer accepts a type only from its one source, signed "
                "with that source's key."
            ),
        },
    }
    return {
        "type": "object",
        "description": (
            "CloudEvents 1.0 context attributes in binary content mode: Kafka record headers, UTF-8 text "
            "values."
        ),
        "properties": properties,
        "required": list(properties),
    }


def _dead_letter_headers() -> dict[str, Any]:
    # As shared.consumer writes them when it dead-letters a record; test_docs.py scans it for the names.
    properties = {
        "x-dlq-reason": {
            "type": "string",
            "enum": ["unsigned", "wrong-source", "unknown-key", "wrong-key", "bad-signature", "state"],
            "description": (
                "Only on a refused event: why it was refused (not signed by its type's one source, or at "
                "odds with the consumer's state)."
            ),
        },
        "x-dlq-error": {"type": "string", "description": "The error, redacted, at most 2,000 characters."},
        "x-dlq-error-type": {"type": "string", "description": "The exception class name."},
        "x-dlq-original-topic": {"type": "string"},
        "x-dlq-original-partition": {"type": "string", "pattern": "^[0-9]+$"},
        "x-dlq-original-offset": {"type": "string", "pattern": "^[0-9]+$"},
        "x-dlq-consumer-group": {
            "type": "string",
            "description": "The consumer group that gave up on the record.",
        },
        "x-dlq-attempts": {"type": "string", "pattern": "^[0-9]+$"},
        "x-dlq-failed-at": {"type": "string", "format": "date-time"},
    }
    required = [name for name in properties if name != "x-dlq-reason"]
    return {
        "type": "object",
        "description": "Added by the consumer that dead-lettered the record.",
        "properties": properties,
        "required": required,
    }


# What each field that can be a subject or a correlation id names, for the documents' descriptions.
_FIELD_MEANING = {
    "binding_id": "binding",
    "user_id": "customer",
    "request_id": "request",
    "device_id": "device key",
}


def _key_binding(model: type[events.Event]) -> dict[str, Any]:
    meaning = _FIELD_MEANING[model.subject_field]
    return {
        "kafka": {
            "key": {
                "type": "string",
                "description": (
                    f"`{model.subject_field}` of the data (`ce_subject`): every event of one {meaning} lands "
                    f"on one partition, in order."
                ),
            },
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


def _correlation_ids() -> dict[str, Any]:
    fields = sorted({model.correlation_field for model in events.EVENT_TYPES.values()})
    return {
        field: {
            "description": f"The {_FIELD_MEANING[field]} every event of one flow is about.",
            "location": f"$message.payload#/{field}",
        }
        for field in fields
    }


def _title(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).capitalize()


def _messages(model: type[events.Event]) -> dict[str, dict[str, Any]]:
    """The message of an event type on the topic, and of its dead letter on the DLQ."""
    name = model.__name__
    summary = _one_line(model.__doc__)
    headers = {
        "type": "object",
        "allOf": [
            _ref("#/components/schemas/CloudEventHeaders"),
            # The source as Envelope.emit sets it.
            {
                "properties": {
                    "ce_type": {"const": name},
                    "ce_source": {"const": f"/services/{model.emitted_by}"},
                }
            },
        ],
    }
    common = {
        "contentType": cloudevents.CONTENT_TYPE,
        "payload": _ref(schema_path(name)),
        "correlationId": _ref(f"#/components/correlationIds/{model.correlation_field}"),
        "bindings": _key_binding(model),
    }
    return {
        name: {"name": name, "title": _title(name), "summary": summary, "headers": headers, **common},
        f"{name}DeadLetter": {
            "name": f"{name}DeadLetter",
            "title": f"{_title(name)} (dead letter)",
            "summary": f"A {name} that a consumer could not handle. {summary}",
            "headers": {
                "type": "object",
                "allOf": [
                    _ref(f"#/components/messages/{name}/headers"),
                    _ref("#/components/schemas/DeadLetterHeaders"),
                ],
            },
            **common,
        },
    }


def _operation(
    action: str, channel: str, summary: str, messages: list[str], *, group: str | None = None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": _ref(f"#/channels/{channel}"),
        "summary": summary,
        "messages": [_ref(f"#/channels/{channel}/messages/{message}") for message in messages],
    }
    if group:
        operation["bindings"] = {
            "kafka": {"groupId": {"type": "string", "const": group}, "bindingVersion": KAFKA_BINDING_VERSION}
        }
    return operation


def _operations(types: list[str]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for app in APPS:
        subscribed = {
            model.__name__ for model in importlib.import_module(f"services.{app}.main").SUBSCRIPTIONS
        }
        received = [name for name in types if name in subscribed]
        sent = [name for name in types if events.EVENT_TYPES[name].emitted_by == app]
        # The default consumer group of every instance of the app (shared.settings).
        group = f"unbind-{app}"
        if sent:
            operations[f"{app}Sends"] = _operation(
                "send", EVENTS_CHANNEL, f"{app} publishes its events through its transactional outbox.", sent
            )
        if received:
            operations[f"{app}Receives"] = _operation(
                "receive",
                EVENTS_CHANNEL,
                f"{app} handles these events (consumer group {group}).",
                received,
                group=group,
            )
        if app in SERVICES and received:
            # The services consume through shared.consumer, which dead-letters what a handler cannot take.
            letters = [f"{name}DeadLetter" for name in received]
            operations[f"{app}DeadLetters"] = _operation(
                "send",
                DLQ_CHANNEL,
                f"{app} dead-letters an event it could not handle after its retries.",
                letters,
            )
        if app == DLQ_READER:
            letters = [f"{name}DeadLetter" for name in types]
            operations[f"{app}ReceivesDeadLetters"] = _operation(
                "receive",
                DLQ_CHANNEL,
                f"{app} shows the dead letters (consumer group {group}).",
                letters,
                group=group,
            )
    return operations


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the topic and its DLQ."""
    defaults = ServiceSettings.model_fields
    topic, dlq_topic = defaults["topic"].default, defaults["dlq_topic"].default
    types = list(events.EVENT_TYPES)
    messages = {
        name: message for model in events.EVENT_TYPES.values() for name, message in _messages(model).items()
    }

    def channel(address: str, description: str, names: list[str]) -> dict[str, Any]:
        return {
            "address": address,
            "description": description,
            "messages": {name: _ref(f"#/components/messages/{name}") for name in names},
            "bindings": {"kafka": {"topic": address, "bindingVersion": KAFKA_BINDING_VERSION}},
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "unbind events",
            "version": version("unbind"),
            "description": "\n\n".join(
                text.strip()
                for text in (
                    events.__doc__ or "",
                    cloudevents.__doc__ or "",
                    (
                        f"Payloads are JSON Schema draft 2020-12 documents, one per event type, in "
                        f"`{EVENTS_DIR}/` beside this file; written by `unbind docs`."
                    ),
                )
            ),
        },
        "defaultContentType": cloudevents.CONTENT_TYPE,
        "servers": {
            "development": {
                "host": defaults["kafka_bootstrap_servers"].default,
                "protocol": "kafka",
                "description": (
                    "The broker of `unbind up`; elsewhere the services use $KAFKA_BOOTSTRAP_SERVERS."
                ),
            }
        },
        "channels": {
            EVENTS_CHANNEL: channel(
                topic,
                "Every event of the system, keyed by its subject: the binding id, or the user id for device "
                "events ($UNBIND_TOPIC).",
                types,
            ),
            DLQ_CHANNEL: channel(
                dlq_topic,
                "Dead letters ($UNBIND_DLQ_TOPIC): a record a consumer could not handle, with its key, value "
                "and headers plus `x-dlq-*` headers. A record that was no valid CloudEvent lands here too, "
                "as it came. `unbind dlq replay` publishes letters again to their topic and records each "
                "replay here as a marker: header `x-dlq-replay-of` and no value.",
                [f"{name}DeadLetter" for name in types],
            ),
        },
        "operations": _operations(types),
        "components": {
            "schemas": {
                "CloudEventHeaders": _cloudevent_headers(),
                "DeadLetterHeaders": _dead_letter_headers(),
            },
            "messages": messages,
            "correlationIds": _correlation_ids(),
        },
    }


def openapi_documents() -> dict[str, dict[str, Any]]:
    """Each app's OpenAPI document, by app. An app refuses to be built without its keys and secrets, so
    it gets a set generated for this run alone; none of them shows in a document."""
    documents = {}
    with tempfile.TemporaryDirectory(prefix="unbind-docs-") as folder:
        keys = InstallationKeys(Path(folder) / "keys")
        keys.generate_missing()
        for app in APPS:
            settings = settings_class(app)
            secrets = {name: keys.secret(name) for name in settings.required_secrets}
            signing = {"signing_key_file": keys.service_key_file(app)} if settings.needs_signing_key else {}
            # Explicit where the environment could differ between two runs; the rest are the defaults.
            built = settings(
                env="production",
                var_dir=Path(folder),
                jwks_file=keys.jwks_file,
                kafka_sasl_password="unused",
                **signing,
                **secrets,
            )
            documents[app] = importlib.import_module(f"services.{app}.main").create_app(built).openapi()
    return documents


def _dump(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def render() -> dict[str, bytes]:
    """Every document, by its path relative to the docs folder."""
    files = {schema_path(name): _dump(event_schema(model)) for name, model in events.EVENT_TYPES.items()}
    files[ASYNCAPI_FILE] = _dump(asyncapi_document())
    files |= {openapi_path(app): _dump(document) for app, document in openapi_documents().items()}
    return files


def _generated(out: Path) -> set[str]:
    """The files of `out` this command owns (other docs, like images, are left alone)."""
    found = {
        path.relative_to(out).as_posix()
        for pattern in (schema_path("*"), openapi_path("*"))
        for path in out.glob(pattern)
    }
    return found | ({ASYNCAPI_FILE} if (out / ASYNCAPI_FILE).exists() else set())


def differences(out: Path, files: dict[str, bytes]) -> list[str]:
    """What writing `files` would change in `out`: '<path> (differs|missing|stale)', sorted."""
    changed = [
        f"{path} ({'differs' if (out / path).exists() else 'missing'})"
        for path, content in files.items()
        if not _same(out / path, content)
    ]
    stale = [
        f"{path} (stale: no such {'app' if path.startswith(OPENAPI_DIR) else 'event type'})"
        for path in _generated(out) - files.keys()
    ]
    return sorted(changed + stale)


def _same(path: Path, content: bytes) -> bool:
    return path.is_file() and path.read_bytes() == content


def write(out: Path) -> list[str]:
    """Write every document into `out` and remove those of event types and apps that are gone; returns what
    changed."""
    files = render()
    changed = differences(out, files)
    for path in _generated(out) - files.keys():
        (out / path).unlink()
    for path, content in files.items():
        target = out / path
        if not _same(target, content):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return changed


def cli(out: Path, check: bool) -> int:
    if check:
        changed = differences(out, render())
        if changed:
            print(
                f"unbind docs --check: {out} does not match the event models and the apps; run `unbind docs` "
                f"and commit:",
                file=sys.stderr,
            )
            for line in changed:
                print(f"  {line}", file=sys.stderr)
            return 1
        print(f"docs: {out} matches the event models and the apps ({_contents()})")
        return 0
    changed = write(out)
    print(
        f"docs: {_contents()} in {out}; "
        + (f"{len(changed)} changed: {', '.join(changed)}" if changed else "nothing changed")
    )
    return 0


def _contents() -> str:
    return f"{len(events.EVENT_TYPES)} event schemas, {ASYNCAPI_FILE} and {len(APPS)} OpenAPI documents"
