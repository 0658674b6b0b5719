"""A completed unbind can be disputed, once, within 7 days: an ops case opens at risk, the customer
is told it was received, and the completion notice promises that, not an appeal the API refuses.
After 7 days, or a second time, a 409 that changes nothing. On the real broker and both databases."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from services.binding.models import UnbindRequest
from shared.db import utcnow
from tests.binding.test_api import assert_problem
from tests.binding.test_lifecycle import event_types, pending_review_for
from tests.factories import Customer, customer_with_binding, decide_review, pass_verification, reviewer_auth
from tests.stack import BusTopics, Stack, auth, running_stack
from tests.verification.test_api import issued_verification

OPS = auth("ops-4", "ops")


async def completed_unbind(stack: Stack, customer: Customer) -> str:
    request_id, verification_id = await issued_verification(stack, customer)
    await pass_verification(stack, customer, request_id, verification_id)
    await stack.wait_for_request(request_id, customer.user_id, lambda body: body["status"] == "completed")
    return request_id


async def test_a_completed_unbind_is_disputed_once_within_7_days_and_opens_an_ops_case(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack, awake=True)
        client, headers = stack.client("binding"), auth(customer.user_id)
        request_id, _ = await issued_verification(stack, customer)
        dispute = {"reason": "not_requested_by_me", "message": "我没有申请解绑，手机 13812345678 上周丢了"}
        assert_problem(
            await client.post(f"/v1/unbind-requests/{request_id}/dispute", json=dispute, headers=headers),
            409,
            "not-completed",
        )
        await client.post(f"/v1/unbind-requests/{request_id}/cancel", headers=headers)
        request_id = await completed_unbind(stack, customer)

        # The completion notice offers the dispute the API takes, not an appeal it refuses.
        notices = await stack.wait_for_notice(customer.user_id, request_id, "unbind_completed")
        assert "7 天内" in notices["unbind_completed"] and "申诉" not in notices["unbind_completed"]
        assert_problem(
            await client.post(
                f"/v1/unbind-requests/{request_id}/appeal", json={"message": "?"}, headers=headers
            ),
            409,
            "not-rejected",
        )
        completed = await stack.request_status(request_id, customer.user_id)
        assert completed["dispute"] is None and completed["dispute_until"] is not None

        assert_problem(
            await client.post(
                f"/v1/unbind-requests/{request_id}/dispute",
                json={"reason": "changed_my_mind"},
                headers=headers,
            ),
            422,
            "validation-error",
        )
        other = await customer_with_binding(stack)
        assert_problem(
            await client.post(
                f"/v1/unbind-requests/{request_id}/dispute", json=dispute, headers=auth(other.user_id)
            ),
            404,
            "not-found",
        )
        disputed = await client.post(
            f"/v1/unbind-requests/{request_id}/dispute", json=dispute, headers=headers
        )
        assert disputed.status_code == 200, disputed.text
        body = disputed.json()
        assert body["status"] == "completed" and body["dispute"]["reason"] == "not_requested_by_me"
        assert body["dispute"]["message"] == "我没有申请解绑，手机 ***5678 上周丢了", (
            "numbers masked, like an appeal's"
        )
        assert body["timeline"][-1]["event_type"] == "UnbindDisputed"

        # An ops case opens at risk; the customer is told it was received; the words stay in binding.
        case = await pending_review_for(stack, request_id)
        assert case["origin"] == "dispute"
        notices = await stack.wait_for_notice(customer.user_id, request_id, "dispute_received")
        assert "异议" in notices["dispute_received"]
        events = await kafka_topics.request_events(request_id)
        assert [event.data.reason for event in events if event.type == "UnbindDisputed"] == [
            "not_requested_by_me"
        ]
        assert "上周丢了".encode() not in b"".join(record.value for record in await kafka_topics.records())

        # Twice: refused, nothing changes.
        audit_before = len(
            (await client.get(f"/v1/unbind-requests/{request_id}/audit", headers=headers)).json()
        )
        assert_problem(
            await client.post(
                f"/v1/unbind-requests/{request_id}/dispute", json={"reason": "other"}, headers=headers
            ),
            409,
            "already-disputed",
        )
        assert (
            len((await client.get(f"/v1/unbind-requests/{request_id}/audit", headers=headers)).json())
            == audit_before
        )
        assert (await stack.request_status(request_id, customer.user_id))["dispute"][
            "reason"
        ] == "not_requested_by_me"

        # Ops close the case: upheld, with a finding from the dispute's list (not the denial list); the
        # request stays completed, no new verification.
        assert (
            await stack.client("risk").post(f"/v1/reviews/{case['id']}/claim", headers=reviewer_auth())
        ).status_code == 200
        denial = {"decision": "deny", "reason": "other", "customer_message": "x"}
        assert_problem(
            await stack.client("risk").post(
                f"/v1/reviews/{case['id']}/decision", json=denial, headers=reviewer_auth()
            ),
            422,
            "invalid-reason",
        )
        closed = await decide_review(
            stack.client("risk"),
            case["id"],
            "approve",
            reason="unauthorised_unbind",
            note="lost phone confirmed",
        )
        assert closed.status_code == 200, closed.text
        notices = await stack.wait_for_notice(customer.user_id, request_id, "dispute_closed")
        assert "情况属实" in notices["dispute_closed"]
        assert (await stack.request_status(request_id, customer.user_id))["status"] == "completed"
        assert (await event_types(kafka_topics, request_id)).count("VerificationRequested") == 1


async def test_a_dispute_after_7_days_is_refused_and_changes_nothing(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        request_id = await completed_unbind(stack, customer)
        async with stack.runtime("binding").unit_of_work() as uow:
            await uow.session.execute(
                update(UnbindRequest)
                .where(UnbindRequest.id == request_id)
                .values(completed_at=utcnow() - timedelta(days=7, minutes=1))
            )
        before = await stack.request_status(request_id, customer.user_id)

        late = await stack.client("binding").post(
            f"/v1/unbind-requests/{request_id}/dispute",
            json={"reason": "repayment_problem"},
            headers=auth(customer.user_id),
        )
        assert_problem(late, 409, "dispute-window-closed")
        assert await stack.request_status(request_id, customer.user_id) == before
        assert "UnbindDisputed" not in await event_types(kafka_topics, request_id)
