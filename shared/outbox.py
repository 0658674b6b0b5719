"""Transactional outbox: events are rows written in the same transaction as the state they
describe, and a relay publishes them to Kafka afterwards.

Guarantees: an event is published if and only if its transaction committed; rows are published in
`seq` order through an idempotent producer (acks=all), so events of one binding keep their order on
its partition; a row is marked published only after the broker acknowledged it, so a relay that
dies mid-batch publishes the unmarked rows again on restart, and the consumers' inbox makes that
second copy a no-op. Several instances of a service share its outbox: on PostgreSQL they take
turns (an advisory lock held for one round, waited for in the database, not polled), so only one
publishes at a time and `seq` order holds.

The relay does not poll for work. A unit of work that staged events wakes its own instance's relay
when it commits; on PostgreSQL a trigger NOTIFYs every instance's relay at the commit of a
transaction that added rows (so rows an instance committed just before it died go out at once).
A slow safety round (`idle_interval`) catches anything else, and a round that finds nothing ends
with a rollback: an idle service commits nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from sqlalchemy.types import JSON

from shared.bus import EventBus, Producer, stop_quietly
from shared.cloudevents import Envelope
from shared.db import UTCDateTime, utcnow
from shared.events import Event
from shared.keys import SigningKey
from shared.logging import redact
from shared.wakeup import wait_for_work

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "unbind_outbox"
# Statement-level: one NOTIFY per insert statement, and PostgreSQL folds the identical ones of a
# transaction into one, delivered at commit.
_NOTIFY_TRIGGER = (
    f"""CREATE OR REPLACE FUNCTION unbind_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('{NOTIFY_CHANNEL}', ''); RETURN NULL; END $$""",
    "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox"
    " FOR EACH STATEMENT EXECUTE FUNCTION unbind_outbox_notify()",
)
_DROP_NOTIFY_TRIGGER = (
    "DROP TRIGGER IF EXISTS outbox_notify ON outbox",
    "DROP FUNCTION IF EXISTS unbind_outbox_notify()",
)


def add_notify_trigger(op: Any) -> None:
    """For a service's migration (alembic's `op`): the trigger the relays LISTEN to, on PostgreSQL.
    SQLite runs one instance, whose commits wake its own relay."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in _NOTIFY_TRIGGER:
            op.execute(statement)


def drop_notify_trigger(op: Any) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _DROP_NOTIFY_TRIGGER:
            op.execute(statement)


class OutboxMixin:
    """Columns of a service's `outbox` table (each service declares it on its own Base)."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (Index("ix_outbox_unpublished", "published_at", "seq"),)


class Outbox:
    """Stages events into the caller's session, signed with the service's key; the unit of work
    commits them with the state."""

    def __init__(self, model: type[OutboxMixin], topic: str, signer: SigningKey | None):
        self.model = model
        self.topic = topic
        self._signer = signer

    def add(self, session: AsyncSession, event: Event) -> Envelope:
        if self._signer is None:
            raise RuntimeError(f"{type(event).__name__} cannot be emitted: this service has no signing key")
        envelope = Envelope.emit(event)
        key, value, headers = envelope.to_record(self._signer)
        session.add(
            self.model(
                event_id=envelope.id,
                event_type=envelope.type,
                topic=self.topic,
                key=key.decode(),
                value=value,
                headers={name: raw.decode() for name, raw in headers},
            )
        )
        return envelope


class PublishFailed(Exception):
    """Some rows of a batch were not acknowledged by the broker; they stay unpublished."""


class OutboxRelay:
    """Publishes unsent outbox rows in order, many per round, waiting on the batch."""

    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        model: type[OutboxMixin],
        bus: EventBus,
        batch_size: int = 500,
        idle_interval: float = 30.0,
        max_backoff: float = 5.0,
    ):
        self._session_factory = session_factory
        self._model = model
        self._bus = bus
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._max_backoff = max_backoff
        self._wakeup = asyncio.Event()
        self.connected = False
        self.published_total = 0

    def wake(self) -> None:
        """Called after a unit of work commits, so new rows go out without waiting for a poll."""
        self._wakeup.set()

    async def run(self) -> None:
        producer: Producer | None = None
        backoff = 0.2
        engine = self._session_factory.kw.get("bind")
        listener = (
            asyncio.create_task(self._listen(engine), name="outbox-listener")
            if isinstance(engine, AsyncEngine) and engine.dialect.name == "postgresql"
            else None
        )
        try:
            while True:
                try:
                    if producer is None:
                        producer = self._bus.producer()
                        await producer.start()
                        self.connected = True
                    published = await self.publish_batch(producer)
                    backoff = 0.2
                    if published < self._batch_size:
                        await self._idle()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning(
                        "outbox relay round failed; retrying",
                        extra={"error": redact(str(exc)), "backoff_s": backoff},
                    )
                    self.connected = False
                    if producer is not None:
                        await stop_quietly(producer)
                        producer = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
        finally:
            self.connected = False
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
            if producer is not None:
                await stop_quietly(producer)

    async def _listen(self, engine: AsyncEngine) -> None:
        """LISTEN on a connection of its own for the trigger's NOTIFY, reconnecting when it drops;
        each (re)connection wakes the relay once for what was committed while nobody listened."""
        backoff = 0.2
        while True:
            lost = asyncio.Event()
            try:
                async with engine.connect() as connection:
                    raw = (await connection.get_raw_connection()).driver_connection
                    await raw.add_listener(NOTIFY_CHANNEL, lambda *_: self.wake())
                    raw.add_termination_listener(lambda _, lost=lost: lost.set())
                    self.wake()
                    backoff = 0.2
                    await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "outbox listener lost its connection; reconnecting",
                    extra={"error": redact(repr(exc)), "backoff_s": backoff},
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _idle(self) -> None:
        await wait_for_work(self._wakeup, None, self._idle_interval)

    async def publish_batch(self, producer: Producer) -> int:
        """Publish one batch of unsent rows; returns how many rows were attempted. Waits while
        another instance of the service is publishing."""
        model = self._model
        # No `session.begin()` block: a round that finds nothing closes the session, which rolls back.
        async with self._session_factory() as session:
            await _take_the_turn(session, model)
            rows: Sequence[OutboxMixin] = (
                await session.scalars(
                    select(model)
                    .where(model.published_at.is_(None))
                    .order_by(model.seq)
                    .limit(self._batch_size)
                )
            ).all()
            if not rows:
                return 0
            results = await _send_all(producer, rows)
            published, failed = await self._record_outcomes(session, rows, results)
            await session.commit()
        self.published_total += len(published)
        if failed:
            raise PublishFailed(
                f"{len(failed)} of {len(rows)} outbox rows not acknowledged: {failed[0][1]!r}"
            )
        return len(rows)

    async def _record_outcomes(
        self, session: AsyncSession, rows: Sequence[OutboxMixin], results: list[BaseException | None]
    ) -> tuple[list[int], list[tuple[int, BaseException]]]:
        """Mark the acknowledged rows published and count an attempt on the others."""
        model = self._model
        published = [row.seq for row, error in zip(rows, results, strict=True) if error is None]
        failed = [(row.seq, error) for row, error in zip(rows, results, strict=True) if error is not None]
        if published:
            await session.execute(
                update(model)
                .where(model.seq.in_(published))
                .values(published_at=utcnow(), attempts=model.attempts + 1)
            )
        for seq, error in failed:
            await session.execute(
                update(model)
                .where(model.seq == seq)
                .values(attempts=model.attempts + 1, last_error=redact(repr(error))[:2000])
            )
        return published, failed


async def _take_the_turn(session: AsyncSession, model: type[OutboxMixin]) -> None:
    """One relay per database publishes at a time, for as long as its transaction lasts: two
    instances publishing side by side would put rows of one binding out of `seq` order. The others
    wait in the database, costing nothing, and take their turn as soon as it ends (retrying every
    50 ms instead cost each waiting relay a transaction per retry while the turn was taken). SQLite
    is the single-instance embedded default and needs no turn."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(_relay_lock_key(model.__tablename__))))


def _relay_lock_key(table: str) -> int:
    """A stable signed 64-bit advisory lock key for the relay of `table`."""
    return int.from_bytes(
        hashlib.blake2b(f"unbind-outbox-relay:{table}".encode(), digest_size=8).digest(), "big", signed=True
    )


async def _send_all(producer: Producer, rows: Sequence[OutboxMixin]) -> list[BaseException | None]:
    """Hand every row to the producer, then wait on the whole batch; each row's error or None."""
    results: list[BaseException | None] = []
    futures: list[asyncio.Future] = []
    send_error: BaseException | None = None
    for row in rows:
        if send_error is not None:
            break
        try:
            headers = [(name, value.encode()) for name, value in row.headers.items()]
            futures.append(await producer.send(row.topic, row.value, key=row.key.encode(), headers=headers))
        except Exception as exc:
            send_error = exc
    for outcome in await asyncio.gather(*futures, return_exceptions=True):
        results.append(outcome if isinstance(outcome, BaseException) else None)
    # Rows never handed to the producer fail with the error that stopped the loop.
    results.extend([send_error] * (len(rows) - len(results)))
    return results
