"""The dashboard's view of the unbinding business, projected from the event stream.

The dashboard owns no tables: its state is this projection, rebuilt on every start by reading
`unbind.events` (and the DLQ) from the beginning of what the broker retains. service.py says what
each event type means for a request; this module keeps the books:

- each request's state and the time it reached each stage, from the events' own `time`, so a
  replay after a restart gives the same figures as the live run did;
- 10-second buckets (kept one hour) of events, new requests and outcomes, with a latency histogram
  per stage, and hourly buckets (kept a day) of the stages reached: bounded memory at any rate;
- the live feed (a ring buffer of masked one-line summaries) and the dead letters.

Positions per partition make applying idempotent: after a rebalance, a record already applied is
skipped rather than counted twice. The same event at a new offset (a relay that published it twice,
or `unbind dlq replay`) is skipped by its id, remembered for the last EVENT_IDS_KEPT events: the
dashboard has no inbox, so this is its one.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.cloudevents import Envelope, header_map
from shared.events import BindingEvent
from shared.i18n import Locale
from shared.logging import redact

OPEN_STATES = ("pending_risk", "under_review", "pending_verification")
OUTCOMES = ("completed", "rejected", "cancelled", "expired")
STATES = OPEN_STATES + OUTCOMES
# What a request asks (UnbindRequested `kind`): every kind passes the same stages.
KINDS = ("unbind", "pause", "switch")
# The stages a request passes, in order; latency is measured between consecutive ones.
STAGES = ("requested", "assessed", "verification_issued", "verified", "completed")
# How each kind's completion is counted per hour besides `completed`, and a pause's later resumption.
KIND_STAGES = ("paused", "switched", "resumed")
LATENCY_STAGES = {
    "requested→assessed": ("requested", "assessed"),
    "assessed→verification_issued": ("assessed", "verification_issued"),
    "verification_issued→verified": ("verification_issued", "verified"),
    "verified→completed": ("verified", "completed"),
    "requested→completed": ("requested", "completed"),
}
PERCENTILES = (50, 95, 99)
BUCKET_SECONDS = 10
MINUTE_BUCKETS = 60 // BUCKET_SECONDS
KEEP_BUCKETS = 3600 // BUCKET_SECONDS
KEEP_HOURS = 24
SERIES_BUCKETS = 60  # the throughput and outcome charts: the last 10 minutes, 10 s apart
# Event ids remembered to skip a redelivered or replayed event, as 16-byte digests in a set with a
# queue for eviction (about 85 bytes each; the ids themselves in an ordered dict took 175).
EVENT_IDS_KEPT = 200_000
# Latency histogram bins: upper edges from 1 ms growing 15 % per bin (a ±7.5 % reading) to ~40 h.
_EDGES = [0.001 * 1.15**k for k in range(140)]


def _bin(seconds: float) -> int:
    return min(bisect.bisect_left(_EDGES, max(seconds, 0.0)), len(_EDGES) - 1)


def percentile(histogram: Counter[int], q: float) -> float | None:
    """The q-th percentile (nearest rank) of a histogram of bins, as its bin's upper edge."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(total * q / 100))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return _EDGES[index]
    return _EDGES[max(histogram)]


@dataclass(slots=True)
class RequestView:
    request_id: str
    binding_id: str
    user_id: str
    kind: str = "unbind"
    state: str = "pending_risk"
    reached: dict[str, datetime] = field(default_factory=dict)
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_event: str = ""
    decision: str | None = None
    score: int | None = None
    reviewed: bool = False


@dataclass
class Bucket:
    counts: Counter[str] = field(default_factory=Counter)
    latency: dict[str, Counter[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedItem:
    seq: int
    id: str
    type: str
    time: datetime
    received_at: datetime
    source: str
    # None for an event that is about no binding (a customer's device keys).
    request_id: str | None
    binding_id: str | None
    user_id: str
    # The line in every locale (shared.describe); `summary` is the English one, as the API always had.
    summaries: dict[str, str]

    @property
    def summary(self) -> str:
        return self.summaries[Locale.EN]

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.id,
            "type": self.type,
            "time": self.time.isoformat(),
            "received_at": self.received_at.isoformat(),
            "source": self.source,
            "request_id": self.request_id,
            "binding_id": self.binding_id,
            "user_id": self.user_id,
            "summary": self.summary,
            "summaries": dict(self.summaries),
        }


@dataclass(frozen=True)
class DeadLetter:
    event_type: str
    error: str
    consumer_group: str
    failed_at: str


class Projection:
    def __init__(self, *, feed_size: int = 500, finished_kept: int = 20_000):
        self.open: dict[str, RequestView] = {}
        # Finished requests, oldest first; evicted beyond `finished_kept` but still counted.
        self.finished: OrderedDict[str, RequestView] = OrderedDict()
        self.finished_kept = finished_kept
        self.state_counts: Counter[str] = Counter()
        # The same, per kind: (kind, state) -> requests.
        self.kind_counts: Counter[tuple[str, str]] = Counter()
        self.buckets: dict[int, Bucket] = {}
        self.hours: dict[int, Counter[str]] = {}
        self.feed: deque[FeedItem] = deque(maxlen=feed_size)
        self.dead_letters: deque[DeadLetter] = deque(maxlen=50)
        self.dead_letter_total = 0
        self.malformed_total = 0
        # Well-formed events not signed by their type's one source: never shown, only counted.
        self.rejected_total = 0
        self.events_total = 0
        self.positions: dict[tuple[str, int], int] = {}
        self.event_ids: set[bytes] = set()
        self._event_id_order: deque[bytes] = deque()
        self.duplicates_total = 0
        self.version = 0
        self._seq = 0

    # ------------------------------------------------------------------ positions

    def accept(self, topic: str, partition: int, offset: int) -> bool:
        """True the first time a record is offered; its position is then remembered."""
        key = (topic, partition)
        if offset < self.positions.get(key, 0):
            return False
        self.positions[key] = offset + 1
        return True

    def rewind(self, topic: str, partition: int, offset: int) -> None:
        """Offer the record at `offset` again: it was accepted but could not be applied yet."""
        self.positions[(topic, partition)] = offset

    def position(self, topic: str, partition: int) -> int | None:
        return self.positions.get((topic, partition))

    def first_sighting(self, event_id: str) -> bool:
        """True the first time an event id is offered (among the last EVENT_IDS_KEPT)."""
        digest = hashlib.blake2b(event_id.encode(), digest_size=16).digest()
        if digest in self.event_ids:
            self.duplicates_total += 1
            return False
        self.event_ids.add(digest)
        self._event_id_order.append(digest)
        if len(self._event_id_order) > EVENT_IDS_KEPT:
            self.event_ids.discard(self._event_id_order.popleft())
        return True

    # ------------------------------------------------------------------ requests

    def request(self, envelope: Envelope) -> RequestView:
        """The view of the envelope's request; created when its first event is one we see later
        (the retained stream may start after the request did). Only events about a binding move
        requests (the handlers of the others call nothing here)."""
        event = envelope.data
        view = self.open.get(event.request_id) or self.finished.get(event.request_id)
        if view is None:
            view = RequestView(event.request_id, event.binding_id, event.user_id, updated_at=envelope.time)
            self.open[view.request_id] = view
            self.state_counts[view.state] += 1
            self.kind_counts[(view.kind, view.state)] += 1
        return view

    def set_kind(self, view: RequestView, kind: str) -> None:
        if kind != view.kind:
            self.kind_counts[(view.kind, view.state)] -= 1
            self.kind_counts[(kind, view.state)] += 1
            view.kind = kind

    def count_stage(self, envelope: Envelope, stage: str) -> None:
        """Count a stage of the hour that moves no request (a paused auto-debit resuming after its
        request completed: a request forgotten meanwhile is not brought back)."""
        self._hour(envelope.time)[stage] += 1
        if (view := self.finished.get(envelope.data.request_id)) is not None:
            view.reached.setdefault(stage, envelope.time)

    def transition(
        self, envelope: Envelope, *, stage: str | None = None, state: str | None = None
    ) -> RequestView:
        """Record that the envelope's request reached `stage` and/or moved to `state`."""
        view = self.request(envelope)
        view.updated_at = max(view.updated_at, envelope.time)
        view.last_event = envelope.type
        if stage and stage not in view.reached:
            view.reached[stage] = envelope.time
            self._hour(envelope.time)[stage] += 1
            self._measure(view, stage, envelope.time)
        if state and state != view.state:
            self._move(view, state, envelope.time)
        return view

    def _move(self, view: RequestView, state: str, at: datetime) -> None:
        if self.state_counts[view.state] > 0:
            self.state_counts[view.state] -= 1
        if self.kind_counts[(view.kind, view.state)] > 0:
            self.kind_counts[(view.kind, view.state)] -= 1
        was_open = view.state in OPEN_STATES
        view.state = state
        self.state_counts[state] += 1
        self.kind_counts[(view.kind, state)] += 1
        if state in OUTCOMES:
            self._bucket(at).counts[state] += 1
            if state not in STAGES:  # `completed` is counted as the stage reached
                self._hour(at)[state] += 1
            if was_open:
                self.open.pop(view.request_id, None)
                self.finished[view.request_id] = view
                while len(self.finished) > self.finished_kept:
                    self.finished.popitem(last=False)
        elif not was_open:  # an appeal reopens a rejected request
            self.finished.pop(view.request_id, None)
            self.open[view.request_id] = view

    def _measure(self, view: RequestView, stage: str, at: datetime) -> None:
        for name, (start, end) in LATENCY_STAGES.items():
            if end != stage or start not in view.reached:
                continue
            began = view.reached[start]
            # A reviewed request waited for a human: its next stage is timed from the decision.
            if start == "assessed" and "review_decided" in view.reached:
                began = view.reached["review_decided"]
            latency = self._bucket(at).latency.setdefault(name, Counter())
            latency[_bin((at - began).total_seconds())] += 1

    # ------------------------------------------------------------------ events

    def record(self, envelope: Envelope, summaries: Mapping[str, str], received_at: datetime) -> FeedItem:
        """Count the event and add it to the feed (after its handler has run) with its line in
        every locale. Each is redacted once more, whatever it holds: a line is for a screen."""
        self.events_total += 1
        self._bucket(envelope.time).counts["events"] += 1
        if envelope.type == "UnbindRequested":
            self._bucket(envelope.time).counts["requested"] += 1
        self._seq += 1
        event = envelope.data
        request_id, binding_id = (
            (event.request_id, event.binding_id) if isinstance(event, BindingEvent) else (None, None)
        )
        item = FeedItem(
            self._seq, envelope.id, envelope.type, envelope.time, received_at, envelope.source,
            request_id, binding_id, event.user_id,
            {locale: redact(line) for locale, line in summaries.items()},
        )  # fmt: skip
        self.feed.append(item)
        self.version += 1
        return item

    def record_malformed(self) -> None:
        self.malformed_total += 1
        self.version += 1

    def record_rejected(self) -> None:
        self.rejected_total += 1
        self.version += 1

    def record_dead_letter(self, headers: Iterable[tuple[str, bytes]]) -> DeadLetter:
        attributes = header_map(headers)
        letter = DeadLetter(
            event_type=attributes.get("ce_type") or "unknown",
            # Written redacted by the consumer; redacted again, since anything can reach a DLQ.
            error=redact(attributes.get("x-dlq-error", ""))[:300],
            consumer_group=attributes.get("x-dlq-consumer-group", ""),
            failed_at=attributes.get("x-dlq-failed-at", ""),
        )
        self.dead_letter_total += 1
        self.dead_letters.append(letter)
        self.version += 1
        return letter

    def _bucket(self, at: datetime) -> Bucket:
        key = int(at.timestamp()) // BUCKET_SECONDS
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket()
            for old in [k for k in self.buckets if k < key - KEEP_BUCKETS - 1]:
                del self.buckets[old]
        return bucket

    def _hour(self, at: datetime) -> Counter[str]:
        key = int(at.timestamp()) // 3600
        hour = self.hours.get(key)
        if hour is None:
            hour = self.hours[key] = Counter()
            for old in [k for k in self.hours if k < key - KEEP_HOURS - 1]:
                del self.hours[old]
        return hour

    # ------------------------------------------------------------------ reading

    def overview(self, now: datetime, *, stuck_after: timedelta) -> dict[str, Any]:
        """Everything the page shows but the feed and the review queue."""
        current = int(now.timestamp()) // BUCKET_SECONDS
        series_keys = range(current - SERIES_BUCKETS + 1, current + 1)
        empty = Bucket()
        return {
            "generated_at": now.isoformat(),
            "events_total": self.events_total,
            "funnel": {
                "now": {state: self.state_counts.get(state, 0) for state in STATES},
                "by_kind": {
                    kind: {state: self.kind_counts.get((kind, state), 0) for state in STATES}
                    for kind in KINDS
                },
                "per_hour": self._per_hour(now),
            },
            "latency": {
                "windows": {
                    "5m": self._latency(current, 5 * MINUTE_BUCKETS),
                    "60m": self._latency(current, KEEP_BUCKETS),
                },
                "per_minute_p95": self._latency_per_minute(current),
            },
            "series": {
                "bucket_seconds": BUCKET_SECONDS,
                "t": [datetime.fromtimestamp(key * BUCKET_SECONDS, UTC).isoformat() for key in series_keys],
                **{
                    name: [self.buckets.get(key, empty).counts.get(name, 0) for key in series_keys]
                    for name in ("events", "requested", *OUTCOMES)
                },
            },
            "stuck": self._stuck(now, stuck_after),
            "stuck_after_seconds": int(stuck_after.total_seconds()),
            "dlq": {
                "count": self.dead_letter_total,
                "recent": [letter.__dict__ for letter in reversed(self.dead_letters)][:10],
                "malformed_on_topic": self.malformed_total,
                "rejected_on_topic": self.rejected_total,
            },
        }

    def _per_hour(self, now: datetime) -> list[dict[str, Any]]:
        current = int(now.timestamp()) // 3600
        rows = []
        for key in range(current - KEEP_HOURS + 1, current + 1):
            hour = self.hours.get(key)
            if hour:
                names = (*STAGES, *OUTCOMES[1:], *KIND_STAGES)
                rows.append(
                    {
                        "hour": datetime.fromtimestamp(key * 3600, UTC).isoformat(),
                        **{name: hour.get(name, 0) for name in names},
                    }
                )
        return rows

    def _latency(self, current: int, buckets: int) -> dict[str, dict[str, Any]]:
        merged: dict[str, Counter[int]] = {name: Counter() for name in LATENCY_STAGES}
        for key in range(current - buckets + 1, current + 1):
            bucket = self.buckets.get(key)
            if bucket:
                for name, histogram in bucket.latency.items():
                    merged[name].update(histogram)
        return {
            name: {
                "count": sum(histogram.values()),
                **{f"p{q}": _round(percentile(histogram, q)) for q in PERCENTILES},
            }
            for name, histogram in merged.items()
        }

    def _latency_per_minute(self, current: int) -> dict[str, Any]:
        """p95 of each stage per minute over the last hour, for the latency chart."""
        first_minute = (current - KEEP_BUCKETS + 1) // MINUTE_BUCKETS
        minutes = range(first_minute, current // MINUTE_BUCKETS + 1)
        values: dict[str, list[float | None]] = {}
        for name in LATENCY_STAGES:
            row = []
            for minute in minutes:
                histogram: Counter[int] = Counter()
                for key in range(minute * MINUTE_BUCKETS, (minute + 1) * MINUTE_BUCKETS):
                    bucket = self.buckets.get(key)
                    if bucket and name in bucket.latency:
                        histogram.update(bucket.latency[name])
                row.append(_round(percentile(histogram, 95)))
            values[name] = row
        return {"t": [datetime.fromtimestamp(minute * 60, UTC).isoformat() for minute in minutes], **values}

    def _stuck(self, now: datetime, stuck_after: timedelta) -> dict[str, Any]:
        cutoff = now - stuck_after
        stuck = sorted(
            (view for view in self.open.values() if view.updated_at < cutoff),
            key=lambda view: view.updated_at,
        )
        return {
            "count": len(stuck),
            "oldest": [
                {
                    "request_id": view.request_id,
                    "binding_id": view.binding_id,
                    "user_id": view.user_id,
                    "state": view.state,
                    "last_event": view.last_event,
                    "since": view.updated_at.isoformat(),
                    "waiting_seconds": int((now - view.updated_at).total_seconds()),
                }
                for view in stuck[:20]
            ],
        }

    def recent_feed(
        self, *, types: set[str] | None = None, request_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest feed items first, filtered like the live stream."""
        items = [item for item in reversed(self.feed) if matches(item, types, request_id)]
        return [item.as_json() for item in items[:limit]]


def matches(item: FeedItem, types: set[str] | None, request_id: str | None) -> bool:
    return (not types or item.type in types) and (not request_id or item.request_id == request_id)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
