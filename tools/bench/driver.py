"""The bench's customers: each asks to unbind over HTTP like the mobile app, reads its code from the
SMS sink, submits it (and passes the biometric on the step-up path), and is done when its
UnbindCompleted is on the topic. Progress comes from the topic, not from polling the API, so the
bench adds two or three HTTP calls per workflow and nothing else.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.cloudevents import Envelope, MalformedEvent
from shared.events import BindingEvent
from tools.bench.cpu import CpuSnapshot, cpu_budget
from tools.device_simulator import DeviceSimulator
from tools.kafka import Cluster, partitions_of
from tools.keys import TokenMinter
from tools.population import SyntheticCustomer
from tools.running import RunningStack
from tools.sms import SmsSink

TRANSPORT_RETRIES = 3
# How long a customer whose code was refused waits for the SMS that replaced it: verification sends
# a new code when notification did not confirm the last one (after a 2 s backoff, doubling).
REPLACED_CODE_WAIT = 20.0


class WorkflowFailed(Exception):
    pass


@dataclass
class Timeline:
    """What the topic said about one request: each event type's time, and the verification."""

    times: dict[str, datetime] = field(default_factory=dict)
    verification: tuple[str, list[str]] | None = None
    issued: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    events: int = 0


class TopicWatcher:
    """Reads the topic from its end at start, keeping every request's timeline."""

    ENDINGS = frozenset({"UnbindCompleted", "UnbindRejected", "UnbindCancelled", "UnbindExpired"})

    def __init__(self, cluster: Cluster, topic: str):
        self._cluster = cluster
        self._topic = topic
        self.timelines: dict[str, Timeline] = defaultdict(Timeline)
        self.bytes_seen = 0
        self.records_seen = 0
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._cluster.client_options(), enable_auto_commit=False, client_id="unbind-bench"
        )
        await consumer.start()
        partitions = [
            TopicPartition(self._topic, number)
            for number in sorted(await partitions_of(consumer, self._topic))
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, before any workflow starts
            await consumer.position(tp)
        self._consumer = consumer

    async def run(self) -> None:
        assert self._consumer is not None
        while True:
            for records in (await self._consumer.getmany(timeout_ms=100, max_records=5000)).values():
                for record in records:
                    self._apply(record)

    def _apply(self, record: Any) -> None:
        self.records_seen += 1
        self.bytes_seen += len(record.value or b"")
        try:
            envelope = Envelope.from_record(record.value, record.headers)
        except MalformedEvent:
            return
        if not isinstance(envelope.data, BindingEvent):
            return  # about a customer's device key: part of no request's timeline
        timeline = self.timelines[envelope.data.request_id]
        timeline.events += 1
        timeline.times.setdefault(envelope.type, envelope.time)
        if envelope.type == "VerificationRequested":
            timeline.verification = (
                envelope.data.verification_id,
                [str(method) for method in envelope.data.methods],
            )
            timeline.issued.set()
        if envelope.type in self.ENDINGS:
            timeline.ended.set()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


@asynccontextmanager
async def watching(cluster: Cluster, topic: str) -> AsyncIterator[TopicWatcher]:
    """A TopicWatcher reading `topic` from its end while the block runs."""
    watcher = TopicWatcher(cluster, topic)
    await watcher.start()
    reading = asyncio.create_task(watcher.run())
    try:
        yield watcher
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await watcher.stop()


STAGES = {
    "requested→assessed": ("UnbindRequested", "RiskAssessed"),
    "assessed→verification_issued": ("RiskAssessed", "VerificationRequested"),
    "verification_issued→verified": ("VerificationRequested", "Verified"),
    "verified→completed": ("Verified", "UnbindCompleted"),
    "requested→completed": ("UnbindRequested", "UnbindCompleted"),
}


def percentiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None}
    return {
        f"p{q}": round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000, 1)
        for q in (50, 95, 99)
    }


def stage_latencies(completed: list[Timeline]) -> dict[str, dict[str, float | None]]:
    """p50, p95 and p99 in ms of each stage (STAGES) of the completed workflows, on the events' clock."""
    return {
        name: percentiles(
            [
                (t.times[end] - t.times[start]).total_seconds()
                for t in completed
                if start in t.times and end in t.times
            ]
        )
        for name, (start, end) in STAGES.items()
    }


def completed_within(timelines: list[Timeline], elapsed: float) -> tuple[list[Timeline], float]:
    """The timelines that reached UnbindCompleted, and the seconds from the first request to the last
    completion on the events' own clock (`elapsed`, the driver's, when none completed)."""
    completed = [timeline for timeline in timelines if "UnbindCompleted" in timeline.times]
    if not completed:
        return completed, elapsed
    first = min(timeline.times["UnbindRequested"] for timeline in completed)
    last = max(timeline.times["UnbindCompleted"] for timeline in completed)
    return completed, (last - first).total_seconds()


def customer_client(concurrency: int) -> httpx.AsyncClient:
    """The HTTP client of `concurrency` customers at once."""
    # keepalive_expiry below uvicorn's 5 s: never reuse a connection the server is closing.
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0
    )
    return httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits, trust_env=False)


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


@dataclass
class Played:
    """What driving the workflows gave: the request ids of those that completed, why the others
    failed, how long it took and the CPU the measured processes used meanwhile (cpu_budget)."""

    request_ids: list[str]
    failures: Counter[str]
    elapsed: float
    cpu: dict[str, Any]


async def play_all(
    customers: list[SyntheticCustomer],
    play: Callable[[SyntheticCustomer], Awaitable[str]],
    pids: dict[str, int],
    *,
    concurrency: int,
    rate: float | None,
) -> Played:
    """One workflow per customer (`play` returns its request id), `rate` new ones a second or as
    fast as `concurrency` in flight allows, with a progress bar; the CPU of the processes `pids`
    is measured from the first workflow's start to the last one's end."""
    progress = Progress(len(customers))
    gate = asyncio.Semaphore(concurrency)
    failures: Counter[str] = Counter()
    request_ids: list[str] = []

    async def workflow(customer: SyntheticCustomer) -> None:
        try:
            request_ids.append(await play(customer))
            progress.tick()
        except (WorkflowFailed, TimeoutError, httpx.HTTPError) as exc:
            failures[type(exc).__name__ + ": " + str(exc)[:120]] += 1
            progress.tick(failed=True)
        finally:
            gate.release()

    cpu_before = CpuSnapshot.take(pids)
    started = time.perf_counter()
    tasks = []
    for index, customer in enumerate(customers):
        if rate:
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
        await gate.acquire()
        tasks.append(asyncio.create_task(workflow(customer)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    cpu_after = CpuSnapshot.take(pids)
    return Played(request_ids, failures, elapsed, cpu_budget(cpu_before, cpu_after, len(request_ids)))


class Customers:
    """Plays the customers' side of each workflow."""

    def __init__(
        self,
        stack: RunningStack,
        client: httpx.AsyncClient,
        watcher: TopicWatcher,
        tokens: TokenMinter,
        *,
        timeout: float,
    ):
        self.stack = stack
        self.client = client
        self.watcher = watcher
        self.sms = SmsSink(stack.sms_sink)
        self._tokens = tokens
        self.timeout = timeout
        self.transport_retries = 0
        self.codes_replaced = 0

    def _auth(self, user_id: str) -> dict[str, str]:
        # The app names the phone's language on every call.
        return {**self._tokens.headers(user_id), "Accept-Language": "zh-CN"}

    async def _post(
        self, service: str, path: str, expect: int, *, idempotent: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        for _ in range(TRANSPORT_RETRIES):
            try:
                response = await self.client.post(self.stack.urls[service] + path, **kwargs)
                break
            except httpx.TransportError:
                # Like the app: a request with an Idempotency-Key is sent again when the connection drops.
                if not idempotent:
                    raise
                self.transport_retries += 1
        else:
            raise WorkflowFailed(f"POST {service}{path}: no answer after {TRANSPORT_RETRIES} attempts")
        if response.status_code != expect:
            raise WorkflowFailed(f"POST {service}{path}: {response.status_code} {response.text[:200]}")
        return response.json()

    async def enrol(self, customer: SyntheticCustomer) -> DeviceSimulator:
        """A new device key, active once the code of its own SMS is confirmed."""
        device = DeviceSimulator.generate(f"d-{customer.user_id}")
        headers = self._auth(customer.user_id)
        sent = self._codes_sent(customer.phone)
        enrolment = await self._post(
            "verification", "/v1/devices", 202, json=device.enrolment(), headers=headers
        )
        await self._type_code(
            f"/v1/verifications/{enrolment['verification']['id']}/otp",
            customer.phone,
            after=sent,
            headers=headers,
        )
        return device

    async def unbind(self, customer: SyntheticCustomer, device: DeviceSimulator | None) -> str:
        """One workflow to UnbindCompleted; returns its request id."""
        headers = self._auth(customer.user_id)
        body: dict[str, Any] = {"reason": "fund_planning"}
        if device is not None:
            # Asked from a tablet risk has never seen (+40: step_up) and confirmed with the key enrolled
            # before: from the enrolled phone itself it would be a known device, and allowed.
            body["device_id"] = f"{device.device_id}-tablet"
        sent = self._codes_sent(customer.phone)
        request = await self._post(
            "binding",
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            202,
            json=body,
            headers={**headers, "Idempotency-Key": f"bench-{customer.user_id}"},
            idempotent=True,
        )
        timeline = self.watcher.timelines[request["id"]]
        async with asyncio.timeout(self.timeout):
            await timeline.issued.wait()
            assert timeline.verification is not None
            verification_id, methods = timeline.verification
            path = f"/v1/verifications/{verification_id}"
            if "otp" in methods:
                await self._type_code(f"{path}/otp", customer.phone, after=sent, headers=headers)
            if "biometric" in methods:
                if device is None:
                    raise WorkflowFailed(f"risk asked {customer.user_id} for a biometric without a device")
                challenge = await self._post(
                    "verification", f"{path}/biometric/challenge", 201, headers=headers
                )
                signed = device.sign(
                    challenge["challenge"], verification_id, request["id"], challenge["impact_hash"]
                )
                await self._post("verification", f"{path}/biometric", 200, json=signed, headers=headers)
            await timeline.ended.wait()
        if "UnbindCompleted" not in timeline.times:
            raise WorkflowFailed(f"request {request['id']} ended with {sorted(timeline.times)}")
        return request["id"]

    async def _type_code(self, path: str, phone: str, *, after: int, headers: dict[str, str]) -> None:
        """Submit the newest code. When notification's answer was lost, verification sends a new code
        that replaces one the customer may already hold: like a customer reading the second SMS, a
        refused code is typed again from the newer SMS, if one comes."""
        while True:
            code = await self._code(phone, after=after)
            typed = len(self.sms.codes(phone))
            response = await self.client.post(
                self.stack.urls["verification"] + path, json={"code": code}, headers=headers
            )
            if response.status_code == 200:
                return
            if response.status_code != 422 or not await self._replaced(phone, typed):
                raise WorkflowFailed(f"POST verification{path}: {response.status_code} {response.text[:200]}")
            self.codes_replaced += 1
            after = typed

    async def _replaced(self, phone: str, typed: int) -> bool:
        """Whether a code newer than the first `typed` reaches the phone in time."""
        try:
            async with asyncio.timeout(REPLACED_CODE_WAIT):
                await self._code(phone, after=typed)
        except TimeoutError:
            return False
        return True

    def _codes_sent(self, phone: str) -> int:
        self.sms.refresh()
        return len(self.sms.codes(phone))

    async def _code(self, phone: str, *, after: int) -> str:
        """The newest code, once more than `after` codes were sent to the phone."""
        while True:
            self.sms.refresh()
            if len(codes := self.sms.codes(phone)) > after:
                return codes[-1]
            await asyncio.sleep(0.01)
