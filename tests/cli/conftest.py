"""Helpers for the `unbind` command's tests: a clean environment, the console script, free ports."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli.errors import port_in_use
from shared.cli.stack import service_ports

# The console script pyproject declares, installed beside the interpreter running the tests.
UNBIND = Path(sys.executable).with_name("unbind")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell may set UNBIND_* or KAFKA_BOOTSTRAP_SERVERS; these tests set their own."""
    for name in list(os.environ):
        if name.startswith("UNBIND_") or name in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT"):
            monkeypatch.delenv(name)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for an `unbind` subprocess: this (cleaned) one plus `extra`."""
    return {**os.environ, **extra}


def run_unbind(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert UNBIND.is_file(), f"{UNBIND} is missing: install the project (`make install`)"
    return subprocess.run([str(UNBIND), *args], capture_output=True, text=True, env=env or cli_env(), timeout=timeout, check=False)


def free_port_offset() -> int:
    """An offset putting every service port on a free port, far from a developer's 8001-8005."""
    for _ in range(50):
        offset = random.randrange(20000, 40000, 10)
        if not any(port_in_use(port) for port in service_ports(offset).values()):
            return offset
    raise AssertionError("no free block of service ports found")
