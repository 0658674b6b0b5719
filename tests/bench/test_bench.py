"""A smoke run of `unbind bench` against a real `unbind up`: it drives every workflow to the end
and writes its report, chart and flame graphs. It asserts no speed: benchmarks measure, they are
not timed tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import run_unbind, unbind_up
from tools.kafka import Cluster

WORKFLOWS = 150


@pytest.mark.kafka
@pytest.mark.alone
def test_bench_drives_every_workflow_and_writes_its_report(kafka_cluster: Cluster, tmp_path: Path) -> None:
    with unbind_up(kafka_cluster, tmp_path) as up:
        offset = up.ports["binding"] - 8001
        report_path = tmp_path / "bench.json"
        args = (
            "--var-dir",
            str(up.var_dir),
            "bench",
            "--workflows",
            str(WORKFLOWS),
            "--step-up",
            "0.2",
            "--port-offset",
            str(offset),
            "--json",
            str(report_path),
            "--profile",
        )
        result = run_unbind(*args, env=up.env, timeout=600)
        print(result.stdout)
        assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert (report["completed"], report["failed"]) == (WORKFLOWS, 0)
    assert report["completed_per_second"] > 0 and report["events_per_workflow"] >= 5
    assert set(report["latency_ms"]) == {
        "requested→assessed",
        "assessed→verification_issued",
        "verification_issued→verified",
        "verified→completed",
        "requested→completed",
    }
    assert all(values["p50"] is not None for values in report["latency_ms"].values())
    assert (
        report["ceilings"]["kafka"]["produce_and_consume_per_second"] > 0
        and report["ceilings"]["database"]["single_connection_per_second"] > 0
    )
    assert set(report["peak_rss_mb"]) == {"binding", "verification", "risk", "notification", "dashboard"}
    assert sum(report["series"]["completed"]) == WORKFLOWS
    cpu = report["cpu"]["ms_per_workflow"]
    # Every consuming service did work for the workflows, and the parts add up to the machine.
    assert all(cpu[service] > 0 for service in ("binding", "verification", "risk", "notification"))
    assert cpu["machine"] >= cpu["services"] + cpu["bench"] - 1 and 0 < report["cpu"]["machine_busy"] <= 1
    assert report["commits_per_workflow"] is None  # SQLite: no server-wide commit counter
    # Risk's anomaly model, read from risk's own metrics: a part of risk's CPU.
    assert 0 < report["risk_model_cpu_ms_per_request"] < cpu["risk"]
    # The skeleton ran as many workflows to their end, measured as the stack is.
    skeleton = report["skeleton"]
    assert (skeleton["workflows"], skeleton["completed"], skeleton["failed"]) == (WORKFLOWS, WORKFLOWS, 0)
    assert skeleton["completed_per_second"] > 0 and skeleton["latency_ms"]["requested→completed"]["p50"] > 0
    skeleton_cpu = skeleton["cpu_ms_per_workflow"]
    assert all(
        skeleton_cpu[process] > 0
        for process in ("binding", "verification", "risk", "notification", "services")
    )
    assert report["share_of_skeleton"] == pytest.approx(
        report["completed"] / report["seconds"] / skeleton["completed_per_second"], rel=0.01
    )
    assert report_path.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    # --profile: one py-spy flame graph per service, of samples taken while the workflows ran.
    assert set(report["flame_graphs"]) == set(report["peak_rss_mb"]) and report["profiled"]
    for svg in report["flame_graphs"].values():
        assert Path(svg).parent == tmp_path and "<svg" in Path(svg).read_text()[:2000]
