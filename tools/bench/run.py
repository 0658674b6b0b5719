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
5. Prints the figures and writes tools/bench/results/<timestamp>.json and a PNG chart beside it;
   with `--profile`, a py-spy flame graph (SVG) of each service while the workflows ran, too.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tools.bench.ceilings import commit_ceiling, committed_transactions, kafka_ceiling
from tools.bench.driver import Customers, Timeline, TopicWatcher, WorkflowFailed
from tools.errors import InfraError
from tools.keys import TokenMinter
from tools.population import synthetic_customers
from tools.running import RunningStack, check_running, find_running_stack
from tools.services import load_settings, seed_population

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = {
    "requested→assessed": ("UnbindRequested", "RiskAssessed"),
    "assessed→verification_issued": ("RiskAssessed", "VerificationRequested"),
    "verification_issued→verified": ("VerificationRequested", "Verified"),
    "verified→completed": ("Verified", "UnbindCompleted"),
    "requested→completed": ("UnbindRequested", "UnbindCompleted"),
}


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


def percentiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None}
    return {
        f"p{q}": round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000, 1)
        for q in (50, 95, 99)
    }


class Progress:
    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.failed = 0
        self.started = time.perf_counter()
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def tick(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += failed
        now = time.perf_counter()
        if now - self._last >= (0.2 if self._tty else 5.0) or self.done == self.total:
            self._last = now
            width = 30
            filled = int(width * self.done / self.total)
            rate = self.done / max(now - self.started, 1e-9)
            line = (
                f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} workflows, {rate:.0f}/s, "
                f"{self.failed} failed"
            )
            print(
                ("\r" + line) if self._tty else line,
                end="" if self._tty and self.done < self.total else "\n",
                file=sys.stderr,
                flush=True,
            )


# Processes `unbind up` runs in place of another party (the development lender): measured, reported
# apart, and counted in no total of the project's services.
STAND_INS = frozenset({"lender"})


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


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far by each service process, by this process and by the whole machine."""

    services: dict[str, float]
    bench: float
    machine_busy: float
    machine_total: float
    at: float

    @classmethod
    def take(cls, pids: dict[str, int]) -> CpuSnapshot:
        ticks = os.sysconf("SC_CLK_TCK")
        services = {}
        for service, pid in pids.items():
            try:
                # utime and stime are fields 14 and 15; the command name before them may hold spaces.
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                services[service] = (int(fields[11]) + int(fields[12])) / ticks
            except (OSError, IndexError, ValueError):
                continue
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = [int(value) / ticks for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = cpu[3] + cpu[4]  # idle and iowait
        return cls(services, usage.ru_utime + usage.ru_stime, sum(cpu) - idle, sum(cpu), time.monotonic())


def cpu_budget(before: CpuSnapshot, after: CpuSnapshot, workflows: int) -> dict[str, Any]:
    """CPU ms per workflow of each part, and how busy the machine's cores were between the snapshots."""
    if not workflows:
        return {}
    per_workflow = {
        service: round((after.services[service] - before.services[service]) * 1000 / workflows, 1)
        for service in after.services
        if service in before.services
    }
    services_total = sum(value for service, value in per_workflow.items() if service not in STAND_INS)
    stand_ins_total = sum(value for service, value in per_workflow.items() if service in STAND_INS)
    bench = round((after.bench - before.bench) * 1000 / workflows, 1)
    machine = round((after.machine_busy - before.machine_busy) * 1000 / workflows, 1)
    return {
        "ms_per_workflow": {
            **per_workflow,
            "services": round(services_total, 1),
            "bench": bench,
            "kafka_postgres_kernel": round(machine - services_total - stand_ins_total - bench, 1),
            "machine": machine,
        },
        "cores": os.cpu_count(),
        "machine_busy": round(
            (after.machine_busy - before.machine_busy)
            / max(after.machine_total - before.machine_total, 1e-9),
            3,
        ),
    }


class Profilers:
    """py-spy sampling each service while the workflows run; stopping writes one flame graph (SVG)
    per service. Sampling costs the services a little CPU, which the report's figures include."""

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
            command += ["--output", str(svg), "--nonblocking", "--rate", "100"]
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
    watcher = TopicWatcher(stack.cluster, stack.topic)
    await watcher.start()
    watching = asyncio.create_task(watcher.run())
    # keepalive_expiry below uvicorn's 5 s: never reuse a connection the server is closing.
    limits = httpx.Limits(
        max_connections=options.concurrency,
        max_keepalive_connections=options.concurrency,
        keepalive_expiry=2.0,
    )
    failures: Counter[str] = Counter()
    request_ids: list[str] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits, trust_env=False) as client:
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
        progress = Progress(len(customers))
        gate = asyncio.Semaphore(options.concurrency)

        async def workflow(customer: Any) -> None:
            try:
                request_ids.append(await players.unbind(customer, devices.get(customer.user_id)))
                progress.tick()
            except (WorkflowFailed, TimeoutError, httpx.HTTPError) as exc:
                failures[type(exc).__name__ + ": " + str(exc)[:120]] += 1
                progress.tick(failed=True)
            finally:
                gate.release()

        commits_before = await committed_transactions(settings.database_url)
        if profilers is not None:
            profilers.start()
        cpu_before = CpuSnapshot.take(stack.pids)
        started = time.perf_counter()
        tasks = []
        for index, customer in enumerate(customers):
            if options.rate:
                await asyncio.sleep(max(0.0, started + index / options.rate - time.perf_counter()))
            await gate.acquire()
            tasks.append(asyncio.create_task(workflow(customer)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        cpu_after = CpuSnapshot.take(stack.pids)
        flame_graphs = await asyncio.to_thread(profilers.stop) if profilers is not None else {}
    watching.cancel()
    await asyncio.gather(watching, return_exceptions=True)
    await watcher.stop()
    timelines = [watcher.timelines[request_id] for request_id in request_ids]
    # PostgreSQL publishes a backend's counts within a second of its last commit.
    await asyncio.sleep(1.5)
    commits_after = await committed_transactions(settings.database_url)
    commits = (
        commits_after - commits_before if commits_before is not None and commits_after is not None else None
    )
    return {
        "elapsed": elapsed,
        "timelines": timelines,
        "failures": failures,
        "transport_retries": players.transport_retries,
        "codes_replaced": players.codes_replaced,
        "cpu": cpu_budget(cpu_before, cpu_after, len(request_ids)),
        "commits_per_workflow": round(commits / len(request_ids), 1)
        if commits is not None and request_ids
        else None,
        "watcher": watcher,
        "run_id": run_id,
        "flame_graphs": flame_graphs,
    }


def summarize(
    options: BenchOptions, stack: RunningStack, driven: dict[str, Any], ceilings: dict[str, Any]
) -> dict[str, Any]:
    timelines: list[Timeline] = driven["timelines"]
    completed = [timeline for timeline in timelines if "UnbindCompleted" in timeline.times]
    stage_seconds = {
        name: [
            (t.times[end] - t.times[start]).total_seconds()
            for t in completed
            if start in t.times and end in t.times
        ]
        for name, (start, end) in STAGES.items()
    }
    # Throughput measured on the events' clock: first request to last completion.
    first = min((t.times["UnbindRequested"] for t in completed), default=None)
    last = max((t.times["UnbindCompleted"] for t in completed), default=None)
    span = (last - first).total_seconds() if first and last else driven["elapsed"]
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
        "latency_ms": {name: percentiles(values) for name, values in stage_seconds.items()},
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
        "series": _series(completed),
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
    print(f"  throughput        {report['completed_per_second']} completed workflows/s")
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
    if cpu := report["cpu"]:
        print(f"  CPU ms/workflow   {cpu['ms_per_workflow']}")
        print(
            f"  machine busy      {cpu['machine_busy']:.0%} of {cpu['cores']} cores while the workflows ran"
        )
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
        ceilings: dict[str, Any] = {}
        if options.ceilings:
            print("bench: measuring the raw ceilings", file=sys.stderr)
            size = max(64, driven["watcher"].bytes_seen // max(driven["watcher"].records_seen, 1))
            ceilings["kafka"] = await kafka_ceiling(stack.cluster, size)
            ceilings["database"] = await commit_ceiling(
                load_settings("binding", options.var_dir, stack.database_server_url).database_url
            )
        return summarize(options, stack, driven, ceilings)

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
