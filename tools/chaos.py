"""`unbind chaos`: N unbind flows through the whole stack while its processes are killed.

It starts a stack of its own (`unbind up` in a var dir of its own, with its own broker on free
ports), seeds N synthetic customers, and drives one flow per customer like the mobile app would,
mixing the paths: allow (SMS code), step_up (code + device biometric), review approved or denied by
ops, and cancel. While the flows run it kills every service process with SIGKILL twice (the
supervisor restarts them) and restarts the Kafka broker once, each at a random moment. Then it waits
for quiet and checks, from the services' databases and the topic:

- every request is in a terminal state, and the one its path leads to;
- exactly one UnbindCompleted (by event id) per completed request, and none for the others;
- every binding agrees with its requests (unbound iff a request completed, never left unbinding);
- one delivery per (event, channel, recipient); no outbox row left unsent;
- no event stuck outside the DLQ: every consumer group has committed to the end of the topic;
- no one-time code, full phone or account number in any event or log line (the PII scan).

It prints these figures and the time from the last fault to quiet, and exits 1 if a check fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from shared.cloudevents import Envelope, MalformedEvent
from shared.db import create_engine, create_session_factory
from shared.migrations import SERVICES
from tools import kafka, pii
from tools.device_simulator import DeviceSimulator
from tools.errors import InfraError
from tools.keys import TokenMinter
from tools.population import SyntheticCustomer, synthetic_customers
from tools.postgres import ensure_database
from tools.services import APPS, load_settings, seed_population
from tools.sms import SmsSink
from tools.stack import read_pid_file, service_ports, stack_ports

UNBIND = Path(sys.executable).with_name("unbind")
# Path mix: (kind, weight). The outcome each kind must end in is EXPECTED[kind].
MIX = (("allow", 40), ("step_up", 20), ("review_approve", 10), ("review_deny", 10), ("cancel", 20))
EXPECTED = {
    "allow": "completed",
    "step_up": "completed",
    "review_approve": "completed",
    "review_deny": "rejected",
    "cancel": "cancelled",
}
TERMINAL = frozenset({"completed", "rejected", "cancelled", "expired"})
RETRYABLE = frozenset({429, 500, 502, 503, 504})


@dataclass
class ChaosOptions:
    flows: int = 300
    concurrency: int = 40
    kills_per_service: int = 2
    broker_restarts: int = 1
    seed: int | None = None
    var_dir: Path | None = None
    database_url: str | None = None
    json_path: Path | None = None
    quiet_timeout: float = 300.0
    flow_timeout: float = 600.0


@dataclass
class Flow:
    kind: str
    customer: SyntheticCustomer
    request_id: str | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Fault:
    at_fraction: float
    target: str  # a service name, or "kafka"
    happened_at: float | None = None
    detail: str = ""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    flows: int
    kinds: dict[str, int]
    outcomes: dict[str, int]
    faults: list[dict[str, Any]]
    drive_seconds: float
    quiet_after_last_fault_seconds: float | None
    flows_per_second: float
    http_retries: int
    server_errors_seen: int
    flow_seconds_p50_p95: dict[str, list[float]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def say(message: str) -> None:
    print(f"{datetime.now():%H:%M:%S} chaos: {message}", flush=True)


def _free_port_pair() -> int:
    """A port whose successor is free too (the broker and its controller)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 65000:
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise InfraError("no two consecutive free ports found for the chaos broker")


def _free_offset() -> int:
    for _ in range(100):
        # Below the ephemeral range (32768+), where an outgoing connection could take a port first.
        offset = random.randrange(12000, 24000, 10)
        if all(_port_free(port) for port in stack_ports(offset).values()):
            return offset
    raise InfraError("no free block of service ports found for the chaos stack")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- the stack


class ChaosStack:
    """An `unbind up` of the chaos run's own, with its own broker, and the faults done to it."""

    def __init__(self, var_dir: Path, database_url: str | None):
        self.var_dir = var_dir
        self.database_url = database_url
        self.offset = _free_offset()
        self.kafka_port = _free_port_pair()
        self.ports = service_ports(self.offset)
        self.proc: subprocess.Popen[bytes] | None = None
        env = {
            k: v
            for k, v in os.environ.items()
            if k != "KAFKA_BOOTSTRAP_SERVERS" and not k.startswith("UNBIND_")
        }
        self.env = {
            **env,
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.kafka_port + 1),
            "UNBIND_ENV": "development",
        }
        if database_url:
            # Databases of this run's own on the server: the checks must see only its requests,
            # never those of an `unbind up` or an earlier run on the same server.
            run_tag = var_dir.name.replace("-", "_").lower()
            self.database_urls = {
                service: asyncio.run(ensure_database(database_url, f"chaos_{run_tag}_{service}"))
                for service in SERVICES
            }
            for service, url in self.database_urls.items():
                # The services read it from their environment, this process's checks from its own.
                self.env[f"UNBIND_{service.upper()}_DATABASE_URL"] = os.environ[
                    f"UNBIND_{service.upper()}_DATABASE_URL"
                ] = url
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def cluster(self) -> kafka.Cluster:
        """The run's broker, as its admin (once started: the var dir then holds its credentials)."""
        return kafka.admin_cluster(self.var_dir, self.bootstrap)

    def start(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        command = [str(UNBIND), "--var-dir", str(self.var_dir), "up", "--port-offset", str(self.offset)]
        if self.database_url:
            command += ["--database-url", self.database_url]
        with open(self.var_dir / "up.out", "ab") as output:
            self.proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 120
        while "unbind is up" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise InfraError(f"the chaos stack did not start:\n{self.output()[-3000:]}")
            time.sleep(0.2)

    def output(self) -> str:
        path = self.var_dir / "up.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, service: str) -> int | None:
        state = read_pid_file(self.var_dir) or {}
        return (state.get("services", {}).get(service) or {}).get("pid")

    async def kill(self, service: str) -> str:
        pid = self.pid(service)
        if pid is None:
            return "no pid recorded"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return f"SIGKILL pid {pid}"

    async def restart_broker(self) -> str:
        started = time.monotonic()
        await asyncio.to_thread(kafka.kafka_down, self.var_dir)
        await kafka.kafka_up_async(
            self.var_dir, port=self.kafka_port, controller_port=self.kafka_port + 1, topics=None
        )
        return f"stopped and started again in {time.monotonic() - started:.1f} s"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run(
            [str(UNBIND), "--var-dir", str(self.var_dir), "down"],
            env=self.env,
            capture_output=True,
            check=False,
            timeout=120,
        )


# --------------------------------------------------------------------------- the driver


class FlowError(Exception):
    pass


class Driver:
    """Drives flows over HTTP like the mobile app, retrying what a dying service refuses."""

    def __init__(self, stack: ChaosStack, client: httpx.AsyncClient, tokens: TokenMinter):
        self.stack = stack
        self.client = client
        self._tokens = tokens
        self.retries = 0
        self.server_errors = 0
        self.completed_flows = 0
        self.sms = SmsSink(stack.var_dir / "sms.jsonl")

    def auth(self, subject: str, role: str = "customer") -> dict[str, str]:
        return self._tokens.headers(subject, role)

    async def call(
        self, method: str, service: str, path: str, *, expect: set[int], deadline: float, **kwargs: Any
    ) -> httpx.Response:
        delay = 0.1
        while True:
            try:
                response = await self.client.request(method, self.stack.url(service) + path, **kwargs)
                if response.status_code in expect:
                    return response
                if response.status_code not in RETRYABLE:
                    raise FlowError(f"{method} {service}{path}: {response.status_code} {response.text[:300]}")
                if response.status_code >= 500:
                    self.server_errors += 1
            except httpx.TransportError:
                pass  # the service is being restarted
            self.retries += 1
            if time.monotonic() > deadline:
                raise FlowError(f"{method} {service}{path}: no answer in time")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def newest_code(
        self, phone: str, tried: set[str], deadline: float, verification_id: str, *, headers: dict[str, str]
    ) -> str:
        waited = time.monotonic()
        while True:
            self.sms.refresh()
            fresh = [code for code in self.sms.codes(phone) if code not in tried]
            if fresh:
                return fresh[-1]
            if time.monotonic() > deadline:
                raise FlowError("no one-time code arrived")
            if time.monotonic() - waited > 20:
                # Verification re-sends by itself when notification was down; ask as a customer would.
                await self.call(
                    "POST",
                    "verification",
                    f"/v1/verifications/{verification_id}/otp/resend",
                    expect={200, 202, 409, 429},
                    deadline=deadline,
                    headers=headers,
                )
                waited = time.monotonic()
            await asyncio.sleep(0.1)

    async def run(self, flow: Flow, timeout: float) -> None:
        started = time.monotonic()
        deadline = started + timeout
        customer = flow.customer
        headers = self.auth(customer.user_id)
        # The codes this flow has used: the enrolment's is not the unbind request's.
        tried: set[str] = set()
        device = None
        if flow.kind != "allow" and flow.kind != "cancel":
            device = await self.enrol(customer, headers, tried, deadline)
        if flow.kind.startswith("review"):
            changed = (datetime.now(UTC) - timedelta(days=3)).isoformat()
            profile = f"/internal/v1/profiles/{customer.user_id}"
            await self.call(
                "PUT",
                "risk",
                profile,
                expect={204},
                deadline=deadline,
                json={"phone_changed_at": changed},
                headers=self.auth("customer-system", "service"),
            )
        body: dict[str, Any] = {"reason": "fund_planning"}
        if device is not None:
            # Asked from a tablet risk has never seen (+40: step_up; with the phone change, review) and
            # confirmed with the key enrolled before: from the enrolled phone itself it would be a known
            # device.
            body["device_id"] = f"{device.device_id}-tablet"
        key = f"chaos-{customer.user_id}"
        accepted = await self.call(
            "POST",
            "binding",
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            expect={202},
            deadline=deadline,
            json=body,
            headers={**headers, "Idempotency-Key": key},
        )
        flow.request_id = request_id = accepted.json()["id"]
        if flow.kind == "cancel":
            if random.random() < 0.5:
                await self.wait_for(
                    request_id,
                    headers,
                    deadline,
                    lambda body: body.get("verification") is not None or body["status"] in TERMINAL,
                )
            await self.call(
                "POST",
                "binding",
                f"/v1/unbind-requests/{request_id}/cancel",
                expect={200, 409},
                deadline=deadline,
                headers=headers,
            )
        else:
            if flow.kind.startswith("review"):
                await self.decide_review(
                    request_id, "approve" if flow.kind == "review_approve" else "deny", deadline
                )
            if flow.kind != "review_deny":
                state = await self.wait_for(
                    request_id,
                    headers,
                    deadline,
                    lambda body: body.get("verification") is not None or body["status"] in TERMINAL,
                )
                if state["status"] not in TERMINAL:
                    await self.verify(
                        customer,
                        state["verification"]["id"],
                        headers,
                        tried,
                        deadline=deadline,
                        request_id=request_id,
                        device=device,
                    )
        await self.wait_for(request_id, headers, deadline, lambda body: body["status"] in TERMINAL)
        flow.seconds = time.monotonic() - started
        self.completed_flows += 1

    async def wait_for(
        self,
        request_id: str,
        headers: dict[str, str],
        deadline: float,
        done: Callable[[dict[str, Any]], bool],
    ) -> dict[str, Any]:
        # Polling backs off to 1 s: thousands of flows polling fast would be most of the load.
        pause = 0.1
        while True:
            body = (
                await self.call(
                    "GET",
                    "binding",
                    f"/v1/unbind-requests/{request_id}",
                    expect={200},
                    deadline=deadline,
                    headers=headers,
                )
            ).json()
            if done(body):
                return body
            if time.monotonic() > deadline:
                raise FlowError(f"request {request_id} stayed {body['status']}")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    async def decide_review(self, request_id: str, decision: str, deadline: float) -> None:
        ops = self.auth("ops-chaos", "ops")
        while True:
            queue = (
                await self.call(
                    "GET",
                    "risk",
                    "/v1/reviews?status=pending&limit=200",
                    expect={200},
                    deadline=deadline,
                    headers=ops,
                )
            ).json()["items"]
            review = next((item for item in queue if item["request_id"] == request_id), None)
            if review is not None:
                await self.claim_and_decide(review["id"], decision, deadline)
                return
            if time.monotonic() > deadline:
                raise FlowError(f"no review was opened for {request_id}")
            await asyncio.sleep(0.2)

    async def claim_and_decide(self, review_id: str, decision: str, deadline: float) -> None:
        """A reviewer claims the case and decides it with a reason from the list; a deny of a high score
        is only recorded (202) until a second reviewer confirms it. A retry after a lost answer meets
        four eyes (the first already recorded its deny: on to the second) or a closed case (done)."""
        decided = {
            "decision": decision,
            "reason": "identity_not_confirmed" if decision == "deny" else "false_positive",
        }
        for reviewer in ("rev-chaos-1", "rev-chaos-2"):
            headers, url = self.auth(reviewer, "reviewer"), f"/v1/reviews/{review_id}"
            answer = await self.call(
                "POST", "risk", f"{url}/claim", expect={200, 409}, deadline=deadline, headers=headers
            )
            if answer.status_code == 200:
                answer = await self.call(
                    "POST",
                    "risk",
                    f"{url}/decision",
                    expect={200, 202, 409},
                    deadline=deadline,
                    json=decided,
                    headers=headers,
                )
            if answer.status_code == 200 or (
                answer.status_code == 409 and not answer.json()["type"].endswith("/four-eyes")
            ):
                return
        raise FlowError(f"review {review_id} was still not decided by two reviewers")

    async def enrol(
        self, customer: SyntheticCustomer, headers: dict[str, str], tried: set[str], deadline: float
    ) -> DeviceSimulator:
        """A device key, active once the code of its own SMS is confirmed. A retried enrolment (the
        same key) answers with the same verification, so a lost answer costs nothing."""
        device = DeviceSimulator.generate(f"d-{customer.user_id}")
        enrolment = (
            await self.call(
                "POST",
                "verification",
                "/v1/devices",
                expect={202},
                deadline=deadline,
                json=device.enrolment(),
                headers=headers,
            )
        ).json()
        state = await self.verify(
            customer, enrolment["verification"]["id"], headers, tried, deadline=deadline
        )
        if state["status"] != "verified":
            raise FlowError(f"the enrolment of {device.device_id} ended {state['status']}")
        return device

    async def verify(
        self,
        customer: SyntheticCustomer,
        verification_id: str,
        headers: dict[str, str],
        tried: set[str],
        *,
        deadline: float,
        request_id: str = "",
        device: DeviceSimulator | None = None,
    ) -> dict[str, Any]:
        """Pass a verification (an unbind request's, or a device enrolment's); returns its final state."""
        path = f"/v1/verifications/{verification_id}"
        while True:
            state = (
                await self.call("GET", "verification", path, expect={200}, deadline=deadline, headers=headers)
            ).json()
            if state["status"] != "pending":
                return state
            if "otp" in state["methods"] and "otp" not in state["passed_methods"]:
                code = await self.newest_code(
                    customer.phone, tried, deadline, verification_id, headers=headers
                )
                tried.add(code)
                # 422: a newer code replaced this one (a re-send); the loop takes the newest.
                await self.call(
                    "POST",
                    "verification",
                    f"{path}/otp",
                    expect={200, 409, 422},
                    deadline=deadline,
                    json={"code": code},
                    headers=headers,
                )
            elif "biometric" in state["methods"] and "biometric" not in state["passed_methods"]:
                assert device is not None, "a biometric step needs the flow's device"
                challenge = (
                    await self.call(
                        "POST",
                        "verification",
                        f"{path}/biometric/challenge",
                        expect={200, 201},
                        deadline=deadline,
                        headers=headers,
                    )
                ).json()
                signed = device.sign(
                    challenge["challenge"], verification_id, request_id, challenge["impact_hash"]
                )
                await self.call(
                    "POST",
                    "verification",
                    f"{path}/biometric",
                    expect={200, 409, 422},
                    deadline=deadline,
                    json=signed,
                    headers=headers,
                )
            else:
                await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- faults


def plan_faults(kills_per_service: int, broker_restarts: int, rng: random.Random) -> list[Fault]:
    """Each service killed `kills_per_service` times, spread over the run (one kill per slice of
    it, so two kills of one service are apart), the broker restarted in the middle part."""
    faults = []
    for service in APPS:
        for slice_index in range(kills_per_service):
            low = 0.05 + 0.85 * slice_index / kills_per_service
            faults.append(Fault(rng.uniform(low, low + 0.85 / kills_per_service - 0.02), service))
    faults += [Fault(rng.uniform(0.25, 0.75), "kafka") for _ in range(broker_restarts)]
    return sorted(faults, key=lambda fault: fault.at_fraction)


async def inject(
    faults: list[Fault], stack: ChaosStack, driver: Driver, total: int, *, started: float
) -> None:
    for fault in faults:
        while driver.completed_flows < fault.at_fraction * total:  # noqa: ASYNC110 - polling a counter the flows bump
            await asyncio.sleep(0.05)
        fault.happened_at = time.monotonic() - started
        fault.detail = await (stack.restart_broker() if fault.target == "kafka" else stack.kill(fault.target))
        say(
            f"fault at {fault.happened_at:6.1f} s ({driver.completed_flows}/{total} flows done): "
            f"{fault.target}: {fault.detail}"
        )


# --------------------------------------------------------------------------- checks


async def _query(service: str, settings: Any, statement: Any) -> list[Any]:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with create_session_factory(engine)() as session:
            return list((await session.execute(statement)).all())
    finally:
        await engine.dispose()


async def outbox_backlog(settings: dict[str, Any]) -> dict[str, int]:
    backlog = {}
    for service in SERVICES:
        model = importlib.import_module(f"services.{service}.models").OutboxMessage
        backlog[service] = (
            await _query(
                service,
                settings[service],
                select(func.count()).select_from(model).where(model.published_at.is_(None)),
            )
        )[0][0]
    return backlog


async def wait_for_quiet(
    flows: list[Flow], settings: dict[str, Any], stack: ChaosStack, timeout: float
) -> float:
    """Seconds until every request is terminal, every outbox empty and every group at the end."""
    from services.binding.models import UnbindRequest

    started = time.monotonic()
    ids = [flow.request_id for flow in flows if flow.request_id]
    groups = [settings[service].consumer_group for service in SERVICES]
    while True:
        rows = await _query(
            "binding",
            settings["binding"],
            select(UnbindRequest.status, func.count())
            .where(UnbindRequest.id.in_(ids))
            .group_by(UnbindRequest.status),
        )
        open_requests = sum(count for status, count in rows if status not in TERMINAL)
        backlog = sum((await outbox_backlog(settings)).values())
        try:
            lag = sum((await kafka.consumer_lag(stack.cluster, settings["binding"].topic, groups)).values())
        except Exception:  # noqa: BLE001 - the broker may still be coming back
            lag = -1
        if open_requests == 0 and backlog == 0 and lag == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            say(
                f"not quiet after {timeout:.0f} s: {open_requests} open requests, {backlog} unsent outbox "
                f"rows, lag {lag}"
            )
            return time.monotonic() - started
        await asyncio.sleep(0.5)


async def run_checks(
    flows: list[Flow], settings: dict[str, Any], stack: ChaosStack
) -> tuple[list[Check], Counter[str]]:
    from services.binding.models import Binding, UnbindRequest
    from services.notification.models import Delivery

    checks: list[Check] = []
    by_request = {flow.request_id: flow for flow in flows if flow.request_id}
    statuses = dict(
        await _query(
            "binding",
            settings["binding"],
            select(UnbindRequest.id, UnbindRequest.status).where(UnbindRequest.id.in_(list(by_request))),
        )
    )
    outcomes = Counter(statuses.values())
    not_terminal = [rid for rid, status in statuses.items() if status not in TERMINAL]
    unrequested = [flow for flow in flows if not flow.request_id]
    checks.append(
        Check(
            "every request is in a terminal state",
            not not_terminal and not unrequested,
            f"{len(not_terminal)} open, {len(unrequested)} flows never got a request",
        )
    )
    wrong = [
        (flow.kind, statuses.get(flow.request_id))
        for flow in by_request.values()
        if statuses.get(flow.request_id) != EXPECTED[flow.kind]
    ]
    checks.append(
        Check(
            "every request ended as its path leads",
            not wrong,
            f"{len(wrong)} unexpected: {Counter(wrong).most_common(5)}",
        )
    )

    records = await kafka.read_topic(stack.cluster, settings["binding"].topic)
    completions: dict[str, set[str]] = {}
    malformed = 0
    for record in records:
        try:
            envelope = Envelope.from_record(record.value, record.headers)
        except MalformedEvent:
            malformed += 1
            continue
        if envelope.type == "UnbindCompleted":
            completions.setdefault(envelope.data.request_id, set()).add(envelope.id)
    completed = {rid for rid, status in statuses.items() if status == "completed"}
    twice = [rid for rid, ids in completions.items() if len(ids) > 1]
    missing = [rid for rid in completed if rid not in completions]
    stray = [rid for rid in completions if rid in statuses and rid not in completed]
    checks.append(
        Check(
            "exactly one UnbindCompleted per completed request, none for others",
            not twice and not missing and not stray,
            f"{len(completed)} completed; {len(twice)} doubled, {len(missing)} missing, {len(stray)} stray",
        )
    )

    bindings = dict(
        await _query(
            "binding",
            settings["binding"],
            select(Binding.id, Binding.status).where(
                Binding.id.in_([flow.customer.binding_id for flow in flows])
            ),
        )
    )
    expected_binding = {
        flow.customer.binding_id: "unbound" if statuses.get(flow.request_id) == "completed" else "active"
        for flow in by_request.values()
    }
    disagree = [
        binding_id for binding_id, status in expected_binding.items() if bindings.get(binding_id) != status
    ]
    checks.append(
        Check(
            "every binding agrees with its request", not disagree, f"{len(disagree)} disagree: {disagree[:5]}"
        )
    )

    key = (Delivery.event_id, Delivery.channel, Delivery.recipient)
    doubled = await _query(
        "notification", settings["notification"], select(*key).group_by(*key).having(func.count() > 1)
    )
    deliveries = (
        await _query("notification", settings["notification"], select(func.count()).select_from(Delivery))
    )[0][0]
    checks.append(
        Check(
            "one delivery per (event, channel, recipient)",
            not doubled,
            f"{deliveries} deliveries, {len(doubled)} doubled",
        )
    )

    backlog = await outbox_backlog(settings)
    checks.append(
        Check(
            "no outbox row left unsent",
            not any(backlog.values()),
            ", ".join(f"{service} {count}" for service, count in backlog.items()),
        )
    )

    groups = [settings[service].consumer_group for service in SERVICES]
    lag = await kafka.consumer_lag(stack.cluster, settings["binding"].topic, groups)
    dead = await kafka.read_topic(stack.cluster, settings["binding"].dlq_topic)
    checks.append(
        Check(
            "no event stuck outside the DLQ",
            not any(lag.values()),
            f"lag per group {lag}; {len(dead)} dead letters; {malformed} malformed records on the topic",
        )
    )

    secrets = pii.Secrets()
    for flow in flows:
        secrets.add_phone(flow.customer.phone)
        secrets.add_account_number(flow.customer.account_number)
    secrets.add_codes_from_sms_sink(stack.var_dir / "sms.jsonl")
    lines = [
        *pii.record_lines(settings["binding"].topic, records),
        *pii.record_lines(settings["binding"].dlq_topic, dead),
        *pii.log_lines(stack.var_dir / "logs"),
    ]
    findings = pii.scan(lines, secrets)
    checks.append(
        Check(
            "no code, phone or account number in events or logs",
            not findings,
            f"{len(lines)} lines scanned for {len(secrets.codes)} codes, {len(secrets.phones)} phones, "
            f"{len(secrets.account_numbers)} account numbers; "
            + (f"{len(findings)} findings, e.g. {findings[0]}" if findings else "none found"),
        )
    )
    return checks, outcomes


# --------------------------------------------------------------------------- the run


async def _drive(options: ChaosOptions, stack: ChaosStack, rng: random.Random) -> Report:
    settings = {service: load_settings(service, stack.var_dir, stack.database_url) for service in SERVICES}
    run_id = uuid.uuid4().hex[:8]
    customers = synthetic_customers(options.flows, run_id)
    await seed_population(stack.var_dir, stack.database_url, customers)
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    flows = [Flow(rng.choice(kinds), customer) for customer in customers]
    say(
        f"{len(flows)} flows: "
        + ", ".join(f"{kind} {count}" for kind, count in Counter(flow.kind for flow in flows).most_common())
    )
    faults = plan_faults(options.kills_per_service, options.broker_restarts, rng)
    limits = httpx.Limits(
        max_connections=options.concurrency * 2,
        max_keepalive_connections=options.concurrency,
        keepalive_expiry=2.0,
    )
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, connect=2.0), limits=limits, trust_env=False
    ) as client:
        driver = Driver(stack, client, TokenMinter(stack.var_dir))
        gate = asyncio.Semaphore(options.concurrency)

        async def one(flow: Flow) -> None:
            async with gate:
                try:
                    await driver.run(flow, options.flow_timeout)
                except FlowError as exc:
                    flow.error = str(exc)
                    driver.completed_flows += 1

        started = time.monotonic()
        injector = asyncio.create_task(inject(faults, stack, driver, len(flows), started=started))
        await asyncio.gather(*(one(flow) for flow in flows))
        drive_seconds = time.monotonic() - started
        with contextlib.suppress(asyncio.CancelledError):
            injector.cancel()
            await injector
    failed = [flow for flow in flows if flow.error]
    say(
        f"drive done in {drive_seconds:.1f} s; {len(failed)} flows reported an error"
        + (f", e.g. {failed[0].kind}: {failed[0].error}" if failed else "")
    )
    last_fault = max((fault.happened_at or 0.0 for fault in faults), default=0.0)
    quiet = await wait_for_quiet(flows, settings, stack, options.quiet_timeout)
    quiet_after_fault = (
        drive_seconds - last_fault + quiet if any(fault.happened_at for fault in faults) else None
    )
    checks, outcomes = await run_checks(flows, settings, stack)
    if failed:
        checks.insert(
            0,
            Check(
                "every flow ran to its end",
                False,
                f"{len(failed)} flows failed, e.g. {failed[0].kind}: {failed[0].error}",
            ),
        )
    return Report(
        flows=len(flows),
        kinds=dict(Counter(flow.kind for flow in flows)),
        outcomes=dict(outcomes),
        faults=[asdict(fault) for fault in faults],
        drive_seconds=round(drive_seconds, 2),
        quiet_after_last_fault_seconds=round(quiet_after_fault, 2) if quiet_after_fault is not None else None,
        flows_per_second=round(len(flows) / drive_seconds, 1),
        http_retries=driver.retries,
        server_errors_seen=driver.server_errors,
        flow_seconds_p50_p95={
            kind: _p50_p95([flow.seconds for flow in flows if flow.kind == kind and not flow.error])
            for kind, _ in MIX
        },
        checks=checks,
    )


def _p50_p95(values: list[float]) -> list[float]:
    ordered = sorted(values) or [0.0]
    return [
        round(ordered[len(ordered) // 2], 2),
        round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
    ]


def print_report(report: Report) -> None:
    print()
    print(
        f"chaos run: {report.flows} flows in {report.drive_seconds:.1f} s ({report.flows_per_second} "
        f"flows/s), paths {report.kinds}"
    )
    print(f"  outcomes        {report.outcomes}")
    print(
        f"  faults          {len(report.faults)}: "
        + ", ".join(
            f"{fault['target']}@{fault['happened_at']:.1f}s"
            for fault in report.faults
            if fault["happened_at"] is not None
        )
    )
    print(f"  quiet           {report.quiet_after_last_fault_seconds} s after the last fault")
    print(
        "  flow seconds    "
        + ", ".join(f"{kind} p50 {p50} p95 {p95}" for kind, (p50, p95) in report.flow_seconds_p50_p95.items())
    )
    print(f"  HTTP retries    {report.http_retries} (of which 5xx answers: {report.server_errors_seen})")
    for check in report.checks:
        print(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    print(f"\nchaos: {'all checks passed' if report.ok else 'CHECKS FAILED'}", flush=True)


def run(options: ChaosOptions) -> int:
    rng = random.Random(options.seed)
    var_dir = (options.var_dir or Path("var") / "chaos" / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    stack = ChaosStack(var_dir, options.database_url)
    say(f"starting a stack in {var_dir} (services on {stack.url('binding')}..., broker {stack.bootstrap})")
    try:
        stack.start()
        report = asyncio.run(_drive(options, stack, rng))
    finally:
        stack.stop()
    print_report(report)
    if options.json_path:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        options.json_path.write_text(json.dumps(asdict(report) | {"ok": report.ok}, indent=2, default=str))
    return 0 if report.ok else 1
