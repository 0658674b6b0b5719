"""`unbind docs`: the committed AsyncAPI document, event JSON Schemas and OpenAPI documents are what
the code gives, a changed model is reported, and the documents are well-formed and hold together."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import create_model

from shared.bus import MemoryRecord
from shared.cloudevents import Envelope
from shared.events import EVENT_TYPES, DeviceEnrolled, RiskAssessed, Verified
from shared.settings import ServiceSettings
from tests.contracts import DOCS, Contract
from tests.keys import service_key
from tools import docs
from tools.main import main
from tools.services import APPS

ROOT = DOCS.parent


def owned_files(folder: Path) -> dict[str, bytes]:
    paths = [
        folder / docs.ASYNCAPI_FILE,
        *folder.glob(docs.schema_path("*")),
        *folder.glob(docs.openapi_path("*")),
    ]
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in paths if path.exists()}


@pytest.fixture
def fresh_docs(tmp_path: Path) -> Path:
    assert main(["docs", "--out", str(tmp_path)]) == 0
    return tmp_path


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return json.loads((DOCS / docs.ASYNCAPI_FILE).read_bytes())


def test_committed_documents_are_what_the_models_give(
    fresh_docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    committed, generated = owned_files(DOCS), owned_files(fresh_docs)
    assert committed.keys() == generated.keys(), "run `unbind docs` and commit docs/"
    for path, content in generated.items():
        assert committed[path] == content, (
            f"docs/{path} differs from the code: run `unbind docs` and commit it"
        )
    assert main(["docs", "--check", "--out", str(DOCS)]) == 0
    # Regenerating is byte-identical: a second run changes nothing.
    assert main(["docs", "--out", str(fresh_docs)]) == 0
    assert "nothing changed" in capsys.readouterr().out


def test_check_names_the_schema_of_a_changed_model(
    fresh_docs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    grown = create_model("Verified", __base__=Verified, __doc__=Verified.__doc__, device_name=(str, ""))
    monkeypatch.setitem(EVENT_TYPES, "Verified", grown)
    capsys.readouterr()

    assert main(["docs", "--check", "--out", str(fresh_docs)]) == 1
    report = capsys.readouterr().err
    assert "does not match the event models" in report
    assert [line.strip() for line in report.splitlines()[1:]] == ["events/Verified.schema.json (differs)"]

    assert main(["docs", "--out", str(fresh_docs)]) == 0
    assert (
        "device_name" in json.loads((fresh_docs / "events/Verified.schema.json").read_bytes())["properties"]
    )
    assert main(["docs", "--check", "--out", str(fresh_docs)]) == 0


def test_check_names_a_removed_event_type_and_writing_removes_its_schema(
    fresh_docs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(EVENT_TYPES, "UnbindExpired")
    capsys.readouterr()

    assert main(["docs", "--check", "--out", str(fresh_docs)]) == 1
    report = [line.strip() for line in capsys.readouterr().err.splitlines()[1:]]
    assert report == [
        "asyncapi.json (differs)",
        "events/UnbindExpired.schema.json (stale: no such event type)",
    ]

    assert main(["docs", "--out", str(fresh_docs)]) == 0
    assert not (fresh_docs / "events/UnbindExpired.schema.json").exists()


def test_each_event_schema_is_valid_draft_2020_12() -> None:
    files = sorted(DOCS.glob(docs.schema_path("*")))
    assert {path.name.removesuffix(".schema.json") for path in files} == set(EVENT_TYPES)
    for path in files:
        schema = json.loads(path.read_bytes())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema_rs.meta.validate(schema)
        model = EVENT_TYPES[schema["title"]]
        assert schema["$id"] == docs.ID_BASE + docs.schema_path(model.__name__)
        assert schema["description"] == " ".join(model.__doc__.split())
        assert path.read_bytes().endswith(b"}\n")


def test_each_app_has_its_openapi_document() -> None:
    files = sorted(DOCS.glob(docs.openapi_path("*")))
    assert [path.stem for path in files] == sorted(APPS)
    for path in files:
        document = json.loads(path.read_bytes())
        assert document["openapi"].startswith("3.")
        assert document["info"]["title"] == f"unbind · {path.stem}"
        assert {"/healthz", "/readyz", "/metrics"} <= document["paths"].keys()


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        return (
            [node["$ref"]]
            if "$ref" in node
            else [ref for value in node.values() for ref in _references(value)]
        )
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


def test_asyncapi_document_lists_every_event_and_every_reference_resolves(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["version"] == version("unbind")
    assert {server["protocol"] for server in asyncapi["servers"].values()} == {"kafka"}
    defaults = ServiceSettings.model_fields
    channels = asyncapi["channels"]
    assert {channel["address"] for channel in channels.values()} == {
        defaults["topic"].default,
        defaults["dlq_topic"].default,
    }

    messages = asyncapi["components"]["messages"]
    for name, model in EVENT_TYPES.items():
        assert channels[docs.EVENTS_CHANNEL]["messages"][name] == {"$ref": f"#/components/messages/{name}"}
        assert f"{name}DeadLetter" in channels[docs.DLQ_CHANNEL]["messages"]
        message = messages[name]
        assert (message["name"], message["summary"], message["contentType"]) == (
            name,
            " ".join(model.__doc__.split()),
            "application/json",
        )
        assert message["bindings"]["kafka"]["key"]["type"] == "string"

    for ref in _references(asyncapi):
        if ref.startswith("#"):
            _resolve(asyncapi, ref)
        else:
            assert (DOCS / ref).is_file(), f"{ref} is no file beside asyncapi.json"

    contract = Contract.load()
    for name in messages:
        # Compiling resolves every reference inside, the payload's file and its $defs included.
        contract.validator(f"/components/messages/{name}/payload")
        contract.validator(f"/components/messages/{name}/headers")

    for operation_id, operation in asyncapi["operations"].items():
        assert operation["action"] in ("send", "receive")
        channel = operation["channel"]["$ref"]
        # AsyncAPI 3: an operation's messages are messages of its channel.
        assert all(message["$ref"].startswith(f"{channel}/messages/") for message in operation["messages"]), (
            operation_id
        )


def test_every_event_type_is_sent_by_the_service_its_model_names(asyncapi: dict[str, Any]) -> None:
    # The operations take senders from `emitted_by`; the code must agree: `emit(<EventType>(` in
    # services/<name>/.
    emitters: dict[str, set[str]] = {}
    for path in (ROOT / "services").glob("*/*.py"):
        for match in re.finditer(r"\bemit\(\s*(\w+)\(", path.read_text()):
            emitters.setdefault(match.group(1), set()).add(path.parent.name)
    assert emitters == {name: {model.emitted_by} for name, model in EVENT_TYPES.items()}

    sent = {
        ref["$ref"].rsplit("/", 1)[1]
        for operation in asyncapi["operations"].values()
        if operation["action"] == "send"
        for ref in operation["messages"]
    }
    assert set(EVENT_TYPES) <= sent


def test_header_schemas_name_the_headers_the_code_writes(asyncapi: dict[str, Any]) -> None:
    schemas = asyncapi["components"]["schemas"]
    _, _, headers = Envelope.emit(
        RiskAssessed(
            request_id="r-1", binding_id="b-1", user_id="u-1", score=10, level="normal", decision="allow"
        )
    ).to_record(service_key("risk"))
    assert (
        set(schemas["CloudEventHeaders"]["properties"])
        == set(schemas["CloudEventHeaders"]["required"])
        == {name for name, _ in headers}
    )
    # shared.consumer writes the dead-letter headers as ("x-dlq-…", value) pairs.
    written = set(re.findall(r'\("(x-dlq-[a-z-]+)",', (ROOT / "shared/consumer.py").read_text()))
    assert set(schemas["DeadLetterHeaders"]["properties"]) == written


def record(envelope: Envelope, **changes: Any) -> MemoryRecord:
    key, value, headers = envelope.to_record(service_key(type(envelope.data).emitted_by))
    return MemoryRecord(
        **(
            {"topic": "t", "partition": 0, "offset": 0, "key": key, "value": value, "headers": tuple(headers)}
            | changes
        )
    )


def test_the_contract_accepts_real_events_and_refuses_unknown_types_and_bad_data() -> None:
    contract = Contract.load()
    assessed = Envelope.emit(
        RiskAssessed(
            request_id="r-1", binding_id="b-1", user_id="u-1", score=10, level="normal", decision="allow"
        )
    )
    assert contract.problems(record(assessed)) == []

    renamed = tuple(
        (name, b"BindingDeleted" if name == "ce_type" else value) for name, value in record(assessed).headers
    )
    assert contract.problems(record(assessed, headers=renamed)) == [
        "no message of type 'BindingDeleted' on the events channel"
    ]

    out_of_range = record(assessed, value=record(assessed).value.replace(b'"score":10', b'"score":101'))
    assert [problem.split(":")[0] for problem in contract.problems(out_of_range)] == ["value"]

    wrong_source = tuple(
        (name, b"/services/binding" if name == "ce_source" else value)
        for name, value in record(assessed).headers
    )
    assert [
        problem.split(":")[0] for problem in contract.problems(record(assessed, headers=wrong_source))
    ] == ["headers"]
    assert contract.problems(record(assessed, key=b"b-2")) == ["key b'b-2' is not the binding_id of the data"]
    # An event about a customer's device is keyed by the customer.
    enrolled = Envelope.emit(DeviceEnrolled(user_id="u-1", device_id="d-1"))
    assert contract.problems(record(enrolled)) == []
    assert contract.problems(record(enrolled, key=b"d-1")) == ["key b'd-1' is not the user_id of the data"]

    # A dead letter is the event's record plus the x-dlq-* headers, on the DLQ channel.
    assert any("x-dlq-error" in problem for problem in contract.problems(record(assessed), docs.DLQ_CHANNEL))
