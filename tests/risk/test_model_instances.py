"""Two risk instances on one database: their learners take turns on the checkpoint, nothing assessed
is learned twice or lost, and both score with the same version, so the same request gets the same
score whichever instance assesses it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from services.risk import service
from shared.app import ServiceRuntime
from tests.risk.test_rule_versions import requested
from tests.stack import Stack, auth, on_memory_bus

OPS = auth("ops-22", "ops")
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
# Learning only when the test says so: the background learner runs once at start, then sleeps an hour.
INSTANCE = {"model_window": 8, "model_train_seconds": 3600, "model_sync_seconds": 0.01}


async def assess(stack: Stack, request_id: str, **facts: Any) -> dict[str, Any]:
    """An instance assesses a new customer's request in its own transaction, as its consumer would."""
    runtime: ServiceRuntime = stack.runtime("risk")
    async with runtime.unit_of_work() as uow:
        await service.assess(uow, runtime.deps, requested(request_id, f"u-{request_id}", **facts).data)
    return (await stack.client("risk").get(f"/v1/assessments/{request_id}", headers=OPS)).json()


async def learn(stack: Stack) -> int:
    runtime: ServiceRuntime = stack.runtime("risk")
    async with runtime.unit_of_work() as uow:
        return await runtime.deps.model.learn(uow)


async def test_two_instances_learn_in_turns_and_score_with_the_same_version(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    def instance(name: str) -> Any:
        return on_memory_bus(
            database_urls,
            tmp_path / name,
            services=("risk",),
            overrides={"risk": INSTANCE},
            app_options={"risk": {"clock": lambda: NOON}},
        )

    async with instance("a") as first, instance("b") as second:
        await asyncio.sleep(0.1)  # each background learner's first round, with nothing to learn
        for index in range(12):  # a window and a half, assessed by both instances in turn
            await assess(first if index % 2 else second, f"r-{index}")
        learned = await asyncio.gather(learn(first), learn(second))
        assert sorted(learned) == [0, 12], "one learner took every assessment; the other found none left"
        # The other instance takes up the stored version as it scores, and scores alike.
        probes = [
            await assess(stack, f"r-probe-{name}", device_id="d-new")
            for name, stack in (("a", first), ("b", second))
        ]
        assert probes[0]["model_version"] == probes[1]["model_version"] == 1
        assert probes[0]["model_score"] == probes[1]["model_score"] is not None
        # Each goes on from the checkpoint, whichever learned last: two more complete window two.
        for index in range(2):
            await assess(first, f"r-more-{index}")
        assert await learn(second) == 4
        assert await learn(first) == 0
        newer = [
            await assess(stack, f"r-newer-{name}", device_id="d-new")
            for name, stack in (("a", first), ("b", second))
        ]
        assert newer[0]["model_version"] == newer[1]["model_version"] == 2
        assert newer[0]["model_score"] == newer[1]["model_score"]
