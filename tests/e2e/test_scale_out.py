"""Scale-out: two instances of every consuming service share one consumer group per service and
one database per service, on the real broker and PostgreSQL. Kafka spreads the partitions across
the instances, the relays take turns, and every request still completes exactly once."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.contracts import assert_records_follow_contract
from tests.factories import customer_with_binding, idempotency_key, unbind_body
from tests.stack import BusTopics, Stack, auth, eventually, running_stack
from tools.kafka import DEFAULT_PARTITIONS

CONSUMING = ("binding", "verification", "risk", "notification")
FLOW = ["UnbindRequested", "RiskAssessed", "VerificationRequested", "Verified", "UnbindCompleted"]
REQUESTS = 24


def assigned(stack: Stack, service: str) -> set[int]:
    return stack.runtime(service).consumer.assigned_partitions()


async def spread_across_both(instances: list[Stack], partitions: int) -> bool:
    """True once each group's partitions are split between its two instances, none shared."""
    for service in CONSUMING:
        first, second = (assigned(stack, service) for stack in instances)
        if not first or not second or first & second or len(first | second) != partitions:
            return False
    return True


@pytest.mark.kafka
@pytest.mark.parametrize("database_urls", ["postgresql"], indirect=True)
async def test_two_instances_of_each_service_complete_every_request_exactly_once(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with AsyncExitStack() as running:
        instances = [
            await running.enter_async_context(running_stack(kafka_topics, database_urls, tmp_path))
            for _ in range(2)
        ]
        partitions = DEFAULT_PARTITIONS  # what the test topics are created with
        await eventually(
            lambda: spread_across_both(instances, partitions),
            60,
            "the partitions were not spread across both instances",
        )

        customers = [await customer_with_binding(instances[0]) for _ in range(REQUESTS)]

        async def unbind(index: int) -> str:
            # Like a load balancer: the customer's calls land on either instance.
            front, back = instances[index % 2], instances[(index + 1) % 2]
            customer = customers[index]
            headers = auth(customer.user_id)
            accepted = await front.client("binding").post(
                f"/v1/bindings/{customer.binding_id}/unbind-requests",
                json=unbind_body(),
                headers={**headers, "Idempotency-Key": idempotency_key()},
            )
            assert accepted.status_code == 202, accepted.text
            request_id = accepted.json()["id"]
            issued = await back.wait_for_request(
                request_id, customer.user_id, lambda body: body["verification"] is not None, timeout=60
            )
            code = await eventually(lambda: _code(front, customer.phone), 30, "no SMS code was sent")
            verified = await back.client("verification").post(
                f"/v1/verifications/{issued['verification']['id']}/otp", json={"code": code}, headers=headers
            )
            assert verified.status_code == 200, verified.text
            await front.wait_for_request(
                request_id, customer.user_id, lambda body: body["status"] == "completed", timeout=60
            )
            return request_id

        request_ids = await asyncio.gather(*(unbind(index) for index in range(REQUESTS)))
        await asyncio.sleep(1.0)  # room for a wrong second event to show up

        assert_records_follow_contract(await kafka_topics.records())
        events = [event for event in await kafka_topics.events() if event.data.request_id in set(request_ids)]
        for request_id in request_ids:
            assert [event.type for event in events if event.data.request_id == request_id] == FLOW, (
                "each step once, in order"
            )
        assert len({event.id for event in events}) == len(events), "no event published twice"

        # Both instances of each service did part of the work.
        for service in CONSUMING:
            handled = [stack.runtime(service).consumer.handled_total for stack in instances]
            assert all(count > 0 for count in handled), f"{service}: one instance handled nothing ({handled})"
        assert await spread_across_both(instances, partitions)

        # One code SMS per verification, one completion notice per request.
        assert [len(instances[0].codes(customer.phone)) for customer in customers] == [1] * REQUESTS
        for customer, request_id in zip(customers, request_ids, strict=True):
            inbox = (
                await instances[1]
                .client("notification")
                .get("/v1/notifications", headers=auth(customer.user_id))
            ).json()["items"]
            assert [item["kind"] for item in inbox if item["request_id"] == request_id].count(
                "unbind_completed"
            ) == 1


async def _code(stack: Stack, phone: str) -> str | None:
    return stack.latest_code(phone) if stack.codes(phone) else None
