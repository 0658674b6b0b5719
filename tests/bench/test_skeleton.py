"""The bench's skeleton keeps the real services' consumer groups and subscriptions, its databases
beside theirs, and reports its throughput on the events' clock as the stack's is."""

from __future__ import annotations

import importlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.events import RiskAssessed, UnbindRequested, Verified
from shared.migrations import SERVICES
from tools.bench import skeleton
from tools.bench.driver import Played, Timeline
from tools.running import RunningStack

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("service", SERVICES)
def test_each_group_subscribes_to_the_real_services_types(service: str) -> None:
    real = importlib.import_module(f"services.{service}.main").SUBSCRIPTIONS
    subscribed = skeleton.subscriptions(service)
    assert set(subscribed) == set(real)
    chain = {
        event_type: handler for event_type, handler in subscribed.items() if handler is not skeleton.ignore
    }
    assert (
        chain
        == {
            "binding": {Verified: skeleton.complete},
            "verification": {RiskAssessed: skeleton.issue},
            "risk": {UnbindRequested: skeleton.assess},
            "notification": {},
        }[service]
    )


def stack_on(server: str | None) -> RunningStack:
    return RunningStack({}, "", "", Path("sms.jsonl"), database_server_url=server)


def test_databases_are_the_skeletons_own_beside_the_stacks(tmp_path: Path) -> None:
    on_server = skeleton.database_urls(stack_on("postgresql+asyncpg://postgres:pw@127.0.0.1:55432"), tmp_path)
    assert on_server == {
        service: f"postgresql+asyncpg://postgres:pw@127.0.0.1:55432/unbind_skeleton_{service}"
        for service in SERVICES
    }
    assert skeleton.database_urls(stack_on(None), tmp_path) == {
        service: f"sqlite+aiosqlite:///{tmp_path / f'{service}.db'}" for service in SERVICES
    }


def timeline(requested_after: float, completed_after: float) -> Timeline:
    return Timeline(
        times={
            "UnbindRequested": START + timedelta(seconds=requested_after),
            "UnbindCompleted": START + timedelta(seconds=completed_after),
        }
    )


def test_the_report_counts_completions_over_the_events_own_span() -> None:
    played = Played(["r1", "r2"], Counter({"WorkflowFailed: refused": 1}), elapsed=9.0, cpu={})
    report = skeleton.skeleton_report(played, [timeline(0, 1.5), timeline(0.5, 4.0)])
    assert (report["workflows"], report["completed"], report["failed"]) == (3, 2, 1)
    # First request to last completion, not the driver's 9 s.
    assert report["seconds"] == 4.0 and report["completed_per_second"] == 0.5
    # Each workflow timed from its request to its completion, on the events' clock.
    assert report["latency_ms"]["requested→completed"] == {"p50": 3500.0, "p95": 3500.0, "p99": 3500.0}
