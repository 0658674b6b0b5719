"""The consumer runner: inbox de-duplication, offsets committed after the transaction, dead letters.

Each test runs the notification service (its inbox handler has no business-level guard, so a
second handling would show as a second message) against a real database, on the in-memory twin
and on the real broker where both make sense.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from services.notification import service as notification_service
from services.notification.models import InboxEntry, Notification
from shared.cloudevents import Envelope, header_map
from shared.consumer import EventConsumer
from shared.events import UnbindCompleted
from shared.uow import UnitOfWork
from tests.factories import notification_consumer, notification_knows
from tests.stack import BusTopics, Stack, eventually, running_stack

NOTIFICATION_ONLY = ("notification",)


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the runner catches it."""


def completed_event(user_id: str = "u-zhangsan", request_id: str = "r-1") -> Envelope:
    return Envelope.emit(
        UnbindCompleted(
            request_id=request_id,
            binding_id="b-zhangsan-mortgage",
            user_id=user_id,
            mandates_cancelled=1,
            credit_limit_before=30000,
            credit_limit_after=20000,
            follow_up=["check_mortgage_repayment_status"],
        )
    )


async def notifications_for(stack: Stack, user_id: str) -> int:
    async with stack.runtime("notification").session_factory() as session:
        return (
            await session.scalar(
                select(func.count()).select_from(Notification).where(Notification.user_id == user_id)
            )
            or 0
        )


async def test_redelivered_event_changes_nothing(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(any_bus, database_urls, tmp_path, NOTIFICATION_ONLY) as stack:
        consumer = stack.runtime("notification").consumer
        await notification_knows(stack, completed_event(), completed_event(request_id="r-2"))
        await any_bus.publish_event(completed_event(), times=3)
        await any_bus.publish_event(completed_event(request_id="r-2"))

        await eventually(
            lambda: consumer.handled_total + consumer.duplicates_total == 4,
            30,
            "not all deliveries were consumed",
        )
        assert consumer.handled_total == 2
        assert consumer.duplicates_total == 2
        assert await notifications_for(stack, "u-zhangsan") == 2


async def test_consumer_killed_after_handling_but_before_committing(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    overrides = {"notification": {"run_workers": False}}
    async with running_stack(
        kafka_topics, database_urls, tmp_path, NOTIFICATION_ONLY, overrides=overrides
    ) as stack:
        runtime = stack.runtime("notification")

        def consumer(unit_of_work) -> EventConsumer:
            return notification_consumer(stack, kafka_topics, unit_of_work=unit_of_work)

        def crashing_unit_of_work() -> UnitOfWork:
            uow = runtime.unit_of_work()

            def crash() -> None:
                raise SimulatedCrash

            uow.after_commit(crash)  # the handler's transaction is durable; the offset is not yet
            return uow

        await notification_knows(stack, completed_event())
        await kafka_topics.publish_event(completed_event())
        with pytest.raises(SimulatedCrash):
            await asyncio.wait_for(consumer(crashing_unit_of_work).run(), 30)
        assert await notifications_for(stack, "u-zhangsan") == 1

        restarted = consumer(runtime.unit_of_work)
        task = asyncio.create_task(restarted.run())
        try:
            await eventually(
                lambda: restarted.duplicates_total == 1, 30, "the uncommitted event was not delivered again"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert restarted.handled_total == 0
        assert await notifications_for(stack, "u-zhangsan") == 1


async def test_poison_event_goes_to_the_dlq_and_the_next_event_is_handled(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(any_bus, database_urls, tmp_path, NOTIFICATION_ONLY) as stack:
        good = completed_event()
        await notification_knows(stack, good)
        key, _, headers = good.to_record()
        await any_bus.publish(
            b'{"request_id": "r-1", "binding_id": ',
            key=key,
            headers=[(n, v) for n, v in headers if n != "ce_id"] + [("ce_id", b"poison-1")],
        )
        await any_bus.publish_event(good)

        await eventually(
            lambda: notifications_for(stack, "u-zhangsan"),
            30,
            "the event after the poison one was not handled",
        )
        letters = await eventually(lambda: any_bus.records(any_bus.dlq_topic), 30, "nothing reached the DLQ")
        assert len(letters) == 1
        attributes = header_map(letters[0].headers)
        assert attributes["ce_id"] == "poison-1"
        assert "MalformedEvent" in attributes["x-dlq-error"]
        assert attributes["x-dlq-original-topic"] == any_bus.topic
        assert attributes["x-dlq-consumer-group"] == stack.runtime("notification").settings.consumer_group
        assert stack.runtime("notification").consumer.dead_lettered_total == 1


async def test_a_type_the_service_does_not_subscribe_to_is_skipped_before_its_data_is_read(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    # Notification does not handle BindingVerified: its group skips the record from the ce_type
    # header alone, so even data that would not parse costs it nothing and reaches no DLQ of its.
    async with running_stack(any_bus, database_urls, tmp_path, NOTIFICATION_ONLY) as stack:
        good = completed_event()
        await notification_knows(stack, good)
        key, _, headers = good.to_record()
        unread = [(n, v) for n, v in headers if n != "ce_type"] + [("ce_type", b"BindingVerified")]
        await any_bus.publish(b"not json at all", key=key, headers=unread)
        await any_bus.publish_event(good)

        await eventually(lambda: notifications_for(stack, "u-zhangsan"), 30, "the next event was not handled")
        consumer = stack.runtime("notification").consumer
        assert consumer.dead_lettered_total == 0 and consumer.handled_total == 1
        assert not await any_bus.records(any_bus.dlq_topic)


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    overrides = {"notification": {"run_workers": False}}
    async with running_stack(
        any_bus, database_urls, tmp_path, NOTIFICATION_ONLY, overrides=overrides
    ) as stack:
        runtime = stack.runtime("notification")
        calls: list[str] = []

        async def flaky(uow: UnitOfWork, deps: object, event: UnbindCompleted) -> None:
            calls.append(event.request_id)
            if event.request_id == "r-bad":
                raise RuntimeError("lender system rejected account 6222021234564821")
            await notification_service.complete_request(uow, deps, event)

        consumer = notification_consumer(
            stack, any_bus, subscriptions={UnbindCompleted: flaky}, max_attempts=3, retry_backoff=0.01
        )
        await notification_knows(
            stack, completed_event(request_id="r-bad"), completed_event(request_id="r-good")
        )
        await any_bus.publish_event(completed_event(request_id="r-bad"))
        await any_bus.publish_event(completed_event(request_id="r-good"))
        task = asyncio.create_task(consumer.run())
        try:
            await eventually(
                lambda: notifications_for(stack, "u-zhangsan"), 30, "the good event was not handled"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        # Fetched together, the two are first tried in one transaction (r-bad fails it), then
        # one by one: r-bad its 3 attempts, r-good once. Fetched apart, there is no batch try.
        assert calls in (
            ["r-bad", "r-bad", "r-bad", "r-bad", "r-good"],
            ["r-bad", "r-bad", "r-bad", "r-good"],
        ), calls
        letters = await any_bus.records(any_bus.dlq_topic)
        assert len(letters) == 1
        attributes = header_map(letters[0].headers)
        assert attributes["x-dlq-attempts"] == "3"
        assert "RuntimeError" in attributes["x-dlq-error"]
        assert "6222021234564821" not in attributes["x-dlq-error"], "the error header is redacted"
        async with runtime.session_factory() as session:
            assert await session.scalar(select(func.count()).select_from(InboxEntry)) == 1, (
                "a failed handling leaves no inbox entry"
            )


async def test_an_unreachable_database_is_waited_out_not_dead_lettered(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    overrides = {"notification": {"run_workers": False}}
    async with running_stack(
        any_bus, database_urls, tmp_path, NOTIFICATION_ONLY, overrides=overrides
    ) as stack:
        runtime = stack.runtime("notification")
        outages = iter(range(5))  # more failures in a row than the retry budget of 3

        def flaky_database() -> UnitOfWork:
            if next(outages, None) is not None:
                raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database is restarting"))
            return runtime.unit_of_work()

        consumer = notification_consumer(stack, any_bus, unit_of_work=flaky_database, retry_backoff=0.01)
        await notification_knows(stack, completed_event())
        await any_bus.publish_event(completed_event())
        task = asyncio.create_task(consumer.run())
        try:
            await eventually(
                lambda: notifications_for(stack, "u-zhangsan"), 60, "the event was lost to the outage"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert consumer.dead_lettered_total == 0
        assert await any_bus.records(any_bus.dlq_topic) == []
