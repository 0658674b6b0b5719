"""The right message at the right time: the risk prompt before the code, whatever the timing; quiet
hours hold only what can wait, never the inbox; a message about a stage the request has left is
superseded, not sent; a request sent to a person says when to expect an answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import select

from services.notification import service
from services.notification.config import NotificationSettings
from services.notification.models import Delivery
from services.notification.providers import Outgoing
from services.notification.templates import CODE_IN_SMS, KINDS, STAGE_KINDS
from shared.cloudevents import Envelope
from shared.events import BiometricCounterRegressed, UnbindCancelled, UnbindExpired, VerificationRequested
from tests.binding.test_api import assert_problem
from tests.factories import (
    customer_with_binding,
    decide_review,
    idempotency_key,
    pass_verification,
    unbind_body,
)
from tests.notification.test_delivery import ONLY_NOTIFICATION, deliveries, requested, with_contact
from tests.risk.test_flows import NOON, third_request_under_review
from tests.stack import BusTopics, Stack, auth, eventually, on_memory_bus, running_stack

VERIFICATION = auth("verification", "service")
# Every SMS begins with the sender's signature (the default of UNBIND_SMS_SIGNATURE), added as it is sent.
SIGNATURE = NotificationSettings.model_fields["sms_signature"].default


def code_for(request_id: str, number: int = 1) -> dict:
    params = {"code": "493021", "ttl_minutes": "5"}
    return {
        "message_id": f"v-{request_id}:otp:{number}",
        "user_id": "u-zhangsan",
        "template": "otp_code",
        "request_id": request_id,
        "params": params,
    }


class GatedSms:
    """An SMS gateway that records what it took, in order, and holds any message but a code until `gate`
    opens."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.gate = asyncio.Event()
        self.holding = asyncio.Event()

    async def send(self, message: Outgoing) -> None:
        if not CODE_IN_SMS.search(message.body):
            self.holding.set()
            await self.gate.wait()
        self.sent.append(message)


async def test_a_code_waits_for_the_prompt_the_dispatcher_is_sending(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    sms = GatedSms()
    overrides = {"notification": {"dispatch_interval_seconds": 0.05}}
    options = {"notification": {"providers": {"sms": sms}}}
    async with on_memory_bus(
        database_urls,
        tmp_path,
        ONLY_NOTIFICATION,
        overrides=overrides,
        app_options=options,
    ) as stack:
        await with_contact(stack)
        await stack.topics.publish_event(requested("r-1"))
        await asyncio.wait_for(sms.holding.wait(), 15)  # the dispatcher is sending the prompt, slowly

        code = asyncio.create_task(
            stack.client("notification").post(
                "/internal/v1/messages", json=code_for("r-1"), headers=VERIFICATION
            )
        )
        await asyncio.sleep(0.5)
        assert sms.sent == [], "the code went out while its request's prompt was still on its way"
        sms.gate.set()
        assert (await asyncio.wait_for(code, 15)).status_code == 202
        assert [CODE_IN_SMS.search(message.body) is not None for message in sms.sent] == [False, True]
        assert [(row.kind, row.status) for row in await deliveries(stack) if row.channel == "sms"] == [
            ("unbind_requested", "sent"),
            ("otp_code", "sent"),
        ]


async def test_a_code_for_a_request_not_announced_yet_waits_then_goes_after_its_prompt(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    # The dispatcher stopped: the prompt is still queued when the code comes.
    overrides = {"notification": {"code_wait_seconds": 0.5}}
    async with on_memory_bus(database_urls, tmp_path, ONLY_NOTIFICATION, overrides=overrides) as stack:
        await stop_dispatcher(stack)
        await with_contact(stack)
        client = stack.client("notification")
        early = await client.post("/internal/v1/messages", json=code_for("r-1"), headers=VERIFICATION)
        # Past `code_wait_seconds` with the request still unknown: refused, for verification to retry.
        assert_problem(early, 409, "request-notice-pending")
        assert early.headers["retry-after"] == "1" and stack.sms_messages() == []

        await stack.topics.publish_event(requested("r-1"))
        await eventually(lambda: _queued_prompt(stack), 15, "the prompt was not planned")
        assert (
            await client.post("/internal/v1/messages", json=code_for("r-1"), headers=VERIFICATION)
        ).status_code == 202
        texts = [message["text"] for message in stack.sms_messages()]
        assert len(texts) == 2 and not CODE_IN_SMS.search(texts[0]) and CODE_IN_SMS.search(texts[1]), texts
        prompt = [
            row for row in await deliveries(stack) if row.kind == "unbind_requested" and row.channel == "sms"
        ]
        assert [(row.status, row.attempts, SIGNATURE + row.body) for row in prompt] == [("sent", 1, texts[0])]

        # A resend finds the prompt sent: the code alone goes.
        assert (
            await client.post("/internal/v1/messages", json=code_for("r-1", 2), headers=VERIFICATION)
        ).status_code == 202
        assert len(stack.sms_messages()) == 3


async def test_a_code_that_comes_just_before_its_request_waits_for_it_instead_of_a_409(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    # Notification's consumer lags behind risk and verification: the code's call is held until the
    # request is learned, and the prompt still goes first.
    overrides = {"notification": {"code_wait_seconds": 4}}
    async with on_memory_bus(database_urls, tmp_path, ONLY_NOTIFICATION, overrides=overrides) as stack:
        await stop_dispatcher(stack)
        await with_contact(stack)
        code = asyncio.create_task(
            stack.client("notification").post(
                "/internal/v1/messages", json=code_for("r-1"), headers=VERIFICATION
            )
        )
        await asyncio.sleep(0.5)
        assert not code.done() and stack.sms_messages() == []
        await stack.topics.publish_event(requested("r-1"))
        assert (await asyncio.wait_for(code, 10)).status_code == 202
        texts = [message["text"] for message in stack.sms_messages()]
        assert len(texts) == 2 and not CODE_IN_SMS.search(texts[0]) and CODE_IN_SMS.search(texts[1]), texts


async def _queued_prompt(stack: Stack) -> bool:
    return any(
        row.kind == "unbind_requested" and row.channel == "sms" and row.status == "queued"
        for row in await deliveries(stack)
    )


async def test_every_customer_reads_the_prompt_before_the_code(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    # The dispatcher runs every 5 s, far slower than risk and verification: when the order was a
    # matter of timing, every code arrived before its prompt.
    async with running_stack(
        kafka_topics, database_urls, tmp_path, overrides={"notification": {"dispatch_interval_seconds": 5}}
    ) as stack:
        customers = [await customer_with_binding(stack) for _ in range(6)]
        for customer in customers:
            response = await stack.client("binding").post(
                f"/v1/bindings/{customer.binding_id}/unbind-requests",
                json=unbind_body(),
                headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
            )
            assert response.status_code == 202, response.text
        await eventually(
            lambda: all(stack.codes(customer.phone) for customer in customers),
            60,
            "not every customer got a code",
        )

        async with stack.runtime("notification").session_factory() as session:
            prompts = {
                row.recipient: row.body
                for row in await session.scalars(
                    select(Delivery).where(Delivery.kind == "unbind_requested", Delivery.channel == "sms")
                )
            }
        for customer in customers:
            texts = [message["text"] for message in stack.sms_messages() if message["to"] == customer.phone]
            assert texts[0] == SIGNATURE + prompts[customer.phone] and CODE_IN_SMS.search(texts[1]), texts


def verification_requested(request_id: str) -> Envelope:
    expires = datetime.now(UTC) + timedelta(minutes=15)
    return Envelope.emit(
        VerificationRequested(
            **about(request_id), verification_id=f"v-{request_id}", methods=["otp"], expires_at=expires
        )
    )


def about(request_id: str) -> dict[str, str]:
    return {"request_id": request_id, "binding_id": "b-1", "user_id": "u-zhangsan"}


async def stop_dispatcher(stack: Stack) -> None:
    """The service's own dispatcher stopped (it would wake for each delivery queued): what is queued
    waits for `dispatch`."""
    (task,) = [
        task for task in stack.runtime("notification").tasks if task.get_name() == "notification-dispatcher"
    ]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def dispatch(stack: Stack) -> None:
    """One round of the dispatcher, now (the service's own is stopped in these tests)."""
    runtime = stack.runtime("notification")
    async with runtime.unit_of_work() as uow:
        await service.dispatch_due(uow, runtime.deps)


async def handled(stack: Stack, count: int) -> None:
    consumer = stack.runtime("notification").consumer
    await eventually(lambda: consumer.handled_total == count, 15, f"{count} events were not handled")


def test_what_can_wait_is_neither_security_nor_about_an_open_request() -> None:
    # A paused auto-debit resuming comes months after its request ended.
    can_wait = {
        "binding_created",
        "mandate_confirmed",
        "unbind_cancelled",
        "unbind_expired",
        "follow_up_reminder",
        "auto_debit_resumed",
    }
    assert {kind for kind, spec in KINDS.items() if spec.can_wait} == can_wait
    stages = {
        "verification_requested",
        "verified",
        "review_approved",
        "unbind_appealed",
        "unbind_under_review",
        "mandate_requested",
        "mandate_refused",
    }
    stages |= {"dispute_received", "dispute_closed"}
    assert STAGE_KINDS == stages


async def test_in_quiet_hours_only_what_can_wait_waits_and_never_the_inbox(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(
        kafka_topics,
        database_urls,
        tmp_path,
        ONLY_NOTIFICATION,
    ) as stack:
        await stop_dispatcher(stack)
        now = datetime.now(UTC)
        local_hour = now.astimezone(ZoneInfo("Asia/Shanghai")).hour
        await with_contact(
            stack, quiet_start=f"{local_hour:02d}:00", quiet_end=f"{(local_hour + 2) % 24:02d}:00"
        )
        for envelope in (
            requested("r-1"),
            verification_requested("r-1"),
            requested("r-2"),
            Envelope.emit(UnbindCancelled(**about("r-2"))),
        ):
            await stack.topics.publish_event(envelope)
        await handled(stack, 4)

        rows = {(row.request_id, row.kind, row.channel): row for row in await deliveries(stack)}
        assert {key[1:]: row.status for key, row in rows.items() if key[2] == "inapp"} == {
            ("unbind_requested", "inapp"): "sent",
            ("verification_requested", "inapp"): "sent",
            ("unbind_cancelled", "inapp"): "sent",
        }, "the inbox never waits"
        assert rows[("r-1", "verification_requested", "push")].next_attempt_at <= datetime.now(UTC), (
            "a request still open does not wait"
        )
        assert rows[("r-2", "unbind_cancelled", "push")].next_attempt_at > now + timedelta(minutes=59), (
            "what can wait waits"
        )
        await dispatch(stack)
        pushed = [orjson.loads(line)["title"] for line in (tmp_path / "push.jsonl").read_bytes().splitlines()]
        assert pushed == [KINDS["verification_requested"].texts["zh-CN"][0]]


async def test_a_message_about_a_stage_the_request_has_left_is_superseded_not_sent(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with on_memory_bus(
        database_urls,
        tmp_path,
        ONLY_NOTIFICATION,
    ) as stack:
        await stop_dispatcher(stack)
        await with_contact(stack)
        regressed = BiometricCounterRegressed(
            **about("r-1"), verification_id="v-r-1", device_id="d-1", counter=3, last_counter=7
        )
        # r-1 is still to verify after a refused signature; r-2 expired before its push could go.
        for envelope in (requested("r-1"), verification_requested("r-1"), Envelope.emit(regressed)):
            await stack.topics.publish_event(envelope)
        for envelope in (
            requested("r-2"),
            verification_requested("r-2"),
            Envelope.emit(UnbindExpired(**about("r-2"))),
        ):
            await stack.topics.publish_event(envelope)
        await handled(stack, 6)
        await dispatch(stack)

        rows = {
            (row.request_id, row.kind, row.channel): row.status
            for row in await deliveries(stack)
            if row.channel == "push"
        }
        assert rows == {
            ("r-1", "verification_requested", "push"): "sent",
            ("r-2", "verification_requested", "push"): "superseded",
            ("r-2", "unbind_expired", "push"): "sent",
        }
        assert len((tmp_path / "push.jsonl").read_bytes().splitlines()) == 2
        inbox = (
            await stack.client("notification").get("/v1/notifications", headers=auth("u-zhangsan"))
        ).json()["items"]
        assert sorted(item["kind"] for item in inbox if item["request_id"] == "r-2") == [
            "unbind_expired",
            "unbind_requested",
            "verification_requested",
        ]
        metrics = (await stack.client("notification").get("/metrics")).text
        assert 'unbind_notification_deliveries_total{channel="push",status="superseded"} 1.0' in metrics


async def test_a_push_still_queued_when_the_unbind_completes_is_never_sent(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    # The dispatcher is stopped while the customer verifies and the unbind completes (held, retried or
    # slow: the same); its next round finds "verify it is you" and "verified" stale.
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        await stop_dispatcher(stack)
        customer = await customer_with_binding(stack)
        response = await stack.client("binding").post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            json=unbind_body(),
            headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
        )
        request_id = response.json()["id"]
        issued = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["verification"] is not None
        )
        await eventually(lambda: stack.codes(customer.phone), 15, "no code")
        await pass_verification(stack, customer, request_id, issued["verification"]["id"])
        await stack.wait_for_request(request_id, customer.user_id, lambda body: body["status"] == "completed")

        async def completion_planned() -> bool:
            return any(row.kind == "unbind_completed" for row in await deliveries(stack, customer.user_id))

        await eventually(completion_planned, 15, "notification did not see the completion")
        await dispatch(stack)
        rows = {
            (row.kind, row.channel): row.status
            for row in await deliveries(stack, customer.user_id)
            if row.channel in ("push", "sms")
        }
        assert rows == {
            ("unbind_requested", "sms"): "sent",
            ("otp_code", "sms"): "sent",
            ("verification_requested", "push"): "superseded",
            ("verified", "push"): "superseded",
            ("unbind_completed", "sms"): "sent",
            ("follow_up_reminder", "push"): "queued",  # a day later
        }
        assert not (tmp_path / "push.jsonl").exists()


async def test_a_request_sent_to_review_and_an_appeal_tell_the_customer_when_to_expect_an_answer(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    options = {"risk": {"clock": lambda: NOON}}
    async with running_stack(
        kafka_topics,
        database_urls,
        tmp_path,
        overrides={"notification": {"review_expected_hours": 48}},
        app_options=options,
    ) as stack:
        customer, third, review = await third_request_under_review(stack)
        notice = await eventually(
            lambda: inbox_item(stack, customer.user_id, third["id"], "unbind_under_review"),
            15,
            "no word of the review",
        )
        assert notice["title"] == "解绑申请审核中" and "预计 48 小时内给您答复" in notice["body"]

        def pushed() -> list[str]:
            lines = (
                (tmp_path / "push.jsonl").read_bytes().splitlines()
                if (tmp_path / "push.jsonl").exists()
                else []
            )
            return [
                push["text"]
                for push in map(orjson.loads, lines)
                if push["to"] == customer.user_id and push["title"] == notice["title"]
            ]

        assert await eventually(pushed, 15, "no push of the review") == [notice["body"]]

        denied = await decide_review(
            stack.client("risk"), review["id"], "deny", reason="customer_unreachable", note="unusual pattern"
        )
        assert denied.status_code == 200, denied.text
        await stack.wait_for_request(third["id"], customer.user_id, lambda body: body["status"] == "rejected")
        client, headers = stack.client("notification"), auth(customer.user_id)
        assert (
            await client.put("/v1/preferences", json={"locale": "en"}, headers=headers)
        ).status_code == 200
        appealed = await stack.client("binding").post(
            f"/v1/unbind-requests/{third['id']}/appeal", json={"message": "It was me."}, headers=headers
        )
        assert appealed.status_code == 200, appealed.text
        notice = await eventually(
            lambda: inbox_item(stack, customer.user_id, third["id"], "unbind_appealed"),
            15,
            "no word of the appeal",
        )
        assert notice["title"] == "Appeal received" and "expect an answer within 48 hours" in notice["body"]


async def inbox_item(stack: Stack, user_id: str, request_id: str, kind: str) -> dict | None:
    items = (await stack.client("notification").get("/v1/notifications", headers=auth(user_id))).json()[
        "items"
    ]
    return next((item for item in items if item["request_id"] == request_id and item["kind"] == kind), None)
