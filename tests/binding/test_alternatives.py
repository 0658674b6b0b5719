"""The gentler alternatives to an unbind: pausing the auto-debit for 1 to 3 months, and switching the
repayment account. The impact offers them beside the unbind; each goes through the unbind's own
risk scoring and verification (a request of another `kind`), and bad input is a 4xx that changes
nothing.

The first tests run binding alone; the flows run every service on the real broker (the switch with
the development lender answering the new account's mandate, as `unbind up` wires it)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from services.binding.models import Binding, Mandate, OutboxMessage, RepaymentAccount, UnbindRequest
from services.binding.service import add_months, today
from shared.db import utcnow
from tests.binding.test_api import assert_problem
from tests.binding.test_bind import new_binding, stack_with_lender
from tests.contracts import assert_records_follow_contract
from tests.factories import (
    Customer,
    card_number,
    customer_with_binding,
    idempotency_key,
    lender_requests,
    pass_verification,
    unbind_body,
)
from tests.stack import BusTopics, Stack, auth, eventually, running_stack
from tests.verification.test_api import issued_verification
from tools import dev_lender


def pause_body(months: object = 2, **extra: object) -> dict[str, object]:
    return {"months": months, **extra}


def switch_body(
    number: str | None = None, lender: str = "Harbour Bank", **extra: object
) -> dict[str, object]:
    return {"lender": lender, "account_number": number or card_number(), **extra}


async def ask(stack: Stack, customer: Customer, kind: str, body: object, *, key: str | None = None) -> Any:
    return await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/{kind}-requests",
        json=body,
        headers={**auth(customer.user_id), "Idempotency-Key": key or idempotency_key()},
    )


async def impact(stack: Stack, customer: Customer, language: str = "zh-CN") -> dict[str, Any]:
    response = await stack.client("binding").get(
        f"/v1/bindings/{customer.binding_id}/impact",
        headers={**auth(customer.user_id), "Accept-Language": language},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def binding_view(stack: Stack, customer: Customer) -> dict[str, Any]:
    return (
        await stack.client("binding").get(
            f"/v1/bindings/{customer.binding_id}", headers=auth(customer.user_id)
        )
    ).json()


async def state(stack: Stack) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, str]], list[str]]:
    """What a refused request must leave as it was: bindings, requests, mandates, accounts held, the
    outbox."""
    async with stack.runtime("binding").session_factory() as session:
        bindings = [
            (row.id, row.status)
            for row in (await session.scalars(select(Binding).order_by(Binding.id))).all()
        ]
        requests = list((await session.scalars(select(UnbindRequest.id).order_by(UnbindRequest.id))).all())
        mandates = [
            (row.id, row.status)
            for row in (await session.scalars(select(Mandate).order_by(Mandate.id))).all()
        ]
        accounts = list(
            (
                await session.scalars(
                    select(RepaymentAccount.account_number)
                    .where(RepaymentAccount.released_at.is_(None))
                    .order_by(RepaymentAccount.id)
                )
            ).all()
        )
        outbox = list(
            (await session.scalars(select(OutboxMessage.event_type).order_by(OutboxMessage.seq))).all()
        )
    return bindings, requests, mandates, accounts + outbox


async def test_the_impact_offers_a_pause_and_a_switch_with_what_each_keeps_and_loses(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    body = await impact(stack, customer)
    pause, switch = body["alternatives"]
    assert (pause["kind"], pause["available"], pause["unavailable_reason"]) == ("pause", True, None)
    assert pause["request_path"] == f"/v1/bindings/{customer.binding_id}/pause-requests"
    assert (switch["kind"], switch["available"]) == ("switch", True) and switch["request_path"].endswith(
        "/switch-requests"
    )
    # Both keep the binding, its benefits and the limit the unbind would lower.
    for alternative in (pause, switch):
        assert (
            "信用额度提升 9,700 元" in alternative["keeps"]
            and "信用额度保持 30,000 元" in alternative["keeps"]
        )
    assert body["credit_limit_after"] == 30000 - 9700
    assert any("自己按时还" in line for line in pause["loses"])
    assert any(customer.account_number[-4:] in line for line in switch["loses"]), (
        "the switch names the account whose auto-debit stops"
    )

    english = await impact(stack, customer, "en")
    assert (
        english["alternatives"][0]["title"] == "Pause auto-debit"
        and "Your credit limit stays at CNY 30,000" in english["alternatives"][1]["keeps"]
    )
    assert english["impact_hash"] == body["impact_hash"], (
        "the alternatives are advice, not part of the impact a request is held to"
    )

    # Without auto-debit there is nothing to pause; switching is still offered.
    quiet = await customer_with_binding(stack, auto_debit=False)
    pause, switch = (await impact(stack, quiet))["alternatives"]
    assert (pause["available"], switch["available"]) == (False, True) and "没有开通自动扣款" in pause[
        "unavailable_reason"
    ]


async def test_an_open_request_makes_every_alternative_unavailable(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    opened = await ask(stack, customer, "unbind", unbind_body())
    assert opened.status_code == 202, opened.text
    body = await impact(stack, customer)
    assert [blocker["code"] for blocker in body["blockers"]] == ["UNBIND_IN_PROGRESS"]
    assert [alternative["available"] for alternative in body["alternatives"]] == [False, False]

    other = await customer_with_binding(stack)
    paused = await ask(stack, other, "pause", pause_body())
    assert (
        paused.status_code == 202 and paused.json()["kind"] == "pause" and paused.json()["pause_months"] == 2
    ), paused.text
    assert (await binding_view(stack, other))["status"] == "changing"
    assert [blocker["code"] for blocker in (await impact(stack, other))["blockers"]] == ["CHANGE_IN_PROGRESS"]
    assert_problem(await ask(stack, other, "unbind", unbind_body()), 409, "unbind-in-progress")
    assert_problem(await ask(stack, other, "switch", switch_body()), 409, "unbind-in-progress")


async def test_a_pause_request_is_recorded_like_an_unbind_request_and_replayed_by_its_key(
    stack: Stack,
) -> None:
    customer = await customer_with_binding(stack, due_in_days=2)
    # The instalment due by auto-debit in two days must be acknowledged, as for an unbind.
    assert_problem(await ask(stack, customer, "pause", pause_body()), 422, "blockers-not-acknowledged")
    key = idempotency_key()
    first = await ask(stack, customer, "pause", pause_body(3, acknowledged=["INSTALMENT_DUE_SOON"]), key=key)
    assert first.status_code == 202, first.text
    again = await ask(stack, customer, "pause", pause_body(3, acknowledged=["INSTALMENT_DUE_SOON"]), key=key)
    assert (
        again.status_code == 202
        and again.headers["Idempotent-Replayed"] == "true"
        and again.json()["id"] == first.json()["id"]
    )
    assert_problem(
        await ask(stack, customer, "pause", pause_body(1, acknowledged=["INSTALMENT_DUE_SOON"]), key=key),
        422,
        "idempotency-key-reused",
    )

    request = first.json()
    assert (request["kind"], request["status"], request["reason"], request["new_repayment_account"]) == (
        "pause",
        "pending_risk",
        "fund_planning",
        None,
    )
    async with stack.runtime("binding").session_factory() as session:
        [(event_type, value)] = (
            await session.execute(select(OutboxMessage.event_type, OutboxMessage.value))
        ).all()
    assert event_type == "UnbindRequested" and b'"kind":"pause"' in value and b'"pause_months":3' in value
    assert b'"acknowledged":["INSTALMENT_DUE_SOON"]' in value


async def test_a_switch_request_holds_the_new_number_until_it_ends(stack: Stack) -> None:
    customer, stranger = await customer_with_binding(stack), await customer_with_binding(stack)
    number = card_number()
    opened = await ask(
        stack,
        customer,
        "switch",
        switch_body(f"{number[:4]} {number[4:8]}-{number[8:]}", "海港银行", monthly_instalment=7000),
    )
    assert opened.status_code == 202, opened.text
    request = opened.json()
    assert (request["kind"], request["reason"]) == ("switch", "lender_change")
    new = request["new_repayment_account"]
    assert (new["lender_id"], new["account_number"], new["monthly_instalment"], new["due_day"]) == (
        "harbour_bank",
        f"{number[:4]} **** **** {number[-4:]}",
        7000,
        15,
    )
    async with stack.runtime("binding").session_factory() as session:
        value = await session.scalar(select(OutboxMessage.value))
    assert (
        value is not None
        and f'"new_lender":"harbour_bank","new_account_last4":"{number[-4:]}"'.encode() in value
        and number.encode() not in value
    )

    # While the switch is open, nobody can bind its new number; cancelled, it is free again.
    assert_problem(
        await stack.client("binding").post(
            "/v1/bindings", json=new_binding(number), headers=auth(stranger.user_id)
        ),
        409,
        "already-bound",
    )
    cancelled = await stack.client("binding").post(
        f"/v1/unbind-requests/{request['id']}/cancel", headers=auth(customer.user_id)
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert (await binding_view(stack, customer))["status"] == "active"
    assert (
        await stack.client("binding").post(
            "/v1/bindings", json=new_binding(number), headers=auth(stranger.user_id)
        )
    ).status_code == 202


@pytest.mark.parametrize(
    ("kind", "body", "status", "code"),
    [
        ("pause", pause_body(0), 422, "validation-error"),
        ("pause", pause_body(4), 422, "validation-error"),
        ("pause", pause_body(-1), 422, "validation-error"),
        ("pause", pause_body(1.5), 422, "validation-error"),
        ("pause", pause_body("two"), 422, "validation-error"),
        ("pause", {}, 422, "validation-error"),
        ("pause", pause_body(2, reason="fund_planning"), 422, "validation-error"),
        ("switch", {"lender": "Harbour Bank"}, 422, "validation-error"),
        ("switch", switch_body(lender="Nobody Bank"), 422, "unknown-lender"),
        ("switch", switch_body("6222 0000 0000 0001"), 422, "validation-error"),  # fails the Luhn check
        ("switch", switch_body(due_day=31), 422, "validation-error"),
        ("switch", switch_body(months=2), 422, "validation-error"),
    ],
)
async def test_bad_pause_and_switch_requests_are_422_and_change_nothing(
    stack: Stack, kind: str, body: dict[str, object], status: int, *, code: str
) -> None:
    customer = await customer_with_binding(stack)
    before = await state(stack)
    assert_problem(await ask(stack, customer, kind, body), status, code)
    assert await state(stack) == before


async def test_a_switch_to_the_same_account_or_to_one_already_bound_is_refused_and_changes_nothing(
    stack: Stack,
) -> None:
    customer = await customer_with_binding(stack)
    mine, theirs = (
        await customer_with_binding(stack, user_id=customer.user_id),
        await customer_with_binding(stack),
    )
    before = await state(stack)
    same = customer.account_number
    for number, status, code in (
        (same, 422, "same-account"),
        (
            f"{same[:4]} {same[4:8]} {same[8:12]} {same[12:]}",
            422,
            "same-account",
        ),  # written another way, the same number
        (mine.account_number, 409, "already-bound"),  # the customer's own other binding
        (theirs.account_number, 409, "already-bound"),  # another customer's
    ):
        assert_problem(await ask(stack, customer, "switch", switch_body(number)), status, code)
    assert await state(stack) == before


async def test_a_pause_needs_an_auto_debit_that_runs(stack: Stack) -> None:
    without = await customer_with_binding(stack, auto_debit=False)
    paused = await customer_with_binding(stack)
    async with stack.runtime("binding").unit_of_work() as uow:
        await uow.session.execute(
            update(Mandate)
            .where(Mandate.binding_id == paused.binding_id)
            .values(status="suspended", resumes_at=utcnow() + timedelta(days=30))
        )
    before = await state(stack)
    assert_problem(await ask(stack, without, "pause", pause_body()), 409, "no-auto-debit")
    assert_problem(await ask(stack, paused, "pause", pause_body()), 409, "auto-debit-paused")
    assert await state(stack) == before
    # Paused, the binding still shows when its auto-debit resumes, and the impact says why no second pause.
    view = await binding_view(stack, paused)
    assert (view["auto_debit"], view["mandate_status"]) == (False, "suspended") and view[
        "auto_debit_resumes_on"
    ]
    pause = (await impact(stack, paused))["alternatives"][0]
    assert not pause["available"] and "自动恢复" in pause["unavailable_reason"]


def test_a_pause_ends_the_same_day_months_later_or_the_last_day_of_a_shorter_month() -> None:
    from datetime import date

    assert add_months(date(2026, 1, 15), 1) == date(2026, 2, 15)
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert add_months(date(2027, 12, 31), 2) == date(2028, 2, 29)


# --- flows: every service on the real broker ---------------------------------------------------


async def event_types(topics: BusTopics, request_id: str) -> list[str]:
    return [event.type for event in await topics.request_events(request_id)]


async def _types_are(topics: BusTopics, request_id: str, expected: list[str]) -> bool:
    return await event_types(topics, request_id) == expected


async def inbox(stack: Stack, user_id: str) -> dict[str, dict[str, Any]]:
    """The customer's inbox by message kind (the newest of each)."""
    items = (await stack.client("notification").get("/v1/notifications", headers=auth(user_id))).json()[
        "items"
    ]
    return {item["kind"]: item for item in reversed(items)}


async def told(stack: Stack, user_id: str, *kinds: str) -> dict[str, dict[str, Any]]:
    async def check() -> dict[str, dict[str, Any]] | None:
        items = await inbox(stack, user_id)
        return items if set(kinds) <= set(items) else None

    return await eventually(check, 15, f"the customer was not told {kinds}")


async def audit_actions(stack: Stack, request_id: str) -> list[str]:
    return [
        entry["action"]
        for entry in (
            await stack.client("binding").get(
                f"/v1/unbind-requests/{request_id}/audit", headers=auth("ops-9", "ops")
            )
        ).json()
    ]


async def test_a_paused_auto_debit_stops_keeps_the_binding_and_resumes_by_itself(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(
        kafka_topics, database_urls, tmp_path, overrides={"binding": {"expiry_sweep_seconds": 0.2}}
    ) as stack:
        customer = await customer_with_binding(stack, due_in_days=2)
        request_id, verification_id = await issued_verification(
            stack, customer, "pause", pause_body(2, acknowledged=["INSTALMENT_DUE_SOON"])
        )
        await pass_verification(stack, customer, request_id, verification_id)
        done = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["status"] == "completed"
        )
        assert done["kind"] == "pause" and done["timeline"][-1]["event_type"] == "AutoDebitPaused"

        view = await binding_view(stack, customer)
        resumes_on = add_months(today(), 2)
        assert (view["status"], view["auto_debit"], view["mandate_status"]) == ("active", False, "suspended")
        assert view["auto_debit_resumes_on"] == resumes_on.isoformat()
        assert (view["credit_account"]["credit_limit"], view["credit_limit_contribution"]) == (
            customer.credit_limit,
            customer.contribution,
        ), "the limit stays"
        report = (
            await stack.client("binding").get(
                f"/v1/bindings/{customer.binding_id}/report", headers=auth(customer.user_id)
            )
        ).json()
        assert [benefit["code"] for benefit in report["impact"]["benefits_lost"]] == ["limit_uplift"], (
            "the benefits stay with the binding"
        )
        flow = ["UnbindRequested", "RiskAssessed", "VerificationRequested", "Verified", "AutoDebitPaused"]
        await eventually(
            lambda: _types_are(kafka_topics, request_id, flow), 15, "AutoDebitPaused was not published"
        )
        [paused] = [
            event.data
            for event in await kafka_topics.request_events(request_id)
            if event.type == "AutoDebitPaused"
        ]
        assert (paused.months, paused.resumes_on) == (2, resumes_on)
        # Every message says it is a pause, the prompt before the code; the lender hears of it too.
        texts = [sms["text"] for sms in stack.sms_messages() if sms["to"] == customer.phone]
        prompt = next(index for index, text in enumerate(texts) if "的自动扣款暂停 2 个月" in text)
        code = next(
            index
            for index, text in enumerate(texts)
            if "的自动扣款，验证码为" in text and "您正在申请暂停" in text
        )
        assert prompt < code and not [text for text in texts if "解绑" in text], texts
        notices = await told(stack, customer.user_id, "unbind_requested", "verified", "auto_debit_paused")
        assert (
            notices["unbind_requested"]["title"] == "暂停自动扣款申请已提交"
            and "正在为您暂停" in notices["verified"]["body"]
        )
        assert (
            f"{resumes_on.year} 年 {resumes_on.month} 月 {resumes_on.day} 日"
            in notices["auto_debit_paused"]["body"]
        )
        await eventually(
            lambda: [
                r
                for r in lender_requests(stack)
                if r["type"] == "AutoDebitPaused" and r["resumes_on"] == resumes_on.isoformat()
            ],
            15,
            "no lender notice",
        )

        # The pause runs out (its deadline is moved to the past): the sweep starts the auto-debit again.
        async with stack.runtime("binding").unit_of_work() as uow:
            await uow.session.execute(
                update(Mandate)
                .where(Mandate.binding_id == customer.binding_id)
                .values(resumes_at=utcnow() - timedelta(seconds=1))
            )
        await eventually(
            lambda: _types_are(kafka_topics, request_id, [*flow, "AutoDebitResumed"]),
            15,
            "AutoDebitResumed was not published",
        )
        view = await binding_view(stack, customer)
        assert (
            view["status"],
            view["auto_debit"],
            view["mandate_status"],
            view["auto_debit_resumes_on"],
        ) == ("active", True, "active", None)
        assert (await audit_actions(stack, request_id))[-2:] == ["AutoDebitPaused", "AutoDebitResumed"]
        assert (await told(stack, customer.user_id, "auto_debit_resumed"))["auto_debit_resumed"][
            "title"
        ] == "自动扣款已恢复"
        assert_records_follow_contract(await kafka_topics.records())


async def test_a_switch_moves_the_binding_and_its_benefits_and_the_lender_confirms_the_new_mandate(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with stack_with_lender(kafka_topics, database_urls, tmp_path) as (stack, lender):
        customer, other = await customer_with_binding(stack), await customer_with_binding(stack)
        number = card_number()
        request_id, verification_id = await issued_verification(
            stack, customer, "switch", switch_body(number, monthly_instalment=8000)
        )
        await pass_verification(stack, customer, request_id, verification_id)
        done = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["status"] == "completed"
        )
        assert done["timeline"][-1]["event_type"] == "RepaymentAccountSwitched"

        # The new account's mandate goes to its lender, under the switch request's id, and the lender confirms
        # it.
        flow = [
            "UnbindRequested",
            "RiskAssessed",
            "VerificationRequested",
            "Verified",
            "RepaymentAccountSwitched",
            "MandateRequested",
            "MandateConfirmed",
        ]
        await eventually(
            lambda: _types_are(kafka_topics, request_id, flow), 20, "the switch's mandate was not confirmed"
        )
        [asked] = [
            event.data
            for event in await kafka_topics.request_events(request_id)
            if event.type == "MandateRequested"
        ]
        assert (asked.lender, asked.account_last4, asked.monthly_instalment) == (
            "harbour_bank",
            number[-4:],
            8000,
        )
        answered = (
            await httpx.AsyncClient(transport=httpx.ASGITransport(app=lender), base_url="http://lender").get(
                "/mandates"
            )
        ).json()
        assert [(mandate["mandate_id"], mandate["decision"]) for mandate in answered] == [
            (asked.mandate_id, "confirmed")
        ]
        view = await binding_view(stack, customer)
        assert (view["status"], view["auto_debit"], view["mandate_status"]) == ("active", True, "active")
        assert view["repayment_account"]["lender_id"] == "harbour_bank" and view["repayment_account"][
            "account_number"
        ].endswith(number[-4:])
        # The binding kept what it granted, and the rule raised it to what the new instalment earns.
        assert (
            view["credit_limit_contribution"] == 12000
            and view["credit_account"]["credit_limit"]
            == customer.credit_limit - customer.contribution + 12000
        )
        report = (
            await stack.client("binding").get(
                f"/v1/bindings/{customer.binding_id}/report", headers=auth(customer.user_id)
            )
        ).json()
        assert [mandate["status"] for mandate in report["mandates"]] == ["cancelled", "active"]
        assert [(benefit["code"]) for benefit in report["impact"]["benefits_lost"]] == ["limit_uplift"]
        [switched] = [
            event.data
            for event in await kafka_topics.request_events(request_id)
            if event.type == "RepaymentAccountSwitched"
        ]
        assert (switched.previous_account_last4, switched.account_last4, switched.mandates_cancelled) == (
            customer.account_number[-4:],
            number[-4:],
            1,
        )

        # The customer is told, in words of a switch: the move, then the new account's auto-debit.
        notices = await told(
            stack,
            customer.user_id,
            "unbind_requested",
            "repayment_account_switched",
            "mandate_requested",
            "mandate_confirmed",
        )
        assert (
            notices["unbind_requested"]["title"] == "更换还款账户申请已提交"
            and f"换到海港银行 尾号 {number[-4:]}" in notices["unbind_requested"]["body"]
        )
        assert (
            f"尾号 {customer.account_number[-4:]} 的房贷还款账户换到海港银行 尾号 {number[-4:]}"
            in notices["repayment_account_switched"]["body"]
        )
        assert notices["mandate_confirmed"]["title"] == "新账户自动扣款已开通"

        # The old number is free for anyone; the new one is held.
        freed = await stack.client("binding").post(
            "/v1/bindings", json=new_binding(customer.account_number), headers=auth(other.user_id)
        )
        assert freed.status_code == 202, freed.text
        assert_problem(
            await stack.client("binding").post(
                "/v1/bindings", json=new_binding(number), headers=auth(other.user_id)
            ),
            409,
            "already-bound",
        )
        records = await kafka_topics.records()
        assert_records_follow_contract(records)
        assert not [record for record in records if number.encode() in record.value], (
            "no full account number on the topic"
        )


async def test_a_switch_the_new_lender_refuses_leaves_the_binding_without_auto_debit_or_uplift(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with stack_with_lender(kafka_topics, database_urls, tmp_path) as (stack, _):
        customer = await customer_with_binding(stack)
        refused_number = f"62220299999{dev_lender.REFUSED_LAST4}"
        request_id, verification_id = await issued_verification(
            stack, customer, "switch", switch_body(refused_number, "Example Bank")
        )
        await pass_verification(stack, customer, request_id, verification_id)
        flow = [
            "UnbindRequested",
            "RiskAssessed",
            "VerificationRequested",
            "Verified",
            "RepaymentAccountSwitched",
            "MandateRequested",
            "MandateRefused",
        ]
        await eventually(
            lambda: _types_are(kafka_topics, request_id, flow), 20, "the switch's mandate was not refused"
        )
        view = await binding_view(stack, customer)
        assert (
            view["status"],
            view["auto_debit"],
            view["mandate_status"],
            view["credit_limit_contribution"],
        ) == ("active", False, "refused", 0)
        assert view["credit_account"]["credit_limit"] == customer.credit_limit - customer.contribution
        [refused] = [
            event.data
            for event in await kafka_topics.request_events(request_id)
            if event.type == "MandateRefused"
        ]
        assert (refused.credit_limit_before, refused.credit_limit_after) == (
            customer.credit_limit,
            customer.credit_limit - customer.contribution,
        )
        notice = (await told(stack, customer.user_id, "mandate_refused"))["mandate_refused"]
        assert (
            notice["title"] == "新账户自动扣款未开通"
            and f"{customer.credit_limit - customer.contribution:,} 元" in notice["body"]
        )
