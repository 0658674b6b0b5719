"""The consumer runner: one consumer group per service on `unbind.events`.

For each record: skip, from its `ce_type` header and before decoding anything, a known type the
service does not subscribe to; otherwise parse the CloudEvent and, in
ONE transaction, record the event id in the inbox and run the handler. The records fetched
together are handled in one transaction (falling back to one transaction each when a handler
fails), which is what keeps a consumer's commits per second far below its events per second. A redelivered
event finds its id in the inbox and changes nothing. Offsets are committed only after the handlers'
transactions have committed, so a crash in between means redelivery, never loss. A handler that keeps failing
is retried a bounded number of times, then the record goes to the dead-letter topic with the error in its
headers and consumption goes on. An unreachable database is not the event's fault: the consumer then backs off
and reads the event again, without spending its retries or dead-lettering it.

Before any handler runs, an event of a subscribed type must carry the signature of the one service
that emits that type (`shared.cloudevents.verify_signature`); a handler may refuse an event that is
at odds with the service's own state. Either way the event is an `EventRejected`: dead-lettered at
once with its reason (`x-dlq-reason`), counted, and nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, mapped_column

from shared.bus import IDLE_WAIT_MS, Consumer, EventBus, Producer, partition_lag, stop_quietly
from shared.cloudevents import Envelope, EventRejected, MalformedEvent, header_map, verify_signature
from shared.db import UTCDateTime, is_transient, utcnow
from shared.events import EVENT_TYPES, Event
from shared.keys import KeySet, KeySetUnavailable
from shared.logging import correlation_id, redact
from shared.metrics import MALFORMED, ConsumerMetrics
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)

# A service function called as `handler(uow, deps, event)`: deps is what the app's `resources` built.
Handler = Callable[[UnitOfWork, Any, Any], Awaitable[None]]
# The CloudEvent being handled, for handlers that key their own records by the event id.
current_envelope: ContextVar[Envelope] = ContextVar("current_envelope")
Subscriptions = Mapping[type[Event], Handler]
# `unbind dlq replay` records each replay as a marker record on the DLQ topic itself (this header,
# naming the dead letter, and no value): whoever reads the DLQ must not count a marker as a letter.
REPLAY_MARKER_HEADER = "x-dlq-replay-of"


def is_replay_marker(headers: Iterable[tuple[str, bytes]] | None) -> bool:
    return any(name == REPLAY_MARKER_HEADER for name, _ in headers or ())


class InfrastructureUnavailable(Exception):
    """The database (or another dependency) is unreachable: not the event's fault, so the event is
    neither retried to exhaustion nor dead-lettered; the consumer backs off and reads it again."""


class InboxMixin:
    """Columns of a service's `inbox` table: ids of the events it has handled."""

    __tablename__ = "inbox"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    handled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventConsumer:
    """Runs a service's subscriptions against the topic until cancelled."""

    def __init__(
        self,
        *,
        bus: EventBus,
        group_id: str,
        topic: str,
        dlq_topic: str,
        unit_of_work: Callable[[], UnitOfWork],
        inbox_model: type[InboxMixin],
        subscriptions: Subscriptions,
        keys: KeySet,
        deps: Any = None,
        max_attempts: int = 3,
        retry_backoff: float = 0.2,
        batch_size: int = 500,
        metrics: ConsumerMetrics | None = None,
    ):
        self._bus = bus
        self.group_id = group_id
        self._topic = topic
        self._dlq_topic = dlq_topic
        self._unit_of_work = unit_of_work
        self._inbox = inbox_model
        self._subscriptions = subscriptions
        # Known types nobody here handles: most of the topic, for most services.
        self._ignored = frozenset(EVENT_TYPES) - {event_type.__name__ for event_type in subscriptions}
        self._keys = keys
        self.deps = deps
        self._max_attempts = max_attempts
        self._retry_backoff = retry_backoff
        self._batch_size = batch_size
        self._dlq_producer: Producer | None = None
        self.connected = False
        self.handled_total = 0
        self.duplicates_total = 0
        self.dead_lettered_total = 0
        # A private registry when none is given (a consumer built alone, in a test).
        self.metrics = metrics or ConsumerMetrics(CollectorRegistry())
        # The running client and the offsets this instance committed, for the lag at scrape time.
        self._client: Consumer | None = None
        self._committed: dict[TopicPartition, int] = {}

    async def run(self) -> None:
        """Consume forever; a lost broker or a failed commit restarts the consumer, never skips."""
        backoff = 0.2
        while True:
            consumer = self._bus.consumer(
                self.group_id, [self._topic], listener=_ForgetRevoked(self._committed)
            )
            try:
                await consumer.start()
                self.connected = True
                self._client = consumer
                backoff = 0.2
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "consumer stopped; restarting",
                    extra={"group": self.group_id, "error": redact(repr(exc)), "backoff_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.connected = False
                self._client = None
                self._committed.clear()
                await stop_quietly(consumer)
                if self._dlq_producer is not None:
                    await stop_quietly(self._dlq_producer)
                    self._dlq_producer = None

    async def _consume(self, consumer: Consumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=IDLE_WAIT_MS, max_records=self._batch_size)
            if not batches:
                continue
            await self.handle_batch([record for records in batches.values() for record in records])
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            await consumer.commit(offsets)
            self._committed.update(offsets)

    def assigned_partitions(self) -> set[int]:
        """The partitions of the topic this instance holds now (empty while it is not connected)."""
        client = self._client
        return (
            {tp.partition for tp in client.assignment() if tp.topic == self._topic}
            if client is not None
            else set()
        )

    async def lag(self) -> dict[TopicPartition, int]:
        """Records not yet committed on each partition this instance holds (empty while it is not
        connected); a partition it has not fetched from yet is left out."""
        client = self._client
        return await partition_lag(client, self._committed) if client is not None else {}

    async def handle_batch(self, records: list[Any]) -> None:
        """Handle a batch fetched together in ONE transaction: one commit for many events is what
        lets a consumer keep up with thousands of events a second. Records keep their order within
        each partition, so each binding's events are handled in order. If any handler fails, the
        transaction rolls back and the batch is handled record by record, each with its retries
        and its way to the DLQ, exactly as if it had come alone."""
        todo: list[tuple[Envelope, Handler]] = []
        for record in records:
            try:
                admitted = await self._admit(record)
            except (MalformedEvent, EventRejected):
                todo.clear()  # the record-by-record path dead-letters it, in its place
                break
            if admitted is not None:
                todo.append(admitted)
        else:
            if len(todo) <= 1:
                # Nothing to gain from a batch: the record-by-record path is one transaction too.
                for record in records:
                    await self.handle(record)
                return
            try:
                await self._handle_together(todo)
                return
            except Exception as exc:
                if is_transient(exc):
                    raise InfrastructureUnavailable(
                        f"{type(exc).__name__} while handling a batch of {len(todo)}"
                    ) from exc
                log.info(
                    "batch failed; handling its records one by one",
                    extra={"records": len(records), "error": redact(repr(exc))},
                )
        for record in records:
            await self.handle(record)

    async def _handle_together(self, todo: list[tuple[Envelope, Handler]]) -> None:
        handled: list[str] = []
        duplicates: list[str] = []
        async with self._unit_of_work() as uow:
            # Registered first, so it runs as soon as the commit is durable, whatever follows.
            uow.after_commit(lambda: self._count_committed(handled, duplicates))
            ids = [envelope.id for envelope, _ in todo]
            seen = set(
                await uow.session.scalars(select(self._inbox.event_id).where(self._inbox.event_id.in_(ids)))
            )
            for envelope, handler in todo:
                if envelope.id in seen:
                    duplicates.append(envelope.type)
                    continue
                seen.add(envelope.id)
                uow.session.add(self._inbox(event_id=envelope.id, event_type=envelope.type))
                cid, current = (
                    correlation_id.set(envelope.data.correlation_id),
                    current_envelope.set(envelope),
                )
                try:
                    await handler(uow, self.deps, envelope.data)
                finally:
                    current_envelope.reset(current)
                    correlation_id.reset(cid)
                handled.append(envelope.type)

    def _count_committed(self, handled: list[str], duplicates: list[str]) -> None:
        self.handled_total += len(handled)
        self.duplicates_total += len(duplicates)
        for event_type in handled:
            self.metrics.handled.labels(event_type).inc()
        for event_type in duplicates:
            self.metrics.duplicates.labels(event_type).inc()

    async def _admit(self, record: Any) -> tuple[Envelope, Handler] | None:
        """The event and its handler, or None for a type the service does not subscribe to.
        Raises MalformedEvent, or EventRejected for an event its one legitimate source did not sign."""
        if _ce_type(record.headers) in self._ignored:
            return None
        envelope = Envelope.from_record(record.value, record.headers)
        handler = self._subscriptions.get(type(envelope.data))
        if handler is None:
            return None
        try:
            await verify_signature(self._keys, envelope, record.value, record.headers)
        except KeySetUnavailable as exc:
            raise InfrastructureUnavailable(f"the keys to check {envelope.type} could not be loaded") from exc
        return envelope, handler

    async def handle(self, record: Any) -> None:
        """Handle one record to the end: handled, skipped as a duplicate, or dead-lettered."""
        try:
            admitted = await self._admit(record)
        except MalformedEvent as exc:
            await self._dead_letter(record, exc, attempts=0)
            return
        except EventRejected as exc:
            await self._reject(record, exc, header_type(record))
            return
        if admitted is None:
            return
        envelope, handler = admitted
        token = correlation_id.set(envelope.data.correlation_id)
        try:
            error: Exception | None = None
            for attempt in range(1, self._max_attempts + 1):
                try:
                    await self._handle_once(envelope, handler)
                    return
                except EventRejected as exc:
                    await self._reject(record, exc, envelope.type)
                    return
                except Exception as exc:
                    if is_transient(exc):
                        raise InfrastructureUnavailable(
                            f"{type(exc).__name__} while handling {envelope.type}"
                        ) from exc
                    error = exc
                    self.metrics.failed.labels(envelope.type).inc()
                    log.warning(
                        "handler failed",
                        extra={
                            "event_type": envelope.type,
                            "event_id": envelope.id,
                            "attempt": attempt,
                            "error": redact(repr(exc)),
                        },
                    )
                    if attempt < self._max_attempts:
                        await asyncio.sleep(self._retry_backoff * 2 ** (attempt - 1))
            assert error is not None
            await self._dead_letter(record, error, attempts=self._max_attempts, event_type=envelope.type)
        finally:
            correlation_id.reset(token)

    async def _handle_once(self, envelope: Envelope, handler: Handler) -> None:
        token = current_envelope.set(envelope)
        try:
            await self._handle_in_transaction(envelope, handler)
        finally:
            current_envelope.reset(token)

    async def _handle_in_transaction(self, envelope: Envelope, handler: Handler) -> None:
        async with self._unit_of_work() as uow:
            if await uow.session.scalar(
                select(self._inbox.event_id).where(self._inbox.event_id == envelope.id)
            ):
                uow.after_commit(lambda: self._count_committed([], [envelope.type]))
                log.info(
                    "duplicate event ignored", extra={"event_type": envelope.type, "event_id": envelope.id}
                )
                return
            uow.after_commit(lambda: self._count_committed([envelope.type], []))
            uow.session.add(self._inbox(event_id=envelope.id, event_type=envelope.type))
            await handler(uow, self.deps, envelope.data)

    async def _reject(self, record: Any, rejection: EventRejected, event_type: str) -> None:
        self.metrics.rejected.labels(event_type, rejection.reason).inc()
        log.warning(
            "event rejected",
            extra={"event_type": event_type, "reason": rejection.reason, "error": redact(str(rejection))},
        )
        await self._dead_letter(record, rejection, attempts=0, event_type=event_type, reason=rejection.reason)

    async def _dead_letter(
        self,
        record: Any,
        error: BaseException,
        *,
        attempts: int,
        event_type: str = MALFORMED,
        reason: str = "",
    ) -> None:
        headers = [(name, value) for name, value in (record.headers or ()) if not name.startswith("x-dlq-")]
        if reason:
            headers.append(("x-dlq-reason", reason.encode()))
        headers += [
            ("x-dlq-error", redact(f"{type(error).__name__}: {error}")[:2000].encode()),
            ("x-dlq-error-type", type(error).__name__.encode()),
            ("x-dlq-original-topic", record.topic.encode()),
            ("x-dlq-original-partition", str(record.partition).encode()),
            ("x-dlq-original-offset", str(record.offset).encode()),
            ("x-dlq-consumer-group", self.group_id.encode()),
            ("x-dlq-attempts", str(attempts).encode()),
            ("x-dlq-failed-at", utcnow().isoformat().encode()),
        ]
        if self._dlq_producer is None:
            self._dlq_producer = self._bus.producer()
            await self._dlq_producer.start()
        # Waiting for the acknowledgement keeps the offset uncommitted until the letter is safe.
        await self._dlq_producer.send_and_wait(
            self._dlq_topic, record.value or b"", key=record.key, headers=headers
        )
        self.dead_lettered_total += 1
        self.metrics.dead_lettered.labels(event_type).inc()
        log.error(
            "event dead-lettered",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "attempts": attempts,
                "error": redact(str(error)),
            },
        )


def _ce_type(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    for name, value in headers or ():
        if name == "ce_type":
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


def header_type(record: Any) -> str:
    """The event type of a record that parsed as a known type, as Envelope.from_record read it."""
    return header_map(record.headers).get("ce_type", MALFORMED)


class _ForgetRevoked(ConsumerRebalanceListener):
    """Drops this instance's committed offsets of the partitions taken from it: another instance
    commits them meanwhile, and an old offset would show a lag that is not there."""

    def __init__(self, committed: dict[TopicPartition, int]):
        self._committed = committed

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self._committed.pop(tp, None)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        return None
