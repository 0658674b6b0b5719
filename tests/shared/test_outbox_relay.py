"""The outbox relay: publish after commit, in order per key, and a restart mid-batch has no second effect."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from services.binding.models import OutboxMessage
from services.risk.models import Assessment
from shared.cloudevents import Envelope
from shared.events import UnbindCancelled
from shared.outbox import OutboxRelay, _take_the_turn
from shared.uow import UnitOfWork
from tests.factories import customer_with_binding, idempotency_key, unbind_body
from tests.stack import BusTopics, Stack, auth, eventually, running_stack

BINDING_AND_RISK = ("binding", "risk")


class CrashBeforeMarking(OutboxRelay):
    """A relay that 'dies' after the broker acknowledged the batch and before it recorded that."""

    async def _record_outcomes(self, session, rows, results):  # noqa: ANN001, ANN202 - the overridden signature
        raise SystemExit("relay process killed")


def binding_relay_off(
    bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> AbstractAsyncContextManager[Stack]:
    """Binding alone, its own relay off: the test drives relays itself."""
    return running_stack(
        bus, database_urls, tmp_path, ("binding",), overrides={"binding": {"run_workers": False}}
    )


async def request_unbinds(stack: Stack, count: int) -> list[str]:
    request_ids = []
    for _ in range(count):
        customer = await customer_with_binding(stack)
        response = await stack.client("binding").post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            json=unbind_body(),
            headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
        )
        assert response.status_code == 202, response.text
        request_ids.append(response.json()["id"])
    return request_ids


async def unpublished(stack: Stack) -> int:
    async with stack.runtime("binding").session_factory() as session:
        return (
            await session.scalar(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
            )
            or 0
        )


def assert_each_key_in_order(records: list, keys: int) -> None:
    """Records of one key (one binding) share a partition, and their request ids (emitted in
    ascending order) come out in offset order."""
    by_key: dict[bytes, list[tuple[int, int, str]]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(
            (
                record.partition,
                record.offset,
                Envelope.from_record(record.value, record.headers).data.request_id,
            )
        )
    assert len(by_key) == keys
    for key, entries in by_key.items():
        assert len({partition for partition, _, _ in entries}) == 1, "one binding, one partition"
        in_offset_order = [request_id for _, _, request_id in sorted(entries)]
        assert in_offset_order == sorted(in_offset_order), f"events of {key!r} out of order"


async def test_relay_restarted_mid_batch_has_no_second_effect(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    # Binding's own relay stays off so the test drives it; risk consumes normally.
    overrides = {"binding": {"run_workers": False}}
    async with running_stack(
        any_bus, database_urls, tmp_path, BINDING_AND_RISK, overrides=overrides
    ) as stack:
        runtime = stack.runtime("binding")
        request_ids = await request_unbinds(stack, 12)
        assert await unpublished(stack) == 12

        crashing = CrashBeforeMarking(
            session_factory=runtime.session_factory, model=OutboxMessage, bus=any_bus.bus, batch_size=5
        )
        producer = any_bus.bus.producer()
        await producer.start()
        try:
            try:
                await crashing.publish_batch(producer)
            except SystemExit:
                pass
        finally:
            await producer.stop()
        assert await unpublished(stack) == 12, (
            "nothing was marked: the first 5 rows were published but not recorded"
        )

        restarted = OutboxRelay(
            session_factory=runtime.session_factory, model=OutboxMessage, bus=any_bus.bus, batch_size=5
        )
        task = asyncio.create_task(restarted.run())
        try:
            await eventually(
                lambda: _no_unpublished(stack), 30, "the restarted relay did not drain the outbox"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        events = await any_bus.events()
        requested = Counter(event.data.request_id for event in events if event.type == "UnbindRequested")
        assert sorted(requested) == sorted(request_ids)
        assert sum(requested.values()) == 12 + 5, "the first five rows went out twice"

        async def assessed() -> list[Envelope] | None:
            found = [event for event in await any_bus.events() if event.type == "RiskAssessed"]
            return found if len(found) >= 12 else None

        risk_events = await eventually(assessed, 30, "risk did not assess every request")
        await asyncio.sleep(0.5)  # room for a wrong second assessment to show up
        risk_events = [event for event in await any_bus.events() if event.type == "RiskAssessed"]
        assert sorted(event.data.request_id for event in risk_events) == sorted(request_ids), (
            "each request is assessed exactly once"
        )
        assert stack.runtime("risk").consumer.duplicates_total == 5
        async with stack.runtime("risk").session_factory() as session:
            assert await session.scalar(select(func.count()).select_from(Assessment)) == 12


async def _no_unpublished(stack: Stack) -> bool:
    return await unpublished(stack) == 0


async def test_events_of_one_binding_keep_their_order(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with binding_relay_off(any_bus, database_urls, tmp_path) as stack:
        runtime = stack.runtime("binding")
        async with runtime.unit_of_work() as uow:
            for index in range(30):
                uow.emit(
                    UnbindCancelled(request_id=f"r-{index:02d}", binding_id=f"b-{index % 3}", user_id="u-1")
                )
        relay = OutboxRelay(
            session_factory=runtime.session_factory, model=OutboxMessage, bus=any_bus.bus, batch_size=7
        )
        producer = any_bus.bus.producer()
        await producer.start()
        try:
            while await relay.publish_batch(producer):
                pass
        finally:
            await producer.stop()

        assert_each_key_in_order(await any_bus.records(), keys=3)


@pytest.mark.parametrize("database_urls", ["postgresql"], indirect=True)
async def test_two_relays_of_one_service_take_turns_and_publish_each_row_once(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with binding_relay_off(kafka_topics, database_urls, tmp_path) as stack:
        runtime = stack.runtime("binding")
        async with runtime.unit_of_work() as uow:
            for index in range(200):
                uow.emit(
                    UnbindCancelled(request_id=f"r-{index:03d}", binding_id=f"b-{index % 4}", user_id="u-1")
                )
        relays = [
            OutboxRelay(
                session_factory=runtime.session_factory,
                model=OutboxMessage,
                bus=kafka_topics.bus,
                batch_size=20,
            )
            for _ in range(2)
        ]

        # While one instance holds the turn, the other waits for it, and publishes once it ends.
        producer = kafka_topics.bus.producer()
        await producer.start()
        try:
            async with runtime.session_factory() as holder, holder.begin():
                await _take_the_turn(holder, OutboxMessage)
                waiting = asyncio.create_task(relays[1].publish_batch(producer))
                await asyncio.sleep(1.0)
                assert not waiting.done(), "published while another instance held the turn"
                assert await unpublished(stack) == 200
            assert await asyncio.wait_for(waiting, 30) == 20
        finally:
            await producer.stop()
        assert await unpublished(stack) == 180

        tasks = [asyncio.create_task(relay.run()) for relay in relays]
        try:
            await eventually(lambda: _no_unpublished(stack), 30, "the two relays did not drain the outbox")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        records = await kafka_topics.records()
        request_ids = [
            Envelope.from_record(record.value, record.headers).data.request_id for record in records
        ]
        assert sorted(request_ids) == [f"r-{index:03d}" for index in range(200)], (
            "every row published exactly once"
        )
        assert sum(relay.published_total for relay in relays) == 200
        assert_each_key_in_order(records, keys=4)


async def test_a_relay_is_woken_by_any_instances_commit_and_commits_nothing_while_idle(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with binding_relay_off(kafka_topics, database_urls, tmp_path) as stack:
        runtime = stack.runtime("binding")
        commits = Counter[str]()
        event.listen(runtime.engine.sync_engine, "commit", lambda _: commits.update(["commit"]))
        # A safety round an hour away: whatever goes out below was woken, not polled.
        relay = OutboxRelay(
            session_factory=runtime.session_factory,
            model=OutboxMessage,
            bus=kafka_topics.bus,
            idle_interval=3600,
        )
        task = asyncio.create_task(relay.run())
        try:
            await eventually(lambda: relay.connected, 30, "the relay did not start")
            await asyncio.sleep(2)
            assert commits["commit"] == 0, "an idle relay committed"

            if runtime.engine.dialect.name == "postgresql":
                # Another instance's commit (a unit of work that wakes no relay of this process):
                # the trigger's NOTIFY wakes this one.
                async with UnitOfWork(runtime.session_factory, runtime.outbox) as uow:
                    uow.emit(UnbindCancelled(request_id="r-other", binding_id="b-1", user_id="u-1"))
                await eventually(lambda: _no_unpublished(stack), 10, "the NOTIFY did not wake the relay")

            async with UnitOfWork(runtime.session_factory, runtime.outbox, on_commit=relay.wake) as uow:
                uow.emit(UnbindCancelled(request_id="r-own", binding_id="b-1", user_id="u-1"))
            await eventually(
                lambda: _no_unpublished(stack), 10, "this instance's commit did not wake its relay"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
