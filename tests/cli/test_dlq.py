"""`unbind dlq list` and `unbind dlq replay`: the real command, as subprocesses, against the
notification service running in this test process on fresh topics of the test broker.

The poison event has a cause that can be fixed: the handler fails while "the lender's system is
down", so the event is dead-lettered; once it is back, a replay is handled exactly once, a second
replay is refused, and a forced one changes nothing (the inbox). A malformed record is listed
but never replayed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from services.notification import service as notification_service
from services.notification.models import InboxEntry, Notification
from shared.cloudevents import Envelope, header_map
from shared.consumer import EventConsumer
from shared.events import UnbindCompleted
from shared.migrations import SERVICES
from shared.uow import UnitOfWork
from tests.cli.conftest import broker_env, cli_env, run_unbind
from tests.factories import notification_consumer, notification_knows
from tests.stack import BusTopics, Stack, eventually, running_stack

ACCOUNT = "6222021234564821"


@pytest.fixture
def sqlite_urls(tmp_path: Path) -> dict[str, str]:
    # The command reads and writes Kafka only: one database kind is enough here.
    return {service: f"sqlite+aiosqlite:///{tmp_path / f'{service}.db'}" for service in SERVICES}


def completed(request_id: str) -> Envelope:
    return Envelope.emit(
        UnbindCompleted(
            request_id=request_id,
            binding_id="b-zhangsan-mortgage",
            user_id="u-zhangsan",
            mandates_cancelled=1,
            credit_limit_before=30000,
            credit_limit_after=20300,
            follow_up=["check_repayment_status_at_lender"],
        )
    )


class Dlq:
    """`unbind dlq ...` on the test topics, run in a thread so the consumer in this process keeps going."""

    def __init__(self, topics: BusTopics, var_dir: Path):
        self.var_dir = var_dir
        assert topics.cluster
        self.env = broker_env(topics.cluster, UNBIND_TOPIC=topics.topic, UNBIND_DLQ_TOPIC=topics.dlq_topic)

    async def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = await asyncio.to_thread(
            run_unbind, "--var-dir", str(self.var_dir), "dlq", *args, env=self.env
        )
        assert "Traceback" not in result.stderr, result.stderr
        assert ACCOUNT not in result.stdout + result.stderr, "a full account number was printed"
        return result

    async def letters(self) -> list[dict[str, Any]]:
        result = await self("list", "--json")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unbind dlq: error: "), result.stderr
    return lines[0]


@asynccontextmanager
async def consuming(consumer: EventConsumer) -> AsyncIterator[EventConsumer]:
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def count(stack: Stack, model: Any, *where: Any) -> int:
    async with stack.runtime("notification").session_factory() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.mark.kafka
async def test_a_dead_letter_is_listed_then_replayed_once_its_cause_is_fixed(
    kafka_topics: BusTopics, sqlite_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(
        kafka_topics,
        sqlite_urls,
        tmp_path,
        ("notification",),
        overrides={"notification": {"run_workers": False}},
    ) as stack:
        runtime = stack.runtime("notification")
        lender_up = False
        calls: list[str] = []

        async def notify_unless_lender_down(uow: UnitOfWork, deps: Any, event: UnbindCompleted) -> None:
            calls.append(event.request_id)
            if not lender_up:
                raise RuntimeError(f"lender system unavailable for account {ACCOUNT}")
            await notification_service.complete_request(uow, deps, event)

        consumer = notification_consumer(
            stack,
            kafka_topics,
            subscriptions={UnbindCompleted: notify_unless_lender_down},
            max_attempts=2,
            retry_backoff=0.01,
        )
        dlq = Dlq(kafka_topics, tmp_path / "var")
        event = completed("r-poison")
        await notification_knows(stack, event)
        async with consuming(consumer):
            await kafka_topics.publish_event(event)
            await eventually(
                lambda: consumer.dead_lettered_total == 1, 30, "the failing event was not dead-lettered"
            )

            [letter] = await dlq.letters()
            assert letter["consumer_group"] == runtime.settings.consumer_group
            assert (letter["event_type"], letter["event_id"], letter["request_id"], letter["binding_id"]) == (
                "UnbindCompleted",
                event.id,
                "r-poison",
                "b-zhangsan-mortgage",
            )
            assert (
                letter["attempts"] == 2
                and letter["error_type"] == "RuntimeError"
                and letter["failed_at"].startswith(str(datetime.now(UTC).year))
            )
            assert "lender system unavailable" in letter["error"] and "***4821" in letter["error"]
            assert (
                letter["original_topic"] == kafka_topics.topic
                and letter["replayable"]
                and not letter["replayed"]
            )
            table = await dlq("list")
            assert (
                table.returncode == 0 and f"1 dead letter(s) on {kafka_topics.dlq_topic}" in table.stdout
            ), table.stdout
            row = next(line for line in table.stdout.splitlines() if line.startswith(letter["id"] + " "))
            assert row.startswith(
                f"{letter['id']}  {datetime.fromisoformat(letter['failed_at']):%Y-%m-%d %H:%M:%S}  "
            ), row
            assert (
                "UnbindCompleted" in row
                and event.id in row
                and "r-poison" in row
                and "RuntimeError: lender system unavailable" in row
            ), row

            lender_up = True  # the cause is fixed
            replayed = await dlq("replay", "--id", letter["id"])
            assert replayed.returncode == 0, replayed.stderr
            assert f"replayed {letter['id']} (UnbindCompleted {event.id}" in replayed.stdout, replayed.stdout
            await eventually(lambda: consumer.handled_total == 1, 30, "the replayed event was not handled")
            assert calls == ["r-poison"] * 3
            assert await count(stack, Notification, Notification.user_id == "u-zhangsan") == 1
            assert await count(stack, InboxEntry, InboxEntry.event_id == event.id) == 1

            again = await dlq("replay", "--id", letter["id"])
            assert "replayed already" in one_error_line(again) and "--force" in again.stderr
            assert len(await kafka_topics.records()) == 2, "a refused replay publishes nothing"

            forced = await dlq("replay", "--id", letter["id"], "--force")
            assert forced.returncode == 0, forced.stderr
            await eventually(
                lambda: consumer.duplicates_total == 1, 30, "the forced replay was not delivered"
            )
            assert consumer.handled_total == 1 and consumer.dead_lettered_total == 1
            assert await count(stack, Notification, Notification.user_id == "u-zhangsan") == 1, (
                "the inbox makes a second replay change nothing"
            )
            assert await count(stack, InboxEntry, InboxEntry.event_id == event.id) == 1

        replays = [
            record
            for record in await kafka_topics.records()
            if header_map(record.headers)["ce_id"] == event.id
        ]
        assert len(replays) == 3 and all(
            record.value == replays[0].value and record.key == replays[0].key for record in replays
        )
        assert all(not name.startswith("x-dlq-") for record in replays for name, _ in record.headers), (
            "replays carry the original headers only"
        )
        [letter] = await dlq.letters()
        assert letter["replayed"] and len(letter["replayed_at"]) == 2, (
            "each replay is marked; the markers are no dead letters"
        )


@pytest.mark.kafka
async def test_a_malformed_record_is_listed_but_never_replayed(
    kafka_topics: BusTopics, sqlite_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, sqlite_urls, tmp_path, ("notification",)) as stack:
        key, _, headers = completed("r-1").to_record()
        poison = b'{"request_id": "r-1", "note": "call +8613812345678", '
        await kafka_topics.publish(
            poison,
            key=key,
            headers=[(name, value) for name, value in headers if name != "ce_id"] + [("ce_id", b"poison-1")],
        )
        consumer = stack.runtime("notification").consumer
        await eventually(
            lambda: consumer.dead_lettered_total == 1, 30, "the malformed record was not dead-lettered"
        )
        dlq = Dlq(kafka_topics, tmp_path / "var")

        listed = await dlq("list", "--json")
        [letter] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert (letter["event_id"], letter["error_type"], letter["attempts"], letter["request_id"]) == (
            "poison-1",
            "MalformedEvent",
            0,
            None,
        )
        assert not letter["replayable"] and not letter["replayed"]
        assert "13812345678" not in listed.stdout and '"note"' not in listed.stdout, (
            "the raw value is never printed"
        )

        refused = await dlq("replay", "--id", letter["id"])
        assert "not a valid CloudEvent" in one_error_line(refused)
        every = await dlq("replay", "--all")
        assert (
            every.returncode == 0
            and f"{letter['id']} skipped: it is not a valid CloudEvent" in every.stdout
            and "nothing to replay" in every.stdout
        ), every.stdout
        assert (
            len(await kafka_topics.records()) == 1
            and len(await kafka_topics.records(kafka_topics.dlq_topic)) == 1
        ), "nothing was published"

        assert "No dead letter 5:999 on" in one_error_line(await dlq("replay", "--id", "5:999"))


def test_without_a_broker_each_command_says_so_in_one_line(tmp_path: Path) -> None:
    env = cli_env(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        KAFKA_SASL_USERNAME="admin",
        KAFKA_SASL_PASSWORD=uuid.uuid4().hex,
    )  # never sent: nothing listens
    for args in (["list"], ["replay", "--all"]):
        result = run_unbind("--var-dir", str(tmp_path / "var"), "dlq", *args, env=env)
        assert "Kafka at 127.0.0.1:1 is not reachable" in one_error_line(result)
    # Without credentials for a cluster it did not start, the one line names the setting.
    anonymous = {name: value for name, value in env.items() if not name.startswith("KAFKA_SASL_")}
    assert "KAFKA_SASL_USERNAME is not set" in one_error_line(
        run_unbind("--var-dir", str(tmp_path / "var"), "dlq", "list", env=anonymous)
    )
    # An id that cannot be one is refused before Kafka is even asked.
    assert "'first' is not a dead-letter id" in one_error_line(
        run_unbind("--var-dir", str(tmp_path / "var"), "dlq", "replay", "--id", "first", env=env)
    )


@pytest.mark.kafka
async def test_a_forged_event_is_listed_with_its_reason_and_a_replay_is_refused_again(
    kafka_topics: BusTopics, sqlite_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, sqlite_urls, tmp_path, ("notification",)) as stack:
        forged = completed("r-forged")
        await notification_knows(stack, forged)
        await kafka_topics.publish_event(forged, signer=None)
        consumer = stack.runtime("notification").consumer
        await eventually(
            lambda: consumer.dead_lettered_total == 1, 30, "the unsigned event was not dead-lettered"
        )
        dlq = Dlq(kafka_topics, tmp_path / "var")
        [letter] = await dlq.letters()
        assert (letter["event_id"], letter["reason"], letter["attempts"]) == (forged.id, "unsigned", 0)
        table = await dlq("list")
        assert "[refused: unsigned]" in table.stdout, table.stdout

        # Replayed as it is, it is refused again: a replay cannot launder a forgery.
        assert (await dlq("replay", "--id", letter["id"])).returncode == 0
        await eventually(
            lambda: consumer.dead_lettered_total == 2, 30, "the replayed forgery was not refused again"
        )
        assert await count(stack, Notification, Notification.user_id == "u-zhangsan") == 0
