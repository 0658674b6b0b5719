"""The case view and the support view of the dashboard, read from the four services as the signed-in
staff user: a real request that went through the flow on the real broker, on both databases."""

from __future__ import annotations

from pathlib import Path

import orjson

from services.risk.features import FEATURES
from tests.binding.test_api import assert_problem
from tests.dashboard.conftest import running_dashboard
from tests.dashboard.test_api import closed_port
from tests.factories import Customer, code_sent, customer_with_binding, idempotency_key, unbind_body
from tests.stack import BusTopics, Stack, auth, eventually, make_bus_topics, running_stack
from tests.verification.test_api import wrong

OPS = auth("ops-7", "ops")


async def _request(stack: Stack, customer: Customer) -> str:
    response = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests",
        json=unbind_body(),
        headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def _completed_with_a_wrong_code_first(stack: Stack, customer: Customer, request_id: str) -> list[str]:
    """The customer types a wrong code, then the right one; returns the codes sent."""
    issued = await stack.wait_for_request(
        request_id, customer.user_id, lambda body: body["verification"] is not None
    )
    verification_id = issued["verification"]["id"]
    client, headers = stack.client("verification"), auth(customer.user_id)
    # The customer's cancelled request had a code too: wait for this verification's own.
    await eventually(lambda: code_sent(client, verification_id, headers), 15, "no code sent")
    code = stack.latest_code(customer.phone)
    assert (
        await client.post(
            f"/v1/verifications/{verification_id}/otp", json={"code": wrong(code)}, headers=headers
        )
    ).status_code == 422
    assert (
        await client.post(f"/v1/verifications/{verification_id}/otp", json={"code": code}, headers=headers)
    ).status_code == 200
    await stack.wait_for_request(request_id, customer.user_id, lambda body: body["status"] == "completed")
    return [code, wrong(code)]


def _assert_nothing_secret(text: str, customer: Customer, codes: list[str]) -> None:
    assert customer.phone.removeprefix("+86") not in text, "a full phone number"
    assert customer.account_number not in text, "a full account number"
    for code in codes:
        assert code not in text, "a one-time code"


async def test_the_case_of_a_real_request_and_the_customer_on_the_phone(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with (
        running_stack(kafka_topics, database_urls, tmp_path) as stack,
        running_dashboard(kafka_topics, tmp_path, service_apps=stack.apps) as (_, dashboard),
    ):
        customer = await customer_with_binding(stack, awake=True)
        # An earlier request, cancelled: one of the customer's other requests.
        earlier = await _request(stack, customer)
        await stack.wait_for_request(earlier, customer.user_id, lambda body: body["status"] != "pending_risk")
        assert (
            await stack.client("binding").post(
                f"/v1/unbind-requests/{earlier}/cancel", headers=auth(customer.user_id)
            )
        ).status_code == 200
        request_id = await _request(stack, customer)
        codes = await _completed_with_a_wrong_code_first(stack, customer, request_id)

        async def complete_case() -> dict | None:
            response = await dashboard.get(f"/v1/cases/{request_id}", headers=OPS)
            assert response.status_code == 200, response.text
            case = response.json()
            return (
                case
                if case["messages"]
                and any(message["kind"] == "unbind_completed" for message in case["messages"])
                else None
            )

        case = await eventually(complete_case, 20, "the case never showed the completion notice")
        assert set(case) == {
            "request",
            "assessment",
            "verifications",
            "messages",
            "audit",
            "reviews",
            "customer",
            "unavailable",
        }
        assert case["unavailable"] == [], case["unavailable"]
        assert case["request"]["id"] == request_id and case["request"]["status"] == "completed"
        assert case["request"]["impact"]["binding_id"] == customer.binding_id, "the impact the customer saw"
        assert case["assessment"]["request_id"] == request_id and isinstance(case["assessment"]["score"], int)
        # The anomaly model's part, as risk gave it: a first window not learned yet, so no score.
        assert set(case["assessment"]["features"]) == set(FEATURES)
        assert (
            case["assessment"]["model_score"],
            case["assessment"]["model_version"],
            case["assessment"]["model_explanation"],
        ) == (None, None, None)
        [verification] = case["verifications"]
        assert [(attempt["method"], attempt["result"]) for attempt in verification["attempts"]] == [
            ("otp", "wrong_code"),
            ("otp", "passed"),
        ]
        kinds = {(message["kind"], message["channel"]) for message in case["messages"]}
        assert ("otp_code", "sms") in kinds and ("unbind_completed", "inapp") in kinds
        assert all("body" not in message for message in case["messages"])
        assert all(
            message["destination"].startswith("138****")
            for message in case["messages"]
            if message["channel"] == "sms"
        )
        assert [entry["action"] for entry in case["audit"]][:2] == ["UnbindRequested", "RiskAssessed"]
        assert case["reviews"] == []
        assert case["customer"]["risk"]["user_id"] == customer.user_id
        assert {request["id"] for request in case["customer"]["requests"]} == {request_id, earlier}
        assert [binding["id"] for binding in case["customer"]["bindings"]] == [customer.binding_id]
        assert case["customer"]["devices"] == []
        _assert_nothing_secret(orjson.dumps(case).decode(), customer, codes)

        # On the phone: the customer reads out their masked number; another customer shares its prefix.
        other = await customer_with_binding(stack)
        masked = f"138****{customer.phone[-4:]}"
        found = await dashboard.get("/v1/customers", params={"phone": masked}, headers=OPS)
        assert found.status_code == 200, found.text
        assert customer.user_id in [item["user_id"] for item in found.json()["items"]]
        assert (
            other.user_id not in [item["user_id"] for item in found.json()["items"]]
            or other.phone[-4:] == customer.phone[-4:]
        )
        view = await dashboard.get(f"/v1/customers/{customer.user_id}", headers=OPS)
        assert view.status_code == 200, view.text
        support = view.json()
        assert support["contact"]["phone"] == masked and support["unavailable"] == []
        assert {request["id"] for request in support["requests"]} == {request_id, earlier}
        assert any(message["kind"] == "otp_code" for message in support["messages"])
        _assert_nothing_secret(view.text + found.text, customer, codes)

        # A lost notice is resent, as the signed-in staff user; a code is not.
        notice = next(
            message
            for message in support["messages"]
            if (message["kind"], message["channel"]) == ("unbind_completed", "inapp")
        )
        code_sms = next(message for message in support["messages"] if message["kind"] == "otp_code")
        assert_problem(
            await dashboard.post(
                f"/v1/notifications/{code_sms['id']}/resend", json={"reason": "lost"}, headers=OPS
            ),
            409,
            "not-resendable",
        )
        resent = await dashboard.post(
            f"/v1/notifications/{notice['id']}/resend", json={"reason": "deleted by mistake"}, headers=OPS
        )
        assert resent.status_code == 202, resent.text
        assert (resent.json()["resent_by"], resent.json()["resend_reason"], resent.json()["resend_of"]) == (
            "ops-7",
            "deleted by mistake",
            notice["id"],
        )
        after = (await dashboard.get(f"/v1/customers/{customer.user_id}", headers=OPS)).json()["messages"]
        assert len(after) == len(support["messages"]) + 1, "one new message, none for the refused code"

        assert_problem(await dashboard.get("/v1/cases/no-such-request", headers=OPS), 404, "not-found")
        assert_problem(await dashboard.get("/v1/customers/u-nobody", headers=OPS), 404, "not-found")
        for params in ({"phone": "13812345678"}, {"phone": "138*5678"}, {}):
            response = await dashboard.get("/v1/customers", params=params, headers=OPS)
            assert (
                response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
            ), response.text

        # A service down: its parts are null and named; the rest of the case is still there.
        down = {service: app for service, app in stack.apps.items() if service != "verification"}
        async with running_dashboard(
            kafka_topics, tmp_path, service_apps=down, verification_url=f"http://127.0.0.1:{closed_port()}"
        ) as (_, partial):
            response = await partial.get(f"/v1/cases/{request_id}", headers=OPS)
            assert response.status_code == 200, response.text
            degraded = response.json()
            assert "verification" in degraded["unavailable"]
            assert degraded["verifications"] is None and degraded["customer"]["devices"] is None
            assert degraded["request"]["id"] == request_id and degraded["messages"]


async def test_a_customer_token_gets_403_on_every_case_and_support_route(tmp_path: Path) -> None:
    customer = auth("u-1", "customer")
    async with running_dashboard(
        make_bus_topics("memory", None), tmp_path, risk_url=f"http://127.0.0.1:{closed_port()}"
    ) as (_, dashboard):
        for method, path, options in (
            ("GET", "/v1/cases/r-1", {}),
            ("GET", "/v1/customers", {"params": {"user_id": "u-1"}}),
            ("GET", "/v1/customers/u-1", {}),
            ("POST", "/v1/notifications/1/resend", {"json": {"reason": "lost"}}),
        ):
            assert_problem(
                await dashboard.request(method, path, headers=customer, **options), 403, "forbidden"
            )
            assert_problem(
                await dashboard.request(method, path, headers=auth("binding", "service"), **options),
                403,
                "forbidden",
            )
            assert (await dashboard.request(method, path, **options)).status_code == 401
