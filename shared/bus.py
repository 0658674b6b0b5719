"""The event bus: real Kafka through aiokafka, and an in-memory twin for fast unit tests only.

Both expose the slice of aiokafka's producer/consumer API that the outbox relay and the consumer
runner use, so the same code (and the same test bodies) run on either.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from shared.cloudevents import Headers
from shared.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)


class Producer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None
    ) -> asyncio.Future: ...
    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None
    ) -> Any: ...


class Consumer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]: ...
    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None: ...
    def assignment(self) -> set[TopicPartition]: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    async def position(self, partition: TopicPartition) -> int: ...


class EventBus(Protocol):
    def producer(self) -> Producer: ...
    def consumer(
        self, group_id: str, topics: list[str], *, listener: ConsumerRebalanceListener | None = None
    ) -> Consumer: ...


async def stop_quietly(client: Producer | Consumer, timeout: float = 5) -> None:
    """Stop a client without letting a dead broker hang or crash the caller's cleanup."""
    try:
        async with asyncio.timeout(timeout):
            await client.stop()
    except Exception as exc:
        log.debug("client stop failed", extra={"error": repr(exc)})


async def partition_lag(
    consumer: Consumer, committed: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Records behind on each assigned partition: the highwater (offset of the next record to be
    written, as of the last fetch) minus the offset committed by this consumer, or, before its
    first commit there, its position. Both are local to the client, so no request goes to the
    broker; a partition not fetched from yet (no highwater known) is left out."""
    lag = {}
    for tp in consumer.assignment():
        if (highwater := consumer.highwater(tp)) is None:
            continue
        done = committed[tp] if tp in committed else await consumer.position(tp)
        lag[tp] = max(0, highwater - done)
    return lag


# How long an idle reader's getmany waits for records before it loops (it returns as soon as some
# are fetched). The broker's fetch wait stays at aiokafka's 500 ms: a partition left out of a fetch
# in flight (it still had records buffered) waits for that fetch to end, so a longer wait delayed
# events under load (CI: a dashboard feed and a notice late by seconds).
IDLE_WAIT_MS = 2_000


@dataclass(frozen=True)
class KafkaBus:
    """Real Kafka, as one authenticated principal. The producer is idempotent with acks=all, so a
    retried send never duplicates or reorders records within a partition; consumers never auto-commit."""

    bootstrap_servers: str
    security: KafkaSecurity
    client_id: str = "unbind"
    request_timeout_ms: int = 15_000

    def producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            **self.security.client_options(),
            enable_idempotence=True,
            acks="all",
            # No linger: the relay hands a whole batch of rows over before it waits, so records batch
            # anyway, and each hop of a workflow would otherwise wait 5 ms for nothing.
            linger_ms=0,
            request_timeout_ms=self.request_timeout_ms,
            retry_backoff_ms=200,
        )

    def consumer(
        self, group_id: str, topics: list[str], *, listener: ConsumerRebalanceListener | None = None
    ) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            **self.security.client_options(),
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
            # Bounded prefetch: aiokafka's defaults (1 MB a partition, 50 MB a fetch) cost tens of
            # MB of RSS when a reader starts from the beginning of the topic.
            max_partition_fetch_bytes=256 * 1024,
            fetch_max_bytes=4 * 1024 * 1024,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
            retry_backoff_ms=200,
        )
        # A listener lets a reader choose where each assigned partition starts (the dashboard
        # rebuilds its view from the beginning); without one, the group's committed offsets rule.
        consumer.subscribe(topics=topics, listener=listener)
        return consumer


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@dataclass
class InMemoryBus:
    """A single-process twin of Kafka: partitioned logs, consumer groups with committed offsets.

    One consumer per group is assumed (it gets every partition); that is all unit tests need.
    """

    partitions: int = 6
    logs: dict[str, list[list[MemoryRecord]]] = field(default_factory=dict)
    committed: dict[tuple[str, TopicPartition], int] = field(default_factory=lambda: defaultdict(int))

    def _log(self, topic: str) -> list[list[MemoryRecord]]:
        return self.logs.setdefault(topic, [[] for _ in range(self.partitions)])

    def append(self, topic: str, value: bytes, key: bytes | None, headers: Headers | None) -> MemoryRecord:
        partition = zlib.crc32(key) % self.partitions if key else 0
        log = self._log(topic)[partition]
        record = MemoryRecord(topic, partition, len(log), key, value, tuple(headers or ()))
        log.append(record)
        return record

    def records(self, topic: str) -> list[MemoryRecord]:
        """Every record of a topic, partition by partition."""
        return [record for log in self._log(topic) for record in log]

    def producer(self) -> _MemoryProducer:
        return _MemoryProducer(self)

    def consumer(
        self, group_id: str, topics: list[str], *, listener: ConsumerRebalanceListener | None = None
    ) -> _MemoryConsumer:
        # No rebalances here: one consumer gets every partition, from the committed offsets
        # (the beginning for a group that never commits, such as the dashboard's).
        return _MemoryConsumer(self, group_id, topics)


@dataclass
class _MemoryProducer:
    bus: InMemoryBus

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None
    ) -> asyncio.Future:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        future.set_result(self.bus.append(topic, value, key, headers))
        return future

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None
    ) -> MemoryRecord:
        return await (await self.send(topic, value, key, headers))


@dataclass
class _MemoryConsumer:
    bus: InMemoryBus
    group_id: str
    topics: list[str]
    positions: dict[TopicPartition, int] = field(default_factory=dict)

    async def start(self) -> None:
        for topic in self.topics:
            for partition in range(self.bus.partitions):
                tp = TopicPartition(topic, partition)
                self.positions[tp] = self.bus.committed[(self.group_id, tp)]

    async def stop(self) -> None:
        return None

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[MemoryRecord]]:
        batch = self._take(max_records)
        deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
        while not batch and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
            batch = self._take(max_records)
        return batch

    def _take(self, max_records: int | None) -> dict[TopicPartition, list[MemoryRecord]]:
        batch: dict[TopicPartition, list[MemoryRecord]] = {}
        budget = max_records or 500
        for tp, position in self.positions.items():
            records = self.bus._log(tp.topic)[tp.partition][position : position + budget]
            if records:
                batch[tp] = records
                self.positions[tp] = position + len(records)
                budget -= len(records)
            if budget <= 0:
                break
        return batch

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        for tp, offset in (offsets or self.positions).items():
            self.bus.committed[(self.group_id, tp)] = offset

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self.bus._log(partition.topic)[partition.partition])

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]
