"""The dashboard's projection of the stream, fed envelopes directly: states, stage latency, time
buckets, stuck requests, dead letters, idempotent replays and masked feed lines."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from services.dashboard.config import DashboardSettings
from services.dashboard.main import SUBSCRIPTIONS
from services.dashboard.projection import Projection
from services.dashboard.stream import LiveHub, StreamReader
from shared.bus import InMemoryBus
from shared.cloudevents import Envelope
from shared.events import (
    AutoDebitPaused,
    AutoDebitResumed,
    DeviceEnrolled,
    DeviceRevoked,
    RepaymentAccountSwitched,
    ReviewDecided,
    RiskAssessed,
    RiskLevel,
    RiskReason,
    UnbindAppealed,
    UnbindCompleted,
    UnbindDisputed,
    UnbindRejected,
    UnbindRequested,
    VerificationRequested,
    Verified,
)
from shared.keys import KeySet
from tests.keys import KEYS, service_key

T0 = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)
TOPIC, DLQ = "unbind.events", "unbind.events.dlq"


class Flow:
    """One request's events, stamped at chosen seconds after T0, fed through the stream reader."""

    def __init__(self, reader: StreamReader, request_id: str | None = None):
        self.reader = reader
        self.ids = {
            "request_id": request_id or str(uuid.uuid4()),
            "binding_id": f"b-{uuid.uuid4().hex[:6]}",
            "user_id": "u-test",
        }

    async def emit(
        self, event_type: type, at: float, *, offset: int | None = None, **data: object
    ) -> Envelope:
        """Append to partition 0 (or offer the record at `offset` again)."""
        envelope = Envelope(
            data=event_type(**self.ids, **data),
            source=f"/services/{event_type.emitted_by}",
            time=T0 + timedelta(seconds=at),
        )
        key, value, headers = envelope.to_record(service_key(event_type.emitted_by))
        offset = offset if offset is not None else self.reader.projection.position(TOPIC, 0) or 0
        await self.reader.apply(TOPIC, 0, SimpleNamespace(offset=offset, value=value, headers=headers))
        return envelope

    async def requested(self, at: float) -> None:
        await self.emit(UnbindRequested, at, reason="fund_planning", impact_hash="h")

    async def assessed(self, at: float, decision: str = "allow", score: int = 10) -> None:
        reasons = [RiskReason(code="instalment_due_soon", weight=10, detail="due in 2 days")]
        await self.emit(
            RiskAssessed,
            at,
            score=score,
            level=RiskLevel.NORMAL,
            decision=decision,
            reasons=reasons,
            required_methods=["otp"] if decision == "allow" else [],
        )

    async def issued(self, at: float) -> None:
        await self.emit(
            VerificationRequested,
            at,
            verification_id="v1",
            methods=["otp"],
            expires_at=T0 + timedelta(minutes=15),
        )

    async def verified(self, at: float) -> None:
        await self.emit(Verified, at, verification_id="v1", methods=["otp"])

    async def completed(self, at: float) -> None:
        await self.emit(
            UnbindCompleted, at, mandates_cancelled=1, credit_limit_before=30000, credit_limit_after=20300
        )


def make_reader(
    now: datetime = T0 + timedelta(minutes=1), **settings: object
) -> tuple[StreamReader, LiveHub]:
    config = DashboardSettings(**settings)
    projection = Projection(feed_size=config.feed_size, finished_kept=config.finished_requests_kept)
    hub = LiveHub(projection, config, lambda: now, subscriptions=SUBSCRIPTIONS)
    keys = KeySet(file=KEYS.jwks_file)
    keys.load_now()
    return StreamReader(
        InMemoryBus(), config, keys, projection, hub=hub, clock=lambda: now, subscriptions=SUBSCRIPTIONS
    ), hub


async def test_a_completed_flow_moves_the_funnel_and_times_each_stage() -> None:
    reader, hub = make_reader()
    flow = Flow(reader)
    await flow.requested(0.0)
    assert hub.overview()["funnel"]["now"]["pending_risk"] == 1
    await flow.assessed(0.2)
    await flow.issued(0.25)
    assert hub.overview()["funnel"]["now"]["pending_verification"] == 1
    await flow.verified(10.25)
    await flow.completed(10.3)

    overview = hub.overview()
    assert overview["funnel"]["now"] == {
        "pending_risk": 0,
        "under_review": 0,
        "pending_verification": 0,
        "completed": 1,
        "rejected": 0,
        "cancelled": 0,
        "expired": 0,
    }
    latency = overview["latency"]["windows"]["5m"]
    # Histogram bins are 15 % wide: each reading is the bin's upper edge, within 15 % above.
    expected = {
        "requested→assessed": 0.2,
        "assessed→verification_issued": 0.05,
        "verification_issued→verified": 10.0,
        "verified→completed": 0.05,
        "requested→completed": 10.3,
    }
    for stage, seconds in expected.items():
        assert latency[stage]["count"] == 1
        assert seconds <= latency[stage]["p50"] <= seconds * 1.16, (stage, latency[stage])
        assert latency[stage]["p50"] == latency[stage]["p99"]
    assert overview["funnel"]["per_hour"] == [
        {
            "hour": "2026-11-28T09:00:00+00:00",
            **{
                "requested": 1,
                "assessed": 1,
                "verification_issued": 1,
                "verified": 1,
                "completed": 1,
                "rejected": 0,
                "cancelled": 0,
                "expired": 0,
            },
            **{"paused": 0, "switched": 0, "resumed": 0},
        }
    ]
    assert (
        sum(overview["series"]["events"]) == 5
        and sum(overview["series"]["completed"]) == 1
        and sum(overview["series"]["requested"]) == 1
    )
    assert overview["stuck"]["count"] == 0


async def test_a_pause_and_a_switch_pass_the_same_stages_and_are_counted_by_kind() -> None:
    reader, hub = make_reader()
    pause, switch, unbind = Flow(reader), Flow(reader), Flow(reader)
    await pause.emit(
        UnbindRequested, 0, kind="pause", pause_months=2, reason="fund_planning", impact_hash="h"
    )
    await switch.emit(
        UnbindRequested,
        0,
        kind="switch",
        new_lender="harbour_bank",
        new_account_last4="4821",
        reason="lender_change",
        impact_hash="h",
    )
    await unbind.requested(0)
    for flow in (pause, switch):
        await flow.assessed(0.2)
        await flow.issued(0.3)
        await flow.verified(5)
    await pause.emit(AutoDebitPaused, 5.1, mandate_id="m-1", months=2, resumes_on=date(2027, 1, 28))
    await switch.emit(
        RepaymentAccountSwitched,
        5.2,
        previous_account_last4="1234",
        account_last4="4821",
        lender="harbour_bank",
        mandates_cancelled=1,
    )

    overview = hub.overview()
    by_kind = {
        kind: {state: count for state, count in states.items() if count}
        for kind, states in overview["funnel"]["by_kind"].items()
    }
    assert by_kind == {"unbind": {"pending_risk": 1}, "pause": {"completed": 1}, "switch": {"completed": 1}}
    assert (
        overview["funnel"]["now"]["completed"] == 2
        and overview["latency"]["windows"]["5m"]["verified→completed"]["count"] == 2
    )
    [hour] = overview["funnel"]["per_hour"]
    assert (hour["completed"], hour["paused"], hour["switched"], hour["resumed"]) == (2, 1, 1, 0)
    assert reader.projection.recent_feed(limit=1)[0]["summary"] == (
        "account ···· 1234 -> ···· 4821 at harbour_bank · 1 mandate(s) cancelled · the new one awaits "
        "the lender"
    )

    # Months later the pause runs out: counted, and the request stays completed.
    await pause.emit(AutoDebitResumed, 3600 * 0.5, mandate_id="m-1")
    overview = hub.overview()
    assert (
        overview["funnel"]["per_hour"][0]["resumed"] == 1
        and overview["funnel"]["by_kind"]["pause"]["completed"] == 1
    )
    assert sum(overview["funnel"]["now"].values()) == 3 and overview["stuck"]["count"] == 0
    # One whose request the dashboard never saw (the stream starts later) brings no request to life.
    await Flow(reader).emit(AutoDebitResumed, 3600 * 0.6, mandate_id="m-2")
    assert (
        sum(hub.overview()["funnel"]["now"].values()) == 3
        and hub.overview()["funnel"]["per_hour"][0]["resumed"] == 2
    )


async def test_percentiles_over_many_requests_and_the_five_minute_window() -> None:
    reader, hub = make_reader(now=T0 + timedelta(minutes=30))
    # 100 requests 25 minutes ago, assessed after 1..100 ms; one 2 minutes ago, after 3 s.
    for i in range(1, 101):
        flow = Flow(reader)
        await flow.requested(300.0)
        await flow.assessed(300.0 + i / 1000)
    late = Flow(reader)
    await late.requested(1680.0)
    await late.assessed(1683.0)

    windows = hub.overview()["latency"]["windows"]
    assert (
        windows["5m"]["requested→assessed"]["count"] == 1
        and 3.0 <= windows["5m"]["requested→assessed"]["p50"] <= 3.45
    )
    hour = windows["60m"]["requested→assessed"]
    assert hour["count"] == 101
    assert 0.050 <= hour["p50"] <= 0.058
    assert 0.095 <= hour["p95"] <= 0.110
    assert 0.099 <= hour["p99"] <= 0.115


async def test_review_time_is_not_counted_as_verification_latency() -> None:
    reader, hub = make_reader(now=T0 + timedelta(hours=1))
    flow = Flow(reader)
    await flow.requested(0)
    await flow.assessed(0.1, decision="review", score=70)
    assert hub.overview()["funnel"]["now"]["under_review"] == 1
    await flow.emit(
        ReviewDecided, 1800, decision="approve", reviewer="ops-1", required_methods=["otp", "biometric"]
    )
    await flow.issued(1800.2)
    latency = hub.overview()["latency"]["windows"]["60m"]["assessed→verification_issued"]
    assert latency["count"] == 1 and latency["p50"] < 0.25


async def test_a_request_without_transition_is_stuck_and_a_rejected_one_reopens_on_appeal() -> None:
    reader, hub = make_reader(now=T0 + timedelta(minutes=10), stuck_after_seconds=120)
    waiting = Flow(reader)
    await waiting.requested(0)
    await waiting.assessed(1)
    moving = Flow(reader)
    await moving.requested(590)
    stuck = hub.overview()["stuck"]
    assert stuck["count"] == 1
    assert stuck["oldest"][0] | {"since": None} == {
        "request_id": waiting.ids["request_id"], "binding_id": waiting.ids["binding_id"], "user_id": "u-test",
        "state": "pending_verification", "last_event": "RiskAssessed", "since": None, "waiting_seconds": 599,
    }  # fmt: skip

    rejected = Flow(reader)
    await rejected.requested(595)
    await rejected.emit(UnbindRejected, 596, reason="risk_denied")
    assert hub.overview()["funnel"]["now"]["rejected"] == 1
    await rejected.emit(UnbindAppealed, 597)
    now = hub.overview()["funnel"]["now"]
    assert (now["rejected"], now["under_review"]) == (0, 1)
    line = reader.projection.recent_feed(request_id=rejected.ids["request_id"], limit=1)[0]
    assert (line["type"], line["summary"]) == (
        "UnbindAppealed",
        "appealed by the customer: under review again",
    )


async def test_a_deny_score_waits_for_a_person_and_a_dispute_leaves_the_unbind_completed() -> None:
    reader, hub = make_reader()
    flow = Flow(reader)
    await flow.requested(0)
    await flow.assessed(1, decision="deny", score=90)
    assert hub.overview()["funnel"]["now"]["under_review"] == 1, "no machine says a final no"
    await flow.emit(
        ReviewDecided, 2, decision="approve", reviewer="ops-1", required_methods=["otp", "biometric"]
    )
    await flow.issued(3)
    await flow.verified(4)
    await flow.completed(5)
    await flow.emit(UnbindDisputed, 6, reason="not_requested_by_me")
    await flow.emit(ReviewDecided, 7, decision="approve", reviewer="ops-2", origin="dispute")
    now = hub.overview()["funnel"]["now"]
    assert (now["completed"], now["pending_verification"], now["under_review"]) == (1, 0, 0)
    lines = [
        item["summary"] for item in reader.projection.recent_feed(request_id=flow.ids["request_id"], limit=2)
    ]
    assert lines == [
        "approve by ops-2 · dispute case",
        "completed unbind disputed by the customer (not_requested_by_me): an ops case opens",
    ]


async def test_a_record_offered_twice_is_applied_once() -> None:
    reader, hub = make_reader()
    flow = Flow(reader)
    await flow.requested(0)
    await flow.emit(
        UnbindRequested, 0, offset=0, reason="fund_planning", impact_hash="h"
    )  # the same record again, as after a rebalance
    overview = hub.overview()
    assert overview["events_total"] == 1 and overview["funnel"]["now"]["pending_risk"] == 1


async def test_the_same_event_at_a_new_offset_is_applied_once() -> None:
    reader, hub = make_reader()
    flow = Flow(reader)
    requested = await flow.emit(UnbindRequested, 0, reason="fund_planning", impact_hash="h")
    await flow.assessed(1)
    key, value, headers = requested.to_record(service_key("binding"))
    # Published again (a relay that died before marking it, or `unbind dlq replay`): a new offset, the same
    # id.
    await reader.apply(
        TOPIC, 0, SimpleNamespace(offset=reader.projection.position(TOPIC, 0), value=value, headers=headers)
    )
    overview = hub.overview()
    assert overview["events_total"] == 2 and reader.projection.duplicates_total == 1
    assert (
        overview["funnel"]["now"]["pending_risk"] == 0
        and overview["funnel"]["now"]["pending_verification"] == 1
    ), "the request does not move back"


@pytest.mark.parametrize(
    "signer",
    [None, "verification", "risk"],
    ids=["unsigned", "another-service's-key", "a-third-service's-key"],
)
async def test_an_event_not_signed_by_its_source_is_never_shown_only_counted(signer: str | None) -> None:
    reader, hub = make_reader()
    forged = Envelope.emit(
        UnbindCompleted(
            request_id="r-1",
            binding_id="b-1",
            user_id="u-1",
            mandates_cancelled=1,
            credit_limit_before=1,
            credit_limit_after=0,
        )
    )
    _, value, headers = forged.to_record(service_key(signer) if signer else None)
    await reader.apply(TOPIC, 0, SimpleNamespace(offset=0, value=value, headers=headers))
    overview = hub.overview()
    assert overview["dlq"]["rejected_on_topic"] == 1
    assert overview["events_total"] == 0 and not reader.projection.recent_feed(
        types=None, request_id=None, limit=10
    )


async def test_device_events_are_in_the_feed_but_move_no_request() -> None:
    reader, hub = make_reader()
    flow = Flow(reader)
    await flow.requested(0)
    for offset, event in enumerate(
        [
            DeviceEnrolled(user_id="u-test", device_id="d-new"),
            DeviceRevoked(user_id="u-test", device_id="d-new"),
        ],
        start=1,
    ):
        key, value, headers = Envelope(
            data=event, source="/services/verification", time=T0 + timedelta(seconds=offset)
        ).to_record(service_key("verification"))
        await reader.apply(TOPIC, 1, SimpleNamespace(offset=offset, value=value, headers=headers))
    overview = hub.overview()
    assert overview["events_total"] == 3 and sum(overview["series"]["requested"]) == 1
    assert sum(overview["funnel"]["now"].values()) == 1 and overview["funnel"]["now"]["pending_risk"] == 1, (
        "no request is made of a device event"
    )
    feed = reader.projection.recent_feed(limit=2)
    assert [(line["type"], line["request_id"], line["binding_id"], line["user_id"]) for line in feed] == [
        ("DeviceRevoked", None, None, "u-test"),
        ("DeviceEnrolled", None, None, "u-test"),
    ]
    assert feed[1]["summary"] == "device d-new added (its SMS code confirmed)"


async def test_dead_letters_and_malformed_records_are_counted_with_their_redacted_error() -> None:
    reader, hub = make_reader()
    headers = [
        ("ce_type", b"UnbindRequested"),
        ("x-dlq-error", b"ValueError: bad account 6222021234564821"),
        ("x-dlq-consumer-group", b"unbind-risk"),
    ]
    await reader.apply(DLQ, 0, SimpleNamespace(offset=0, value=b"{}", headers=headers))
    await reader.apply(
        TOPIC, 0, SimpleNamespace(offset=0, value=b"not json", headers=[("ce_specversion", b"1.0")])
    )
    dlq = hub.overview()["dlq"]
    assert dlq["count"] == 1 and dlq["malformed_on_topic"] == 1
    assert dlq["recent"][0]["consumer_group"] == "unbind-risk"
    assert "6222021234564821" not in dlq["recent"][0]["error"] and "***4821" in dlq["recent"][0]["error"]


async def test_a_replay_marker_on_the_dlq_is_not_a_dead_letter() -> None:
    reader, hub = make_reader()
    await reader.apply(
        DLQ,
        0,
        SimpleNamespace(
            offset=0,
            value=b"{}",
            headers=[("ce_type", b"UnbindRequested"), ("x-dlq-error", b"RuntimeError: down")],
        ),
    )
    await reader.apply(
        DLQ,
        0,
        SimpleNamespace(
            offset=1,
            value=b"",
            headers=[("x-dlq-replay-of", b"0:0"), ("x-dlq-replayed-at", b"2026-11-28T09:00:00+00:00")],
        ),
    )
    assert hub.overview()["dlq"]["count"] == 1


async def test_finished_requests_beyond_the_limit_are_forgotten_but_still_counted() -> None:
    reader, hub = make_reader(finished_requests_kept=100)
    for _ in range(150):
        flow = Flow(reader)
        await flow.requested(0)
        await flow.emit(UnbindRejected, 1, reason="risk_denied")
    assert len(reader.projection.finished) == 100
    assert hub.overview()["funnel"]["now"]["rejected"] == 150
