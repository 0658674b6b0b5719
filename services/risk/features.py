"""What risk reads of a customer's behaviour when an unbind request arrives, and the two views built
from it: the signals of the weighted score and the rules, and the features of the anomaly model.

`Behaviour` is gathered from risk's tables (service.collect_behaviour) or drawn by the evaluation's
synthetic population; `signals_of` and `features_of` are the only functions that read it, so
scoring, training and evaluation see the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIME_ZONE = "Asia/Shanghai"
# Ages beyond these read as "long ago": an account of twenty years is no safer than one of ten.
LONGEST_DAYS = 3650


@dataclass(frozen=True)
class Behaviour:
    """A customer's behaviour as risk knows it at the instant a request is assessed."""

    at: datetime
    time_zone: str = DEFAULT_TIME_ZONE
    # The request named a device, and when risk first saw that device for this customer (None: unknown
    # or revoked).
    device_given: bool = True
    device_first_seen_at: datetime | None = None
    # Other devices first seen for this customer in the last 30 days.
    devices_30d: int = 0
    account_opened_at: datetime | None = None
    phone_changed_at: datetime | None = None
    ip_changed: bool = False
    # Distinct client IPs of the customer's requests in the last 24 hours, this one included.
    ips_24h: int = 1
    # Earlier events of the customer, in the windows their names say.
    requests_24h: int = 0
    failed_verifications_24h: int = 0
    counter_regressions_24h: int = 0
    rejections_30d: int = 0
    appeals_30d: int = 0
    instalment_due_soon: bool = False
    account_flagged: bool = False
    # The monthly instalment of the binding's repayment account, in yuan (None: not said).
    monthly_instalment: int | None = None

    def local_hour(self) -> int:
        try:
            zone = ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            # A zone the tz database no longer knows (it was checked when saved): the default one.
            zone = ZoneInfo(DEFAULT_TIME_ZONE)
        return self.at.astimezone(zone).hour

    def days_since(self, instant: datetime | None) -> int | None:
        return None if instant is None else max(0, (self.at - instant).days)


def signals_of(behaviour: Behaviour) -> dict[str, int]:
    """The signals the weighted score and the rules read (integers; booleans as 0 or 1)."""
    b = behaviour
    device_age = b.days_since(b.device_first_seen_at)
    phone_age = b.days_since(b.phone_changed_at)
    account_age = b.days_since(b.account_opened_at)
    return {
        "device_unknown": int(b.device_given and b.device_first_seen_at is None),
        "device_recent": int(device_age is not None and b.at - b.device_first_seen_at < timedelta(days=7)),
        "phone_changed_recently": int(
            phone_age is not None and b.at - b.phone_changed_at < timedelta(days=30)
        ),
        "requests_24h": b.requests_24h,
        "failed_verifications_24h": b.failed_verifications_24h,
        "counter_regressions_24h": b.counter_regressions_24h,
        "night_request": int(b.local_hour() < 6),
        "instalment_due_soon": int(b.instalment_due_soon),
        "account_age_days": -1 if account_age is None else account_age,
        "ip_changed": int(b.ip_changed),
        "rejections_30d": b.rejections_30d,
        "appeals_30d": b.appeals_30d,
        "account_flagged": int(b.account_flagged),
    }


@dataclass(frozen=True)
class Feature:
    """One input of the anomaly model: how its raw value is put on [0, 1] (the model's scale), and
    the raw value of an unremarkable request, which an explanation compares with."""

    scale: Callable[[float], float]
    baseline: float
    description: str


def _count(cap: int) -> Callable[[float], float]:
    return lambda value: min(max(value, 0.0), cap) / cap


def _days(value: float) -> float:
    # Logarithmic: the difference between 1 and 10 days matters, that between 400 and 410 does not.
    return math.log1p(min(max(value, 0.0), LONGEST_DAYS)) / math.log1p(LONGEST_DAYS)


def _hours_from_small_hours(hour: float) -> float:
    # Circular distance from 03:00: 0 in the dead of night, 1 at 15:00; 23:00 is as near as 07:00.
    distance = abs(hour - 3) % 24
    return min(distance, 24 - distance) / 12


def _yuan(value: float) -> float:
    return math.log1p(min(max(value, 0.0), 1_000_000)) / math.log1p(1_000_000)


FEATURES: dict[str, Feature] = {
    "requests_24h": Feature(_count(5), 0, "earlier unbind requests in the last 24 hours"),
    "device_new": Feature(_count(1), 0, "the request came from a device not known for this customer"),
    "device_age_days": Feature(_days, LONGEST_DAYS, "days since the device was first seen (0: new)"),
    "devices_30d": Feature(_count(5), 0, "other devices first seen for this customer in 30 days"),
    "hour_local": Feature(_hours_from_small_hours, 15, "hour of the request in the customer's time zone"),
    "failed_verifications_24h": Feature(_count(6), 0, "failed verifications in the last 24 hours"),
    "counter_regressions_24h": Feature(_count(3), 0, "device counter regressions in the last 24 hours"),
    "ip_changed": Feature(_count(1), 0, "another IP address than the customer's last one"),
    "ips_24h": Feature(_count(6), 1, "distinct IP addresses of the customer's requests in 24 hours"),
    "account_age_days": Feature(_days, LONGEST_DAYS, "days since the account was opened"),
    "phone_change_age_days": Feature(_days, LONGEST_DAYS, "days since the phone number changed"),
    "rejections_30d": Feature(_count(3), 0, "rejected requests in the last 30 days"),
    "appeals_30d": Feature(_count(3), 0, "appeals in the last 30 days"),
    "monthly_instalment": Feature(_yuan, 5000, "the binding's monthly instalment, in yuan"),
}


def features_of(behaviour: Behaviour) -> dict[str, float]:
    """The model's inputs, as raw values (what ops read); `scaled` puts them on the model's scale.
    A fact risk does not know (an account opening never reported) takes its feature's baseline, so
    that it neither raises nor lowers a score."""
    b = behaviour
    device_age = b.days_since(b.device_first_seen_at)
    account_age = b.days_since(b.account_opened_at)
    phone_age = b.days_since(b.phone_changed_at)
    known = {
        "requests_24h": b.requests_24h,
        "device_new": int(b.device_given and device_age is None),
        "device_age_days": 0 if device_age is None and b.device_given else device_age,
        "devices_30d": b.devices_30d,
        "hour_local": b.local_hour(),
        "failed_verifications_24h": b.failed_verifications_24h,
        "counter_regressions_24h": b.counter_regressions_24h,
        "ip_changed": int(b.ip_changed),
        "ips_24h": b.ips_24h,
        "account_age_days": account_age,
        "phone_change_age_days": phone_age,
        "rejections_30d": b.rejections_30d,
        "appeals_30d": b.appeals_30d,
        "monthly_instalment": b.monthly_instalment,
    }
    return {name: float(FEATURES[name].baseline if value is None else value) for name, value in known.items()}


def scaled(features: dict[str, float]) -> dict[str, float]:
    """Raw features on [0, 1]; a missing one (a row stored before a feature existed) at its baseline."""
    return {name: feature.scale(features.get(name, feature.baseline)) for name, feature in FEATURES.items()}
