"""`unbind chaos` end to end, at a size fit for CI: a stack of its own, every process SIGKILLed
twice and the broker restarted once while the flows run; the command's own checks (nothing lost,
nothing doubled, no PII) must all pass, and every planned fault must have happened."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import UNBIND, cli_env
from tools.services import APPS

FLOWS = 300


@pytest.mark.kafka
def test_no_unbind_is_lost_or_doubled_while_processes_die(tmp_path: Path) -> None:
    report_path = tmp_path / "chaos.json"
    result = subprocess.run(
        [str(UNBIND), "chaos", "--flows", str(FLOWS), "--seed", "7", "--chaos-dir", str(tmp_path / "run"),
            "--json", str(report_path)],
        capture_output=True, text=True, env=cli_env(), timeout=900, check=False,
    )  # fmt: skip
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["flows"] == FLOWS
    assert all(check["ok"] for check in report["checks"]), report["checks"]
    assert len(report["checks"]) >= 8
    happened = [fault["target"] for fault in report["faults"] if fault["happened_at"] is not None]
    assert sorted(happened) == sorted([*APPS, *APPS, "kafka"]), report["faults"]
    assert sum(report["outcomes"].values()) == FLOWS
    assert {"completed", "rejected", "cancelled"} <= set(report["outcomes"])
