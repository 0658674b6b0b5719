"""Kafka down while a customer asks to unbind: the request is accepted, and the flow completes
once the broker is back, because the event waits in the outbox, not in memory."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from services.binding.models import OutboxMessage
from tests.conftest import Broker
from tests.contracts import assert_records_follow_contract
from tests.factories import customer_with_binding, idempotency_key, unbind_body
from tests.stack import BusTopics, auth, eventually, running_stack


async def test_unbind_requested_while_kafka_is_down_completes_after_it_returns(
    broker: Broker, kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        headers = auth(customer.user_id)
        await eventually(
            lambda: all(stack.runtime(name).consumer.connected for name in stack.apps),
            30,
            "consumers did not connect",
        )

        await broker.stop()
        try:
            accepted = await stack.client("binding").post(
                f"/v1/bindings/{customer.binding_id}/unbind-requests",
                json=unbind_body(),
                headers={**headers, "Idempotency-Key": idempotency_key()},
            )
            assert accepted.status_code == 202, accepted.text
            request_id = accepted.json()["id"]
            async with stack.runtime("binding").session_factory() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None))
                )
            assert pending == 1, "the event waits in the outbox while the broker is away"
            assert (await stack.request_status(request_id, customer.user_id))["status"] == "pending_risk"
        finally:
            await broker.start()

        issued = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["verification"] is not None, timeout=90
        )
        code = await eventually(
            lambda: stack.codes(customer.phone) and stack.latest_code(customer.phone), 30, "no code sent"
        )
        verified = await stack.client("verification").post(
            f"/v1/verifications/{issued['verification']['id']}/otp", json={"code": code}, headers=headers
        )
        assert verified.status_code == 200, verified.text
        await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["status"] == "completed", timeout=60
        )

        flow = [event.type for event in await kafka_topics.events() if event.data.request_id == request_id]
        assert flow == [
            "UnbindRequested",
            "RiskAssessed",
            "VerificationRequested",
            "Verified",
            "UnbindCompleted",
        ]
        assert_records_follow_contract(await kafka_topics.records())
