"""The skeleton `unbind bench` runs beside the stack it measures: the same shape with no business
logic, which says how many workflows a second the framework alone allows on this box.

One skeleton process per service, each a uvicorn process of an app `shared.app.build_service_app`
builds (the dashboard's: `build_http_app`), with the service's own settings class, keys and Kafka
principal, on the stack's broker and database server. It keeps the real outbox and relay, the real
`EventConsumer` with an inbox row per handled event, signed events, the customers' JWT and the
service token of the one service-to-service call. A workflow is the plain OTP path of an unbind:

    customer  POST binding /v1/bindings/{id}/unbind-requests    row + UnbindRequested
    risk      consumes UnbindRequested                           row + RiskAssessed
    verification consumes RiskAssessed                           row + VerificationRequested,
              then POSTs the code to notification                notification: a delivery row
              and records that it was taken                      verification: the row updated
    customer  sees VerificationRequested, POST verification /v1/verifications/{id}/otp
                                                                 row updated + Verified
    binding   consumes Verified                                  row updated + UnbindCompleted

Each consumer group subscribes to the event types the real service's SUBSCRIPTIONS name, the
types off this path with a handler that does nothing (the inbox row is still written), and the
dashboard's reader decodes every event and checks its signature, as the real one does before its
projection. Left out: every rule, the impact, risk's signals, templates, the SMS sink and the
notices, the projection.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
from alembic.migration import MigrationContext
from alembic.operations import Operations
from fastapi import APIRouter, Depends, FastAPI, Header
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field
from sqlalchemy import Boolean, String, select, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.app import RequestUnitOfWork, ServiceRuntime, build_http_app, build_service_app
from shared.auth import Customer, Principal, require_service
from shared.bus import KafkaBus, stop_quietly
from shared.cloudevents import Envelope, EventRejected, verify_signature
from shared.consumer import Subscriptions
from shared.db import UTCDateTime, create_engine, utcnow
from shared.events import (
    BindingEvent,
    Event,
    RiskAssessed,
    RiskDecision,
    RiskLevel,
    UnbindCompleted,
    UnbindReason,
    UnbindRequested,
    VerificationMethod,
    VerificationRequested,
    Verified,
)
from shared.http import post_with_retries
from shared.keys import KeySet
from shared.logging import configure_logging
from shared.migrations import SERVICES
from shared.outbox import add_notify_trigger
from shared.problems import Problem
from shared.settings import ServiceSettings
from shared.tables import messaging_tables
from shared.uow import UnitOfWork
from tools.bench.driver import (
    Customers,
    Played,
    Timeline,
    WorkflowFailed,
    completed_within,
    customer_client,
    play_all,
    stage_latencies,
    watching,
)
from tools.errors import InfraError, port_in_use, port_taken_message
from tools.kafka import EventTopics, create_topics, delete_topics, drop_topics, prepare_topics
from tools.keys import TokenMinter, installation_keys
from tools.population import SyntheticCustomer, synthetic_customers
from tools.postgres import drop_database, ensure_database
from tools.running import RunningStack
from tools.services import APPS, load_settings, settings_class
from tools.stack import ServiceProcess, service_env, stack_ports, terminate, wait_ready

log = logging.getLogger(__name__)

# The skeleton's ports are the stack's shifted by this, so both run side by side.
PORT_SHIFT = 100
SERVICE_ENV = "UNBIND_SKELETON_SERVICE"
# The code every skeleton verification accepts: the customer needs no SMS to read it.
CODE = "123456"
IMPACT_HASH = "0" * 64


class SkeletonBase(DeclarativeBase):
    pass


OutboxMessage, InboxEntry = messaging_tables(SkeletonBase)


class Step(SkeletonBase):
    """The row each step commits: a request (binding), an assessment (risk), a verification
    (verification) or a delivery (notification)."""

    __tablename__ = "skeleton_steps"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str] = mapped_column(String(36))
    binding_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    # A request's, so that the customer's retry of a request whose answer was lost opens no second one.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


def _step(kind: str, event: BindingEvent, step_id: str | None = None) -> Step:
    return Step(
        id=step_id or str(uuid.uuid4()),
        kind=kind,
        request_id=event.request_id,
        binding_id=event.binding_id,
        user_id=event.user_id,
    )


# --------------------------------------------------------------------------- the chain's steps


@dataclass(frozen=True)
class VerificationDeps:
    notifier: httpx.AsyncClient
    unit_of_work: Callable[[], UnitOfWork]


async def assess(uow: UnitOfWork, _deps: object, event: UnbindRequested) -> None:
    """Risk: every request is a low-risk one, to verify with a code."""
    uow.session.add(_step("assessed", event))
    uow.emit(
        RiskAssessed(
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            score=12,
            level=RiskLevel.NORMAL,
            decision=RiskDecision.ALLOW,
            required_methods=[VerificationMethod.OTP],
        )
    )


async def issue(uow: UnitOfWork, deps: VerificationDeps, event: RiskAssessed) -> None:
    """Verification: a verification row and its event; once they are committed, the code goes to
    notification, and whether it was taken is recorded in a second transaction, as the real
    service does."""
    verification = _step("verification", event)
    uow.session.add(verification)
    uow.emit(
        VerificationRequested(
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            verification_id=verification.id,
            methods=[VerificationMethod.OTP],
            expires_at=utcnow() + timedelta(minutes=10),
        )
    )
    message = {
        "message_id": f"{verification.id}:otp:1",
        "user_id": event.user_id,
        "request_id": event.request_id,
        "template": "unbind_code",
        "params": {"code": CODE, "ttl_minutes": "5"},
    }
    uow.after_commit(lambda: _send_code(deps, verification.id, message))


async def _send_code(deps: VerificationDeps, verification_id: str, message: dict[str, Any]) -> None:
    try:
        taken = (await post_with_retries(deps.notifier, "/internal/v1/messages", json=message)).is_success
    except httpx.HTTPError as exc:
        log.warning("notification unreachable", extra={"error": type(exc).__name__})
        taken = False
    async with deps.unit_of_work() as uow:
        await uow.session.execute(update(Step).where(Step.id == verification_id).values(delivered=taken))


async def complete(uow: UnitOfWork, _deps: object, event: Verified) -> None:
    """Binding: the verified request is completed."""
    request = await uow.session.get(Step, event.request_id, with_for_update=True)
    if request is None:
        raise EventRejected("state", "Verified names a request this skeleton never opened")
    request.kind = "completed"
    uow.emit(
        UnbindCompleted(
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            mandates_cancelled=1,
            credit_limit_before=50_000,
            credit_limit_after=30_000,
        )
    )


async def ignore(_uow: UnitOfWork, _deps: object, _event: Event) -> None:
    """A type the real service subscribes to, off the skeleton's path: only its inbox row is written."""


CHAIN: dict[str, Subscriptions] = {
    "binding": {Verified: complete},
    "verification": {RiskAssessed: issue},
    "risk": {UnbindRequested: assess},
    "notification": {},
}


def subscriptions(service: str) -> Subscriptions:
    """The real service's subscribed types, each with its step of the chain or `ignore`."""
    real: Subscriptions = importlib.import_module(f"services.{service}.main").SUBSCRIPTIONS
    return {event_type: CHAIN[service].get(event_type, ignore) for event_type in real}


# --------------------------------------------------------------------------- the HTTP routes


class UnbindIn(BaseModel):
    reason: UnbindReason


class CodeIn(BaseModel):
    code: str = Field(pattern=r"^[0-9]{6}$")


class MessageIn(BaseModel):
    message_id: str = Field(max_length=64)
    user_id: str
    request_id: str
    template: str
    params: dict[str, str]


binding_routes = APIRouter()
verification_routes = APIRouter()
notification_routes = APIRouter()


@binding_routes.post("/v1/bindings/{binding_id}/unbind-requests", status_code=202)
async def request_unbind(
    binding_id: str,
    body: UnbindIn,
    customer: Customer,
    uow: RequestUnitOfWork,
    *,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", max_length=128)],
) -> dict[str, str]:
    opened = await uow.session.scalar(select(Step.id).where(Step.idempotency_key == idempotency_key))
    if opened is not None:
        return {"id": opened, "status": "pending_risk"}
    request_id = str(uuid.uuid4())
    event = UnbindRequested(
        request_id=request_id,
        binding_id=binding_id,
        user_id=customer.subject,
        reason=body.reason,
        impact_hash=IMPACT_HASH,
        lender="example_bank",
        account_last4="1234",
        client_ip="127.0.0.1",
    )
    request = _step("requested", event, request_id)
    request.idempotency_key = idempotency_key
    uow.session.add(request)
    uow.emit(event)
    return {"id": request_id, "status": "pending_risk"}


@verification_routes.post("/v1/verifications/{verification_id}/otp")
async def check_code(
    verification_id: str, body: CodeIn, customer: Customer, uow: RequestUnitOfWork
) -> dict[str, str]:
    verification = await uow.session.get(Step, verification_id, with_for_update=True)
    if verification is None or verification.user_id != customer.subject:
        raise Problem(404, "not-found", "Not found", "No such verification.")
    if body.code != CODE:
        raise Problem(422, "wrong-code", "Wrong code", "The code is not the one sent.")
    if verification.kind == "verified":
        # The customer sent the code again because the first answer was lost: the same answer.
        return {"id": verification_id, "status": "passed"}
    verification.kind = "verified"
    uow.emit(
        Verified(
            request_id=verification.request_id,
            binding_id=verification.binding_id,
            user_id=verification.user_id,
            verification_id=verification_id,
            methods=[VerificationMethod.OTP],
        )
    )
    return {"id": verification_id, "status": "passed"}


@notification_routes.post("/internal/v1/messages", status_code=202)
async def take_message(
    body: MessageIn,
    _caller: Annotated[Principal, Depends(require_service("verification"))],
    uow: RequestUnitOfWork,
) -> dict[str, str]:
    uow.session.add(
        Step(
            id=body.message_id,
            kind="delivery",
            request_id=body.request_id,
            binding_id="",
            user_id=body.user_id,
        )
    )
    return {"id": body.message_id, "status": "queued"}


ROUTES = {
    "binding": [binding_routes],
    "verification": [verification_routes],
    "risk": [],
    "notification": [notification_routes],
}


@asynccontextmanager
async def verification_deps(runtime: ServiceRuntime) -> AsyncIterator[VerificationDeps]:
    notification_url: str = runtime.settings.notification_url  # type: ignore[attr-defined]
    async with runtime.client("notification", notification_url) as notifier:
        yield VerificationDeps(notifier, runtime.unit_of_work)


# --------------------------------------------------------------------------- the apps


def create_app() -> FastAPI:
    """The app factory of one skeleton process (uvicorn --factory): the service SERVICE_ENV names."""
    service = os.environ[SERVICE_ENV]
    settings = settings_class(service)()
    if service == "dashboard":
        return _dashboard_app(settings)
    return build_service_app(
        settings,
        title=f"unbind bench skeleton · {service}",
        description="The service's framework without its business logic (tools/bench/skeleton.py).",
        routers=ROUTES[service],
        outbox_model=OutboxMessage,
        inbox_model=InboxEntry,
        subscriptions=subscriptions(service),
        resources=verification_deps if service == "verification" else None,
    )


class EventReader:
    """The dashboard's reading of the stream without its projection: a group of its own reading
    the topic and the DLQ from the beginning, never committing, decoding every event and checking
    its signature."""

    def __init__(self, bus: KafkaBus, settings: ServiceSettings, keys: KeySet):
        self._bus = bus
        self._settings = settings
        self._keys = keys
        self.connected = False

    async def run(self) -> None:
        settings = self._settings
        consumer = self._bus.consumer(settings.consumer_group, [settings.topic, settings.dlq_topic])
        try:
            await consumer.start()
            self.connected = True
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=2000)
                for tp, records in batches.items():
                    if tp.topic == settings.topic:
                        for record in records:
                            envelope = Envelope.from_record(record.value, record.headers or ())
                            await verify_signature(self._keys, envelope, record.value, record.headers or ())
        finally:
            self.connected = False
            await stop_quietly(consumer)


def _dashboard_app(settings: ServiceSettings) -> FastAPI:
    configure_logging(settings.service_name, settings.log_level)
    keys = settings.load_keys()
    bus = KafkaBus(settings.kafka_bootstrap_servers, settings.kafka_security(), client_id="unbind-dashboard")
    reader = EventReader(bus, settings, keys.trusted)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        reading = asyncio.create_task(reader.run(), name="skeleton-dashboard-reader")
        try:
            yield
        finally:
            reading.cancel()
            with suppress(asyncio.CancelledError):
                await reading

    async def readiness() -> dict[str, Any]:
        return {"consumer_connected": reader.connected}

    return build_http_app(
        settings,
        title="unbind bench skeleton · dashboard",
        description="The dashboard's stream reader without its projection (tools/bench/skeleton.py).",
        routers=[],
        lifespan=lifespan,
        keys=keys.trusted,
        registry=CollectorRegistry(),
        readiness=readiness,
    )


# --------------------------------------------------------------------------- running it


def skeleton_ports(stack: RunningStack) -> dict[str, int]:
    """The stack's ports shifted by PORT_SHIFT (its offset read from binding's URL)."""
    offset = httpx.URL(stack.urls["binding"]).port - settings_class("binding").default_port
    ports = stack_ports(offset + PORT_SHIFT)
    for service in APPS:
        if port_in_use(ports[service]):
            raise InfraError(
                port_taken_message(ports[service], f"the bench's skeleton of {service}", "free it and rerun.")
            )
    return ports


def database_urls(stack: RunningStack, scratch: Path) -> dict[str, str]:
    """Each service's skeleton database: `unbind_skeleton_<service>` on the stack's PostgreSQL
    server, or a SQLite file in `scratch`."""
    server = stack.database_server_url
    return {
        service: make_url(server)
        .set(database=f"unbind_skeleton_{service}")
        .render_as_string(hide_password=False)
        if server
        else f"sqlite+aiosqlite:///{scratch / f'{service}.db'}"
        for service in SERVICES
    }


def _create_schema(connection: Connection) -> None:
    SkeletonBase.metadata.create_all(connection)
    # The trigger that wakes the relays of the other instances, as the services' migrations add it.
    add_notify_trigger(Operations(MigrationContext.configure(connection)))


async def _fresh_database(server: str | None, url: str) -> None:
    """An empty database with the skeleton's tables (one a crashed run left is dropped first)."""
    if server:
        name = make_url(url).database or ""
        await drop_database(server, name)
        await ensure_database(server, name)
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_create_schema)
    finally:
        await engine.dispose()


@asynccontextmanager
async def running_skeleton(
    stack: RunningStack, run_id: str, *, timeout: float
) -> AsyncIterator[RunningStack]:
    """Start the skeleton beside `stack` (its topic, databases and processes) and stop and remove all
    of it when the block ends; the skeleton as the bench drives it: its own URLs, topic and pids."""
    ports = skeleton_ports(stack)
    topics = EventTopics(f"unbind.bench.skeleton.{run_id}", f"unbind.bench.skeleton.{run_id}.dlq")
    cluster = stack.cluster
    scratch = stack.var_dir / "tmp" / f"skeleton-{run_id}"
    urls = database_urls(stack, scratch)
    async with AsyncExitStack() as cleanup:
        # The service principals need ACLs on the new topics when they are this installation's own
        # (their passwords known); on another cluster the caller's credentials reach everything.
        if cluster.passwords:
            cleanup.push_async_callback(drop_topics, cluster, topics)
            await prepare_topics(cluster, topics)
        else:
            cleanup.push_async_callback(delete_topics, cluster, topics.names)
            await create_topics(cluster, topics.names)
        if stack.database_server_url:
            for url in urls.values():
                cleanup.push_async_callback(drop_database, stack.database_server_url, make_url(url).database)
        else:
            scratch.mkdir(parents=True)
            cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
        for url in urls.values():
            await _fresh_database(stack.database_server_url, url)
        processes = _processes(stack, ports, topics, urls=urls, run_id=run_id)
        cleanup.callback(_stop, processes)
        for process in processes:
            process.log_path.unlink(missing_ok=True)
            # From this thread: the kernel stops a child whose parent *thread* ends (PR_SET_PDEATHSIG).
            process.spawn()
        await asyncio.to_thread(wait_ready, processes, timeout)
        yield replace(
            stack,
            urls={process.name: process.url for process in processes},
            topic=topics.topic,
            pids={process.name: process.proc.pid for process in processes if process.proc is not None},
        )


def _processes(
    stack: RunningStack, ports: dict[str, int], topics: EventTopics, *, urls: dict[str, str], run_id: str
) -> list[ServiceProcess]:
    keys = installation_keys(stack.var_dir)
    processes = []
    for service in APPS:
        env = service_env(
            stack.var_dir,
            ports,
            service,
            kafka_bootstrap=stack.bootstrap,
            kafka_cluster=stack.cluster,
            server_url=stack.database_server_url,
            keys=keys,
        )
        env.setdefault("UNBIND_ENV", "development")
        env |= {
            SERVICE_ENV: service,
            "UNBIND_TOPIC": topics.topic,
            "UNBIND_DLQ_TOPIC": topics.dlq_topic,
            # Covered by the service's group ACL (a prefix: unbind-<service>).
            "UNBIND_CONSUMER_GROUP": f"unbind-{service}-skeleton-{run_id}",
        }
        if service in urls:
            env[f"UNBIND_{service.upper()}_DATABASE_URL"] = urls[service]
        processes.append(
            ServiceProcess(
                service,
                ports[service],
                env,
                stack.var_dir / "logs" / f"bench-skeleton-{service}.log",
                load_settings(service, stack.var_dir).log_level.lower(),
                factory=f"{__name__}:create_app",
            )
        )
    return processes


def _stop(processes: list[ServiceProcess]) -> None:
    terminate({process.name: process.proc.pid for process in processes if process.proc is not None})
    for process in processes:
        if process.proc is not None:
            process.proc.wait()


class SkeletonCustomers(Customers):
    """The customers of the skeleton: the same requests as the real ones, with the code known in
    advance (there is no SMS to read)."""

    async def unbind(self, customer: SyntheticCustomer, device: object = None) -> str:
        headers = self._auth(customer.user_id)
        request = await self._post(
            "binding",
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            202,
            json={"reason": "fund_planning"},
            headers={**headers, "Idempotency-Key": f"skeleton-{customer.user_id}"},
            idempotent=True,
        )
        timeline = self.watcher.timelines[request["id"]]
        async with asyncio.timeout(self.timeout):
            await timeline.issued.wait()
            assert timeline.verification is not None
            verification_id, _ = timeline.verification
            await self._post(
                "verification",
                f"/v1/verifications/{verification_id}/otp",
                200,
                json={"code": CODE},
                headers=headers,
                idempotent=True,
            )
            await timeline.ended.wait()
        return request["id"]


async def measure(
    stack: RunningStack, run_id: str, *, workflows: int, concurrency: int, rate: float | None, timeout: float
) -> dict[str, Any]:
    """Run the skeleton beside `stack`, drive `workflows` workflows through it like the bench's
    customers (after one to warm it up, not counted) and report its throughput and CPU."""
    print(f"bench: starting the skeleton ({workflows} workflows)", file=sys.stderr)
    async with (
        running_skeleton(stack, run_id, timeout=timeout) as skeleton,
        watching(stack.cluster, skeleton.topic) as watcher,
        customer_client(concurrency) as client,
    ):
        players = SkeletonCustomers(skeleton, client, watcher, TokenMinter(stack.var_dir), timeout=timeout)
        warm_up, *customers = synthetic_customers(workflows + 1, f"skeleton{run_id}")
        try:
            await players.unbind(warm_up)
        except (WorkflowFailed, TimeoutError, httpx.HTTPError) as exc:
            raise InfraError(
                f"The bench's skeleton did not complete a workflow ({type(exc).__name__}: {exc}); see "
                f"{stack.var_dir / 'logs'}/bench-skeleton-*.log."
            ) from None
        played = await play_all(customers, players.unbind, skeleton.pids, concurrency=concurrency, rate=rate)
    return skeleton_report(played, [watcher.timelines[request_id] for request_id in played.request_ids])


def skeleton_report(played: Played, timelines: list[Timeline]) -> dict[str, Any]:
    """The skeleton's part of the bench report, its throughput measured as the stack's is."""
    completed, span = completed_within(timelines, played.elapsed)
    return {
        "workflows": len(played.request_ids) + sum(played.failures.values()),
        "completed": len(completed),
        "failed": sum(played.failures.values()),
        "failures": dict(played.failures.most_common(5)),
        "seconds": round(span, 2),
        "completed_per_second": round(len(completed) / span, 1) if span else None,
        "latency_ms": stage_latencies(completed),
        "cpu_ms_per_workflow": played.cpu.get("ms_per_workflow", {}),
        "machine_busy": played.cpu.get("machine_busy"),
    }
