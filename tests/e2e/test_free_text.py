"""No free text on the stream, over the real broker on both databases: a customer's appeal, an
ops note and a reviewer's message to the customer reach neither the topic nor the dashboard, and
stay readable at the service that took them, by those allowed to read them."""

from __future__ import annotations

from pathlib import Path

from tests.binding.test_lifecycle import event_types, pending_review_for, reject_by_wrong_codes
from tests.contracts import assert_records_follow_contract
from tests.dashboard.conftest import running_dashboard
from tests.factories import customer_with_binding, decide_review
from tests.stack import BusTopics, auth, eventually, running_stack
from tools.pii import Secrets, record_lines, scan

OPS = auth("ops-5", "ops")
PHONE = "+8613987654321"
# The same phone twice, as people type it: dotted, and in full-width digits.
APPEAL = "Please call me back on 139.8765.4321 or １３９８７６５４３２１, it was me"
NOTE = "Rang 139 8765 4321: the customer confirmed the request"
TO_THE_CUSTOMER = "We rang 139 8765 4321 twice; please ring our hotline back"
# What would show that any of the texts got out, whatever became of its digits.
WORDS = ("call me back", "it was me", "the customer confirmed", "ring our hotline")


def leaks(text: str) -> list[str]:
    secrets = Secrets()
    secrets.add_phone(PHONE)
    found = [word for word in WORDS if word in text]
    return found + [finding.kind for finding in scan([("text", text)], secrets)]


async def test_an_appeal_and_an_ops_note_stay_with_their_service(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with (
        running_stack(kafka_topics, database_urls, tmp_path) as stack,
        running_dashboard(kafka_topics, tmp_path, risk_app=stack.apps["risk"]) as (_, dashboard),
    ):
        customer, stranger = await customer_with_binding(stack), await customer_with_binding(stack)
        request_id = await reject_by_wrong_codes(stack, customer)
        appealed = await stack.client("binding").post(
            f"/v1/unbind-requests/{request_id}/appeal",
            json={"message": APPEAL},
            headers=auth(customer.user_id),
        )
        assert appealed.status_code == 200, appealed.text

        review = await pending_review_for(stack, request_id)
        queue = await dashboard.get("/v1/reviews", headers=OPS)
        assert queue.status_code == 200 and review["id"] in queue.text
        assert leaks(queue.text) == [], "the dashboard's review queue shows the appeal's text"
        decided = await decide_review(
            stack.client("risk"),
            review["id"],
            "deny",
            reason="customer_unreachable",
            note=NOTE,
            customer_message=TO_THE_CUSTOMER,
        )
        assert decided.status_code == 200, decided.text

        async def closed() -> bool:
            return (await event_types(kafka_topics, request_id)).count("UnbindRejected") == 2

        await eventually(closed, 30, "the denial never reached the topic")
        records = await kafka_topics.records()
        assert {"UnbindAppealed", "ReviewDecided"} <= set(await event_types(kafka_topics, request_id))
        on_topic = [line for _, line in record_lines(kafka_topics.topic, records)]
        assert [found for line in on_topic for found in leaks(line)] == [], "free text reached the topic"
        assert_records_follow_contract(records)

        async def feed_has_the_decision() -> str | None:
            feed = await dashboard.get("/v1/events", params={"request_id": request_id}, headers=OPS)
            return feed.text if '"ReviewDecided"' in feed.text and '"UnbindAppealed"' in feed.text else None

        feed = await eventually(
            feed_has_the_decision, 20, "the dashboard never showed the appeal and the decision"
        )
        assert leaks(feed) == [], "free text reached the dashboard's feed"

        # The appeal: its owner and ops read it at binding, numbers masked; another customer gets 404.
        for reader in (auth(customer.user_id), OPS):
            body = (
                await stack.client("binding").get(f"/v1/unbind-requests/{request_id}", headers=reader)
            ).json()
            assert body["appeal_message"] == "Please call me back on ***4321 or ***4321, it was me"
            assert "the customer confirmed" not in str(body), "binding holds no ops note"
        refused = await stack.client("binding").get(
            f"/v1/unbind-requests/{request_id}", headers=auth(stranger.user_id)
        )
        assert refused.status_code == 404

        # The note: ops read it at risk; a customer, even the one it is about, gets 403.
        denied = (
            await stack.client("risk").get("/v1/reviews", params={"status": "denied"}, headers=OPS)
        ).json()["items"]
        assert [item["note"] for item in denied if item["id"] == review["id"]] == [NOTE]
        for customer_token in (auth(customer.user_id), auth(stranger.user_id)):
            assert (
                await stack.client("risk").get(
                    "/v1/reviews", params={"status": "denied"}, headers=customer_token
                )
            ).status_code == 403

        # The message to the customer: in their inbox only, numbers masked; ops read it at risk.
        notices = await stack.wait_for_notice(customer.user_id, request_id, "appeal_denied")
        assert notices["appeal_denied"].endswith(
            "审核人员留言：We rang ***4321 twice; please ring our hotline back"
        )
        assert [item["customer_message"] for item in denied if item["id"] == review["id"]] == [
            TO_THE_CUSTOMER
        ]
