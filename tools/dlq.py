"""`unbind dlq list|replay`: the dead letters on the DLQ topic, and putting them back on their topic.

A consumer copies a record it cannot handle (not a CloudEvent, or a handler that still failed after
its retries) to the DLQ topic with `x-dlq-*` headers and goes on (shared/consumer.py). Once the cause
is fixed, `replay` publishes the letter again to its original topic with its original key, value and
`ce_*` headers: the very same CloudEvent, same `ce_id`. Every consumer group reads it again, not only
the one that failed; each group's inbox makes it a no-op where it was handled already, so only the
group that failed does the work.

Each replay is recorded on the DLQ topic itself, as a marker record (header `x-dlq-replay-of: <id>`,
no value): the record of what was replayed lives beside the letters, needs no database, and every
operator sees it. `list` shows it; `replay` skips a letter replayed before unless `--force`. The
event is published before its marker: a crash in between leaves a replayed letter that looks
unreplayed, and replaying it again changes nothing (the inboxes); the other order could lose a replay.

Ids are `<partition>:<offset>` of the dead letter on the DLQ topic, stable as long as the topic is.
Nothing here prints a record's value (it may be malformed, and it is customer data): only header
fields, redacted again since anything can reach a DLQ, and the ids parsed from the value.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from shared.bus import KafkaBus, Producer, stop_quietly
from shared.cloudevents import Envelope, Headers, MalformedEvent, header_map
from shared.consumer import REPLAY_MARKER_HEADER, is_replay_marker
from shared.db import utcnow
from shared.logging import redact
from tools.errors import InfraError
from tools.kafka import Cluster, admin_cluster, read_topic
from tools.services import load_settings
from tools.stack import running_kafka_bootstrap

CLIENT_ID = "unbind-dlq"
REPLAYED_AT_HEADER = "x-dlq-replayed-at"
LETTER_ID = re.compile(r"^\d+:\d+$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Escape sequences in a header must not reach the terminal.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The table shows the start of each error; --json carries all of it (as redacted as the table).
TABLE_ERROR_WIDTH = 100


@dataclass(frozen=True)
class Target:
    """The cluster (reached as its admin) and DLQ topic of the stack."""

    cluster: Cluster
    dlq_topic: str

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap


def find_target(var_dir: Path) -> Target:
    """The DLQ topic from the settings; the cluster of this var dir's running `unbind up`, else the
    settings'."""
    # Every service reads the same KAFKA_BOOTSTRAP_SERVERS and UNBIND_DLQ_TOPIC, so any one's settings will
    # do.
    settings = load_settings("binding", var_dir)
    bootstrap = running_kafka_bootstrap(var_dir) or settings.kafka_bootstrap_servers
    return Target(admin_cluster(var_dir, bootstrap), settings.dlq_topic)


# --------------------------------------------------------------------------- reading


def _safe(value: str | None, limit: int = 120) -> str | None:
    """A header or parsed value fit to print: digit runs masked, control characters replaced, bounded."""
    if value is None:
        return None
    return CONTROL.sub("?", redact(value))[:limit]


def _identifier(value: Any) -> str | None:
    """An id to print: a UUID as it is (the masking could hit one of its digit runs), anything else made
    safe."""
    if not isinstance(value, str):
        return None
    return value if UUID.match(value) else _safe(value, 64)


def _timestamp(value: str | None) -> str | None:
    """A header timestamp in ISO 8601 (the masking would take its date for a number), else made safe."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        return _safe(value)


def _number(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class DeadLetter:
    """One record of the DLQ topic that is a dead letter (not a replay marker)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    replayed_at: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    @cached_property
    def attributes(self) -> dict[str, str]:
        return header_map(self.headers)

    @property
    def failed_at(self) -> str:
        return self.attributes.get("x-dlq-failed-at", "")

    @property
    def consumer_group(self) -> str:
        return self.attributes.get("x-dlq-consumer-group", "")

    @property
    def original_topic(self) -> str:
        return self.attributes.get("x-dlq-original-topic", "")

    @property
    def original_headers(self) -> Headers:
        """The event's own headers (`ce_*`, content-type), as its producer sent them."""
        return [(name, value) for name, value in self.headers if not name.startswith("x-dlq-")]

    @cached_property
    def parsed(self) -> Envelope | MalformedEvent:
        try:
            return Envelope.from_record(self.value, self.original_headers)
        except MalformedEvent as exc:
            return exc

    def ids(self) -> dict[str, str | None]:
        """request_id and binding_id from the value, if it parses (a malformed one may still be a JSON
        object)."""
        if isinstance(self.parsed, Envelope):
            data: Any = self.parsed.data.model_dump()
        else:
            try:
                data = orjson.loads(self.value or b"")
            except orjson.JSONDecodeError:
                data = None
        data = data if isinstance(data, dict) else {}
        return {name: _identifier(data.get(name)) for name in ("request_id", "binding_id")}

    def replay_problem(self) -> str | None:
        """Why this letter cannot be replayed at all (whatever --force says), or None."""
        if not self.original_topic:
            return "it names no original topic (no x-dlq-original-topic header)"
        if isinstance(self.parsed, MalformedEvent):
            reason = _safe(str(self.parsed).splitlines()[0] if str(self.parsed) else "malformed")
            return (
                f"it is not a valid CloudEvent ({reason}): no consumer can handle it, so a replay would only "
                f"dead-letter it again"
            )
        return None


async def read_letters(target: Target) -> list[DeadLetter]:
    """Every dead letter on the DLQ topic, oldest failure first, each with the times it was replayed."""
    letters: list[DeadLetter] = []
    replays: dict[str, list[str]] = {}
    for record in await read_topic(target.cluster, target.dlq_topic, client_id=CLIENT_ID):
        headers = list(record.headers or ())
        if is_replay_marker(headers):
            marker = header_map(headers)
            replays.setdefault(marker.get(REPLAY_MARKER_HEADER, ""), []).append(
                marker.get(REPLAYED_AT_HEADER, "")
            )
        else:
            letters.append(DeadLetter(record.partition, record.offset, record.key, record.value, headers))
    for letter in letters:
        letter.replayed_at = sorted(replays.get(letter.id, []))
    return sorted(letters, key=lambda letter: (letter.failed_at, letter.partition, letter.offset))


def summary(letter: DeadLetter) -> dict[str, Any]:
    """What `list` shows of a letter: header fields and parsed ids, never the value."""
    attributes = letter.attributes
    return {
        "id": letter.id,
        "failed_at": _timestamp(letter.failed_at),
        "consumer_group": _safe(letter.consumer_group) or None,
        "event_type": _safe(attributes.get("ce_type")),
        "event_id": _identifier(attributes.get("ce_id")),
        **letter.ids(),
        "attempts": _number(attributes.get("x-dlq-attempts")),
        "error_type": _safe(attributes.get("x-dlq-error-type")),
        # Why a well-formed event was refused (not signed by its source, or at odds with the state).
        "reason": _safe(attributes.get("x-dlq-reason")) or None,
        # Written redacted by the consumer; redacted again, since anything can reach a DLQ.
        "error": _safe(attributes.get("x-dlq-error"), 2000),
        "original_topic": _safe(letter.original_topic) or None,
        "original_partition": _number(attributes.get("x-dlq-original-partition")),
        "original_offset": _number(attributes.get("x-dlq-original-offset")),
        "replayable": letter.replay_problem() is None,
        "replayed": bool(letter.replayed_at),
        "replayed_at": [_timestamp(at) for at in letter.replayed_at],
    }


# --------------------------------------------------------------------------- list


def _when(iso: str | None) -> str:
    """A header timestamp as `YYYY-MM-DD HH:MM:SS` UTC (as written when it is not a timestamp)."""
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def _replayed_cell(row: dict[str, Any]) -> str:
    times = row["replayed_at"]
    if not times:
        return "no"
    return f"yes {_when(times[-1])}" if len(times) == 1 else f"{len(times)}x, last {_when(times[-1])}"


def _error_cell(row: dict[str, Any]) -> str:
    error = row["error"] or row["error_type"] or "-"
    if row["reason"]:
        error = f"[refused: {row['reason']}] {error}"
    return error if len(error) <= TABLE_ERROR_WIDTH else error[: TABLE_ERROR_WIDTH - 1] + "…"


TABLE = (
    ("ID", lambda row: row["id"]),
    ("FAILED AT (UTC)", lambda row: _when(row["failed_at"])),
    ("GROUP", lambda row: row["consumer_group"] or "-"),
    ("TYPE", lambda row: row["event_type"] or "-"),
    ("EVENT ID", lambda row: row["event_id"] or "-"),
    ("REQUEST", lambda row: row["request_id"] or "-"),
    ("ATTEMPTS", lambda row: "-" if row["attempts"] is None else str(row["attempts"])),
    ("REPLAYED", _replayed_cell),
    ("ERROR", _error_cell),
)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    cells = [[title for title, _ in TABLE]] + [[cell(row) for _, cell in TABLE] for row in rows]
    widths = [max(len(line[column]) for line in cells) for column in range(len(TABLE) - 1)]
    return [
        "  ".join([*(text.ljust(width) for text, width in zip(line, widths, strict=False)), line[-1]])
        for line in cells
    ]


async def _list(var_dir: Path, limit: int | None, group: str | None, as_json: bool) -> int:
    target = find_target(var_dir)
    letters = [
        letter for letter in await read_letters(target) if group is None or letter.consumer_group == group
    ]
    shown = letters[-limit:] if limit else letters
    rows = [summary(letter) for letter in shown]
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    of_group = f" of {group}" if group else ""
    if not letters:
        print(f"dlq: no dead letters{of_group} on {target.dlq_topic} at {target.bootstrap}")
        return 0
    replayed = sum(1 for letter in letters if letter.replayed_at)
    newest = f"; the newest {len(shown)} shown" if len(shown) < len(letters) else ""
    print(
        f"dlq: {len(letters)} dead letter(s){of_group} on {target.dlq_topic} at {target.bootstrap}, "
        f"{replayed} replayed{newest}"
    )
    for line in _table(rows):
        print(line)
    if replayed < len(letters):
        print(
            "dlq: once the cause is fixed: unbind dlq replay --id ID (safe: a consumer that handled the "
            "event skips it by its id)"
        )
    return 0


def list_letters(
    var_dir: Path, limit: int | None = None, group: str | None = None, as_json: bool = False
) -> int:
    return _run(_list(var_dir, limit, group, as_json))


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class ReplayOptions:
    var_dir: Path
    ids: tuple[str, ...] = ()
    every: bool = False
    group: str | None = None
    force: bool = False


def choose(letters: list[DeadLetter], options: ReplayOptions, target: Target) -> list[DeadLetter]:
    """The letters named (all of them, or those of --group with --all), in the order they failed.
    An id that names no letter fails the whole command before anything is published."""
    if options.every:
        return [
            letter for letter in letters if options.group is None or letter.consumer_group == options.group
        ]
    by_id = {letter.id: letter for letter in letters}
    for wanted in options.ids:
        letter = by_id.get(wanted)
        if letter is None:
            raise InfraError(
                f"No dead letter {wanted} on {target.dlq_topic} at {target.bootstrap}; `unbind dlq list` "
                f"shows the ids."
            )
        if options.group is not None and letter.consumer_group != options.group:
            raise InfraError(
                f"Dead letter {wanted} failed in {_safe(letter.consumer_group) or 'no group'}, not in "
                f"{_safe(options.group)}; nothing replayed."
            )
    return [letter for letter in letters if letter.id in options.ids]


def check_ids(ids: tuple[str, ...]) -> None:
    """Before anything is read or published: every id must at least look like one."""
    for wanted in ids:
        if not LETTER_ID.match(wanted):
            raise InfraError(
                f"{_safe(wanted, 40)!r} is not a dead-letter id: ids are <partition>:<offset>, as `unbind "
                f"dlq list` shows them."
            )


def refusal(letter: DeadLetter, force: bool) -> str | None:
    """Why `replay` leaves this letter alone, or None to replay it."""
    if problem := letter.replay_problem():
        return problem
    if letter.replayed_at and not force:
        return (
            f"replayed already ({_when(letter.replayed_at[-1])} UTC); --force replays it again (harmless "
            f"where it was handled: the inbox skips it by its event id)"
        )
    return None


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): the marker just says so
        return "unknown"


async def replay_one(producer: Producer, target: Target, letter: DeadLetter, forced: bool) -> Any:
    """Publish the letter's event again, then its marker (in this order: see the module docstring)."""
    sent = await producer.send_and_wait(
        letter.original_topic, letter.value or b"", key=letter.key, headers=letter.original_headers
    )
    marker: Headers = [
        (REPLAY_MARKER_HEADER, letter.id.encode()),
        (REPLAYED_AT_HEADER, utcnow().isoformat().encode()),
        ("x-dlq-replayed-to", f"{letter.original_topic}:{sent.partition}:{sent.offset}".encode()),
        ("x-dlq-replayed-by", _operator().encode()),
        ("x-dlq-replay-forced", b"true" if forced else b"false"),
    ]
    # Keyed like the letter, so the marker lands on the letter's partition.
    await producer.send_and_wait(target.dlq_topic, b"", key=letter.key, headers=marker)
    return sent


async def _publish(target: Target, letters: list[DeadLetter], forced: bool) -> None:
    producer = KafkaBus(target.bootstrap, target.cluster.security, client_id=CLIENT_ID).producer()
    done = 0
    try:
        async with asyncio.timeout(30):
            await producer.start()
        for letter in letters:
            sent = await replay_one(producer, target, letter, forced)
            done += 1
            row = summary(letter)
            print(
                f"dlq: replayed {letter.id} ({row['event_type']} {row['event_id']}, failed in "
                f"{row['consumer_group']}) to {row['original_topic']} partition {sent.partition} offset "
                f"{sent.offset}"
            )
    except (KafkaError, TimeoutError) as exc:
        raise InfraError(
            f"Publishing to Kafka at {target.bootstrap} failed after {done} of {len(letters)} replay(s): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    finally:
        await stop_quietly(producer)


async def _replay(options: ReplayOptions) -> int:
    check_ids(options.ids)
    target = find_target(options.var_dir)
    chosen = choose(await read_letters(target), options, target)
    refused = {letter.id: reason for letter in chosen if (reason := refusal(letter, options.force))}
    ready = [letter for letter in chosen if letter.id not in refused]
    if options.every:
        _report_skipped(chosen, refused)
    if ready:
        await _publish(target, ready, options.force)
        print(
            "dlq: every consumer group reads a replayed event again; those that handled it already skip it "
            "by its event id (their inbox)"
        )
    elif options.every:
        print("dlq: nothing to replay")
    if refused and not options.every:
        raise InfraError(
            "; ".join(
                f"dead letter {letter_id} not replayed: {reason}" for letter_id, reason in refused.items()
            )
        )
    return 0


def _report_skipped(chosen: list[DeadLetter], refused: dict[str, str]) -> None:
    """With --all, letters replayed before are one line (they are the normal case), the others one line
    each."""
    before = [letter.id for letter in chosen if letter.id in refused and letter.replay_problem() is None]
    if before:
        print(
            f"dlq: {len(before)} dead letter(s) replayed before, skipped (--force replays them again): "
            f"{', '.join(before)}"
        )
    for letter in chosen:
        if letter.id in refused and letter.id not in before:
            print(f"dlq: {letter.id} skipped: {refused[letter.id]}")


def replay(options: ReplayOptions) -> int:
    return _run(_replay(options))


def _run(coroutine: Any) -> int:
    # aiokafka's own warnings (a metadata retry) would clutter the output; real failures still raise.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    return asyncio.run(coroutine)
