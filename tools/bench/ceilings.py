"""The raw ceilings the bench compares the system with, measured on the stack's own broker and
database: how many messages of the events' size aiokafka can produce and consume per second, and
how many single-row transactions the database commits per second."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from shared.bus import KafkaBus
from shared.db import create_engine, is_sqlite
from tools.kafka import Cluster, create_topics, delete_topics


async def kafka_ceiling(cluster: Cluster, message_size: int, count: int = 50_000) -> dict[str, float]:
    """Produce `count` messages of `message_size` bytes (idempotent, acks=all, as the relays do)
    to a fresh 6-partition topic, then consume them all; messages per second of each half."""
    topic = f"unbind.bench.ceiling.{uuid.uuid4().hex[:8]}"
    await create_topics(cluster, [topic])
    payload = b"x" * message_size
    producer = KafkaBus(cluster.bootstrap, cluster.security, client_id="unbind-bench").producer()
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(topic, payload, key=str(index % 1000).encode()) for index in range(count)
        ]
        await asyncio.gather(*futures)
        produce_seconds = time.perf_counter() - started
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        **cluster.client_options(),
        enable_auto_commit=False,
        client_id="unbind-bench",
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, number) for number in range(6)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started = time.perf_counter()
        seen = 0
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                seen += len(records)
        consume_seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    await delete_topics(cluster, [topic])
    return {
        "message_bytes": message_size,
        "messages": count,
        "produce_per_second": round(count / produce_seconds),
        "consume_per_second": round(count / consume_seconds),
        # Every event is produced once and consumed by each group: one produce+consume round each.
        "produce_and_consume_per_second": round(count / (produce_seconds + consume_seconds)),
    }


async def commit_ceiling(database_url: str, seconds: float = 3.0, connections: int = 8) -> dict[str, float]:
    """Single-row INSERT transactions committed per second: on one connection (commit latency)
    and on `connections` at once (what the server sustains), in a scratch table dropped afterwards."""
    table = f"bench_commits_{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url, pool_size=connections)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, payload VARCHAR(64))")
            )
        single = await _commits(engine, table, seconds, 1, first_id=0)
        parallel = (
            single
            if is_sqlite(database_url)
            else await _commits(engine, table, seconds, connections, first_id=10_000_000)
        )
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP TABLE {table}"))
    finally:
        await engine.dispose()
    return {
        "single_connection_per_second": round(single),
        f"{connections}_connections_per_second": round(parallel),
        "database": engine.url.get_backend_name(),
    }


async def _commits(engine, table: str, seconds: float, workers: int, *, first_id: int) -> float:  # noqa: ANN001 - an AsyncEngine
    deadline = time.perf_counter() + seconds
    counts = [0] * workers

    async def work(worker: int) -> None:
        next_id = first_id + worker * 1_000_000
        async with engine.connect() as connection:
            while time.perf_counter() < deadline:
                async with connection.begin():
                    await connection.execute(
                        text(f"INSERT INTO {table} (id, payload) VALUES (:id, 'bench')"), {"id": next_id}
                    )
                next_id += 1
                counts[worker] += 1

    started = time.perf_counter()
    await asyncio.gather(*(work(worker) for worker in range(workers)))
    return sum(counts) / (time.perf_counter() - started)


async def committed_transactions(database_url: str) -> int | None:
    """Transactions committed so far on the whole PostgreSQL server (None on SQLite): the difference
    over a run, divided by its workflows, says how many commits one workflow costs."""
    if is_sqlite(database_url):
        return None
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(text("SELECT sum(xact_commit) FROM pg_stat_database")) or 0)
    finally:
        await engine.dispose()
