"""`unbind bench [--workflows N] [--rate R] [--step-up FRACTION] [--json PATH]`, against the stack
that `unbind up` runs.

1. Seeds N synthetic customers, each with one active mortgage binding (a fresh run id each time).
2. Drives N workflows: at `--rate` new workflows per second, or as fast as `--concurrency` in
   flight allows; a `--step-up` fraction enrol a device key first, request from a tablet risk
   has never seen, and pass the biometric with that key too. A progress bar runs on stderr.
3. Times each request from the topic: the events' own times give request -> UnbindCompleted and
   each stage.
4. Measures, on the same broker and database, the raw ceilings (tools/bench/ceilings.py), each
   service's peak RSS (VmHWM), and where the CPU went while the workflows ran: CPU ms per
   workflow for each service, the bench itself and the whole machine (Kafka, PostgreSQL and the
   kernel are the rest), which shows what bounds the throughput.
5. Runs as many workflows through a skeleton of the same shape without business logic
   (tools/bench/skeleton.py) and reports its throughput, its CPU and the stack's share of it.
6. Prints the figures and writes tools/bench/results/<timestamp>.json and a PNG chart beside it;
   with `--profile`, a py-spy flame graph (SVG) of each service while the workflows ran, too.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tools.bench import skeleton
from tools.bench.ceilings import commit_ceiling, committed_transactions, kafka_ceiling
from tools.bench.cpu import STAND_INS
from tools.bench.driver import (
    Customers,
    Timeline,
    completed_within,
    customer_client,
    percentiles,
    play_all,
    stage_latencies,
    watching,
)
from tools.errors import InfraError
from tools.keys import TokenMinter
from tools.population import synthetic_customers
from tools.running import CUSTOMER_FACING, RunningStack, check_running, find_running_stack
from tools.services import load_settings, seed_population

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class BenchOptions:
    var_dir: Path
    workflows: int = 1000
    rate: float | None = None
    concurrency: int = 200
    step_up: float = 0.0
    json_path: Path | None = None
    port_offset: int | None = None
    timeout: float = 120.0
    ceilings: bool = True
    profile: bool = False
    skeleton: bool = True
    # Workflows through the skeleton (default: as many as through the stack).
    skeleton_workflows: int | None = None


def peak_rss_mb(pids: dict[str, int]) -> dict[str, float | None]:
    """Each service's peak resident set (VmHWM) so far, in MB."""
    result: dict[str, float | None] = {}
    for service, pid in sorted(pids.items()):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            kilobytes = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")
            )
            result[service] = round(kilobytes / 1024, 1)
        except (OSError, StopIteration, ValueError):
            result[service] = None
    return result


class Profilers:
    """py-spy sampling each service while the workflows run; stopping writes one flame graph (SVG)
    per service. 25 samples a second: at py-spy's default 100, the five samplers took most of a core
    from the box they measure (the report's figures include what sampling still costs)."""

    def __init__(self, pids: dict[str, int], prefix: Path):
        self._pids = {service: pid for service, pid in pids.items() if service not in STAND_INS}
        self._prefix = prefix
        self._running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self) -> None:
        py_spy = Path(sys.executable).with_name("py-spy")
        if not py_spy.exists():
            raise InfraError("--profile needs py-spy, which `make install` installs (the bench extra).")
        self._prefix.parent.mkdir(parents=True, exist_ok=True)
        for service, pid in self._pids.items():
            svg = self._prefix.with_name(f"{self._prefix.name}.{service}.svg")
            command = [str(py_spy), "record", "--pid", str(pid), "--format", "flamegraph"]
            command += ["--output", str(svg), "--nonblocking", "--rate", "25"]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self._running[service] = (process, svg)

    def stop(self) -> dict[str, str]:
        """Stop every recorder (SIGINT: py-spy then writes its SVG); the graphs written, by service."""
        for process, _ in self._running.values():
            process.send_signal(signal.SIGINT)
        written = {}
        for service, (process, svg) in self._running.items():
            try:
                _, errors = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                errors = b"timed out"
            if svg.exists():
                written[service] = str(svg)
            else:
                print(
                    f"bench: no flame graph of {service}: {errors.decode(errors='replace')[-300:]}",
                    file=sys.stderr,
                )
        return written


async def drive(
    options: BenchOptions, stack: RunningStack, profilers: Profilers | None = None
) -> dict[str, Any]:
    server_url = stack.database_server_url
    settings = load_settings("binding", options.var_dir, server_url)
    run_id = uuid.uuid4().hex[:8]
    customers = synthetic_customers(options.workflows, f"bench{run_id}")
    seeded = time.perf_counter()
    await seed_population(options.var_dir, server_url, customers)
    print(
        f"bench: seeded {len(customers)} customers in {time.perf_counter() - seeded:.1f} s", file=sys.stderr
    )
    async with (
        watching(stack.cluster, stack.topic) as watcher,
        customer_client(options.concurrency) as client,
    ):
        players = Customers(stack, client, watcher, TokenMinter(options.var_dir), timeout=options.timeout)
        rng = random.Random(run_id)
        step_up = {customer.user_id for customer in customers if rng.random() < options.step_up}
        enrolling = [customer for customer in customers if customer.user_id in step_up]
        devices = {
            customer.user_id: device
            for customer, device in zip(
                enrolling, await asyncio.gather(*map(players.enrol, enrolling)), strict=True
            )
        }
        commits_before = await committed_transactions(settings.database_url)
        model_before = await risk_model_cpu_seconds(stack)
        if profilers is not None:
            profilers.start()
        played = await play_all(
            customers,
            lambda customer: players.unbind(customer, devices.get(customer.user_id)),
            stack.pids,
            concurrency=options.concurrency,
            rate=options.rate,
        )
        flame_graphs = await asyncio.to_thread(profilers.stop) if profilers is not None else {}
        model_after = await risk_model_cpu_seconds(stack)
    timelines = [watcher.timelines[request_id] for request_id in played.request_ids]
    # PostgreSQL publishes a backend's counts within a second of its last commit.
    await asyncio.sleep(1.5)
    commits_after = await committed_transactions(settings.database_url)
    commits = (
        commits_after - commits_before if commits_before is not None and commits_after is not None else None
    )
    return {
        "elapsed": played.elapsed,
        "timelines": timelines,
        "failures": played.failures,
        "transport_retries": players.transport_retries,
        "codes_replaced": players.codes_replaced,
        "cpu": played.cpu,
        "commits_per_workflow": round(commits / len(played.request_ids), 1)
        if commits is not None and played.request_ids
        else None,
        "risk_model_cpu_ms_per_request": round(
            (model_after - model_before) * 1000 / len(played.request_ids), 3
        )
        if model_before is not None and model_after is not None and played.request_ids
        else None,
        "watcher": watcher,
        "run_id": run_id,
        "flame_graphs": flame_graphs,
    }


async def risk_model_cpu_seconds(stack: RunningStack) -> float | None:
    """The CPU risk's anomaly model has spent so far (features, scoring, explaining, learning), summed
    over the risk instances, from their own metrics; None when one does not answer."""
    total = 0.0
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        for name, url in stack.instance_urls.items():
            if name.partition("#")[0] != "risk":
                continue
            try:
                text = (await client.get(f"{url}/metrics")).text
            except httpx.HTTPError:
                return None
            total += sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "unbind_risk_model_cpu_seconds_total"
            )
    return total


def summarize(
    options: BenchOptions,
    stack: RunningStack,
    driven: dict[str, Any],
    ceilings: dict[str, Any],
    *,
    skeleton_figures: dict[str, Any] | None = None,
) -> dict[str, Any]:
    timelines: list[Timeline] = driven["timelines"]
    completed, span = completed_within(timelines, driven["elapsed"])
    events = sum(t.events for t in timelines)
    event_rate = events / span if span else 0.0
    kafka = ceilings.get("kafka") or {}
    return {
        "run_id": driven["run_id"],
        "at": datetime.now().isoformat(timespec="seconds"),
        "options": {
            "workflows": options.workflows,
            "rate": options.rate,
            "concurrency": options.concurrency,
            "step_up": options.step_up,
        },
        # Processes per service (`unbind up --instances`).
        "instances": max(
            sum(1 for name in stack.pids if name.partition("#")[0] == service) for service in CUSTOMER_FACING
        ),
        "database": load_settings("binding", options.var_dir, stack.database_server_url).database_url.split(
            ":", 1
        )[0],
        "completed": len(completed),
        "failed": sum(driven["failures"].values()),
        "failures": dict(driven["failures"].most_common(5)),
        "transport_retries": driven["transport_retries"],
        "codes_replaced": driven["codes_replaced"],
        "seconds": round(span, 2),
        "completed_per_second": round(len(completed) / span, 1) if span else None,
        "latency_ms": stage_latencies(completed),
        "events_per_workflow": round(events / len(timelines), 2) if timelines else None,
        "event_rate_per_second": round(event_rate, 1),
        "event_bytes_average": round(driven["watcher"].bytes_seen / max(driven["watcher"].records_seen, 1)),
        "ceilings": ceilings,
        "event_rate_vs_kafka_ceiling": round(event_rate / kafka["produce_and_consume_per_second"], 3)
        if kafka.get("produce_and_consume_per_second")
        else None,
        "peak_rss_mb": peak_rss_mb({name: pid for name, pid in stack.pids.items() if name not in STAND_INS}),
        "cpu": driven["cpu"],
        "profiled": bool(driven["flame_graphs"]),
        "flame_graphs": driven["flame_graphs"],
        "commits_per_workflow": driven["commits_per_workflow"],
        "risk_model_cpu_ms_per_request": driven["risk_model_cpu_ms_per_request"],
        "series": _series(completed),
        "skeleton": skeleton_figures,
        # The real stack's throughput as a share of the skeleton's in the same run.
        "share_of_skeleton": round(len(completed) / span / skeleton_figures["completed_per_second"], 3)
        if skeleton_figures and skeleton_figures["completed_per_second"] and span
        else None,
    }


def _series(completed: list[Timeline]) -> dict[str, list[float]]:
    """Per second of the run: completions, and p50/p95 request -> completed of those completions."""
    if not completed:
        return {"second": [], "completed": [], "p50_ms": [], "p95_ms": []}
    origin = min(t.times["UnbindRequested"] for t in completed)
    by_second: dict[int, list[float]] = {}
    for t in completed:
        second = int((t.times["UnbindCompleted"] - origin).total_seconds())
        by_second.setdefault(second, []).append(
            (t.times["UnbindCompleted"] - t.times["UnbindRequested"]).total_seconds()
        )
    seconds = list(range(max(by_second) + 1))
    return {
        "second": seconds,
        "completed": [len(by_second.get(s, [])) for s in seconds],
        "p50_ms": [percentiles(by_second[s])["p50"] if s in by_second else None for s in seconds],
        "p95_ms": [percentiles(by_second[s])["p95"] if s in by_second else None for s in seconds],
    }


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = report["series"]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot(series["second"], series["completed"], color="#15803d")
    top.set_ylabel("completed / s")
    top.set_title(f"unbind bench: {report['completed']} workflows, {report['completed_per_second']}/s")
    bottom.plot(series["second"], series["p50_ms"], label="p50", color="#2563eb")
    bottom.plot(series["second"], series["p95_ms"], label="p95", color="#b45309")
    bottom.set_ylabel("request → completed (ms)")
    bottom.set_xlabel("second of the run")
    bottom.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nunbind bench: {report['completed']} workflows completed, {report['failed']} failed, in "
        f"{report['seconds']} s ({report['database']})"
    )
    print(
        f"  throughput        {report['completed_per_second']} completed workflows/s"
        + (f" ({report['instances']} instances of each service)" if report["instances"] > 1 else "")
    )
    for name, values in report["latency_ms"].items():
        print(f"  {name:<30} p50 {values['p50']} ms · p95 {values['p95']} ms · p99 {values['p99']} ms")
    print(
        f"  events            {report['events_per_workflow']} per workflow, "
        f"{report['event_rate_per_second']}/s, {report['event_bytes_average']} bytes on average"
    )
    kafka, database = report["ceilings"].get("kafka"), report["ceilings"].get("database")
    if kafka:
        print(
            f"  kafka ceiling     {kafka['produce_and_consume_per_second']} msg/s produce+consume "
            f"({kafka['produce_per_second']} produce, {kafka['consume_per_second']} consume)"
        )
        print(f"  event rate / kafka ceiling  {report['event_rate_vs_kafka_ceiling']}")
    if database:
        print(f"  commit ceiling    {database}")
    print(f"  peak RSS (MB)     {report['peak_rss_mb']}")
    if report["commits_per_workflow"]:
        print(f"  DB commits        {report['commits_per_workflow']} per workflow (all services)")
    if report["risk_model_cpu_ms_per_request"] is not None:
        print(
            f"  risk model        {report['risk_model_cpu_ms_per_request']} ms CPU per request "
            f"(features, score, explanation, learning; part of risk's figure)"
        )
    if cpu := report["cpu"]:
        print(f"  CPU ms/workflow   {cpu['ms_per_workflow']}")
        if by_service := cpu.get("ms_per_workflow_by_service"):
            print(f"    by service      {by_service} (instances together)")
        print(
            f"  machine busy      {cpu['machine_busy']:.0%} of {cpu['cores']} cores while the workflows ran"
        )
    if figures := report["skeleton"]:
        share = report["share_of_skeleton"]
        print(
            f"  skeleton          {figures['completed_per_second']} completed workflows/s "
            f"({figures['completed']} of {figures['workflows']}, {figures['failed']} failed)"
            + (f": this stack does {share:.0%} of it" if share is not None else "")
        )
        end_to_end = figures["latency_ms"]["requested→completed"]
        print(
            f"  skeleton requested→completed p50 {end_to_end['p50']} ms · p95 {end_to_end['p95']} ms · "
            f"p99 {end_to_end['p99']} ms"
        )
        print(f"  skeleton CPU ms/workflow  {figures['cpu_ms_per_workflow']}")
    if report["transport_retries"]:
        print(f"  retried           {report['transport_retries']} requests whose connection dropped")
    if report["flame_graphs"]:
        print(f"  flame graphs      {', '.join(sorted(report['flame_graphs']))} (py-spy, while driving)")
    if report["codes_replaced"]:
        print(f"  codes replaced    {report['codes_replaced']} typed again from the SMS that replaced them")
    if report["failures"]:
        print(f"  failures          {report['failures']}")


def run(options: BenchOptions) -> int:
    stack = find_running_stack(options.var_dir, options.port_offset)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = options.json_path or RESULTS / f"{stamp}.json"
    profilers = Profilers(stack.pids, json_path.with_suffix("")) if options.profile else None

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False) as client:
            await check_running(client, stack, options.var_dir)
        driven = await drive(options, stack, profilers)
        skeleton_figures = (
            await skeleton.measure(
                stack,
                driven["run_id"],
                workflows=options.skeleton_workflows or options.workflows,
                concurrency=options.concurrency,
                rate=options.rate,
                timeout=options.timeout,
            )
            if options.skeleton
            else None
        )
        ceilings: dict[str, Any] = {}
        if options.ceilings:
            print("bench: measuring the raw ceilings", file=sys.stderr)
            size = max(64, driven["watcher"].bytes_seen // max(driven["watcher"].records_seen, 1))
            ceilings["kafka"] = await kafka_ceiling(stack.cluster, size)
            ceilings["database"] = await commit_ceiling(
                load_settings("binding", options.var_dir, stack.database_server_url).database_url
            )
        return summarize(options, stack, driven, ceilings, skeleton_figures=skeleton_figures)

    try:
        report = asyncio.run(main())
    except OSError as exc:
        raise InfraError(f"The bench could not reach the stack: {exc}") from None
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2))
    chart(report, json_path.with_suffix(".png"))
    print_report(report)
    print(f"  written           {json_path} and {json_path.with_suffix('.png').name}")
    return 0 if report["completed"] and not report["failed"] else 1
