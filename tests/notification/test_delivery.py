"""Notification delivery: templates in both locales, routing and opt-out, quiet hours, retries and
fallback, exactly one delivery per (event, channel, recipient), the signed lender webhook, the
durable reminder, and the inbox."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import select

from services.notification.models import Contact, Delivery
from services.notification.providers import DeliveryError, Outgoing
from services.notification.service import quiet_until
from services.notification.templates import KINDS, SECURITY_KINDS, render
from shared.cloudevents import Envelope
from shared.events import UnbindCancelled, UnbindCompleted, UnbindRequested
from tests.binding.test_api import assert_problem
from tests.factories import notification_knows
from tests.keys import KEYS
from tests.shared.test_cloudevents import SAMPLES
from tests.stack import BusTopics, Stack, auth, eventually, on_memory_bus, running_stack

ONLY_NOTIFICATION = ("notification",)


# The kinds not named after their event, and the event they come from.
FROM_EVENT = {
    "unbind_under_review": "RiskAssessed",
    "review_approved": "ReviewDecided",
    "dispute_received": "UnbindDisputed",
}


def test_every_customer_facing_event_has_a_kind() -> None:
    # A bind request's notice is its code SMS, and its code passing is told by BindingCreated; a
    # customer's own language change is told to no one.
    internal = {"BindingRequested", "BindingVerified", "PreferencesChanged"}
    kinds = {kind.replace("_", "") for kind in KINDS} | set(FROM_EVENT.values())
    for sample in SAMPLES:
        name = type(sample).__name__
        assert name in internal or name in kinds or name.lower() in kinds, f"{name} has no message"


@pytest.mark.parametrize(
    ("kind", "facts", "locale", "expected"),
    [
        (
            "review_denied",
            {"denial_reason": "customer_unreachable"},
            "zh-CN",
            "经人工审核未通过，原因：我们未能联系上您核实情况。",
        ),
        (
            "review_denied",
            {"denial_reason": "customer_unreachable"},
            "en",
            (
                "we could not approve your request to unbind your mortgage repayment account: we could not "
                "reach you"
            ),
        ),
        (
            "appeal_denied",
            {"denial_reason": "other", "reviewer_message": "请先结清三月账单"},
            "zh-CN",
            "原因：详见审核人员给您的留言。",
        ),
        (
            "dispute_closed",
            {"dispute_outcome": "approve"},
            "en",
            (
                "We have looked into your dispute about unbinding your mortgage repayment account: you were "
                "right"
            ),
        ),
    ],
)
def test_codes_are_told_in_the_customers_words(kind: str, facts: dict, locale: str, expected: str) -> None:
    _, body = render(kind, locale, {"account": None, **facts})
    assert expected in body
    assert "_" not in body, "no machine code reaches the customer"


def test_a_reviewer_message_ends_the_outcome_in_either_locale() -> None:
    _, zh = render("review_approved", "zh-CN", {"account": None, "reviewer_message": "请今天内完成验证"})
    _, en = render("review_approved", "en", {"account": None, "reviewer_message": "Please verify today"})
    assert zh.endswith("。审核人员留言：请今天内完成验证") and en.endswith(
        ". A note from your reviewer: Please verify today"
    )
    assert "审核人员留言" not in render("review_approved", "zh-CN", {"account": None})[1], (
        "no empty note when the reviewer wrote none"
    )


@pytest.mark.parametrize(
    ("now", "quiet", "expected"),
    [
        ("2026-11-28T14:30:00+00:00", ("22:00", "08:00"), "2026-11-29T08:00:00+08:00"),  # 22:30 Shanghai
        ("2026-11-28T20:00:00+00:00", ("22:00", "08:00"), "2026-11-29T08:00:00+08:00"),  # 04:00 Shanghai
        ("2026-11-28T04:00:00+00:00", ("22:00", "08:00"), None),  # noon Shanghai
        ("2026-11-28T04:00:00+00:00", ("11:00", "13:00"), "2026-11-28T13:00:00+08:00"),
        ("2026-11-28T14:30:00+00:00", (None, None), None),  # turned off
    ],
)
def test_quiet_hours_window(now: str, quiet: tuple[str | None, str | None], expected: str | None) -> None:
    contact = Contact(
        user_id="u",
        phone="+8613800000000",
        timezone="Asia/Shanghai",
        quiet_start=quiet[0],
        quiet_end=quiet[1],
    )
    until = quiet_until(contact, datetime.fromisoformat(now))
    assert (until.isoformat() if until else None) == (
        datetime.fromisoformat(expected).isoformat() if expected else None
    )


class FlakyChannel:
    """Fails the first `failures` sends, then records the rest."""

    def __init__(self, failures: int):
        self.failures = failures
        self.sent: list[Outgoing] = []

    async def send(self, message: Outgoing) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise DeliveryError("gateway timeout")
        self.sent.append(message)


async def with_contact(stack: Stack, user_id: str = "u-zhangsan", **fields: object) -> Contact:
    async with stack.runtime("notification").unit_of_work() as uow:
        contact = Contact(
            user_id=user_id,
            phone="+8613812345678",
            email=None,
            locale="zh-CN",
            timezone="Asia/Shanghai",
            opt_out={},
        )
        uow.session.add(contact)
        # Set after the insert: the ORM inserts a None as the column's default (22:00 to 08:00), which
        # held the messages these tests expect sent whenever they ran in Shanghai's night.
        await uow.session.flush()
        contact.quiet_start = contact.quiet_end = None
        for name, value in fields.items():
            setattr(contact, name, value)
    return contact


async def deliveries(stack: Stack, user_id: str = "u-zhangsan") -> list[Delivery]:
    async with stack.runtime("notification").session_factory() as session:
        return list(
            (
                await session.scalars(
                    select(Delivery).where(Delivery.user_id == user_id).order_by(Delivery.id)
                )
            ).all()
        )


def requested(request_id: str = "r-1") -> Envelope:
    return Envelope.emit(
        UnbindRequested(
            request_id=request_id,
            binding_id="b-1",
            user_id="u-zhangsan",
            reason="other",
            impact_hash="a" * 64,
        )
    )


@pytest.fixture
async def memory_stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with on_memory_bus(database_urls, tmp_path, ONLY_NOTIFICATION) as running:
        yield running


async def test_security_messages_go_by_sms_and_inbox_and_ignore_opt_out(memory_stack: Stack) -> None:
    await with_contact(memory_stack, opt_out={"unbind_cancelled": ["push"]})
    refused = await memory_stack.client("notification").put(
        "/v1/preferences", json={"opt_out": {"unbind_requested": ["sms"]}}, headers=auth("u-zhangsan")
    )
    assert assert_problem(refused, 422, "security-message")["kinds"] == ["unbind_requested"]

    await memory_stack.topics.publish_event(requested())
    cancelled = Envelope.emit(UnbindCancelled(request_id="r-1", binding_id="b-1", user_id="u-zhangsan"))
    await memory_stack.topics.publish_event(cancelled)

    async def settled() -> list[Delivery] | None:
        rows = await deliveries(memory_stack)
        return rows if len(rows) == 4 and all(row.status != "queued" for row in rows) else None

    rows = await eventually(settled, 15, "the deliveries did not settle")
    assert sorted((row.kind, row.channel, row.status) for row in rows) == [
        ("unbind_cancelled", "inapp", "sent"),
        ("unbind_cancelled", "push", "suppressed"),
        ("unbind_requested", "inapp", "sent"),
        ("unbind_requested", "sms", "sent"),
    ]
    assert [message["to"] for message in memory_stack.sms_messages()] == ["+8613812345678"]


async def test_quiet_hours_hold_what_can_wait_then_deliver(memory_stack: Stack) -> None:
    now = datetime.now(UTC)
    local_hour = now.astimezone(ZoneInfo("Asia/Shanghai")).hour
    window = {"quiet_start": f"{local_hour:02d}:00", "quiet_end": f"{(local_hour + 2) % 24:02d}:00"}
    await with_contact(memory_stack, **window)
    await memory_stack.topics.publish_event(requested())
    await memory_stack.topics.publish_event(
        Envelope.emit(UnbindCancelled(request_id="r-1", binding_id="b-1", user_id="u-zhangsan"))
    )

    async def planned() -> list[Delivery] | None:
        rows = await deliveries(memory_stack)
        return rows if len(rows) == 4 else None

    rows = {(row.kind, row.channel): row for row in await eventually(planned, 15, "nothing planned")}
    held = rows[("unbind_cancelled", "push")]
    assert held.status == "queued" and held.next_attempt_at > now, (
        "a message that can wait waits for the end of the quiet hours"
    )
    assert rows[("unbind_cancelled", "inapp")].status == "sent", "the inbox never waits"
    await eventually(
        lambda: _status(memory_stack, "unbind_requested", "sms", "sent"), 15, "a security message is not held"
    )

    async with memory_stack.runtime("notification").unit_of_work() as uow:  # the quiet hours end
        for row in (
            await uow.session.scalars(select(Delivery).where(Delivery.kind == "unbind_cancelled"))
        ).all():
            row.next_attempt_at = datetime.now(UTC)
    await eventually(
        lambda: _status(memory_stack, "unbind_cancelled", "push", "sent"),
        15,
        "the held message was not delivered",
    )
    inbox = (
        await memory_stack.client("notification").get("/v1/notifications", headers=auth("u-zhangsan"))
    ).json()["items"]
    assert sorted(item["kind"] for item in inbox) == ["unbind_cancelled", "unbind_requested"]


async def _status(stack: Stack, kind: str, channel: str, status: str) -> bool:
    return any(
        row.kind == kind and row.channel == channel and row.status == status
        for row in await deliveries(stack)
    )


@pytest.mark.parametrize(("failures", "status", "attempts"), [(2, "sent", 3), (10, "failed", 3)])
async def test_a_failing_provider_is_retried_then_succeeds_or_fails(
    database_urls: dict[str, str], tmp_path: Path, failures: int, status: str, *, attempts: int
) -> None:
    sms = FlakyChannel(failures)
    overrides = {
        "notification": {
            "delivery_max_attempts": 3,
            "delivery_backoff_seconds": 0.05,
            "dispatch_interval_seconds": 0.05,
        }
    }
    options = {"notification": {"providers": {"sms": sms}}}
    async with on_memory_bus(
        database_urls,
        tmp_path,
        ONLY_NOTIFICATION,
        overrides=overrides,
        app_options=options,
    ) as stack:
        await with_contact(stack)
        await stack.topics.publish_event(requested())
        await eventually(
            lambda: _status(stack, "unbind_requested", "sms", status), 15, f"the SMS did not end {status}"
        )
        [row] = [row for row in await deliveries(stack) if row.channel == "sms"]
        assert row.attempts == attempts and (row.last_error == "gateway timeout") == (
            status == "failed" or failures > 0
        )
        assert len(sms.sent) == (1 if status == "sent" else 0)


async def test_a_failed_push_falls_back_to_sms(database_urls: dict[str, str], tmp_path: Path) -> None:
    push = FlakyChannel(1)
    async with on_memory_bus(
        database_urls,
        tmp_path,
        ONLY_NOTIFICATION,
        app_options={"notification": {"providers": {"push": push}}},
    ) as stack:
        await with_contact(stack)
        await notification_knows(stack, requested())
        await stack.topics.publish_event(
            Envelope.emit(UnbindCancelled(request_id="r-1", binding_id="b-1", user_id="u-zhangsan"))
        )
        await eventually(lambda: _status(stack, "unbind_cancelled", "sms", "sent"), 15, "no SMS fallback")
        assert await _status(stack, "unbind_cancelled", "push", "failed")
        assert "取消" in stack.sms_messages()[-1]["text"]


async def test_the_same_event_three_times_gives_one_message_per_channel(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(any_bus, database_urls, tmp_path, ONLY_NOTIFICATION) as stack:
        await with_contact(stack)
        event = requested()
        await any_bus.publish_event(event, times=3)
        consumer = stack.runtime("notification").consumer
        await eventually(
            lambda: consumer.handled_total + consumer.duplicates_total == 3, 30, "not every copy was consumed"
        )
        await eventually(lambda: _status(stack, "unbind_requested", "sms", "sent"), 15, "no SMS")
        rows = await deliveries(stack)
        assert sorted(row.channel for row in rows) == ["inapp", "sms"] and {row.event_id for row in rows} == {
            event.id
        }
        assert len(stack.sms_messages()) == 1


def unbind_completed(request_id: str, binding_id: str) -> Envelope:
    """Zhang San's unbind completed, a mandate cancelled: an SMS, the lender's webhook, a reminder."""
    return Envelope.emit(
        UnbindCompleted(
            request_id=request_id,
            binding_id=binding_id,
            user_id="u-zhangsan",
            mandates_cancelled=1,
            credit_limit_before=30000,
            credit_limit_after=20300,
        )
    )


async def test_the_lender_webhook_is_signed_and_the_reminder_survives_a_restart(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    overrides = {"notification": {"reminder_delay_seconds": 2, "dispatch_interval_seconds": 0.1}}
    completed = unbind_completed("r-9", "b-9")
    async with running_stack(
        kafka_topics, database_urls, tmp_path, ONLY_NOTIFICATION, overrides=overrides
    ) as stack:
        await with_contact(stack, email="zhangsan@example.com")
        await notification_knows(stack, completed)
        await kafka_topics.publish_event(completed)
        await eventually(lambda: (tmp_path / "institution.jsonl").exists(), 15, "the lender was not told")
        await eventually(lambda: (tmp_path / "email.jsonl").exists(), 15, "no email")
    hook = orjson.loads((tmp_path / "institution.jsonl").read_bytes().splitlines()[0])
    expected = (
        "sha256="
        + hmac.new(
            KEYS.secret("institution_webhook_secret").encode(), hook["body"].encode(), hashlib.sha256
        ).hexdigest()
    )
    assert hmac.compare_digest(hook["signature"], expected)
    assert orjson.loads(hook["body"]) | {"at": None} == {
        "type": "UnbindCompleted",
        "event_id": completed.id,
        "binding_id": "b-9",
        "mandates_cancelled": 1,
        "at": None,
    }
    assert not (tmp_path / "push.jsonl").exists(), "the reminder is not due yet"

    await asyncio.sleep(2.2)  # the reminder falls due while the service is down
    async with running_stack(
        kafka_topics, database_urls, tmp_path, ONLY_NOTIFICATION, overrides=overrides
    ) as restarted:
        await eventually(
            lambda: (tmp_path / "push.jsonl").exists(), 15, "the reminder did not arrive after the restart"
        )
        [push] = [orjson.loads(line) for line in (tmp_path / "push.jsonl").read_bytes().splitlines()]
        assert push["title"] == "还款提醒" and push["to"] == "u-zhangsan"
        inbox = (
            await restarted.client("notification").get("/v1/notifications", headers=auth("u-zhangsan"))
        ).json()["items"]
        assert sorted(item["kind"] for item in inbox) == ["follow_up_reminder", "unbind_completed"]


async def test_the_dispatcher_wakes_for_what_is_queued_and_when_it_falls_due_not_on_a_timer(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    # A dispatcher that would sleep a minute on its own.
    overrides = {"notification": {"reminder_delay_seconds": 2, "dispatch_interval_seconds": 60}}
    completed = unbind_completed("r-8", "b-8")
    async with running_stack(
        kafka_topics, database_urls, tmp_path, ONLY_NOTIFICATION, overrides=overrides
    ) as stack:
        await with_contact(stack)
        await notification_knows(stack, completed)
        await asyncio.sleep(0.5)  # the dispatcher's first round has found nothing and sleeps
        await kafka_topics.publish_event(completed)
        # Queued by the consumer's commit: sent at once, the lender's webhook too.
        await eventually(lambda: len(stack.sms_messages()) == 1, 10, "the completion SMS did not wake it")
        await eventually(lambda: (tmp_path / "institution.jsonl").exists(), 5, "the lender was not told")
        assert not (tmp_path / "push.jsonl").exists(), "the reminder is not due yet"
        # Queued for 2 s later: the dispatcher sleeps until then, not for its minute.
        await eventually(lambda: (tmp_path / "push.jsonl").exists(), 10, "the reminder did not go when due")


async def test_the_inbox_is_paginated_and_private(memory_stack: Stack) -> None:
    await with_contact(memory_stack)
    await with_contact(memory_stack, user_id="u-lisi")
    for index in range(3):
        await memory_stack.topics.publish_event(requested(f"r-{index}"))
    client = memory_stack.client("notification")

    async def inbox_full() -> dict | None:
        body = (await client.get("/v1/notifications?limit=2", headers=auth("u-zhangsan"))).json()
        return body if body["next_cursor"] else None

    first = await eventually(inbox_full, 15, "the inbox did not fill")
    second = (
        await client.get(
            f"/v1/notifications?limit=2&cursor={first['next_cursor']}", headers=auth("u-zhangsan")
        )
    ).json()
    ids = [item["id"] for item in first["items"] + second["items"]]
    assert (
        len(set(ids)) == 3
        and second["next_cursor"] is None
        and not any(item["read"] for item in first["items"])
    )

    assert_problem(
        await client.post(f"/v1/notifications/{ids[0]}/read", headers=auth("u-lisi")), 404, "not-found"
    )
    assert (await client.get("/v1/notifications", headers=auth("u-lisi"))).json()["items"] == []
    marked = await client.post(f"/v1/notifications/{ids[0]}/read", headers=auth("u-zhangsan"))
    assert marked.status_code == 200 and marked.json()["read"] is True
    assert SECURITY_KINDS >= {"otp_code", "unbind_requested", "unbind_completed", "unbind_rejected"}


async def test_preferences_round_trip_and_validation(memory_stack: Stack) -> None:
    await with_contact(memory_stack)
    client, headers = memory_stack.client("notification"), auth("u-zhangsan")
    saved = await client.put(
        "/v1/preferences",
        json={
            "locale": "en",
            "timezone": "Europe/Berlin",
            "quiet_hours": {"start": "23:00", "end": "07:00"},
            "opt_out": {"verified": ["push"]},
        },
        headers=headers,
    )
    assert saved.status_code == 200
    assert (await client.get("/v1/preferences", headers=headers)).json() == {
        "locale": "en",
        "timezone": "Europe/Berlin",
        "quiet_hours": {"start": "23:00", "end": "07:00"},
        "opt_out": {"verified": ["push"]},
    }
    bad_bodies = [
        {"locale": "fr"},
        {"timezone": "Mars/Olympus"},
        {"quiet_hours": {"start": "25:00", "end": "07:00"}},
        {"opt_out": {"verified": ["pigeon"]}},
        {"opt_out": {"nope": ["sms"]}},
    ]
    for bad in bad_bodies:
        assert_problem(
            await client.put("/v1/preferences", json=bad, headers=headers), 422, "validation-error"
        )
    assert_problem(await client.get("/v1/preferences", headers=auth("u-nobody")), 404, "not-found")


# Each was a 200 that changed nothing (or, for a directory of the time zone database, a 500).
NOT_APPLIED = [
    {},
    {"locale": None},
    {"timezone": None},
    {"opt_out": None},
    {"timezone": "Asia"},
    {"quiet_hours": {"start": "08:00", "end": "08:00"}},
    {"opt_out": {"verified": ["email"]}},  # verified never goes by email
    {"locale": "en", "opt_out": {"binding_created": ["push", "email"]}},  # all or nothing
]


@pytest.mark.parametrize("body", NOT_APPLIED, ids=lambda body: orjson.dumps(body).decode())
async def test_an_update_the_service_would_not_apply_is_422_and_changes_nothing(
    memory_stack: Stack, body: dict
) -> None:
    await with_contact(memory_stack, opt_out={"verified": ["push"]})
    client, headers = memory_stack.client("notification"), auth("u-zhangsan")
    before = (await client.get("/v1/preferences", headers=headers)).json()
    assert_problem(await client.put("/v1/preferences", json=body, headers=headers), 422, "validation-error")
    assert (await client.get("/v1/preferences", headers=headers)).json() == before


async def test_quiet_hours_null_turns_them_off(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path, ONLY_NOTIFICATION) as stack:
        await with_contact(stack)
        client, headers = stack.client("notification"), auth("u-zhangsan")
        local_hour = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).hour
        now_quiet = {"start": f"{local_hour:02d}:00", "end": f"{(local_hour + 2) % 24:02d}:00"}
        assert (await client.put("/v1/preferences", json={"quiet_hours": now_quiet}, headers=headers)).json()[
            "quiet_hours"
        ] == now_quiet
        off = await client.put("/v1/preferences", json={"quiet_hours": None}, headers=headers)
        assert off.status_code == 200 and off.json()["quiet_hours"] is None
        assert (await client.get("/v1/preferences", headers=headers)).json()["quiet_hours"] is None

        await kafka_topics.publish_event(requested())
        await kafka_topics.publish_event(
            Envelope.emit(UnbindCancelled(request_id="r-1", binding_id="b-1", user_id="u-zhangsan"))
        )
        await eventually(
            lambda: _status(stack, "unbind_cancelled", "push", "sent"),
            15,
            "a message that can wait waited, with quiet hours off",
        )


async def test_sms_turned_off_holds_back_the_sms_that_stands_in_for_a_failed_push(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    options = {"notification": {"providers": {"push": FlakyChannel(1)}}}
    async with on_memory_bus(database_urls, tmp_path, ONLY_NOTIFICATION, app_options=options) as stack:
        await with_contact(stack)
        turned_off = await stack.client("notification").put(
            "/v1/preferences", json={"opt_out": {"unbind_cancelled": ["sms"]}}, headers=auth("u-zhangsan")
        )
        assert turned_off.status_code == 200, turned_off.text
        await notification_knows(stack, requested())
        await stack.topics.publish_event(
            Envelope.emit(UnbindCancelled(request_id="r-1", binding_id="b-1", user_id="u-zhangsan"))
        )
        await eventually(
            lambda: _status(stack, "unbind_cancelled", "sms", "suppressed"),
            15,
            "the stand-in SMS was not held back",
        )
        assert await _status(stack, "unbind_cancelled", "push", "failed") and stack.sms_messages() == []
