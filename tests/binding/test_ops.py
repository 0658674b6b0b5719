"""What ops read in binding for a case and for a customer on the phone: the request with the impact
the customer saw, and the customer's bindings and requests, masked; on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.binding.test_api import assert_problem
from tests.factories import customer_with_binding, idempotency_key, unbind_body
from tests.stack import Stack, auth, on_memory_bus

OPS = auth("ops-1", "ops")


@pytest.fixture
async def stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with on_memory_bus(database_urls, tmp_path, ("binding", "risk")) as running:
        yield running


async def _request(stack: Stack, user_id: str, binding_id: str, body: dict) -> dict:
    response = await stack.client("binding").post(
        f"/v1/bindings/{binding_id}/unbind-requests",
        json=body,
        headers={**auth(user_id), "Idempotency-Key": idempotency_key(), "Accept-Language": "en"},
    )
    assert response.status_code == 202, response.text
    return response.json()


async def test_ops_read_the_request_with_the_impact_the_customer_saw(stack: Stack) -> None:
    customer = await customer_with_binding(stack, due_in_days=2)
    seen = (
        await stack.client("binding").get(
            f"/v1/bindings/{customer.binding_id}/impact",
            headers={**auth(customer.user_id), "Accept-Language": "en"},
        )
    ).json()
    body = unbind_body(
        acknowledged=["INSTALMENT_DUE_SOON"],
        device_id="d-phone-1",
        impact_hash=seen["impact_hash"],
        note="call me on 13812345678",
    )
    request = await _request(stack, customer.user_id, customer.binding_id, body)
    scored = await stack.wait_for_request(
        request["id"], customer.user_id, lambda body: body["status"] != "pending_risk"
    )

    response = await stack.client("binding").get(f"/v1/ops/unbind-requests/{request['id']}", headers=OPS)
    assert response.status_code == 200, response.text
    case = response.json()
    assert case["impact"]["impact_hash"] == seen["impact_hash"] and case["impact"]["locale"] == "en"
    assert [blocker["code"] for blocker in case["impact"]["blockers"]] == ["INSTALMENT_DUE_SOON"]
    assert case["impact"]["blockers"][0]["message"] == seen["blockers"][0]["message"], (
        "in the customer's words and language"
    )
    assert (case["user_id"], case["acknowledged"], case["device_id"], case["channel"]) == (
        customer.user_id,
        ["INSTALMENT_DUE_SOON"],
        "d-phone-1",
        "app",
    )
    assert case["risk_decision"] in ("allow", "step_up", "review") and isinstance(case["risk_score"], int)
    assert case["status"] == scored["status"] and case["timeline"], "the customer's view is in it"
    assert case["note"] == "call me on ***5678" and "13812345678" not in response.text
    assert customer.account_number not in response.text and customer.account_number[-4:] in response.text


async def test_ops_read_a_customers_bindings_and_requests_newest_first(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    first = await _request(stack, customer.user_id, customer.binding_id, unbind_body())
    await stack.wait_for_request(first["id"], customer.user_id, lambda body: body["status"] != "pending_risk")
    assert (
        await stack.client("binding").post(
            f"/v1/unbind-requests/{first['id']}/cancel", headers=auth(customer.user_id)
        )
    ).status_code == 200
    second = await _request(stack, customer.user_id, customer.binding_id, unbind_body("lender_change"))
    other = await customer_with_binding(stack)
    await _request(stack, other.user_id, other.binding_id, unbind_body())

    response = await stack.client("binding").get(f"/v1/ops/customers/{customer.user_id}", headers=OPS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == customer.user_id
    assert [binding["id"] for binding in body["bindings"]] == [customer.binding_id]
    assert body["bindings"][0]["repayment_account"]["account_number"].endswith(customer.account_number[-4:])
    assert [request["id"] for request in body["requests"]] == [second["id"], first["id"]], (
        "newest first, and only theirs"
    )
    assert customer.account_number not in response.text and other.account_number not in response.text


async def test_only_ops_read_them_and_unknown_ids_are_404(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    request = await _request(stack, customer.user_id, customer.binding_id, unbind_body())
    for path in (f"/v1/ops/unbind-requests/{request['id']}", f"/v1/ops/customers/{customer.user_id}"):
        assert_problem(
            await stack.client("binding").get(path, headers=auth(customer.user_id)), 403, "forbidden"
        )
        assert_problem(
            await stack.client("binding").get(path, headers=auth("verification", "service")), 403, "forbidden"
        )
    assert_problem(
        await stack.client("binding").get("/v1/ops/unbind-requests/no-such-request", headers=OPS),
        404,
        "not-found",
    )
    assert_problem(
        await stack.client("binding").get("/v1/ops/customers/u-nobody", headers=OPS), 404, "not-found"
    )
    assert (
        await stack.client("binding").get("/v1/ops/customers/not%20an%20id", headers=OPS)
    ).status_code == 422
