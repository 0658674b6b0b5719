"""The right message at the right time: the risk prompt before the code, whatever the timing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from services.notification.models import Delivery
from services.notification.providers import Outgoing
from services.notification.templates import CODE_IN_SMS
from tests.binding.test_api import assert_problem
from tests.factories import customer_with_binding, idempotency_key, unbind_body
from tests.notification.test_delivery import ONLY_NOTIFICATION, deliveries, requested, with_contact
from tests.stack import BusTopics, Stack, auth, eventually, make_bus_topics, running_stack

VERIFICATION = auth("verification", "service")


def code_for(request_id: str, number: int = 1) -> dict:
    params = {"code": "493021", "ttl_minutes": "5"}
    return {"message_id": f"v-{request_id}:otp:{number}", "user_id": "u-zhangsan", "template": "otp_code", "request_id": request_id, "params": params}


class GatedSms:
    """An SMS gateway that records what it took, in order, and holds any message but a code until `gate` opens."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.gate = asyncio.Event()
        self.holding = asyncio.Event()

    async def send(self, message: Outgoing) -> None:
        if not CODE_IN_SMS.search(message.body):
            self.holding.set()
            await self.gate.wait()
        self.sent.append(message)


async def test_a_code_waits_for_the_prompt_the_dispatcher_is_sending(database_urls: dict[str, str], tmp_path: Path) -> None:
    sms = GatedSms()
    overrides = {"notification": {"dispatch_interval_seconds": 0.05}}
    options = {"notification": {"providers": {"sms": sms}}}
    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path, ONLY_NOTIFICATION, overrides, app_options=options) as stack:
        await with_contact(stack)
        await stack.topics.publish_event(requested("r-1"))
        await asyncio.wait_for(sms.holding.wait(), 15)  # the dispatcher is sending the prompt, slowly

        code = asyncio.create_task(stack.client("notification").post("/internal/v1/messages", json=code_for("r-1"), headers=VERIFICATION))
        await asyncio.sleep(0.5)
        assert sms.sent == [], "the code went out while its request's prompt was still on its way"
        sms.gate.set()
        assert (await asyncio.wait_for(code, 15)).status_code == 202
        assert [CODE_IN_SMS.search(message.body) is not None for message in sms.sent] == [False, True]
        assert [(row.kind, row.status) for row in await deliveries(stack) if row.channel == "sms"] == [("unbind_requested", "sent"), ("otp_code", "sent")]


async def test_a_code_for_a_request_not_announced_yet_waits_then_goes_after_its_prompt(database_urls: dict[str, str], tmp_path: Path) -> None:
    # A dispatcher that sleeps through the test: the prompt is still queued when the code comes.
    overrides = {"notification": {"dispatch_interval_seconds": 60}}
    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path, ONLY_NOTIFICATION, overrides) as stack:
        await with_contact(stack)
        client = stack.client("notification")
        early = await client.post("/internal/v1/messages", json=code_for("r-1"), headers=VERIFICATION)
        assert_problem(early, 409, "request-notice-pending")
        assert early.headers["retry-after"] == "1" and stack.sms_messages() == []

        await stack.topics.publish_event(requested("r-1"))
        await eventually(lambda: _queued_prompt(stack), 15, "the prompt was not planned")
        assert (await client.post("/internal/v1/messages", json=code_for("r-1"), headers=VERIFICATION)).status_code == 202
        texts = [message["text"] for message in stack.sms_messages()]
        assert len(texts) == 2 and not CODE_IN_SMS.search(texts[0]) and CODE_IN_SMS.search(texts[1]), texts
        prompt = [row for row in await deliveries(stack) if row.kind == "unbind_requested" and row.channel == "sms"]
        assert [(row.status, row.attempts, row.body) for row in prompt] == [("sent", 1, texts[0])]

        # A resend finds the prompt sent: the code alone goes.
        assert (await client.post("/internal/v1/messages", json=code_for("r-1", 2), headers=VERIFICATION)).status_code == 202
        assert len(stack.sms_messages()) == 3


async def _queued_prompt(stack: Stack) -> bool:
    return any(row.kind == "unbind_requested" and row.channel == "sms" and row.status == "queued" for row in await deliveries(stack))


async def test_every_customer_reads_the_prompt_before_the_code(kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path) -> None:
    # The dispatcher runs every 5 s, far slower than risk and verification: when the order was a
    # matter of timing, every code arrived before its prompt.
    async with running_stack(kafka_topics, database_urls, tmp_path, overrides={"notification": {"dispatch_interval_seconds": 5}}) as stack:
        customers = [await customer_with_binding(stack) for _ in range(6)]
        for customer in customers:
            response = await stack.client("binding").post(
                f"/v1/bindings/{customer.binding_id}/unbind-requests", json=unbind_body(), headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()}
            )
            assert response.status_code == 202, response.text
        await eventually(lambda: all(stack.codes(customer.phone) for customer in customers), 60, "not every customer got a code")

        async with stack.runtime("notification").session_factory() as session:
            prompts = {row.recipient: row.body for row in await session.scalars(select(Delivery).where(Delivery.kind == "unbind_requested", Delivery.channel == "sms"))}
        for customer in customers:
            texts = [message["text"] for message in stack.sms_messages() if message["to"] == customer.phone]
            assert texts[0] == prompts[customer.phone] and CODE_IN_SMS.search(texts[1]), texts
