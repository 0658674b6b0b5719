"""How an unbind request ends, over the real broker on both databases: cancel, expiry (across a
restart), completion by the credit rule, a late Verified, and the appeal path."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.binding.service import credit_limit_contribution
from shared.cloudevents import Envelope
from shared.events import Verified
from tests.binding.test_api import assert_problem
from tests.factories import (
    CURRENT_AGREEMENT,
    Customer,
    bind_account,
    customer_with_binding,
    decide_review,
    enrolled_device,
    idempotency_key,
    pass_verification,
    unbind_body,
)
from tests.stack import BusTopics, Stack, auth, eventually, running_stack
from tests.verification.test_api import issued_verification, wrong


async def event_types(topics: BusTopics, request_id: str) -> list[str]:
    return [event.type for event in await topics.request_events(request_id)]


async def binding_status(stack: Stack, customer: Customer) -> str:
    return (
        await stack.client("binding").get(
            f"/v1/bindings/{customer.binding_id}", headers=auth(customer.user_id)
        )
    ).json()["status"]


async def test_cancel_ends_the_request_and_voids_its_verification(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        request_id, verification_id = await issued_verification(stack, customer)
        cancelled = await stack.client("binding").post(
            f"/v1/unbind-requests/{request_id}/cancel", headers=auth(customer.user_id)
        )
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert await binding_status(stack, customer) == "active"
        assert_problem(
            await stack.client("binding").post(
                f"/v1/unbind-requests/{request_id}/cancel", headers=auth(customer.user_id)
            ),
            409,
            "not-open",
        )

        await eventually(
            lambda: _verification_status(stack, customer, verification_id, "voided"),
            30,
            "the verification was not voided",
        )
        code = stack.latest_code(customer.phone)
        late = await stack.client("verification").post(
            f"/v1/verifications/{verification_id}/otp", json={"code": code}, headers=auth(customer.user_id)
        )
        assert_problem(late, 409, "verification-voided")
        assert await event_types(kafka_topics, request_id) == [
            "UnbindRequested",
            "RiskAssessed",
            "VerificationRequested",
            "UnbindCancelled",
        ]


async def _verification_status(stack: Stack, customer: Customer, verification_id: str, status: str) -> bool:
    response = await stack.client("verification").get(
        f"/v1/verifications/{verification_id}", headers=auth(customer.user_id)
    )
    return response.json()["status"] == status


async def test_expiry_is_durable_across_a_restart(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    settings = {"binding": {"unbind_request_ttl_seconds": 2, "expiry_sweep_seconds": 0.2}}
    async with running_stack(
        kafka_topics, database_urls, tmp_path, ("binding",), overrides=settings
    ) as stack:
        customer = await customer_with_binding(stack)
        accepted = await stack.client("binding").post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            json=unbind_body(),
            headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
        )
        request_id = accepted.json()["id"]
    await asyncio.sleep(2.5)  # the deadline passes while the service is down

    async with running_stack(
        kafka_topics, database_urls, tmp_path, ("binding",), overrides=settings
    ) as restarted:
        expired = await restarted.wait_for_request(
            request_id, customer.user_id, lambda body: body["status"] == "expired", timeout=15
        )
        assert expired["timeline"][-1]["event_type"] == "UnbindExpired"
        assert await binding_status(restarted, customer) == "active"
        await eventually(
            lambda: _types_are(kafka_topics, request_id, ["UnbindRequested", "UnbindExpired"]),
            15,
            "UnbindExpired was not published",
        )


async def _types_are(topics: BusTopics, request_id: str, expected: list[str]) -> bool:
    return await event_types(topics, request_id) == expected


async def test_completion_cancels_the_mandate_and_withdraws_the_limit_by_the_rule(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        holder = await customer_with_binding(stack, credit_limit=20000)
        body = {
            "lender": "示例银行",
            "account_number": "6222029988795678",
            "monthly_instalment": 7000,
            "due_day": 10,
            "agreement_version": CURRENT_AGREEMENT,
        }
        created = await bind_account(stack, holder.user_id, holder.phone, body)
        limit, contribution = created["credit_account"]["credit_limit"], created["credit_limit_contribution"]
        customer = Customer(
            holder.user_id, holder.phone, body["account_number"], created["id"], limit, contribution
        )
        assert customer.contribution == credit_limit_contribution(7000) == 10500

        request_id, verification_id = await issued_verification(stack, customer)
        code = stack.latest_code(customer.phone)
        assert (
            await stack.client("verification").post(
                f"/v1/verifications/{verification_id}/otp",
                json={"code": code},
                headers=auth(customer.user_id),
            )
        ).status_code == 200
        done = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["status"] == "completed"
        )
        assert [item["code"] for item in done["follow_up"]] == [
            "check_repayment",
            "repay_on_time",
            "adjust_plan",
            "dispute",
        ]
        assert (
            "示例银行" in done["follow_up"][0]["body"]
            and done["follow_up"][0]["action"]["href"] == "tel:4000009555"
        )

        report = (
            await stack.client("binding").get(
                f"/v1/bindings/{customer.binding_id}/report", headers=auth(customer.user_id)
            )
        ).json()
        assert [mandate["status"] for mandate in report["mandates"]] == ["cancelled"]
        assert report["binding"]["status"] == "unbound" and report["binding"]["auto_debit"] is False
        assert report["binding"]["credit_account"]["credit_limit"] == customer.credit_limit - 10500
        completed = [event for event in await kafka_topics.events() if event.type == "UnbindCompleted"]
        effects = [
            (e.data.mandates_cancelled, e.data.credit_limit_before, e.data.credit_limit_after)
            for e in completed
        ]
        assert effects == [(1, customer.credit_limit, customer.credit_limit - 10500)]


async def test_a_late_verified_after_cancel_changes_nothing(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        request_id, verification_id = await issued_verification(stack, customer)
        await stack.client("binding").post(
            f"/v1/unbind-requests/{request_id}/cancel", headers=auth(customer.user_id)
        )
        consumer = stack.runtime("binding").consumer
        handled = consumer.handled_total
        late = Verified(
            request_id=request_id,
            binding_id=customer.binding_id,
            user_id=customer.user_id,
            verification_id=verification_id,
            methods=["otp"],
        )
        await kafka_topics.publish_event(Envelope.emit(late))
        await eventually(lambda: consumer.handled_total > handled, 30, "the late Verified was not consumed")

        body = await stack.request_status(request_id, customer.user_id)
        assert body["status"] == "cancelled"
        assert await binding_status(stack, customer) == "active"
        assert "UnbindCompleted" not in await event_types(kafka_topics, request_id)


async def reject_by_wrong_codes(stack: Stack, customer: Customer) -> str:
    request_id, verification_id = await issued_verification(stack, customer)
    code = stack.latest_code(customer.phone)
    for _ in range(5):
        await stack.client("verification").post(
            f"/v1/verifications/{verification_id}/otp",
            json={"code": wrong(code)},
            headers=auth(customer.user_id),
        )
    await stack.wait_for_request(request_id, customer.user_id, lambda body: body["status"] == "rejected")
    return request_id


async def pending_review_for(stack: Stack, request_id: str) -> dict:
    async def find() -> dict | None:
        queue = (
            await stack.client("risk").get("/v1/reviews?status=pending", headers=auth("ops-9", "ops"))
        ).json()["items"]
        return next((review for review in queue if review["request_id"] == request_id), None)

    return await eventually(find, 30, "risk opened no review for the appeal")


async def test_appeal_approved_goes_on_to_verification_and_completes(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        device = await enrolled_device(stack, customer)
        request_id = await reject_by_wrong_codes(stack, customer)
        message = {"message": "My card 6222021234564821 was lost"}
        appeal = await stack.client("binding").post(
            f"/v1/unbind-requests/{request_id}/appeal", json=message, headers=auth(customer.user_id)
        )
        assert appeal.status_code == 200 and appeal.json()["status"] == "under_review"
        assert await binding_status(stack, customer) == "unbinding"

        review = await pending_review_for(stack, request_id)
        assert review["origin"] == "appeal" and "message" not in review, "the appeal's text stays in binding"
        assert appeal.json()["appeal_message"] == "My card ***4821 was lost"
        # Counted before the approval: the new code may be out before the next line runs.
        sent_before = len(stack.codes(customer.phone))
        decided = await decide_review(stack.client("risk"), review["id"], "approve", note="verified by phone")
        assert decided.status_code == 200 and decided.json()["status"] == "approved"
        assert_problem(await decide_review(stack.client("risk"), review["id"], "deny"), 409, "review-closed")

        reissued = await stack.wait_for_request(
            request_id,
            customer.user_id,
            lambda body: body["status"] == "pending_verification" and body["verification"] is not None,
        )
        assert reissued["verification"]["methods"] == ["otp", "biometric"], "after a review, both factors"
        await eventually(lambda: len(stack.codes(customer.phone)) > sent_before, 15, "no new code was sent")
        await pass_verification(stack, customer, request_id, reissued["verification"]["id"], device=device)
        done = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["status"] == "completed"
        )
        assert "verified by phone" not in str(done), "the ops note stays in risk"
        actions = [
            entry["action"]
            for entry in (
                await stack.client("binding").get(
                    f"/v1/unbind-requests/{request_id}/audit", headers=auth("ops-9", "ops")
                )
            ).json()
        ]
        assert actions[-4:] == ["UnbindAppealed", "ReviewDecided", "VerificationRequested", "UnbindCompleted"]


async def test_appeal_denied_closes_it_only_once(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        request_id = await reject_by_wrong_codes(stack, customer)
        empty = await stack.client("binding").post(
            f"/v1/unbind-requests/{request_id}/appeal", json={"message": ""}, headers=auth(customer.user_id)
        )
        assert_problem(empty, 422, "validation-error")
        await stack.client("binding").post(
            f"/v1/unbind-requests/{request_id}/appeal",
            json={"message": "it was me"},
            headers=auth(customer.user_id),
        )
        review = await pending_review_for(stack, request_id)
        await decide_review(
            stack.client("risk"),
            review["id"],
            "deny",
            reason="identity_not_confirmed",
            note="five wrong codes from a new device",
        )

        denied = "人工审核未通过：未能确认是您本人申请"
        closed = await stack.wait_for_request(
            request_id,
            customer.user_id,
            lambda body: body["status"] == "rejected" and body["outcome_reason"] == denied,
        )
        assert "five wrong codes" not in str(closed), "the ops note stays in risk"
        assert await binding_status(stack, customer) == "active"
        again = await stack.client("binding").post(
            f"/v1/unbind-requests/{request_id}/appeal",
            json={"message": "again"},
            headers=auth(customer.user_id),
        )
        assert_problem(again, 409, "already-appealed")
        assert (await event_types(kafka_topics, request_id)).count("UnbindRejected") == 2
