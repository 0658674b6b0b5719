"""Impact, blockers, acknowledgement, repayments, binding creation, the report, and 404 for strangers."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta

import pytest
from pypdf import PdfReader

from services.binding.models import Instalment
from services.binding.service import credit_limit_contribution, today
from tests.binding.test_api import assert_problem, counts, post_unbind
from tests.factories import CURRENT_AGREEMENT, Customer, customer_with_binding, idempotency_key, unbind_body
from tests.stack import Stack, auth


async def impact(stack: Stack, customer: Customer, language: str = "zh-CN") -> dict:
    response = await stack.client("binding").get(
        f"/v1/bindings/{customer.binding_id}/impact",
        headers={**auth(customer.user_id), "Accept-Language": language},
    )
    assert response.status_code == 200, response.text
    return response.json()


def codes(body: dict) -> list[str]:
    return [blocker["code"] for blocker in body["blockers"]]


async def repay(stack: Stack, customer: Customer, amount: int = 6500, key: str | None = None):
    return await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/repayments",
        json={"amount": amount},
        headers={**auth(customer.user_id), "Idempotency-Key": key or idempotency_key()},
    )


async def test_impact_of_a_quiet_binding(stack: Stack) -> None:
    customer = await customer_with_binding(stack, due_in_days=20)
    body = await impact(stack, customer)
    assert codes(body) == []
    assert body["auto_debit"] is True
    assert (body["credit_limit_before"], body["credit_limit_after"]) == (30000, 30000 - 9700)
    assert body["current_instalment"]["status"] == "unpaid"
    assert body["benefits_lost"] == [{"code": "limit_uplift", "description": "信用额度提升 9,700 元"}]
    assert "征信" in body["credit_record_effect"]
    assert len(body["impact_hash"]) == 64


async def test_instalment_due_soon_must_be_acknowledged_or_repaid(stack: Stack) -> None:
    customer = await customer_with_binding(stack, due_in_days=2)
    body = await impact(stack, customer, "en")
    [blocker] = body["blockers"]
    assert blocker["code"] == "INSTALMENT_DUE_SOON" and blocker["acknowledgeable"] is True
    assert "CNY 6,500" in blocker["message"]

    refused = assert_problem(await post_unbind(stack, customer), 422, "blockers-not-acknowledged")
    assert refused["missing"] == ["INSTALMENT_DUE_SOON"]
    assert await counts(stack) == (0, 0)
    accepted = await post_unbind(stack, customer, body=unbind_body(acknowledged=["INSTALMENT_DUE_SOON"]))
    assert accepted.status_code == 202
    # The audit records what was acknowledged, for ops; the customer's timeline says it in words.
    audit = (
        await stack.client("binding").get(
            f"/v1/unbind-requests/{accepted.json()['id']}/audit", headers=auth("ops-1", "ops")
        )
    ).json()
    assert "acknowledged INSTALMENT_DUE_SOON" in audit[0]["reason"]
    assert accepted.json()["timeline"][0]["detail"] == "您提交了解绑申请"


async def test_repaying_clears_the_due_soon_blocker(stack: Stack) -> None:
    customer = await customer_with_binding(stack, due_in_days=1)
    before = await impact(stack, customer)
    assert_problem(await repay(stack, customer, amount=100), 422, "amount-mismatch")
    key = idempotency_key()
    paid = await repay(stack, customer, key=key)
    assert paid.status_code == 201 and paid.json()["status"] == "paid" and paid.json()["paid_by"] == "manual"
    again = await repay(stack, customer, key=key)
    assert again.status_code == 200, "the same key does not pay twice"
    assert_problem(await repay(stack, customer), 409, "nothing-due")
    after = await impact(stack, customer)
    assert codes(after) == [] and after["impact_hash"] != before["impact_hash"]
    assert (await post_unbind(stack, customer)).status_code == 202


async def test_a_reused_repayment_key_with_another_request_is_422_and_pays_nothing(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    second = await customer_with_binding(stack, user_id=customer.user_id)
    key = idempotency_key()
    assert (await repay(stack, customer, key=key)).status_code == 201
    assert_problem(await repay(stack, customer, amount=7000, key=key), 422, "idempotency-key-reused")
    # Keys are the customer's, as for unbind requests: the same key on another binding is another request.
    assert_problem(await repay(stack, second, key=key), 422, "idempotency-key-reused")
    assert [instalment["status"] for instalment in await instalments(stack, second)] == ["unpaid"]
    assert (await repay(stack, customer, key=key)).status_code == 200, "the same request is still a replay"


async def test_concurrent_repayments_with_one_key_pay_one_instalment(stack: Stack) -> None:
    customer = await customer_with_binding(stack, due_in_days=-20)
    due = today() + timedelta(days=10)
    account_id = f"ra-{customer.binding_id.removeprefix('b-')}"
    async with stack.runtime("binding").unit_of_work() as uow:
        uow.session.add(
            Instalment(
                id=f"i-next-{account_id}",
                repayment_account_id=account_id,
                period=due.strftime("%Y-%m"),
                amount=6500,
                due_date=due,
            )
        )
    key = idempotency_key()
    responses = await asyncio.gather(*(repay(stack, customer, key=key) for _ in range(10)))
    assert sorted(response.status_code for response in responses) == [200] * 9 + [201], [
        response.text for response in responses
    ]
    assert len({response.content for response in responses}) == 1
    assert [instalment["status"] for instalment in await instalments(stack, customer)] == ["unpaid", "paid"]


async def instalments(stack: Stack, customer: Customer) -> list[dict]:
    report = await stack.client("binding").get(
        f"/v1/bindings/{customer.binding_id}/report", headers=auth(customer.user_id)
    )
    return report.json()["instalments"]


async def test_no_auto_debit_means_no_due_soon_blocker(stack: Stack) -> None:
    customer = await customer_with_binding(stack, due_in_days=1, auto_debit=False)
    assert codes(await impact(stack, customer)) == []


async def test_overdue_refuses_even_when_acknowledged_until_settled(stack: Stack) -> None:
    customer = await customer_with_binding(stack, due_in_days=-3)
    body = await impact(stack, customer)
    assert codes(body) == ["OVERDUE"] and body["blockers"][0]["acknowledgeable"] is False
    assert "逾期" in body["credit_record_effect"]
    assert_problem(
        await post_unbind(stack, customer, body=unbind_body(acknowledged=["OVERDUE"])), 409, "overdue"
    )
    assert await counts(stack) == (0, 0)
    assert (await repay(stack, customer)).status_code == 201
    assert codes(await impact(stack, customer)) == []
    assert (await post_unbind(stack, customer)).status_code == 202


async def test_unbind_in_progress_blocker(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    request_id = (await post_unbind(stack, customer)).json()["id"]
    assert codes(await impact(stack, customer)) == ["UNBIND_IN_PROGRESS"]
    cancelled = await stack.client("binding").post(
        f"/v1/unbind-requests/{request_id}/cancel", headers=auth(customer.user_id)
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert codes(await impact(stack, customer)) == []


async def test_a_changed_impact_is_refused(stack: Stack) -> None:
    customer = await customer_with_binding(stack, due_in_days=10)
    seen = (await impact(stack, customer))["impact_hash"]
    assert (await repay(stack, customer)).status_code == 201
    problem = assert_problem(
        await post_unbind(stack, customer, body=unbind_body(impact_hash=seen)), 409, "impact-changed"
    )
    current = problem["impact_hash"]
    accepted = await post_unbind(stack, customer, body=unbind_body(impact_hash=current))
    assert accepted.status_code == 202


async def test_a_hundred_concurrent_requests_with_different_keys_open_exactly_one(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    responses = await asyncio.gather(*(post_unbind(stack, customer) for _ in range(100)))
    statuses = [response.status_code for response in responses]
    assert statuses.count(202) == 1 and statuses.count(409) == 99
    assert await counts(stack) == (1, 1)


async def test_a_hundred_concurrent_requests_with_one_key_all_get_the_same_answer(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    key = idempotency_key()
    responses = await asyncio.gather(*(post_unbind(stack, customer, key=key) for _ in range(100)))
    assert {response.status_code for response in responses} == {202}
    assert len({response.json()["id"] for response in responses}) == 1
    assert len({response.content for response in responses}) == 1, "a replay answers with the very same body"
    assert await counts(stack) == (1, 1)


@pytest.mark.parametrize(
    "change",
    [
        {"account_number": "1234"},
        {"account_number": "6222x0299887712345"},
        {"due_day": 31},
        {"monthly_instalment": 0},
        {"lender": ""},
        {"lender": "bank\x00"},
        (
            {"lender": "Some Bank"},
            "unknown-lender",
        ),  # not a lender of the directory: no one could confirm its mandate
    ],
)
async def test_invalid_bindings_are_422(stack: Stack, change: dict | tuple[dict, str]) -> None:
    change, problem = change if isinstance(change, tuple) else (change, "validation-error")
    existing = await customer_with_binding(stack)
    body = {
        "lender": "Example Bank",
        "account_number": "6222029988751234",
        "monthly_instalment": 8000,
        "due_day": 10,
        "agreement_version": CURRENT_AGREEMENT,
    }
    assert (
        await stack.client("binding").post("/v1/bindings", json=body, headers=auth(existing.user_id))
    ).status_code == 202, "the body itself is valid"
    body |= {"account_number": "6222029988755672"} | change
    assert_problem(
        await stack.client("binding").post("/v1/bindings", json=body, headers=auth(existing.user_id)),
        422,
        problem,
    )
    assert (
        len(
            (await stack.client("binding").get("/v1/bindings", headers=auth(existing.user_id))).json()[
                "items"
            ]
        )
        == 2
    ), "nothing was bound"


def test_credit_limit_rule() -> None:
    assert [credit_limit_contribution(amount) for amount in (99, 6500, 6533, 13_333, 20_000)] == [
        100,
        9700,
        9700,
        19_900,
        20_000,
    ]


async def test_report_as_json_and_as_pdf(stack: Stack) -> None:
    customer = await customer_with_binding(stack, due_in_days=2)
    url = f"/v1/bindings/{customer.binding_id}/report"
    report = await stack.client("binding").get(url, headers=auth(customer.user_id))
    assert report.status_code == 200 and report.headers["content-type"] == "application/json"
    body = report.json()
    assert (
        body["binding"]["repayment_account"]["account_number"]
        == f"6222 **** **** {customer.account_number[-4:]}"
    )
    assert (
        body["mandates"][0]["status"] == "active"
        and body["impact"]["blockers"][0]["code"] == "INSTALMENT_DUE_SOON"
    )

    pdf = await stack.client("binding").get(
        url, headers={**auth(customer.user_id), "Accept": "application/pdf"}
    )
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert f"6222 **** **** {customer.account_number[-4:]}" in text
    assert "账户信息报告" in text
    assert customer.account_number not in text


async def test_strangers_get_404_everywhere(stack: Stack) -> None:
    owner, stranger = await customer_with_binding(stack), await customer_with_binding(stack)
    request_id = (await post_unbind(stack, owner)).json()["id"]
    client, headers = stack.client("binding"), auth(stranger.user_id)
    calls = [
        client.get(f"/v1/bindings/{owner.binding_id}", headers=headers),
        client.get(f"/v1/bindings/{owner.binding_id}/impact", headers=headers),
        client.get(f"/v1/bindings/{owner.binding_id}/report", headers=headers),
        client.post(
            f"/v1/bindings/{owner.binding_id}/repayments",
            json={"amount": 6500},
            headers={**headers, "Idempotency-Key": idempotency_key()},
        ),
        client.post(
            f"/v1/bindings/{owner.binding_id}/unbind-requests",
            json=unbind_body(),
            headers={**headers, "Idempotency-Key": idempotency_key()},
        ),
        client.get(f"/v1/unbind-requests/{request_id}", headers=headers),
        client.post(f"/v1/unbind-requests/{request_id}/cancel", headers=headers),
        client.post(f"/v1/unbind-requests/{request_id}/appeal", json={"message": "please"}, headers=headers),
        client.get(f"/v1/unbind-requests/{request_id}/audit", headers=headers),
    ]
    for response in await asyncio.gather(*calls):
        assert_problem(response, 404, "not-found")
    assert (await stack.request_status(request_id, owner.user_id))["status"] == "pending_risk"


async def test_ops_search_and_audit(stack: Stack) -> None:
    customers = [await customer_with_binding(stack) for _ in range(3)]
    ids = [(await post_unbind(stack, customer)).json()["id"] for customer in customers]
    await stack.client("binding").post(
        f"/v1/unbind-requests/{ids[0]}/cancel", headers=auth(customers[0].user_id)
    )
    client, ops = stack.client("binding"), auth("ops-7", "ops")

    assert_problem(
        await client.get("/v1/ops/unbind-requests", headers=auth(customers[0].user_id)), 403, "forbidden"
    )
    first = (await client.get("/v1/ops/unbind-requests?limit=2", headers=ops)).json()
    second = (
        await client.get(f"/v1/ops/unbind-requests?limit=2&cursor={first['next_cursor']}", headers=ops)
    ).json()
    assert [item["id"] for item in first["items"] + second["items"]] == ids[::-1] and second[
        "next_cursor"
    ] is None
    pending = (await client.get("/v1/ops/unbind-requests?status=pending_risk", headers=ops)).json()
    assert sorted(item["id"] for item in pending["items"]) == sorted(ids[1:])
    mine = (await client.get(f"/v1/ops/unbind-requests?user_id={customers[2].user_id}", headers=ops)).json()
    assert [item["id"] for item in mine["items"]] == [ids[2]]
    assert_problem(
        await client.get("/v1/ops/unbind-requests?cursor=bm9wZQ", headers=ops), 422, "invalid-cursor"
    )
    assert_problem(
        await client.get("/v1/ops/unbind-requests?since=2026-01-01T00:00:00", headers=ops),
        422,
        "naive-datetime",
    )
    assert_problem(
        await client.get("/v1/ops/unbind-requests?status=lost", headers=ops), 422, "validation-error"
    )

    for headers in (auth(customers[0].user_id), ops):
        trail = (await client.get(f"/v1/unbind-requests/{ids[0]}/audit", headers=headers)).json()
        assert [(entry["from_status"], entry["to_status"], entry["actor_type"]) for entry in trail] == [
            (None, "pending_risk", "customer"),
            ("pending_risk", "cancelled", "customer"),
        ]
        # Ops read the reason recorded; the customer, in words.
        assert trail[1]["actor"] == customers[0].user_id and trail[1]["reason"] == (
            "cancelled by the customer" if headers is ops else "您取消了申请"
        )
