"""From the topic to the page: the stream reader that feeds the projection, and the hub that pushes
feed lines and overviews to every open page (server-sent events).

The reader is in its own consumer group but never commits: each start rebuilds the view from the
beginning of the retained stream. On each partition assignment it seeks to where the projection
stands (the beginning, the first time), so a rebalance neither skips nor double-counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from services.dashboard.config import DashboardSettings
from services.dashboard.projection import FeedItem, Projection, matches
from shared.bus import IDLE_WAIT_MS, Consumer, EventBus, partition_lag, stop_quietly
from shared.cloudevents import Envelope, EventRejected, MalformedEvent, verify_signature
from shared.consumer import is_replay_marker
from shared.describe import describe_in_every_locale
from shared.events import Event
from shared.keys import KeySet, KeySetUnavailable
from shared.logging import redact

log = logging.getLogger(__name__)
# What an event means for the view (the dashboard's subscriptions, main.SUBSCRIPTIONS).
Projector = Callable[[Projection, Envelope], None]


@dataclass(eq=False)
class Subscriber:
    """One open page: what it filters on and the messages waiting to be sent to it."""

    types: set[str] | None
    request_id: str | None
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=2000)
    )


class LiveHub:
    """Fans feed items and overviews out to the open pages. A page too slow to keep up is dropped
    (its browser reconnects and starts from a fresh overview) rather than slowing everyone."""

    def __init__(
        self,
        projection: Projection,
        settings: DashboardSettings,
        clock: Callable[[], datetime],
        *,
        subscriptions: Mapping[type[Event], Projector],
    ):
        self._projection = projection
        self._subscriptions = subscriptions
        self._settings = settings
        self._clock = clock
        self.subscribers: set[Subscriber] = set()
        self._pushed_version = -1

    def overview(self) -> dict[str, Any]:
        overview = self._projection.overview(
            self._clock(), stuck_after=timedelta(seconds=self._settings.stuck_after_seconds)
        )
        overview["event_types"] = sorted(event_type.__name__ for event_type in self._subscriptions)
        return overview

    def subscribe(self, types: set[str] | None, request_id: str | None) -> Subscriber:
        subscriber = Subscriber(types, request_id)
        subscriber.queue.put_nowait(("overview", self.overview()))
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def publish(self, item: FeedItem) -> None:
        for subscriber in list(self.subscribers):
            if matches(item, subscriber.types, subscriber.request_id):
                self._offer(subscriber, ("feed", item.as_json()))

    def _offer(self, subscriber: Subscriber, message: tuple[str, dict[str, Any]]) -> None:
        try:
            subscriber.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.unsubscribe(subscriber)
            subscriber.queue = asyncio.Queue(maxsize=1)
            subscriber.queue.put_nowait(None)  # ends its stream

    async def push_overviews(self) -> None:
        """Every push interval, send the overview to open pages when something changed (stuck
        requests age even without events, so it is also sent every few seconds regardless)."""
        ticks = 0
        while True:
            await asyncio.sleep(self._settings.push_interval_seconds)
            ticks += 1
            changed = self._projection.version != self._pushed_version
            if self.subscribers and (changed or ticks % 5 == 0):
                self._pushed_version = self._projection.version
                overview = self.overview()
                for subscriber in list(self.subscribers):
                    self._offer(subscriber, ("overview", overview))

    def close(self) -> None:
        for subscriber in list(self.subscribers):
            self._offer(subscriber, None)  # type: ignore[arg-type]
        self.subscribers.clear()


class _StartWhereTheViewStands(ConsumerRebalanceListener):
    def __init__(self, reader: StreamReader):
        self._reader = reader

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self._reader.consumer
        if consumer is None:
            return
        for tp in assigned:
            position = self._reader.projection.position(tp.topic, tp.partition)
            if position is None:
                await consumer.seek_to_beginning(tp)  # type: ignore[attr-defined]
            else:
                consumer.seek(tp, position)  # type: ignore[attr-defined]


class StreamReader:
    """Reads the event topic and the DLQ into the projection until cancelled."""

    def __init__(
        self,
        bus: EventBus,
        settings: DashboardSettings,
        keys: KeySet,
        projection: Projection,
        *,
        hub: LiveHub,
        clock: Callable[[], datetime],
        subscriptions: Mapping[type[Event], Projector],
    ):
        self._bus = bus
        self._subscriptions = subscriptions
        self._keys = keys
        self._settings = settings
        self.projection = projection
        self._hub = hub
        self._clock = clock
        self.consumer: Consumer | None = None
        self.connected = False

    async def run(self) -> None:
        backoff = 0.2
        while True:
            self.consumer = self._bus.consumer(
                self._settings.consumer_group,
                [self._settings.topic, self._settings.dlq_topic],
                listener=_StartWhereTheViewStands(self),
            )
            try:
                await self.consumer.start()
                self.connected = True
                backoff = 0.2
                while True:
                    batches = await self.consumer.getmany(timeout_ms=IDLE_WAIT_MS, max_records=2000)
                    for tp, records in batches.items():
                        for record in records:
                            await self.apply(tp.topic, tp.partition, record)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "stream reader stopped; restarting",
                    extra={"error": redact(repr(exc)), "backoff_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.connected = False
                await stop_quietly(self.consumer)
                self.consumer = None

    async def lag(self) -> dict[TopicPartition, int]:
        """Records on each assigned partition that the view has not applied yet."""
        if not self.connected or self.consumer is None:
            return {}
        applied = {
            tp: position
            for tp in self.consumer.assignment()
            if (position := self.projection.position(tp.topic, tp.partition)) is not None
        }
        return await partition_lag(self.consumer, applied)

    async def apply(self, topic: str, partition: int, record: Any) -> None:
        if not self.projection.accept(topic, partition, record.offset):
            return
        if topic == self._settings.dlq_topic:
            # `unbind dlq replay` marks each replay with a record on the DLQ: no dead letter.
            if not is_replay_marker(record.headers):
                self.projection.record_dead_letter(record.headers or ())
            return
        try:
            envelope = Envelope.from_record(record.value, record.headers or ())
        except MalformedEvent:
            # The services dead-letter it; here it is only counted.
            self.projection.record_malformed()
            return
        handler = self._subscriptions.get(type(envelope.data))
        if handler is None:
            return
        try:
            await verify_signature(self._keys, envelope, record.value, record.headers or ())
        except EventRejected as exc:
            # The services dead-letter it; ops must not see, or count, what its source never said.
            log.warning("event rejected", extra={"event_type": envelope.type, "reason": exc.reason})
            self.projection.record_rejected()
            return
        except KeySetUnavailable:
            # The reader restarts and seeks here (the view's position), so the record is read again.
            self.projection.rewind(topic, partition, record.offset)
            raise
        if not self.projection.first_sighting(envelope.id):
            return
        handler(self.projection, envelope)
        self._hub.publish(
            self.projection.record(envelope, describe_in_every_locale(envelope.data), self._clock())
        )
