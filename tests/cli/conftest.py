"""Helpers for the `unbind` command's tests: a clean environment, the console script, free ports,
and a real `unbind up` on the test broker."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import KAFKA_CREDENTIALS
from tools.errors import port_in_use, process_cmdline
from tools.kafka import Cluster, EventTopics, prepare_topics
from tools.kafka_access import CREDENTIALS_ENV
from tools.stack import factory_path, pid_alive, stack_ports

# The console script pyproject declares, installed beside the interpreter running the tests.
UNBIND = Path(sys.executable).with_name("unbind")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell may set UNBIND_* or KAFKA_BOOTSTRAP_SERVERS; these tests set their own."""
    for name in list(os.environ):
        if name.startswith("UNBIND_") or name in (
            "KAFKA_BOOTSTRAP_SERVERS",
            "KAFKA_PORT",
            "KAFKA_CONTROLLER_PORT",
        ):
            monkeypatch.delenv(name)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for an `unbind` subprocess: this (cleaned) one plus `extra`."""
    return {**os.environ, **extra}


def run_unbind(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    assert UNBIND.is_file(), f"{UNBIND} is missing: install the project (`make install`)"
    return subprocess.run(
        [str(UNBIND), *args],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=timeout,
        check=False,
    )


def free_port_offset() -> int:
    """An offset putting every service port on a free port, far from a developer's 8001-8005."""
    for _ in range(50):
        # Ports 18001-32005: below Linux's ephemeral range (32768+), where any outgoing connection
        # could take a port between this check and the service binding it.
        offset = random.randrange(10000, 24000, 10)
        if not any(port_in_use(port) for port in stack_ports(offset).values()):
            return offset
    raise AssertionError("no free block of service ports found")


ZHANGSAN_PHONE = "+8613812345678"


def eventually(check: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout} s")
        time.sleep(0.1)


@dataclass
class RunningUp:
    """An `unbind up` subprocess and what it wrote."""

    proc: subprocess.Popen[bytes]
    var_dir: Path
    output_path: Path
    ports: dict[str, int]
    env: dict[str, str]

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def state(self) -> dict[str, Any]:
        return json.loads((self.var_dir / "unbind-up.pid").read_text())

    def service_pids(self) -> dict[str, int]:
        return {name: info["pid"] for name, info in self.state()["services"].items()}

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def ready(self, service: str) -> bool:
        try:
            return httpx.get(f"{self.url(service)}/readyz", timeout=1.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False


def broker_env(cluster: Cluster, **extra: str) -> dict[str, str]:
    """The environment of an `unbind` process on the test broker: as an external cluster whose
    principals' passwords are in the test broker's credentials file."""
    return cli_env(
        KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap, **{CREDENTIALS_ENV: str(KAFKA_CREDENTIALS)}, **extra
    )


@contextmanager
def unbind_up(cluster: Cluster, tmp_path: Path, *up_args: str) -> Iterator[RunningUp]:
    """Start `unbind up [up_args]` on fresh topics (with the services' ACLs); on exit make sure
    nothing it started survives."""
    suffix = uuid.uuid4().hex[:10]
    topic, dlq_topic = f"cli.{suffix}.events", f"cli.{suffix}.dlq"
    asyncio.run(prepare_topics(cluster, EventTopics(topic, dlq_topic)))
    offset = free_port_offset()
    var_dir = tmp_path / "var"
    env = broker_env(cluster, UNBIND_TOPIC=topic, UNBIND_DLQ_TOPIC=dlq_topic)
    output_path = tmp_path / "up.out"
    with open(output_path, "wb") as output:
        proc = subprocess.Popen(
            [str(UNBIND), "--var-dir", str(var_dir), "up", "--port-offset", str(offset), *up_args],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    running = RunningUp(proc, var_dir, output_path, stack_ports(offset), env)
    seen: set[int] = set()
    try:
        eventually(
            lambda: "unbind is up" in running.output() or proc.poll() is not None,
            60,
            "unbind up never reported ready",
        )
        assert proc.poll() is None, running.output()
        seen.update(running.service_pids().values())
        yield running
    finally:
        if (var_dir / "unbind-up.pid").exists():  # gone once the supervisor stopped cleanly
            seen.update(running.service_pids().values())
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in seen:
            if pid_alive(pid) and (
                "services." in process_cmdline(pid) or factory_path("lender") in process_cmdline(pid)
            ):
                os.kill(pid, signal.SIGKILL)
