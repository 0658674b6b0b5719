"""The binding API: masking, ownership, problem+json errors, idempotency, one open request per binding."""

from __future__ import annotations

import asyncio
import re

import pytest
from sqlalchemy import func, select

from services.binding.models import OutboxMessage, UnbindRequest
from tests.factories import Customer, customer_with_binding, idempotency_key, unbind_body
from tests.stack import Stack, auth


async def counts(stack: Stack) -> tuple[int, int]:
    async with stack.runtime("binding").session_factory() as session:
        requests = await session.scalar(select(func.count()).select_from(UnbindRequest))
        outbox = await session.scalar(select(func.count()).select_from(OutboxMessage))
    return requests or 0, outbox or 0


async def post_unbind(
    stack: Stack, customer: Customer, body: object = None, key: str | None = None, **headers: str
):
    return await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests",
        json=unbind_body() if body is None else body,
        headers={**auth(customer.user_id), "Idempotency-Key": key or idempotency_key(), **headers},
    )


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/" + code) and body["status"] == status and body["title"]
    return body


async def test_lists_only_own_bindings_with_masked_numbers(stack: Stack) -> None:
    mine = await customer_with_binding(stack)
    await customer_with_binding(stack)
    response = await stack.client("binding").get("/v1/bindings", headers=auth(mine.user_id))
    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["id"] for item in items] == [mine.binding_id]
    assert re.fullmatch(r"\d{4} \*{4} \*{4} \d{4}", items[0]["repayment_account"]["account_number"])
    assert items[0]["repayment_account"]["account_number"].endswith(mine.account_number[-4:])
    assert mine.account_number not in response.text


async def test_another_customers_binding_is_not_found(stack: Stack) -> None:
    owner, other = await customer_with_binding(stack), await customer_with_binding(stack)
    response = await stack.client("binding").get(
        f"/v1/bindings/{owner.binding_id}", headers=auth(other.user_id)
    )
    assert_problem(response, 404, "not-found")
    response = await post_unbind(stack, owner, **auth(other.user_id))
    assert_problem(response, 404, "not-found")
    assert await counts(stack) == (0, 0)


async def test_authentication_and_roles(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    response = await stack.client("binding").get("/v1/bindings")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_problem(
        await stack.client("binding").get("/v1/bindings", headers={"Authorization": "Bearer nope"}),
        401,
        "unauthorized",
    )
    assert_problem(
        await stack.client("binding").get("/v1/bindings", headers=auth("ops-1", "ops")), 403, "forbidden"
    )
    assert_problem(await post_unbind(stack, customer, **auth("verification", "service")), 403, "forbidden")


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"reason": "because"}, {}),
        ({}, {}),
        ({"reason": "other", "surprise": 1}, {}),
        ({"reason": "other", "note": "x" * 501}, {}),
        ({"reason": "other", "device_id": "../../etc/passwd"}, {}),
        ([1, 2, 3], {}),
        ("not an object", {}),
        ({"reason": "other"}, {"Idempotency-Key": "short"}),
        ({"reason": "other"}, {"X-Client-Channel": "DROP TABLE"}),
    ],
)
async def test_invalid_requests_are_422_and_change_nothing(
    stack: Stack, body: object, headers: dict[str, str]
) -> None:
    customer = await customer_with_binding(stack)
    response = await post_unbind(stack, customer, body=body, **headers)
    problem = assert_problem(response, 422, "validation-error")
    assert problem["errors"]
    assert await counts(stack) == (0, 0)


async def test_malformed_json_and_missing_key_are_422(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    url = f"/v1/bindings/{customer.binding_id}/unbind-requests"
    headers = {
        **auth(customer.user_id),
        "Idempotency-Key": idempotency_key(),
        "Content-Type": "application/json",
    }
    response = await stack.client("binding").post(url, content=b'{"reason": ', headers=headers)
    assert_problem(response, 422, "validation-error")
    response = await stack.client("binding").post(url, json=unbind_body(), headers=auth(customer.user_id))
    assert_problem(response, 422, "validation-error")
    assert await counts(stack) == (0, 0)


async def test_unknown_routes_and_methods_are_problems(stack: Stack) -> None:
    assert_problem(await stack.client("binding").get("/v1/nowhere"), 404, "not-found")
    assert_problem(await stack.client("binding").delete("/v1/bindings"), 405, "method-not-allowed")


async def test_same_idempotency_key_returns_the_same_request(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    key = idempotency_key()
    first = await post_unbind(stack, customer, key=key)
    again = await post_unbind(stack, customer, key=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await counts(stack) == (1, 1), "one request, one UnbindRequested"

    reused = await post_unbind(stack, customer, body=unbind_body("other"), key=key)
    assert_problem(reused, 422, "idempotency-key-reused")
    assert await counts(stack) == (1, 1)


async def test_one_open_request_per_binding(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    first = await post_unbind(stack, customer)
    second = await post_unbind(stack, customer)
    problem = assert_problem(second, 409, "unbind-in-progress")
    assert problem["request_id"] == first.json()["id"]
    binding = await stack.client("binding").get(
        f"/v1/bindings/{customer.binding_id}", headers=auth(customer.user_id)
    )
    assert binding.json()["status"] == "unbinding"


async def test_concurrent_requests_open_exactly_one(stack: Stack) -> None:
    customer = await customer_with_binding(stack)
    responses = await asyncio.gather(*(post_unbind(stack, customer) for _ in range(6)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [202, 409, 409, 409, 409, 409]
    assert await counts(stack) == (1, 1)


async def test_request_visibility(stack: Stack) -> None:
    owner, other = await customer_with_binding(stack), await customer_with_binding(stack)
    request_id = (await post_unbind(stack, owner)).json()["id"]
    client = stack.client("binding")
    assert_problem(
        await client.get(f"/v1/unbind-requests/{request_id}", headers=auth(other.user_id)), 404, "not-found"
    )
    mine = await client.get(f"/v1/unbind-requests/{request_id}", headers=auth(owner.user_id))
    assert mine.status_code == 200
    assert mine.json()["timeline"][0]["event_type"] == "UnbindRequested"
    assert mine.json()["verification"] is None
    ops = await client.get(f"/v1/unbind-requests/{request_id}", headers=auth("ops-1", "ops"))
    assert ops.status_code == 200 and ops.json()["id"] == request_id
