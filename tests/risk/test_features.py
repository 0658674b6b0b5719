"""The one function that turns a customer's behaviour into the model's features (and the signals of
the rules): the hour in the customer's own time zone, unknown facts at their baseline, the scale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.risk.features import FEATURES, Behaviour, features_of, scaled, signals_of

AT = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)  # 02:30 in Shanghai, 10:30 in Paris


def test_the_hour_is_the_customers_own() -> None:
    assert features_of(Behaviour(at=AT))["hour_local"] == 2
    assert signals_of(Behaviour(at=AT))["night_request"] == 1
    in_paris = Behaviour(at=AT, time_zone="Europe/Paris")
    assert features_of(in_paris)["hour_local"] == 19
    assert signals_of(in_paris)["night_request"] == 0


def test_a_zone_the_tz_database_no_longer_knows_reads_as_the_default() -> None:
    assert features_of(Behaviour(at=AT, time_zone="Mars/Olympus_Mons"))["hour_local"] == 2


def test_a_new_device_is_age_zero_and_a_known_one_has_its_age() -> None:
    new = features_of(Behaviour(at=AT, device_first_seen_at=None))
    assert (new["device_new"], new["device_age_days"]) == (1, 0)
    known = features_of(Behaviour(at=AT, device_first_seen_at=AT - timedelta(days=40)))
    assert (known["device_new"], known["device_age_days"]) == (0, 40)
    # A request naming no device says nothing about devices: both at their baseline.
    none = features_of(Behaviour(at=AT, device_given=False))
    assert (none["device_new"], none["device_age_days"]) == (0, FEATURES["device_age_days"].baseline)


def test_facts_risk_never_learned_sit_at_their_baseline() -> None:
    features = features_of(Behaviour(at=AT, device_first_seen_at=AT - timedelta(days=1)))
    for name in ("account_age_days", "phone_change_age_days", "monthly_instalment"):
        assert features[name] == FEATURES[name].baseline, name
    assert set(features) == set(FEATURES)


def test_the_signals_of_the_rules_come_from_the_same_behaviour() -> None:
    behaviour = Behaviour(
        at=AT,
        device_first_seen_at=AT - timedelta(days=3),
        phone_changed_at=AT - timedelta(days=2),
        account_opened_at=AT - timedelta(days=40),
        requests_24h=2,
        ip_changed=True,
        ips_24h=4,
    )
    signals, features = signals_of(behaviour), features_of(behaviour)
    assert signals["device_recent"] == 1 and features["device_age_days"] == 3
    assert signals["phone_changed_recently"] == 1 and features["phone_change_age_days"] == 2
    assert signals["account_age_days"] == features["account_age_days"] == 40
    assert signals["requests_24h"] == features["requests_24h"] == 2
    assert features["ips_24h"] == 4 and signals["ip_changed"] == features["ip_changed"] == 1


@pytest.mark.parametrize("hour", [3, 15, 23, 7])
def test_every_feature_is_scaled_to_the_unit_interval(hour: int) -> None:
    behaviour = Behaviour(
        at=AT.replace(hour=hour),
        requests_24h=50,
        failed_verifications_24h=99,
        ips_24h=40,
        monthly_instalment=10**9,
        account_opened_at=AT - timedelta(days=40_000),
    )
    values = scaled(features_of(behaviour))
    assert all(0 <= value <= 1 for value in values.values()), values
    # The dead of night is the far end of the hour's scale, mid-afternoon the other.
    assert scaled({"hour_local": 3})["hour_local"] == 0 and scaled({"hour_local": 15})["hour_local"] == 1
