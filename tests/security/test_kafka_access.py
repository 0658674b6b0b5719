"""The broker lets in only authenticated principals, and each one only as far as its ACLs go: a
forged event cannot even reach the topic from a client that is not a service allowed to emit.

On the real test broker (SASL/SCRAM-SHA-512, StandardAuthorizer), with the ACLs the test topics
get exactly as `unbind up`'s topics do.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
)

from shared.bus import KafkaBus, stop_quietly
from shared.cloudevents import Envelope
from shared.events import UnbindCompleted
from shared.migrations import SERVICES
from tests.stack import BusTopics, running_stack
from tools.kafka import Cluster, create_topics, delete_topics
from tools.kafka_access import service_principals

pytestmark = pytest.mark.kafka


async def refusal(bus: KafkaBus, topic: str) -> str | None:
    """Why the broker refuses `bus`'s principal a write to `topic` (None: the write succeeded)."""
    producer = bus.producer()
    try:
        async with asyncio.timeout(20):
            await producer.start()
            await producer.send_and_wait(topic, b"{}", key=b"b-forged")
        return None
    except KafkaError as exc:
        return type(exc).__name__
    finally:
        await stop_quietly(producer)


async def test_a_client_without_sasl_is_refused(kafka_topics: BusTopics) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_topics.bootstrap, request_timeout_ms=5000)
    try:
        with pytest.raises(KafkaConnectionError):
            async with asyncio.timeout(20):
                await producer.start()
    finally:
        await stop_quietly(producer)
    assert await kafka_topics.records() == []


async def test_a_wrong_password_is_refused(kafka_cluster: Cluster) -> None:
    binding = kafka_cluster.as_principal("binding")
    host, port = binding.bootstrap.rsplit(":", 1)
    options = replace(binding.security, password="not-" + binding.security.password).client_options()
    with pytest.raises(SaslAuthenticationFailed, match="invalid credentials"):
        await create_conn(host, int(port), request_timeout_ms=5000, **options)
    # The right one is let in, so it is the password that was refused.
    connection = await create_conn(
        host, int(port), request_timeout_ms=5000, **binding.security.client_options()
    )
    connection.close()


async def test_only_the_services_that_emit_write_the_topic_and_only_consumers_write_the_dlq(
    kafka_topics: BusTopics,
) -> None:
    writes = {
        principal: (
            await refusal(kafka_topics.bus_of(principal), kafka_topics.topic),
            await refusal(kafka_topics.bus_of(principal), kafka_topics.dlq_topic),
        )  # type: ignore[arg-type]
        for principal in service_principals()
    }
    assert writes == {
        "binding": (None, None),
        "verification": (None, None),
        "risk": (None, None),
        # Notification emits PreferencesChanged.
        "notification": (None, None),
        # The dashboard only reads: not even an idempotent producer is allowed to start.
        "dashboard": ("ClusterAuthorizationFailedError", "ClusterAuthorizationFailedError"),
    }
    # Only the four allowed writes reached the topic, and each service's DLQ write its DLQ.
    assert len(await kafka_topics.records()) == 4
    assert len(await kafka_topics.records(kafka_topics.dlq_topic)) == 4


async def test_a_service_writes_no_topic_it_was_not_granted(
    kafka_topics: BusTopics, kafka_cluster: Cluster
) -> None:
    other = f"t.{uuid.uuid4().hex[:10]}.events"
    await create_topics(kafka_cluster, [other])
    try:
        assert await refusal(kafka_topics.bus_of("binding"), other) == "TopicAuthorizationFailedError"  # type: ignore[arg-type]
    finally:
        await delete_topics(kafka_cluster, [other])


async def test_a_service_reads_only_with_its_own_consumer_groups(kafka_topics: BusTopics) -> None:
    await kafka_topics.publish_event(
        Envelope.emit(
            UnbindCompleted(
                request_id="r-1",
                binding_id="b-1",
                user_id="u-1",
                mandates_cancelled=1,
                credit_limit_before=30000,
                credit_limit_after=20300,
            )
        )
    )

    async def read_as(principal: str, group: str) -> int:
        consumer = kafka_topics.bus_of(principal).consumer(group, [kafka_topics.topic])
        try:
            async with asyncio.timeout(30):
                await consumer.start()
                seen = 0
                while not seen:
                    seen = sum(len(records) for records in (await consumer.getmany(timeout_ms=500)).values())
                await consumer.commit()
                return seen
        finally:
            await stop_quietly(consumer)

    assert await read_as("risk", f"unbind-risk-{kafka_topics.topic}") == 1
    assert await read_as("dashboard", f"unbind-dashboard-{kafka_topics.topic}") == 1
    with pytest.raises(GroupAuthorizationFailedError):
        await read_as("risk", f"unbind-binding-{kafka_topics.topic}")


async def test_the_in_process_services_connect_as_their_own_principals(
    kafka_topics: BusTopics, kafka_cluster: Cluster, tmp_path: Path
) -> None:
    """The tests' services are handed no bus: each builds its KafkaBus from its own credentials."""
    assert kafka_topics.app_bus is None
    urls = {service: f"sqlite+aiosqlite:///{tmp_path / f'{service}.db'}" for service in SERVICES}
    async with running_stack(
        kafka_topics, urls, tmp_path, overrides={service: {"run_workers": False} for service in SERVICES}
    ) as stack:
        for service in SERVICES:
            assert (
                stack.runtime(service).settings.kafka_security()
                == kafka_cluster.as_principal(service).security
            )
