"""Two risk instances on one database: their learners take turns on the checkpoint, nothing queued
is learned twice or lost, and both score with the same version, so the same request gets the same
score whichever instance assesses it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.risk.features import Behaviour
from services.risk.service import ModelKeeper, ShadowScore
from shared.app import ServiceRuntime
from tests.stack import on_memory_bus

AT = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
# Learning only when a test says so: the background learner runs once at start, then sleeps an hour.
INSTANCE = {"model_window": 8, "model_train_seconds": 3600, "model_sync_seconds": 0.01}


def ordinary(index: int) -> Behaviour:
    return Behaviour(at=AT + timedelta(minutes=index), device_first_seen_at=AT - timedelta(days=300 + index))


PROBE = Behaviour(at=AT.replace(hour=18), device_first_seen_at=None, ips_24h=3, ip_changed=True)


async def assess(runtime: ServiceRuntime, behaviour: Behaviour) -> ShadowScore:
    keeper: ModelKeeper = runtime.deps.model
    async with runtime.unit_of_work() as uow:
        return await keeper.assess(uow, behaviour)


async def learn(runtime: ServiceRuntime) -> int:
    async with runtime.unit_of_work() as uow:
        return await runtime.deps.model.learn(uow)


async def test_two_instances_learn_in_turns_and_score_with_the_same_version(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with (
        on_memory_bus(database_urls, tmp_path / "a", services=("risk",), overrides={"risk": INSTANCE}) as a,
        on_memory_bus(database_urls, tmp_path / "b", services=("risk",), overrides={"risk": INSTANCE}) as b,
    ):
        first, second = a.runtime("risk"), b.runtime("risk")
        await asyncio.sleep(0.1)  # each background learner's first round, with nothing queued
        for index in range(12):  # a window and a half, queued by both instances in turn
            await assess(first if index % 2 else second, ordinary(index))
        learned = await asyncio.gather(learn(first), learn(second))
        assert sorted(learned) == [0, 12], "one learner took the whole queue; the other found it empty"
        # The other instance takes up the stored version as it scores, and scores alike.
        scores = [await assess(runtime, PROBE) for runtime in (first, second)]
        assert scores[0].version == scores[1].version == 1
        assert scores[0].score == scores[1].score is not None
        # Each goes on from the checkpoint, whichever learned last: four more complete window two.
        for index in range(2):
            await assess(first, ordinary(20 + index))
        assert await learn(second) == 4
        assert await learn(first) == 0
        newer = [await assess(runtime, PROBE) for runtime in (first, second)]
        assert newer[0].version == newer[1].version == 2 and newer[0].score == newer[1].score
