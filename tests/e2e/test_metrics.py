"""`/metrics` of every service after one unbind, end to end: the counts the flow caused, exactly,
on each bus and each database."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from services.binding.main import SUBSCRIPTIONS as BINDING
from services.notification.main import SUBSCRIPTIONS as NOTIFICATION
from services.notification.models import Contact
from services.risk.main import SUBSCRIPTIONS as RISK
from services.verification.main import SUBSCRIPTIONS as VERIFICATION
from shared.consumer import Subscriptions
from tests.factories import customer_with_binding, idempotency_key, unbind_body
from tests.stack import BusTopics, Stack, auth, eventually, running_stack

FLOW = ["UnbindRequested", "RiskAssessed", "VerificationRequested", "Verified", "UnbindCompleted"]
SUBSCRIBED: dict[str, Subscriptions] = {
    "binding": BINDING,
    "verification": VERIFICATION,
    "risk": RISK,
    "notification": NOTIFICATION,
}
# The customer turned push off for verification_requested; quiet hours are off, so nothing waits.
# unbind_requested and unbind_completed are security messages (sms + inapp), the other two push + inapp;
# plus the code SMS and the lender's webhook. The reminder is a day away: queued, not counted.
DELIVERIES = {
    ("inapp", "sent"): 4.0,
    ("sms", "sent"): 3.0,
    ("push", "suppressed"): 1.0,
    ("institution", "sent"): 1.0,
}
# The "verified" push is stale once the unbind has completed: sent, or superseded if the completion
# reached notification before the dispatcher's round did.
VERIFIED_PUSH = ({("push", "sent"): 1.0}, {("push", "superseded"): 1.0})

Samples = dict[tuple[str, ...], float]


def samples(text: str, name: str) -> Samples:
    """The values of one sample name, keyed by its label values in label-name order."""
    return {
        tuple(sample.labels[label] for label in sorted(sample.labels)): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def expected_handled(service: str) -> list[str]:
    """The flow's events the service subscribes to: each is handled once."""
    subscribed = {event_type.__name__ for event_type in SUBSCRIBED[service]}
    return [event_type for event_type in FLOW if event_type in subscribed]


async def scrape(stack: Stack, service: str) -> str:
    response = await stack.client(service).get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_metrics_count_what_one_unbind_caused(
    any_bus: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(any_bus, database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        async with stack.runtime("notification").unit_of_work() as uow:
            contact = await uow.session.get(Contact, customer.user_id)
            contact.quiet_start = contact.quiet_end = None
            contact.opt_out = {"verification_requested": ["push"]}
        headers = auth(customer.user_id)

        accepted = await stack.client("binding").post(
            f"/v1/bindings/{customer.binding_id}/unbind-requests",
            json=unbind_body(),
            headers={**headers, "Idempotency-Key": idempotency_key()},
        )
        assert accepted.status_code == 202, accepted.text
        request_id = accepted.json()["id"]
        issued = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body["verification"] is not None
        )
        code = (await eventually(lambda: stack.codes(customer.phone), 10, "no SMS code was sent"))[-1]
        otp_url = f"/v1/verifications/{issued['verification']['id']}/otp"
        refused = await stack.client("verification").post(
            otp_url, json={"code": "000000" if code != "000000" else "111111"}, headers=headers
        )
        assert refused.status_code == 422
        verified = await stack.client("verification").post(otp_url, json={"code": code}, headers=headers)
        assert verified.status_code == 200, verified.text
        await stack.wait_for_request(request_id, customer.user_id, lambda body: body["status"] == "completed")
        # The relay publishes UnbindCompleted just after the commit that completed the request.
        await eventually(
            lambda: _types_are(any_bus, FLOW),
            10,
            "nothing else on the topic: the counts below are the flow's",
        )

        # An unknown path and a made-up method: no new label values beyond the closed sets.
        await stack.client("binding").get(f"/nope/{request_id}")
        await stack.client("binding").request("BREW", f"/v1/unbind-requests/{request_id}", headers=headers)

        async def settled() -> dict[str, str] | None:
            texts = {service: await scrape(stack, service) for service in SUBSCRIBED}
            quiet = all(
                samples(text, "unbind_outbox_pending") == {(): 0.0}
                and sum(samples(text, "unbind_events_handled_total").values())
                == len(expected_handled(service))
                and set(samples(text, "unbind_consumer_lag").values()) == {0.0}
                for service, text in texts.items()
            )
            done = samples(texts["notification"], "unbind_notification_deliveries_total") in [
                DELIVERIES | push for push in VERIFIED_PUSH
            ]
            return texts if quiet and done else None

        texts = await eventually(settled, 30, "the services never settled")

    for service, text in texts.items():
        assert samples(text, "unbind_events_handled_total") == {
            (event_type,): 1.0 for event_type in expected_handled(service)
        }, service
        for name in (
            "unbind_events_failed_total",
            "unbind_events_dead_lettered_total",
            "unbind_events_duplicates_total",
        ):
            assert samples(text, name) == {}, (service, name)
        assert samples(text, "unbind_outbox_oldest_unsent_age_seconds") == {(): 0.0}, service
        lag = samples(text, "unbind_consumer_lag")
        assert {topic for _, topic in lag} == {any_bus.topic} and set(lag.values()) == {0.0}, service

    # Each service's relay published exactly the flow's events that service emitted.
    emitted = Counter(event.source.rsplit("/", 1)[-1] for event in await any_bus.events())
    for service, text in texts.items():
        assert samples(text, "unbind_events_published_total") == {(): float(emitted[service])}, service

    assert samples(texts["risk"], "unbind_risk_decisions_total") == {("allow",): 1.0}
    assert samples(texts["verification"], "unbind_otp_codes_sent_total") == {(): 1.0}
    assert samples(texts["verification"], "unbind_otp_codes_failed_total") == {}
    assert samples(texts["verification"], "unbind_otp_checks_total") == {
        ("accepted",): 1.0,
        ("wrong_code",): 1.0,
    }

    requests = samples(texts["verification"], "unbind_http_requests_total")
    assert requests[("POST", "/v1/verifications/{verification_id}/otp", "200")] == 1.0
    assert requests[("POST", "/v1/verifications/{verification_id}/otp", "422")] == 1.0
    latency = samples(texts["verification"], "unbind_http_request_seconds_count")
    assert latency[("POST", "/v1/verifications/{verification_id}/otp")] == 2.0
    binding = samples(texts["binding"], "unbind_http_requests_total")
    assert binding[("GET", "unmatched", "404")] == 1.0
    assert ("other", "/v1/unbind-requests/{request_id}", "405") in binding
    assert not any(request_id in route or customer.user_id in route for _, route, _ in binding), (
        "no id in a label"
    )


async def _types_are(bus: BusTopics, types: list[str]) -> bool:
    return [event.type for event in await bus.events()] == types
