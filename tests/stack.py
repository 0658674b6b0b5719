"""The four services running in this test process, on a given bus and given databases.

Each service keeps its own app, database, relay and consumer group, exactly as in production; only
the processes are shared. Verification reaches notification's HTTP API through an ASGI transport.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI

from services.binding.config import BindingSettings
from services.binding.main import create_app as create_binding_app
from services.notification.config import NotificationSettings
from services.notification.main import create_app as create_notification_app
from services.notification.templates import CODE_IN_SMS
from services.risk.config import RiskSettings
from services.risk.main import create_app as create_risk_app
from services.verification.config import VerificationSettings
from services.verification.main import create_app as create_verification_app
from shared.app import ServiceRuntime
from shared.bus import EventBus, InMemoryBus, KafkaBus
from shared.cloudevents import Envelope
from shared.events import BindingEvent
from shared.keys import SigningKey
from shared.migrations import SERVICES, upgrade_async
from tests.keys import key_settings, service_key, token
from tools.kafka import ADMIN, Cluster, EventTopics, read_topic
from tools.keys import signing_services

SETTINGS = {
    "binding": BindingSettings,
    "verification": VerificationSettings,
    "risk": RiskSettings,
    "notification": NotificationSettings,
}


def auth(subject: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, *roles)}"}


@dataclass
class BusTopics:
    """A bus with a pair of topics of its own, so no test sees another's events.

    On Kafka, `bus` is the admin's (the test's own reads and writes); each service connects as its
    own principal (`settings_for`, `bus_of`), so the broker's ACLs hold in the tests as in production.
    """

    bus: EventBus
    topic: str
    dlq_topic: str
    cluster: Cluster | None = None

    @property
    def bootstrap(self) -> str | None:
        return self.cluster.bootstrap if self.cluster else None

    @property
    def event_topics(self) -> EventTopics:
        return EventTopics(self.topic, self.dlq_topic)

    @property
    def app_bus(self) -> EventBus | None:
        """What an app factory is handed: the in-memory twin, or None on Kafka, so that the app
        builds its own KafkaBus from its settings, as its own principal."""
        return None if self.cluster else self.bus

    def settings_for(self, principal: str) -> dict[str, Any]:
        """The settings of an app on these topics that connects as `principal`."""
        if self.cluster is None:
            return {"kafka_bootstrap_servers": "127.0.0.1:1"}
        return {"kafka_bootstrap_servers": self.cluster.bootstrap, **self.cluster.service_env(principal)}

    def bus_of(self, principal: str) -> EventBus:
        """The bus as one principal (the in-memory twin knows none)."""
        if self.cluster is None:
            return self.bus
        return KafkaBus(
            self.cluster.bootstrap,
            self.cluster.as_principal(principal).security,
            client_id=f"unbind-{principal}",
        )

    async def records(self, topic: str | None = None) -> list[Any]:
        """Every record on a topic, from the beginning to the current end."""
        topic = topic or self.topic
        if isinstance(self.bus, InMemoryBus):
            return self.bus.records(topic)
        assert self.cluster
        return await read_topic(self.cluster, topic)

    async def publish(
        self, value: bytes, *, key: bytes | None, headers: list[tuple[str, bytes]], principal: str = ADMIN
    ) -> None:
        """Put a record on the topic as `principal` (the admin, by default: any bytes at all)."""
        producer = self.bus_of(principal).producer()
        await producer.start()
        try:
            await producer.send_and_wait(self.topic, value, key=key, headers=headers)
        finally:
            await producer.stop()

    async def publish_event(
        self,
        envelope: Envelope,
        *,
        times: int = 1,
        signer: SigningKey | None | str = "source",
        principal: str | None = None,
    ) -> None:
        """Put an event on the topic as a relay would: signed by the key of its source service (or
        `signer`; None: unsigned), as the principal of the service that emits its type (or
        `principal`); `times` > 1 simulates redelivery."""
        if signer == "source":
            source = envelope.source.removeprefix("/services/")
            signer = service_key(source) if source in signing_services() else None
        assert not isinstance(signer, str)
        key, value, headers = envelope.to_record(signer)
        for _ in range(times):
            await self.publish(
                value, key=key, headers=headers, principal=principal or envelope.data.emitted_by
            )

    async def events(self) -> list[Envelope]:
        return [Envelope.from_record(record.value, record.headers) for record in await self.records()]

    async def request_events(self, request_id: str) -> list[Envelope]:
        """The events of one request, in order (they share a binding, so a partition); events about
        no request (a customer's device keys) are left out."""
        return [
            event
            for event in await self.events()
            if isinstance(event.data, BindingEvent) and event.data.request_id == request_id
        ]


def make_bus_topics(kind: str, cluster: Cluster | None) -> BusTopics:
    suffix = uuid.uuid4().hex[:10]
    if kind == "memory":
        return BusTopics(InMemoryBus(), f"t.{suffix}.events", f"t.{suffix}.dlq")
    assert cluster
    return BusTopics(
        KafkaBus(cluster.bootstrap, cluster.security, client_id="unbind-tests"),
        f"t.{suffix}.events",
        f"t.{suffix}.dlq",
        cluster,
    )


def service_settings(
    service: str, database_url: str, topics: BusTopics, var_dir: Path, **overrides: Any
) -> Any:
    settings: dict[str, Any] = {
        f"UNBIND_{service.upper()}_DATABASE_URL": database_url,
        **key_settings(service, SETTINGS[service]),
        **topics.settings_for(service),
        "topic": topics.topic,
        "dlq_topic": topics.dlq_topic,
        "var_dir": var_dir,
        "consumer_group": f"unbind-{service}-{topics.topic}",
    }
    return SETTINGS[service](**(settings | overrides))


@dataclass
class Stack:
    topics: BusTopics
    var_dir: Path
    apps: dict[str, FastAPI] = field(default_factory=dict)
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def runtime(self, service: str) -> ServiceRuntime:
        return self.apps[service].state.runtime

    def client(self, service: str) -> httpx.AsyncClient:
        return self.clients[service]

    @property
    def sms_sink(self) -> Path:
        return self.var_dir / "sms.jsonl"

    def sms_messages(self) -> list[dict[str, str]]:
        if not self.sms_sink.exists():
            return []
        # Complete lines only: the gateway may be writing the last one while it is read.
        lines = self.sms_sink.read_bytes().split(b"\n")[:-1]
        return [orjson.loads(line) for line in lines if line.strip()]

    def codes(self, phone: str) -> list[str]:
        """The one-time codes sent to `phone`, oldest first (other SMS, like the risk prompt, skipped)."""
        return [
            match.group(1)
            for message in self.sms_messages()
            if message["to"] == phone and (match := CODE_IN_SMS.search(message["text"]))
        ]

    def latest_code(self, phone: str) -> str:
        codes = self.codes(phone)
        assert codes, f"no code was sent to {phone}"
        return codes[-1]

    async def request_status(self, request_id: str, user_id: str) -> dict[str, Any]:
        response = await self.client("binding").get(
            f"/v1/unbind-requests/{request_id}", headers=auth(user_id)
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def notices(self, user_id: str, request_id: str) -> dict[str, str]:
        """The customer's inbox messages about one request: kind -> body."""
        items = (await self.client("notification").get("/v1/notifications", headers=auth(user_id))).json()[
            "items"
        ]
        return {item["kind"]: item["body"] for item in items if item["request_id"] == request_id}

    async def wait_for_notice(
        self, user_id: str, request_id: str, kind: str, timeout: float = 15
    ) -> dict[str, str]:
        """The inbox messages about a request once one of `kind` is among them."""

        async def check() -> dict[str, str] | None:
            found = await self.notices(user_id, request_id)
            return found if kind in found else None

        return await eventually(
            check, timeout, f"no {kind} message about request {request_id} reached the inbox"
        )

    async def wait_for_request(
        self, request_id: str, user_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            body = await self.request_status(request_id, user_id)
            return body if predicate(body) else None

        return await eventually(check, timeout, f"request {request_id} never reached the expected state")


async def eventually(
    check: Callable[[], Awaitable[Any] | Any], timeout: float = 30, message: str = "condition not met"
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{message} within {timeout} s (last: {result!r})")
        await asyncio.sleep(0.1)


async def migrate(database_urls: dict[str, str]) -> None:
    for service, url in database_urls.items():
        await upgrade_async(service, url)


@asynccontextmanager
async def running_stack(
    topics: BusTopics,
    database_urls: dict[str, str],
    var_dir: Path,
    services: tuple[str, ...] = SERVICES,
    *,
    overrides: dict[str, dict[str, Any]] | None = None,
    notification_link: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    app_options: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[Stack]:
    """Migrate, build and start the given services (settings `overrides` per service); stop them
    on exit. `notification_link` may wrap verification's and risk's lines to notification (to cut them)."""
    await migrate({service: database_urls[service] for service in services})
    stack = Stack(topics, var_dir)
    async with AsyncExitStack() as exits:
        factories = {
            "binding": create_binding_app,
            "verification": create_verification_app,
            "risk": create_risk_app,
            "notification": create_notification_app,
        }
        # Notification first: the HTTP calls of verification (codes) and risk (reviewers' messages) are wired
        # to its app.
        for service in sorted(services, key=lambda name: name != "notification"):
            settings = service_settings(
                service, database_urls[service], topics, var_dir, **(overrides or {}).get(service, {})
            )
            options = dict((app_options or {}).get(service, {}))
            if service in ("verification", "risk"):
                notification_app = stack.apps.get("notification")
                transport = httpx.ASGITransport(app=notification_app) if notification_app else None
                if transport is not None and notification_link is not None:
                    transport = notification_link(transport)
                options.setdefault("notification_transport", transport)
            app = factories[service](settings, bus=topics.app_bus, **options)
            stack.apps[service] = app
            await exits.enter_async_context(app.router.lifespan_context(app))
            stack.clients[service] = await exits.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{service}")
            )
        yield stack


def on_memory_bus(
    database_urls: dict[str, str], var_dir: Path, services: tuple[str, ...] = SERVICES, **options: Any
) -> AbstractAsyncContextManager[Stack]:
    """`running_stack` on the in-memory bus."""
    return running_stack(make_bus_topics("memory", None), database_urls, var_dir, services, **options)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve an app over real HTTP on a free 127.0.0.1 port (for a browser, or a streamed response,
    which the in-process ASGI transport would buffer to its end); yields the base URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), 10, "the test server did not start")
        if task.done():
            task.result()
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class Switchable(httpx.AsyncBaseTransport):
    """A transport that can be cut: while `down`, every request fails to connect."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("notification is down", request=request)
        return await self.inner.handle_async_request(request)
