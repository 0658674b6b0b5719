"""Test infrastructure: the real Kafka broker and PostgreSQL server, started by the project's
own code (or taken from KAFKA_BOOTSTRAP_SERVERS / UNBIND_TEST_POSTGRES_URL), and fixtures that
run one test body on each bus and each database."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from shared.migrations import SERVICES
from tests.stack import BusTopics, make_bus_topics
from tools.kafka import Cluster, drop_topics, kafka_down, kafka_up, kafka_up_async, prepare_topics
from tools.kafka_access import CREDENTIALS_ENV
from tools.postgres import ensure_database, postgres_up

ROOT = Path(__file__).resolve().parent.parent
# The test broker and server run on ports of their own, beside any `unbind up` of the developer.
# Under pytest-xdist each worker (gw0, gw1...) has a broker and a server of its own: tests stop and
# restart the broker, which must not pull it from under another worker's test.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
TEST_VAR = ROOT / "var" / "test" / (f"gw{WORKER}" if WORKER else "")
TEST_KAFKA_PORT = int(os.environ.get("UNBIND_TEST_KAFKA_PORT", "19092")) + 10 * WORKER
TEST_KAFKA_CONTROLLER_PORT = TEST_KAFKA_PORT + 1
TEST_POSTGRES_PORT = int(os.environ.get("UNBIND_TEST_POSTGRES_PORT", "55433")) + WORKER
# Every principal's password on the test broker, for the `unbind` processes the tests start (read
# at import: some tests clear UNBIND_* from their environment). An external test cluster
# (KAFKA_BOOTSTRAP_SERVERS) needs one too, as `unbind kafka up` writes it.
KAFKA_CREDENTIALS = Path(os.environ.get(CREDENTIALS_ENV) or TEST_VAR / "kafka" / "credentials.json")


@contextlib.contextmanager
def machine_share(*, alone: bool) -> Iterator[None]:
    """A readers-writer lock across the xdist workers (flock on files under var/test): a test `alone`
    waits until no other test runs and keeps new ones out; the turnstile, which it holds while it
    waits, stops the others from starving it."""
    locks = ROOT / "var" / "test"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / "turnstile.lock", "a") as turnstile, open(locks / "machine.lock", "a") as machine:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(machine, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield  # closing the files releases both locks


@pytest.fixture(autouse=True)
def _alone_when_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    # The bench loads both cores on purpose: beside it, other tests miss their deadlines, and its
    # figures would count their work too.
    with machine_share(alone=request.node.get_closest_marker("alone") is not None):
        yield


@pytest.fixture(scope="session")
def kafka_cluster() -> Cluster:
    """The test broker, as its admin; `as_principal(service)` reaches it as a service."""
    return kafka_up(TEST_VAR, port=TEST_KAFKA_PORT, controller_port=TEST_KAFKA_CONTROLLER_PORT, topics=None)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    return os.environ.get("UNBIND_TEST_POSTGRES_URL") or postgres_up(TEST_VAR, port=TEST_POSTGRES_PORT)


async def _drop_databases(server_url: str, names: list[str]) -> None:
    connection = await asyncpg.connect(
        server_url.replace("postgresql+asyncpg://", "postgresql://").rstrip("/") + "/postgres"
    )
    try:
        for name in names:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """One fresh database per service, on SQLite files or on the PostgreSQL server."""
    if request.param == "sqlite":
        yield {service: f"sqlite+aiosqlite:///{tmp_path / f'{service}.db'}" for service in SERVICES}
        return
    server = request.getfixturevalue("postgres_server")
    prefix = f"t_{uuid.uuid4().hex[:10]}"
    names = {service: f"{prefix}_{service}" for service in SERVICES}
    urls = {service: await ensure_database(server, name) for service, name in names.items()}
    yield urls
    await _drop_databases(server, list(names.values()))


async def _kafka_topics(cluster: Cluster) -> BusTopics:
    """Fresh topics, with the services' ACLs on them as in production."""
    topics = make_bus_topics("kafka", cluster)
    await prepare_topics(cluster, topics.event_topics)
    return topics


async def _drop_topics(cluster: Cluster, topics: BusTopics) -> None:
    # Cleanup only: a broker a test left stopped must not turn a passed test into an error.
    try:
        await drop_topics(cluster, topics.event_topics)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"test topics {topics.topic} not deleted: {exc!r}", stacklevel=1)


@pytest.fixture
async def kafka_topics(kafka_cluster: Cluster) -> AsyncIterator[BusTopics]:
    """The real broker, with a pair of fresh topics for this test, deleted after it (with their
    ACLs): a broker holding every topic of many runs (12,000 partitions) ran out of its 512 MB heap."""
    topics = await _kafka_topics(kafka_cluster)
    yield topics
    await _drop_topics(kafka_cluster, topics)


@pytest.fixture(params=["memory", "kafka"])
async def any_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusTopics]:
    """The same test body on the in-memory twin and on the real broker."""
    if request.param == "memory":
        yield make_bus_topics("memory", None)
        return
    cluster = request.getfixturevalue("kafka_cluster")
    topics = await _kafka_topics(cluster)
    yield topics
    await _drop_topics(cluster, topics)


class Broker:
    """Stops and restarts the test broker (same data, same ports) for outage tests."""

    async def stop(self) -> None:
        assert await asyncio.to_thread(kafka_down, TEST_VAR), "the test broker was not running"

    async def start(self) -> None:
        await kafka_up_async(
            TEST_VAR, port=TEST_KAFKA_PORT, controller_port=TEST_KAFKA_CONTROLLER_PORT, topics=None
        )


@pytest.fixture
def broker(kafka_cluster: Cluster) -> Broker:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("an external cluster (KAFKA_BOOTSTRAP_SERVERS) cannot be stopped by the tests")
    return Broker()
