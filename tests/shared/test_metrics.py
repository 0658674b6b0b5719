"""The consumer's counters by event type (handled, duplicates, failed attempts, dead letters) and the
lag computation, on the in-memory bus and SQLite: the e2e test covers the flow on every bus."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest

from services.notification import service as notification_service
from shared.bus import InMemoryBus, partition_lag
from shared.events import UnbindCompleted
from shared.metrics import ConsumerMetrics
from shared.uow import UnitOfWork
from tests.e2e.test_metrics import samples
from tests.factories import notification_consumer, notification_knows
from tests.shared.test_consumer import completed_event
from tests.stack import eventually, make_bus_topics, running_stack


async def test_consumer_counts_by_type_once_committed_and_each_failed_attempt(tmp_path: Path) -> None:
    topics = make_bus_topics("memory", None)
    urls = {"notification": f"sqlite+aiosqlite:///{tmp_path / 'notification.db'}"}
    async with running_stack(
        topics, urls, tmp_path, ("notification",), overrides={"notification": {"run_workers": False}}
    ) as stack:

        async def flaky(uow: UnitOfWork, deps: object, event: UnbindCompleted) -> None:
            if event.request_id == "r-bad":
                raise RuntimeError("the lender system is confused")
            await notification_service.complete_request(uow, deps, event)

        registry = CollectorRegistry()
        consumer = notification_consumer(
            stack,
            topics,
            subscriptions={UnbindCompleted: flaky},
            group_id="metrics",
            max_attempts=3,
            retry_backoff=0.01,
            metrics=ConsumerMetrics(registry),
        )
        await notification_knows(
            stack, completed_event(request_id="r-bad"), completed_event(request_id="r-good")
        )
        await topics.publish_event(completed_event(request_id="r-bad"))
        await topics.publish_event(completed_event(request_id="r-good"), times=2)
        await topics.publish(b"{not json", key=b"b-1", headers=[("ce_type", b"UnbindCompleted")])
        task = asyncio.create_task(consumer.run())
        try:
            await eventually(
                lambda: consumer.dead_lettered_total == 2 and consumer.duplicates_total == 1,
                30,
                "not every record was consumed",
            )
            text = generate_latest(registry).decode()
            assert samples(text, "unbind_events_handled_total") == {("UnbindCompleted",): 1.0}
            assert samples(text, "unbind_events_duplicates_total") == {("UnbindCompleted",): 1.0}
            assert samples(text, "unbind_events_failed_total") == {("UnbindCompleted",): 3.0}, (
                "one per failed attempt"
            )
            assert samples(text, "unbind_events_dead_lettered_total") == {
                ("UnbindCompleted",): 1.0,
                ("malformed",): 1.0,
            }
            assert await eventually(consumer.lag, 10, "the consumer never caught up") and set(
                (await consumer.lag()).values()
            ) == {0}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert await consumer.lag() == {}, "no client, no lag"


async def test_lag_is_highwater_minus_committed_or_position() -> None:
    bus = InMemoryBus(partitions=2)
    for _ in range(5):
        bus.append("t", b"{}", None, None)  # no key: partition 0
    consumer = bus.consumer("g", ["t"])
    await consumer.start()
    first, second = TopicPartition("t", 0), TopicPartition("t", 1)
    assert await partition_lag(consumer, {}) == {first: 5, second: 0}
    await consumer.getmany(timeout_ms=0, max_records=3)
    assert await partition_lag(consumer, {}) == {first: 2, second: 0}, "before any commit: the position"
    assert await partition_lag(consumer, {first: 1}) == {first: 4, second: 0}, (
        "fetched but not committed is still behind"
    )
