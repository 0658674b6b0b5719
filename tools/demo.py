"""`unbind demo`: Zhang San's story, played live against a stack started by `unbind up`.

It does over HTTP what the walk-through (README.md, docs/demo.md) does with curl — impact, blockers,
the account report, the unbind request, the code from the SMS sink, the biometric with the device simulator,
an ops decision when risk asks for one — and meanwhile prints each event of this request as it
arrives on the topic, with the time since the request. Which path risk takes is steered only by
honest inputs (a new phone whose key he adds only when asked for it, a phone number that changed,
the customer's own history), never by touching the rules, and the demo follows whatever risk
actually decides. With `--pause` a second act follows: he binds another account and, offered the
impact's alternatives, pauses its auto-debit for two months instead of unbinding it (scored and
verified the same way).

The stack is found from the var dir's `unbind-up.pid` (service URLs, Kafka bootstrap), else on the
ports `--port-offset` names. Development only: it mints tokens with the development JWT secret and
reads one-time codes from the development SMS sink; it refuses to run with UNBIND_ENV=production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.binding.agreements import CURRENT as CURRENT_AGREEMENT
from services.notification.templates import CODE_IN_SMS
from shared.account_numbers import with_check_digit
from shared.cloudevents import Envelope, MalformedEvent
from shared.describe import describe_event, methods_text
from shared.events import (
    ReviewDecided,
    RiskAssessed,
    UnbindCompleted,
    VerificationRequested,
)
from shared.masking import mask_account_number, mask_phone
from tools.dev_lender import REFUSED_LAST4
from tools.device_simulator import DeviceSimulator
from tools.errors import InfraError
from tools.kafka import Cluster, partitions_of
from tools.keys import new_login_link, token
from tools.running import RunningStack, check_running, find_running_stack
from tools.stack import live_supervisor, read_pid_file

CUSTOMER = "u-zhangsan"
DEMO_BINDING = "b-zhangsan-mortgage"
# Zhang San's phone as the notification seed has it: the SMS sink is read for codes sent to it.
CUSTOMER_PHONE = "+8613812345678"
# Automatic steps (risk scoring, issuing the challenge, completion) take well under a second;
# far longer means a service is down or not consuming.
STEP_TIMEOUT = 30.0
HEARTBEAT = 30.0
# Events after which the request will not complete.
ENDINGS = frozenset({"UnbindRejected", "UnbindExpired", "UnbindCancelled", "VerificationFailed"})


@dataclass(frozen=True)
class DemoOptions:
    var_dir: Path
    step_up: bool = False
    review: bool = False
    approve: bool = False
    repay: bool = False
    timeout: float = 600.0
    port_offset: int | None = None
    # After the unbind, the gentler way: a fresh account whose auto-debit he pauses for two months.
    pause: bool = False

    @property
    def expected_decision(self) -> str:
        return "review" if self.review else "step_up" if self.step_up else "allow"

    @property
    def new_phone(self) -> bool:
        # The review path also comes from a phone risk has not seen.
        return self.step_up or self.review


class RequestEnded(Exception):
    """An event said the request will not complete (rejected, expired, cancelled, verification failed)."""

    def __init__(self, seen: Seen):
        super().__init__(seen.type)
        self.seen = seen


# --------------------------------------------------------------------------- terminal


class Terminal:
    """The demo's live view: steps as header lines, what happens indented under them; colour
    only on a terminal (and never with NO_COLOR), so piped output stays plain text."""

    STYLES = {
        "bold": "1",
        "dim": "2",
        "red": "31",
        "green": "32",
        "yellow": "33",
        "magenta": "35",
        "cyan": "36",
    }
    DECISION_STYLE = {
        "allow": "green",
        "step_up": "yellow",
        "review": "magenta",
        "deny": "red",
        "approve": "green",
    }

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.colour = self.stream.isatty() and not os.environ.get("NO_COLOR")
        self.steps = 0

    def paint(self, text: str, style: str) -> str:
        return f"\033[{self.STYLES[style]}m{text}\033[0m" if self.colour else text

    def say(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def step(self, title: str) -> None:
        self.steps += 1
        self.say()
        self.say(self.paint(f"{self.steps}. {title}", "bold"))

    def line(self, text: str, style: str | None = None) -> None:
        self.say("   " + (self.paint(text, style) if style else text))

    def event(self, seen: Seen) -> None:
        self.say(
            f"   {self.paint(f'+{seen.elapsed:.3f}s', 'dim')}  {self.paint(seen.type, 'cyan')}  "
            f"{describe_event(seen.envelope.data, self.emphasize)}"
        )

    def decision(self, decision: str) -> str:
        return self.paint(decision, self.DECISION_STYLE.get(decision, "bold"))

    def emphasize(self, text: str, kind: str) -> str:
        """Colours for shared.describe: decisions by their meaning, failures in red."""
        return self.decision(text) if kind == "decision" else self.paint(text, "red")


def _clock(at: datetime) -> str:
    """A time as the person at the terminal reads it (local time, seconds)."""
    return at.astimezone().strftime("%H:%M:%S")


# --------------------------------------------------------------------------- the stack


def _development_only(var_dir: Path) -> None:
    # This shell's setting, and the one the running `unbind up` of the var dir recorded.
    running = (read_pid_file(var_dir) or {}).get("env") if live_supervisor(var_dir) is not None else None
    if os.environ.get("UNBIND_ENV", "").strip().lower() == "production" or running == "production":
        raise InfraError(
            "`unbind demo` is for development only (it mints tokens and reads one-time codes from the SMS "
            "sink); UNBIND_ENV is production."
        )


class Api:
    """The four services over HTTP, every failure turned into one clear line."""

    def __init__(self, client: httpx.AsyncClient, stack: RunningStack, tokens: dict[str, str]):
        self.client = client
        self.stack = stack
        self.tokens = tokens

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        role: str = "customer",
        expect: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[role]}", **kwargs.pop("headers", {})}
        url = self.stack.urls[service] + path
        try:
            response = await self.client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise InfraError(
                f"The {service} service at {self.stack.urls[service]} did not answer {method} {path} "
                f"({type(exc).__name__}); is `unbind up` still running?"
            ) from None
        if response.status_code not in expect:
            raise InfraError(
                f"{method} {url} answered {response.status_code} (expected {' or '.join(map(str, expect))}): "
                f"{_problem(response)}"
            )
        return response

    async def json(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.call(service, method, path, **kwargs)).json()


def _problem(response: httpx.Response) -> str:
    """The gist of an error response: an RFC 9457 problem's detail, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or "(empty body)"
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:300]
    return str(body)[:300]


# --------------------------------------------------------------------------- live events


@dataclass(frozen=True)
class Seen:
    envelope: Envelope
    elapsed: float  # seconds from the request to the event's arrival here

    @property
    def type(self) -> str:
        return self.envelope.type


@dataclass
class EventFeed:
    """This request's events as they arrive on the topic.

    No consumer group: the demo must neither move a service's offsets nor wait for a rebalance,
    so it assigns itself every partition and starts at the end offsets taken before the request,
    which is exactly "from now on". Records of other bindings are skipped; the binding's records
    that arrive before the request id is known (the POST has not answered yet) are held and
    sorted out once it is.
    """

    cluster: Cluster
    topic: str
    binding_id: str
    term: Terminal
    seen: list[Seen] = field(default_factory=list)
    request_id: str | None = None
    started_at: float = 0.0
    _held: list[tuple[Envelope, float]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.cluster.client_options(), group_id=None, enable_auto_commit=False, client_id="unbind-demo"
        )
        try:
            await asyncio.wait_for(consumer.start(), STEP_TIMEOUT)
            numbers = await partitions_of(consumer, self.topic)
            if not numbers:
                raise InfraError(
                    f"The topic {self.topic} does not exist on {self.cluster.bootstrap}; is this the stack's "
                    f"broker (and UNBIND_TOPIC the stack's)?"
                )
            partitions = [TopicPartition(self.topic, number) for number in sorted(numbers)]
            consumer.assign(partitions)
            for partition, offset in (await consumer.end_offsets(partitions)).items():
                consumer.seek(partition, offset)
        except (KafkaError, OSError, TimeoutError) as exc:
            await consumer.stop()
            raise InfraError(
                f"Kafka at {self.cluster.bootstrap} is not reachable ({type(exc).__name__}: {exc}); is the "
                f"stack's broker running?"
            ) from None
        except InfraError:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, KafkaError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def request_made(self) -> None:
        """The clock of the event times starts here, just before the request is sent."""
        self.started_at = time.monotonic()

    def track(self, request_id: str) -> None:
        self.request_id = request_id
        held, self._held = self._held, []
        for envelope, arrived in held:
            self._take(envelope, arrived)

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            arrived = time.monotonic()
            for records in batches.values():
                for record in records:
                    try:
                        envelope = Envelope.from_record(record.value, record.headers)
                    except MalformedEvent:
                        continue  # not ours to judge: the services dead-letter it
                    if envelope.subject == self.binding_id:
                        self._take(envelope, arrived)

    def _take(self, envelope: Envelope, arrived: float) -> None:
        if self.request_id is None:
            self._held.append((envelope, arrived))
            return
        if envelope.data.request_id != self.request_id:
            return  # another request of the same binding (an earlier one's late event)
        seen = Seen(envelope, arrived - self.started_at)
        self.seen.append(seen)
        self.term.event(seen)
        self._changed.set()

    def first(self, event_type: str) -> Seen | None:
        return next((seen for seen in self.seen if seen.type == event_type), None)

    async def wait_for(self, *types: str, timeout: float, endings: bool = True) -> Seen | None:
        """The first event of `types`; None after `timeout`. An ending event raises RequestEnded
        (unless `endings` is false: waiting for the rest of a story that already ended)."""
        deadline = time.monotonic() + timeout
        while True:
            if found := next((seen for seen in self.seen if seen.type in types), None):
                return found
            if endings and (ended := next((seen for seen in self.seen if seen.type in ENDINGS), None)):
                raise RequestEnded(ended)
            if self._task is not None and self._task.done():
                error = self._task.exception() if not self._task.cancelled() else None
                raise InfraError(
                    f"Reading {self.topic} on {self.cluster.bootstrap} stopped: "
                    + (f"{type(error).__name__}: {error}" if error else "cancelled")
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # Nothing else runs between the checks above and this clear, so no event is missed.
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def expect(self, event_type: str, who: str, var_dir: Path) -> Seen:
        """An event an automatic step must produce within STEP_TIMEOUT, else a clear error."""
        seen = await self.wait_for(event_type, timeout=STEP_TIMEOUT)
        if seen is None:
            raise InfraError(
                f"No {event_type} for request {self.request_id} within {STEP_TIMEOUT:.0f} s: is the {who} "
                f"service working? See {var_dir / 'logs' / f'{who}.log'}."
            )
        return seen


# --------------------------------------------------------------------------- the story


@dataclass
class Story:
    options: DemoOptions
    api: Api
    term: Terminal
    stack: RunningStack
    binding_id: str = DEMO_BINDING
    device: DeviceSimulator | None = None  # the new phone, with --step-up or --review
    device_enrolled: bool = False
    impact: dict[str, Any] = field(default_factory=dict)
    acknowledged: list[str] = field(default_factory=list)


async def choose_binding(story: Story) -> None:
    """The seeded binding while it is active; otherwise (an earlier demo unbound it) a fresh one."""
    response = await story.api.call("binding", "GET", f"/v1/bindings/{DEMO_BINDING}", expect=(200, 404))
    status = response.json()["status"] if response.status_code == 200 else "missing"
    if status == "active":
        account = response.json()["repayment_account"]
        story.term.line(
            f"{DEMO_BINDING}: {account['lender']} {account['account_number']}, "
            f"{account['monthly_instalment']} CNY a month, active"
        )
        return
    why = {
        "unbound": "already unbound (an earlier demo)",
        "unbinding": "busy with an open unbind request",
        "missing": "not in the data",
    }.get(status, status)
    story.term.line(f"{DEMO_BINDING} is {why}: binding a fresh repayment account for him first", "yellow")
    story.binding_id = await bind_fresh_account(story)


def _due_day_not_soon(today: date) -> int:
    """A due day about ten days ahead, so the fresh account's first instalment is not due within
    three days: the INSTALMENT_DUE_SOON blocker (+10 in risk) belongs to the seeded story only."""
    return (today.day - 1 + 10) % 28 + 1


def _fresh_account_number() -> str:
    """A valid card number the development lender confirms (it refuses those ending 0000)."""
    while (number := with_check_digit("62220299" + "".join(random.choices("0123456789", k=7)))).endswith(
        REFUSED_LAST4
    ):
        pass
    return number


async def bind_fresh_account(story: Story) -> str:
    """Bind as the app does: the request, the code of its own SMS, then the lender's confirmation of
    the auto-debit mandate, which is what raises the credit limit."""
    number = _fresh_account_number()
    body = {
        "lender": "Example Bank",
        "account_number": number,
        "monthly_instalment": 8000,
        "due_day": _due_day_not_soon(date.today()),
        "agreement_version": CURRENT_AGREEMENT,
    }
    since = datetime.now(UTC)
    created = await story.api.json("binding", "POST", "/v1/bindings", json=body, expect=(202,))
    story.term.line(
        f"asked to bind {created['id']}: Example Bank {mask_account_number(number)}, 8000 CNY a month due on "
        f"day {body['due_day']}; {created['status']} until its SMS code is confirmed"
    )
    await pass_otp(story, created["verification_id"], since)
    binding = await mandate_decided(story, created["id"])
    if binding["mandate_status"] != "active":
        raise InfraError(
            f"The lender did not confirm the mandate of {created['id']} (it is {binding['mandate_status']}); "
            f"see {story.options.var_dir / 'logs'}."
        )
    story.term.line(
        f"the lender confirmed the auto-debit mandate: {binding['id']} is {binding['status']}; credit limit "
        f"{created['credit_account']['credit_limit']} -> {binding['credit_account']['credit_limit']} CNY",
        "green",
    )
    return created["id"]


async def mandate_decided(story: Story, binding_id: str) -> dict[str, Any]:
    """The binding once its lender answered the mandate (the development lender waits a moment first)."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while (binding := await story.api.json("binding", "GET", f"/v1/bindings/{binding_id}"))[
        "mandate_status"
    ] == "pending":
        if time.monotonic() > deadline:
            raise InfraError(
                f"No answer from the lender on the mandate of {binding_id} within {STEP_TIMEOUT:.0f} s: is "
                f"the development lender running? See `unbind status`."
            )
        await asyncio.sleep(0.2)
    return binding


def take_new_phone(story: Story) -> None:
    """A new phone whose key is not on his account yet: risk has never seen it (device_unknown, +40;
    an enrolled key would be one of his own devices)."""
    story.device = DeviceSimulator.generate(f"d-zhangsan-phone-{uuid.uuid4().hex[:6]}")
    story.term.line(
        f"his new phone {story.device.device_id} (EC P-256 key held by the device simulator), not on his "
        f"account yet; the request will come from it"
    )


async def enrol_phone(story: Story) -> None:
    """The biometric needs the phone's key on his account: pending until he confirms the code of its
    own SMS; then he is told on every channel that a device was added. A key added after the request
    may sign for it only because it is the device the request came from."""
    assert story.device is not None
    since = datetime.now(UTC)
    enrolment = await story.api.json(
        "verification",
        "POST",
        "/v1/devices",
        json=story.device.enrolment("Zhang San's new phone"),
        expect=(202,),
    )
    story.term.line(
        f"adding the key of {story.device.device_id} to his account: {enrolment['device']['status']} until "
        f"its SMS code is confirmed"
    )
    await pass_otp(story, enrolment["verification"]["id"], since)
    story.device_enrolled = True
    story.term.line(f"{story.device.device_id} is active (notified on every channel)")


async def report_phone_change(story: Story) -> None:
    """The customer system tells risk his number changed 3 days ago (phone_changed_recently, +25)."""
    changed = datetime.now(UTC) - timedelta(days=3)
    await story.api.call(
        "risk",
        "PUT",
        f"/internal/v1/profiles/{CUSTOMER}",
        role="service",
        json={"phone_changed_at": changed.isoformat()},
        expect=(204,),
    )
    story.term.line(
        f"customer system -> risk: his phone number changed on {changed.astimezone():%Y-%m-%d} (3 days ago); "
        f"it stays in his profile for 30 days"
    )


async def show_impact(story: Story) -> None:
    impact = await story.api.json(
        "binding", "GET", f"/v1/bindings/{story.binding_id}/impact", headers={"Accept-Language": "en"}
    )
    story.impact = impact
    term = story.term
    term.line(f"credit limit {impact['credit_limit_before']} -> {impact['credit_limit_after']} CNY")
    if current := impact.get("current_instalment"):
        debit = ", by auto-debit" if impact["auto_debit"] else ""
        term.line(
            f"instalment {current['period']}: {current['amount']} CNY due {current['due_date']} "
            f"({current['status']}{debit})"
        )
    for benefit in impact["benefits_lost"]:
        term.line(f"benefit lost: {benefit['description']}")
    for blocker in impact["blockers"]:
        kind = "to acknowledge" if blocker["acknowledgeable"] else "refuses unbinding"
        term.line(f"blocker {blocker['code']} ({kind}): {blocker['message']}", "yellow")
    if not impact["blockers"]:
        term.line("no blockers", "green")


async def clear_blockers(story: Story) -> None:
    """Repay the due instalment (--repay), else acknowledge what may be acknowledged."""
    blockers = story.impact["blockers"]
    if not blockers:
        story.term.line("nothing to repay or acknowledge")
        return
    current = story.impact.get("current_instalment")
    if story.options.repay and current and current["status"] != "paid":
        paid = await story.api.json(
            "binding",
            "POST",
            f"/v1/bindings/{story.binding_id}/repayments",
            json={"amount": current["amount"]},
            headers={"Idempotency-Key": f"demo-repay-{uuid.uuid4().hex}"},
            expect=(200, 201),
        )
        story.term.line(
            f"repaid {paid['amount']} CNY for {paid['period']} by hand ({paid['status']}, {paid['paid_by']})",
            "green",
        )
        story.impact = await story.api.json(
            "binding", "GET", f"/v1/bindings/{story.binding_id}/impact", headers={"Accept-Language": "en"}
        )
        blockers = story.impact["blockers"]
        story.term.line("blockers now: " + (", ".join(blocker["code"] for blocker in blockers) or "none"))
    if refusing := [blocker["code"] for blocker in blockers if not blocker["acknowledgeable"]]:
        hint = "" if story.options.repay else " (try --repay)"
        raise InfraError(f"{story.binding_id} cannot be unbound now: {', '.join(refusing)}{hint}.")
    story.acknowledged = [blocker["code"] for blocker in blockers]
    for code in story.acknowledged:
        story.term.line(f"acknowledged {code}: he repays it himself once the auto-debit stops")


async def download_report(story: Story) -> None:
    """The account report to keep, as the PDF (or JSON where the host has no CJK font: 503)."""
    response = await story.api.call(
        "binding",
        "GET",
        f"/v1/bindings/{story.binding_id}/report",
        headers={"Accept": "application/pdf"},
        expect=(200, 503),
    )
    folder = story.options.var_dir / "demo"
    if response.status_code == 200:
        path = _save(folder / f"report-{story.binding_id}.pdf", response.content)
        story.term.line(
            f"saved {_shown(path)} ({_size(len(response.content))}, "
            f"{response.headers.get('content-type', '?')})"
        )
        return
    story.term.line(f"no PDF on this host: {_problem(response)}", "yellow")
    report = await story.api.call("binding", "GET", f"/v1/bindings/{story.binding_id}/report")
    path = _save(folder / f"report-{story.binding_id}.json", report.content)
    story.term.line(f"saved the JSON report instead: {_shown(path)} ({_size(len(report.content))})")


def _save(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def _size(count: int) -> str:
    return f"{count / 1024:.1f} KiB" if count >= 1024 else f"{count} bytes"


async def open_request(
    story: Story, feed: EventFeed, kind: str, body: dict[str, Any]
) -> tuple[str, datetime]:
    """Ask for an unbind (or, by `kind`, a pause): with the blockers accepted, the impact seen and
    the phone it comes from."""
    body = {**body, "acknowledged": story.acknowledged, "impact_hash": story.impact["impact_hash"]}
    if story.device is not None:
        body["device_id"] = story.device.device_id
    sent_at = datetime.now(UTC)
    feed.request_made()
    request = await story.api.json(
        "binding",
        "POST",
        f"/v1/bindings/{story.binding_id}/{kind}-requests",
        json=body,
        headers={"Idempotency-Key": f"demo-{uuid.uuid4().hex}"},
        expect=(202,),
    )
    feed.track(request["id"])
    device = f"from {story.device.device_id}" if story.device else "from the app, no device named"
    story.term.line(
        f"{kind} request {request['id']} accepted (202, {request['status']}), {device}; expires "
        f"{_clock(datetime.fromisoformat(request['expires_at']))}"
    )
    return request["id"], sent_at


async def follow(
    story: Story, feed: EventFeed, request_id: str, sent_at: datetime, *, completion: str = "UnbindCompleted"
) -> None:
    """From the risk decision to completion (`completion`: the event of the request's kind), whichever
    path risk takes: a pause is scored and verified as an unbind is."""
    options = story.options
    seen = await feed.expect("RiskAssessed", "risk", options.var_dir)
    assessed = seen.envelope.data
    assert isinstance(assessed, RiskAssessed)
    await explain_decision(story, request_id, assessed)
    # Risk sends what it would deny to a person too: no machine ends the request.
    if assessed.decision == "review":
        await review(story, feed, request_id)
    issued = (await feed.expect("VerificationRequested", "verification", options.var_dir)).envelope.data
    assert isinstance(issued, VerificationRequested)
    if "otp" in issued.methods:
        await pass_otp(story, issued.verification_id, sent_at)
    if "biometric" in issued.methods:
        if story.device is not None and not story.device_enrolled:
            await enrol_phone(story)
        await pass_biometric(story, issued.verification_id)
    await feed.expect("Verified", "verification", options.var_dir)
    await feed.expect(completion, "binding", options.var_dir)


async def explain_decision(story: Story, request_id: str, assessed: RiskAssessed) -> None:
    """Which rule (or the thresholds) decided, from the ops view of the assessment; and say so
    when that is not the path asked for (history changes scores, and rules come first)."""
    assessment = await story.api.json("risk", "GET", f"/v1/assessments/{request_id}", role="ops")
    by = (
        f"rule '{assessment['matched_rule']}'"
        if assessment["matched_rule"]
        else f"the thresholds (score {assessment['score']})"
    )
    story.term.line(f"decided by {by}, rules version {assessment['rules_version']}")
    if assessed.decision != story.options.expected_decision:
        story.term.line(
            f"you asked for the {story.options.expected_decision} path; risk decided {assessed.decision}: "
            f"following risk",
            "yellow",
        )


async def review(story: Story, feed: EventFeed, request_id: str) -> None:
    """The request waits in the ops queue; with --approve the demo decides as ops."""
    term = story.term
    queue = (await story.api.json("risk", "GET", "/v1/reviews?status=pending", role="ops"))["items"]
    mine = next((index for index, item in enumerate(queue) if item["request_id"] == request_id), None)
    if mine is None:
        raise InfraError(
            f"Risk decided review, but request {request_id} is not in "
            f"{story.stack.urls['risk']}/v1/reviews?status=pending."
        )
    item = queue[mine]
    term.line(
        f"waiting in the ops review queue: review {item['id']}, {mine + 1} of {len(queue)} pending, waited "
        f"{item['waiting_seconds']} s",
        "magenta",
    )
    if story.options.approve:
        note = "approved by `unbind demo --approve`"
        # A reviewer claims the case, then decides it with a reason from the list.
        await story.api.call("risk", "POST", f"/v1/reviews/{item['id']}/claim", role="reviewer")
        approval = {"decision": "approve", "reason": "identity_confirmed_by_call", "note": note}
        await story.api.call(
            "risk", "POST", f"/v1/reviews/{item['id']}/decision", role="reviewer", json=approval
        )
        term.line("decided as a reviewer (ops-admin): approve, identity confirmed by call")
        decided = await feed.expect("ReviewDecided", "risk", story.options.var_dir)
    else:
        url = f"{story.stack.urls['risk']}/v1/reviews/{item['id']}"
        approval = '{"decision": "approve", "reason": "identity_confirmed_by_call"}'
        term.line(
            f"decide it as a reviewer: POST {url}/claim, then POST {url}/decision {approval} (or rerun with "
            f"--approve)"
        )
        decided = await wait_for_decision(story, feed, item["id"])
    assert isinstance(decided.envelope.data, ReviewDecided)
    if decided.envelope.data.decision != "approve":
        # The binding rejects the request next: show that too, then end.
        raise RequestEnded(await feed.wait_for("UnbindRejected", timeout=STEP_TIMEOUT) or decided)


async def wait_for_decision(story: Story, feed: EventFeed, review_id: str) -> Seen:
    """Someone else decides (ops, with curl or the dashboard); a line now and then shows the demo is alive."""
    started = time.monotonic()
    deadline = started + story.options.timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if decided := await feed.wait_for("ReviewDecided", timeout=min(HEARTBEAT, remaining)):
            return decided
        if deadline > time.monotonic():
            story.term.line(
                f"still waiting for an ops decision ({time.monotonic() - started:.0f} s of "
                f"{story.options.timeout:.0f} s)",
                "dim",
            )
    raise InfraError(
        f"No ops decision on review {review_id} within {story.options.timeout:.0f} s (rerun with --approve "
        f"to decide it as ops, or give a longer --timeout)."
    )


def latest_code(sms_sink: Path, phone: str, since: datetime) -> str | None:
    """The code of the newest code SMS to `phone` that arrived after `since` (other SMS, like the
    risk prompt, and unreadable lines are skipped)."""
    try:
        lines = sms_sink.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            message = json.loads(line)
            at = datetime.fromisoformat(message["at"])
        except (ValueError, KeyError, TypeError):
            continue
        if (
            message.get("to") == phone
            and at >= since
            and (match := CODE_IN_SMS.search(str(message.get("text", ""))))
        ):
            return match.group(1)
    return None


def mask_code(code: str) -> str:
    """The customer's code is his own: the terminal shows only its last two digits."""
    return "••••" + code[-2:]


async def pass_otp(story: Story, verification_id: str, since: datetime) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while (code := latest_code(story.stack.sms_sink, CUSTOMER_PHONE, since)) is None:
        if time.monotonic() > deadline:
            raise InfraError(
                f"No code SMS to {mask_phone(CUSTOMER_PHONE)} in {story.stack.sms_sink} within "
                f"{STEP_TIMEOUT:.0f} s: see the notification and verification logs."
            )
        await asyncio.sleep(0.1)
    story.term.line(f"code from SMS to {mask_phone(CUSTOMER_PHONE)}: {mask_code(code)}")
    result = await story.api.json(
        "verification", "POST", f"/v1/verifications/{verification_id}/otp", json={"code": code}
    )
    story.term.line(
        f"code accepted: verification {result['status']}, passed {methods_text(result['passed_methods'])}",
        "green",
    )


async def pass_biometric(story: Story, verification_id: str) -> None:
    """Challenge, fingerprint, signature with the phone key the request came from (else the seeded demo
    phone)."""
    # The demo phone's counter is the wall clock, like `unbind device sign`, so it keeps going up across runs.
    device = story.device or DeviceSimulator.demo(counter=int(time.time()))
    issued = await story.api.json(
        "verification", "POST", f"/v1/verifications/{verification_id}/biometric/challenge", expect=(201,)
    )
    body = device.sign(issued["challenge"], verification_id, issued["request_id"], issued["impact_hash"])
    result = await story.api.json(
        "verification", "POST", f"/v1/verifications/{verification_id}/biometric", json=body
    )
    story.term.line(
        f"fingerprint on {device.device_id}: challenge signed (counter {body['counter']}); verification "
        f"{result['status']}",
        "green",
    )


async def show_result(story: Story, feed: EventFeed, request_id: str) -> None:
    term = story.term
    request = await story.api.json("binding", "GET", f"/v1/unbind-requests/{request_id}")
    term.line(
        f"request {request_id}: "
        f"{term.paint(request['status'], 'green' if request['status'] == 'completed' else 'red')}"
    )
    completed = feed.first("UnbindCompleted")
    if completed is not None and isinstance(completed.envelope.data, UnbindCompleted):
        data = completed.envelope.data
        term.line(
            f"credit limit {data.credit_limit_before} -> {data.credit_limit_after} CNY; mandates cancelled: "
            f"{data.mandates_cancelled}"
        )
    binding = await story.api.json("binding", "GET", f"/v1/bindings/{story.binding_id}")
    term.line(
        f"binding {binding['id']} ({binding['repayment_account']['account_number']}): {binding['status']}, "
        f"auto-debit {'on' if binding['auto_debit'] else 'off'}"
    )
    if request["follow_up"]:
        term.line("follow-up, as Zhang San reads it in the app:")
        for item in request["follow_up"]:
            action = f" [{item['action']['label']}]" if item["action"] else ""
            term.line(f"  [ ] {item['title']}：{item['body']}{action}")


async def show_alternatives(story: Story) -> None:
    """What the impact offers instead of unbinding, with what each keeps and gives up."""
    story.impact = await story.api.json(
        "binding", "GET", f"/v1/bindings/{story.binding_id}/impact", headers={"Accept-Language": "en"}
    )
    for alternative in story.impact["alternatives"]:
        available = (
            "available" if alternative["available"] else f"not now: {alternative['unavailable_reason']}"
        )
        story.term.line(f"{alternative['title']} ({available}): {alternative['summary']}")
        story.term.line(f"  keeps: {'; '.join(alternative['keeps'])}", "green")
        story.term.line(f"  loses: {'; '.join(alternative['loses'])}", "yellow")
    story.acknowledged = [
        blocker["code"] for blocker in story.impact["blockers"] if blocker["acknowledgeable"]
    ]


async def play_pause(story: Story) -> tuple[EventFeed, int]:
    """Act two: he binds another account, and instead of unbinding it pauses its auto-debit for two
    months; the binding, its benefits and the credit limit stay. Returns the pause's events, and the
    exit status (1 if the pause stopped short)."""
    term = story.term
    term.step("Another account, bound as the app does")
    story.binding_id = await bind_fresh_account(story)
    term.step(f"Instead of unbinding {story.binding_id}: the alternatives the impact offers")
    await show_alternatives(story)
    feed = EventFeed(story.stack.cluster, story.stack.topic, story.binding_id, term)
    await feed.start()
    try:
        term.step("Pause the auto-debit for 2 months (events live from the topic)")
        request_id, sent_at = await open_request(story, feed, "pause", {"months": 2})
        try:
            await follow(story, feed, request_id, sent_at, completion="AutoDebitPaused")
        except RequestEnded as ended:
            return feed, await report_ending(story, feed, request_id, ended.seen)
        except (InfraError, asyncio.CancelledError):
            await withdraw(story, request_id)
            raise
        binding = await story.api.json("binding", "GET", f"/v1/bindings/{story.binding_id}")
        term.line(
            f"binding {binding['id']}: {binding['status']}, auto-debit paused until "
            f"{binding['auto_debit_resumes_on']} (it resumes by itself); credit limit still "
            f"{binding['credit_account']['credit_limit']} CNY",
            "green",
        )
    finally:
        await feed.stop()
    return feed, 0


def timings(feed: EventFeed, completion: str = "UnbindCompleted") -> str:
    marks = [
        ("risk", "RiskAssessed"),
        ("review", "ReviewDecided"),
        ("challenge", "VerificationRequested"),
        ("verified", "Verified"),
        ("completed", completion),
    ]
    parts = [
        f"{label} +{seen.elapsed:.3f}s" for label, event_type in marks if (seen := feed.first(event_type))
    ]
    return " · ".join(parts)


async def _play(options: DemoOptions, term: Terminal) -> int:
    _development_only(options.var_dir)
    stack = find_running_stack(options.var_dir, options.port_offset)
    # Long enough for a review that waits the whole --timeout and the steps after it.
    ttl = int(options.timeout) + 900
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
        await check_running(client, stack, options.var_dir)
        tokens = {
            "customer": token(options.var_dir, CUSTOMER, ["customer"], ttl),
            "ops": token(options.var_dir, None, ["ops"], ttl),
            "reviewer": token(options.var_dir, None, ["ops", "reviewer"], ttl),
            "service": token(options.var_dir, "customer-system", ["service"], 300),
        }
        story = Story(options, Api(client, stack, tokens), term, stack)
        term.say(
            term.paint(
                f"unbind demo: Zhang San ({CUSTOMER}) unbinds his mortgage repayment account — the "
                f"{options.expected_decision} path",
                "bold",
            )
        )
        term.line(
            f"stack   binding {stack.urls['binding']} · verification {stack.urls['verification']} · risk "
            f"{stack.urls['risk']}"
        )
        term.line(f"events  topic {stack.topic} on {stack.bootstrap}, live")
        if stack.dashboard_url:
            term.line(
                f"watch   the ops dashboard: "
                f"{new_login_link(options.var_dir, stack.dashboard_url, subject='ops-demo')} (one-time "
                f"sign-in link)"
            )

        term.step("His binding" + (" and his phone" if options.new_phone else ""))
        await choose_binding(story)
        if options.new_phone:
            take_new_phone(story)
        if options.review:
            await report_phone_change(story)
        term.step(f"Impact of unbinding {story.binding_id}")
        await show_impact(story)
        term.step("Repay the due instalment" if options.repay else "Acknowledge the blockers")
        await clear_blockers(story)
        term.step("Account report")
        await download_report(story)

        feed = EventFeed(stack.cluster, stack.topic, story.binding_id, term)
        await feed.start()
        try:
            term.step("Unbind request")
            request_id, sent_at = await open_request(
                story, feed, "unbind", {"reason": "fund_planning", "note": "unbind demo"}
            )
            term.step("Risk, verification, completion (events live from the topic)")
            try:
                await follow(story, feed, request_id, sent_at)
            except RequestEnded as ended:
                return await report_ending(story, feed, request_id, ended.seen)
            except (InfraError, asyncio.CancelledError):
                await withdraw(story, request_id)
                raise
            term.step("Result")
            await show_result(story, feed, request_id)
        finally:
            await feed.stop()
        paused = await play_pause(story) if options.pause else None
    if paused is not None and paused[1]:
        return paused[1]
    completed = feed.first("UnbindCompleted")
    term.say()
    term.say(
        term.paint(
            f"done: request -> completed in {completed.elapsed:.3f} s" if completed else "done", "bold"
        )
        + (f"  ({timings(feed)})" if completed else "")
    )
    if paused is not None and (seen := paused[0].first("AutoDebitPaused")):
        term.say(
            term.paint(f"      pause -> completed in {seen.elapsed:.3f} s", "bold")
            + f"  ({timings(paused[0], 'AutoDebitPaused')})"
        )
    return 0


async def withdraw(story: Story, request_id: str) -> None:
    """The demo stops before the end (an error, a timeout, Ctrl-C): cancel its request, best
    effort, so the binding is free for the next run instead of waiting out the expiry."""
    try:
        response = await story.api.client.post(
            f"{story.stack.urls['binding']}/v1/unbind-requests/{request_id}/cancel",
            headers={"Authorization": f"Bearer {story.api.tokens['customer']}"},
            timeout=5.0,
        )
    except httpx.HTTPError:
        return
    if response.status_code == 200:
        story.term.line(
            f"the demo stopped early: cancelled request {request_id}, so {story.binding_id} is active again",
            "yellow",
        )


async def report_ending(story: Story, feed: EventFeed, request_id: str, seen: Seen) -> int:
    """The request stopped short of completion: say how, and exit non-zero."""
    if seen.type == "VerificationFailed":
        # The binding turns that into UnbindRejected; show it for the whole story.
        await feed.wait_for("UnbindRejected", "UnbindExpired", timeout=5.0, endings=False)
    request = await story.api.json("binding", "GET", f"/v1/unbind-requests/{request_id}")
    why = request.get("outcome_code") or seen.type
    story.term.step("Result")
    story.term.line(
        f"request {request_id}: {request['status']} ({why}); binding {story.binding_id} stays bound", "red"
    )
    return 1


def run(options: DemoOptions) -> int:
    # aiokafka's own warnings (a metadata retry) would break the live view; real failures still raise.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    return asyncio.run(_play(options, Terminal()))
