"""Binding is no easier than unbinding: a binding asked for is pending until the customer confirms its
SMS code, its mandate until the lender confirms it through a signed callback, and only that raises the
credit limit. Bad callbacks (unsigned, stale, another lender's, for no mandate, repeated) are 4xx
problems and change nothing.

The first tests run binding alone (the code's arrival is played by `code_confirmed`); the flows run
every service on the real broker, with the development lender of `unbind up` answering in process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy import func, select

from services.binding.models import CreditAccount, LenderCallback, OutboxMessage
from services.binding.service import MAX_PENDING_BINDINGS, credit_limit_contribution
from services.notification.providers import InstitutionWebhook
from shared.events import BindingEvent
from tests.binding.test_api import assert_problem
from tests.contracts import assert_records_follow_contract
from tests.factories import (
    CURRENT_AGREEMENT,
    Customer,
    bind_account,
    card_number,
    code_confirmed,
    customer_with_binding,
    idempotency_key,
    lender_callback,
    mandate_of,
    mandate_request,
    pass_verification,
    unbind_body,
    wait_for_binding,
)
from tests.keys import KEYS
from tests.stack import BusTopics, Stack, auth, eventually, running_stack
from tests.verification.test_api import issued_verification, wrong
from tools import dev_lender


def new_binding(
    number: str = "6222 0299 8875 1234", lender: str = "示例银行", instalment: int = 8000
) -> dict[str, Any]:
    return {
        "lender": lender,
        "account_number": number,
        "monthly_instalment": instalment,
        "due_day": 10,
        "agreement_version": CURRENT_AGREEMENT,
    }


async def staged(stack: Stack) -> list[tuple[str, bytes]]:
    async with stack.runtime("binding").session_factory() as session:
        return [
            (row.event_type, row.value)
            for row in (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.seq))).all()
        ]


async def limit_of(stack: Stack, user_id: str) -> int:
    async with stack.runtime("binding").session_factory() as session:
        return (
            await session.scalar(select(CreditAccount.credit_limit).where(CreditAccount.user_id == user_id))
            or 0
        )


async def pending_mandate(stack: Stack, user_id: str, body: dict[str, Any] | None = None) -> tuple[str, str]:
    """A binding whose code was confirmed: (its id, its mandate's id, which waits for the lender)."""
    asked = await stack.client("binding").post(
        "/v1/bindings", json=body or new_binding(card_number(), "Example Bank"), headers=auth(user_id)
    )
    assert asked.status_code == 202, asked.text
    await code_confirmed(stack, asked.json()["id"])
    return asked.json()["id"], (await mandate_of(stack, user_id, asked.json()["id"]))["id"]


async def callback(stack: Stack, **kwargs: Any) -> httpx.Response:
    return await stack.client("binding").post("/v1/lenders/callbacks", **kwargs)


async def test_the_limit_rises_only_once_the_code_and_then_the_lender_confirmed(stack: Stack) -> None:
    customer = await customer_with_binding(stack, credit_limit=20000)
    asked = await stack.client("binding").post(
        "/v1/bindings", json=new_binding(), headers=auth(customer.user_id)
    )
    assert asked.status_code == 202, asked.text
    binding = asked.json()
    assert (
        binding["status"],
        binding["mandate_status"],
        binding["auto_debit"],
        binding["credit_limit_contribution"],
    ) == ("pending", "pending", False, 0)
    assert binding["credit_account"]["credit_limit"] == 20000 and binding["verification_id"]
    assert (
        binding["repayment_account"]["lender_id"] == "example_bank"
        and binding["repayment_account"]["account_number"] == "6222 **** **** 1234"
    )
    [(event_type, value)] = await staged(stack)
    assert event_type == "BindingRequested" and binding["verification_id"].encode() in value
    assert b'"account_last4":"1234"' in value and b"6222029988751234" not in value
    # Pending, it holds its number; it cannot be unbound, nor confirmed by a lender before its code.
    assert_problem(
        await stack.client("binding").post(
            "/v1/bindings", json=new_binding(), headers=auth(customer.user_id)
        ),
        409,
        "already-bound",
    )
    unbind = await stack.client("binding").post(
        f"/v1/bindings/{binding['id']}/unbind-requests",
        json=unbind_body(),
        headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
    )
    assert_problem(unbind, 409, "binding-not-bound")
    mandate = await mandate_of(stack, customer.user_id, binding["id"])
    assert_problem(await callback(stack, **lender_callback(mandate["id"])), 409, "mandate-not-requested")

    await code_confirmed(stack, binding["id"])
    bound = await wait_for_binding(
        stack, customer.user_id, binding["id"], lambda view: view["status"] == "active"
    )
    assert (bound["mandate_status"], bound["credit_account"]["credit_limit"], bound["verification_id"]) == (
        "pending",
        20000,
        None,
    )
    assert [event_type for event_type, _ in await staged(stack)] == [
        "BindingRequested",
        "BindingCreated",
        "MandateRequested",
    ]

    confirmed = await callback(stack, **lender_callback(mandate["id"]))
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "active", confirmed.text
    view = (
        await stack.client("binding").get(f"/v1/bindings/{binding['id']}", headers=auth(customer.user_id))
    ).json()
    assert view["credit_limit_contribution"] == credit_limit_contribution(8000) == 12000
    assert (view["credit_account"]["credit_limit"], view["auto_debit"], view["mandate_status"]) == (
        32000,
        True,
        "active",
    )
    event_type, value = (await staged(stack))[-1]
    assert (
        event_type == "MandateConfirmed"
        and b'"credit_limit_before":20000' in value
        and b'"credit_limit_after":32000' in value
    )


async def test_a_refused_mandate_leaves_the_binding_bound_without_uplift(stack: Stack) -> None:
    customer = await customer_with_binding(stack, credit_limit=20000)
    binding_id, mandate_id = await pending_mandate(stack, customer.user_id)
    refused = await callback(stack, **lender_callback(mandate_id, "refused", reason="account_closed"))
    assert refused.status_code == 200 and refused.json()["status"] == "refused", refused.text
    view = (
        await stack.client("binding").get(f"/v1/bindings/{binding_id}", headers=auth(customer.user_id))
    ).json()
    assert (
        view["status"],
        view["mandate_status"],
        view["auto_debit"],
        view["credit_limit_contribution"],
    ) == ("active", "refused", False, 0)
    assert await limit_of(stack, customer.user_id) == 20000
    event_type, value = (await staged(stack))[-1]
    assert event_type == "MandateRefused" and b'"reason":"account_closed"' in value
    impact = (
        await stack.client("binding").get(f"/v1/bindings/{binding_id}/impact", headers=auth(customer.user_id))
    ).json()
    assert (
        impact["credit_limit_after"] == impact["credit_limit_before"] == 20000
        and impact["benefits_lost"] == []
    )


async def test_bad_callbacks_are_refused_and_change_nothing(stack: Stack) -> None:
    customer = await customer_with_binding(stack, credit_limit=20000)
    binding_id, mandate_id = await pending_mandate(stack, customer.user_id)
    before = await staged(stack)
    good = lender_callback(mandate_id)
    tampered = {**good, "content": good["content"].replace(b"confirmed", b"refused")}
    stale, future = time.time() - 330, time.time() + 330
    refusals = [
        (
            {"content": good["content"], "headers": {"Content-Type": "application/json"}},
            401,
            "invalid-signature",
        ),  # unsigned
        (
            lender_callback(mandate_id, secret=KEYS.secret("otp_hmac_key")),
            401,
            "invalid-signature",
        ),  # another secret
        (
            lender_callback(
                mandate_id, lender="harbour_bank", secret=KEYS.secret("lender_secret_example_bank")
            ),
            401,
            "invalid-signature",
        ),
        (
            {**good, "headers": {**good["headers"], "X-Unbind-Lender": "nobody_bank"}},
            401,
            "invalid-signature",
        ),  # no such lender
        (tampered, 401, "invalid-signature"),
        (
            lender_callback(mandate_id, signed_at=stale),
            401,
            "invalid-signature",
        ),  # a replay of one captured over 5 minutes ago
        (lender_callback(mandate_id, signed_at=future), 401, "invalid-signature"),
        (
            {**good, "headers": {**good["headers"], "X-Unbind-Signature": "t=nonsense,v1=00"}},
            401,
            "invalid-signature",
        ),
        (lender_callback("m-does-not-exist"), 404, "not-found"),
        (
            lender_callback(mandate_id, lender="harbour_bank"),
            404,
            "not-found",
        ),  # a lender that is not the mandate's
        (lender_callback(mandate_id, "maybe"), 422, "validation-error"),
    ]
    for kwargs, status, code in refusals:
        assert_problem(await callback(stack, **kwargs), status, code)
    assert await staged(stack) == before
    assert (await mandate_of(stack, customer.user_id, binding_id))["status"] == "pending" and await limit_of(
        stack, customer.user_id
    ) == 20000

    first = await callback(stack, **good)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    again = await callback(stack, **good)  # the lender did not hear our answer and sends it again
    assert (
        again.status_code == 200
        and again.headers["Idempotent-Replayed"] == "true"
        and again.json() == first.json()
    )
    reused = lender_callback(mandate_id, "refused", callback_id=orjson.loads(good["content"])["callback_id"])
    assert_problem(await callback(stack, **reused), 422, "callback-id-reused")
    assert_problem(await callback(stack, **lender_callback(mandate_id, "refused")), 409, "mandate-decided")
    assert_problem(await callback(stack, **lender_callback(mandate_id)), 409, "mandate-decided")
    assert await limit_of(stack, customer.user_id) == 20000 + 12000, "one uplift, once"
    assert [event_type for event_type, _ in await staged(stack)].count("MandateConfirmed") == 1
    async with stack.runtime("binding").session_factory() as session:
        assert await session.scalar(select(func.count()).select_from(LenderCallback)) == 1


async def test_a_customer_may_have_only_a_few_bindings_waiting_for_their_code(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    for _ in range(MAX_PENDING_BINDINGS):
        assert (
            await stack.client("binding").post(
                "/v1/bindings", json=new_binding(card_number()), headers=auth(customer.user_id)
            )
        ).status_code == 202
    before = await staged(stack)
    assert_problem(
        await stack.client("binding").post(
            "/v1/bindings", json=new_binding(card_number()), headers=auth(customer.user_id)
        ),
        409,
        "too-many-pending-bindings",
    )
    assert await staged(stack) == before, "no code was asked for"


# --- flows: every service on the real broker, the development lender answering ---------------


class LaterApp(httpx.AsyncBaseTransport):
    """A line to an app that starts after the one calling it; until then, calls fail to connect."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.app is None:
            raise httpx.ConnectError("not started yet", request=request)
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


@asynccontextmanager
async def stack_with_lender(
    topics: BusTopics, database_urls: dict[str, str], var_dir: Path
) -> AsyncIterator[tuple[Stack, FastAPI]]:
    """Every service, with notification's lender webhook going to the development lender, whose
    signed callbacks go to binding: as `unbind up` wires them, in process."""
    to_lender = LaterApp()
    async with httpx.AsyncClient(transport=to_lender) as client:
        webhook = InstitutionWebhook(
            KEYS.secret("institution_webhook_secret"), "http://lender/webhook", client
        )
        async with running_stack(
            topics,
            database_urls,
            var_dir,
            app_options={"notification": {"providers": {"institution": webhook}}},
        ) as stack:
            env = {
                **dev_lender.secrets_env(KEYS),
                "UNBIND_DEV_LENDER_BINDING_URL": "http://binding",
                "UNBIND_DEV_LENDER_DELAY_SECONDS": "0.2",
                "UNBIND_VAR_DIR": str(var_dir),
            }
            lender = dev_lender.create_app(
                dev_lender.DevLenderConfig.from_env(env),
                transport=httpx.ASGITransport(app=stack.apps["binding"]),
            )
            async with lender.router.lifespan_context(lender):
                to_lender.app = lender
                yield stack, lender


async def binding_events(topics: BusTopics, binding_id: str) -> list[str]:
    return [
        event.type
        for event in await topics.events()
        if isinstance(event.data, BindingEvent) and event.data.binding_id == binding_id
    ]


async def inbox(stack: Stack, user_id: str) -> list[str]:
    return [
        item["kind"]
        for item in (
            await stack.client("notification").get("/v1/notifications", headers=auth(user_id))
        ).json()["items"]
    ]


async def ask_and_confirm_the_code(stack: Stack, user_id: str, phone: str, number: str) -> str:
    sent_before = len(stack.codes(phone))
    asked = await stack.client("binding").post(
        "/v1/bindings", json=new_binding(number, "Example Bank"), headers=auth(user_id)
    )
    assert asked.status_code == 202, asked.text
    await eventually(lambda: len(stack.codes(phone)) > sent_before, 15, "no binding code was sent")
    code = {"code": stack.latest_code(phone)}
    checked = await stack.client("verification").post(
        f"/v1/verifications/{asked.json()['verification_id']}/otp", json=code, headers=auth(user_id)
    )
    assert checked.status_code == 200 and checked.json()["purpose"] == "binding", checked.text
    return asked.json()["id"]


async def test_the_development_lender_confirms_one_mandate_and_refuses_another(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with stack_with_lender(kafka_topics, database_urls, tmp_path) as (stack, lender):
        customer = await customer_with_binding(stack, credit_limit=20000, email="zhang@example.com")
        confirmed = await ask_and_confirm_the_code(
            stack, customer.user_id, customer.phone, number := card_number()
        )
        refused = await ask_and_confirm_the_code(
            stack, customer.user_id, customer.phone, f"62220299999{dev_lender.REFUSED_LAST4}"
        )
        for binding_id, status in ((confirmed, "active"), (refused, "refused")):
            view = await wait_for_binding(
                stack, customer.user_id, binding_id, lambda view: view["mandate_status"] != "pending"
            )
            assert (view["status"], view["mandate_status"]) == ("active", status)
        views = {
            item["id"]: item
            for item in (
                await stack.client("binding").get("/v1/bindings", headers=auth(customer.user_id))
            ).json()["items"]
        }
        assert (
            views[confirmed]["credit_limit_contribution"],
            views[refused]["credit_limit_contribution"],
        ) == (12000, 0)
        assert (
            views[confirmed]["credit_account"]["credit_limit"] == 20000 + 12000
            and views[confirmed]["auto_debit"]
            and not views[refused]["auto_debit"]
        )

        flow = ["BindingRequested", "BindingVerified", "BindingCreated", "MandateRequested"]
        await eventually(
            lambda: _events_are(kafka_topics, confirmed, [*flow, "MandateConfirmed"]),
            15,
            "the confirmation was not published",
        )
        await eventually(
            lambda: _events_are(kafka_topics, refused, [*flow, "MandateRefused"]),
            15,
            "the refusal was not published",
        )
        answered = (
            await httpx.AsyncClient(transport=httpx.ASGITransport(app=lender), base_url="http://lender").get(
                "/mandates"
            )
        ).json()
        assert sorted((mandate["decision"], mandate["binding_status"]) for mandate in answered) == [
            ("confirmed", 200),
            ("refused", 200),
        ]
        # The customer is told of each step, in the inbox (and by push), in their language.
        await eventually(
            lambda: _inbox_has(stack, customer.user_id, {"mandate_confirmed", "mandate_refused"}),
            15,
            "the customer was not told",
        )
        assert (await inbox(stack, customer.user_id)).count("binding_created") == 2
        records = await kafka_topics.records()
        assert_records_follow_contract(records)
        assert not [record for record in records if number.encode() in record.value], (
            "no full account number on the topic"
        )


async def _events_are(topics: BusTopics, binding_id: str, expected: list[str]) -> bool:
    return await binding_events(topics, binding_id) == expected


async def _inbox_has(stack: Stack, user_id: str, kinds: set[str]) -> bool:
    return kinds <= set(await inbox(stack, user_id))


async def test_a_binding_whose_code_is_never_confirmed_binds_nothing_and_frees_its_number(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer, other = (
            await customer_with_binding(stack, credit_limit=20000),
            await customer_with_binding(stack),
        )
        number = card_number()
        asked = await stack.client("binding").post(
            "/v1/bindings", json=new_binding(number), headers=auth(customer.user_id)
        )
        verification_id = asked.json()["verification_id"]
        await eventually(lambda: stack.codes(customer.phone), 15, "no binding code was sent")
        for _ in range(5):
            code = {"code": wrong(stack.latest_code(customer.phone))}
            await stack.client("verification").post(
                f"/v1/verifications/{verification_id}/otp", json=code, headers=auth(customer.user_id)
            )
        failed = await wait_for_binding(
            stack, customer.user_id, asked.json()["id"], lambda view: view["status"] == "failed"
        )
        assert (
            failed["mandate_status"],
            failed["credit_account"]["credit_limit"],
            failed["verification_id"],
        ) == ("cancelled", 20000, None)
        assert await binding_events(kafka_topics, asked.json()["id"]) == [
            "BindingRequested",
            "BindingVerificationFailed",
        ]
        # The number is free again, and the customer was told at once, by SMS too (a security message).
        assert (
            await stack.client("binding").post(
                "/v1/bindings", json=new_binding(number), headers=auth(other.user_id)
            )
        ).status_code == 202
        await eventually(
            lambda: _inbox_has(stack, customer.user_id, {"binding_verification_failed"}),
            15,
            "the customer was not told",
        )
        await eventually(
            lambda: any(
                "未能绑定" in sms["text"] for sms in stack.sms_messages() if sms["to"] == customer.phone
            ),
            15,
            "no SMS told the customer",
        )


async def test_unbinding_before_the_lender_answers_cancels_the_mandate_and_the_late_answer_changes_nothing(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        holder = await customer_with_binding(stack, credit_limit=20000)
        body = new_binding(number := card_number(), "Example Bank")
        bound = await bind_account(stack, holder.user_id, holder.phone, body, decision=None)
        assert (bound["status"], bound["mandate_status"], bound["credit_account"]["credit_limit"]) == (
            "active",
            "pending",
            20000,
        )
        mandate_id = (await mandate_request(stack, bound["id"]))["mandate_id"]
        customer = Customer(holder.user_id, holder.phone, number, bound["id"], 20000, 0)
        request_id, verification_id = await issued_verification(stack, customer)
        await pass_verification(stack, customer, request_id, verification_id)
        await stack.wait_for_request(
            request_id, customer.user_id, lambda request: request["status"] == "completed"
        )
        completed = [
            event.data
            for event in await kafka_topics.request_events(request_id)
            if event.type == "UnbindCompleted"
        ]
        assert [
            (event.mandates_cancelled, event.credit_limit_before, event.credit_limit_after)
            for event in completed
        ] == [(1, 20000, 20000)]

        assert_problem(
            await stack.client("binding").post("/v1/lenders/callbacks", **lender_callback(mandate_id)),
            409,
            "mandate-decided",
        )
        view = (
            await stack.client("binding").get(f"/v1/bindings/{bound['id']}", headers=auth(customer.user_id))
        ).json()
        assert (view["status"], view["mandate_status"], view["credit_account"]["credit_limit"]) == (
            "unbound",
            "cancelled",
            20000,
        )
