"""The machine's decision on an unbind request: the weighted score of the signals, its level, and
the rules and thresholds that decide. Pure functions: a live assessment, a dry run of rules and the
evaluation on a synthetic population all decide through them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.risk.config import RiskSettings
from services.risk.rules import Facts, Rule, first_match
from shared.events import RiskDecision, RiskLevel, RiskReason


@dataclass(frozen=True)
class Signal:
    weight: Callable[[int], int]
    detail: Callable[[int], str]


# The documented weights (docs/api.md, "Risk"). Values are integers; booleans are 0 or 1.
SIGNALS: dict[str, Signal] = {
    "device_unknown": Signal(
        lambda v: 40 * bool(v), lambda v: "requested from a device not seen before for this customer"
    ),
    "device_recent": Signal(
        lambda v: 15 * bool(v), lambda v: "requested from a device first seen less than 7 days ago"
    ),
    "phone_changed_recently": Signal(
        lambda v: 25 * bool(v), lambda v: "the phone number changed in the last 30 days"
    ),
    "requests_24h": Signal(
        lambda v: min(60, 20 * v), lambda v: f"{v} earlier unbind request(s) in the last 24 hours"
    ),
    "failed_verifications_24h": Signal(
        lambda v: min(45, 15 * v), lambda v: f"{v} failed verification(s) in the last 24 hours"
    ),
    "counter_regressions_24h": Signal(
        lambda v: min(60, 30 * v), lambda v: f"{v} device counter regression(s) in the last 24 hours"
    ),
    "night_request": Signal(
        lambda v: 10 * bool(v),
        lambda v: "requested between 00:00 and 06:00 in the customer's time zone (Asia/Shanghai unless set)",
    ),
    "instalment_due_soon": Signal(lambda v: 10 * bool(v), lambda v: "an instalment is due within 3 days"),
    "account_age_days": Signal(
        lambda v: 20 if 0 <= v < 90 else 0, lambda v: f"the account is {v} day(s) old"
    ),
    "ip_changed": Signal(
        lambda v: 10 * bool(v), lambda v: "the request came from another IP address than the last one"
    ),
    "rejections_30d": Signal(
        lambda v: min(30, 10 * v), lambda v: f"{v} rejected request(s) in the last 30 days"
    ),
    "appeals_30d": Signal(lambda v: 15 * bool(v), lambda v: f"{v} appeal(s) in the last 30 days"),
    "account_flagged": Signal(lambda v: 30 * bool(v), lambda v: "the account carries an anomaly flag"),
}


def score(signals: dict[str, int]) -> tuple[int, list[RiskReason]]:
    """The capped weighted sum, with a reason for every signal that contributed."""
    reasons = []
    for name, signal in SIGNALS.items():
        value = int(signals.get(name, 0))
        if weight := signal.weight(value):
            reasons.append(RiskReason(code=name, weight=weight, detail=signal.detail(value)))
    return min(100, sum(reason.weight for reason in reasons)), reasons


def level_of(settings: RiskSettings, total: int) -> RiskLevel:
    if total >= settings.threshold_review:
        return RiskLevel.HIGHEST
    if total >= settings.threshold_step_up:
        return RiskLevel.ELEVATED
    return RiskLevel.NORMAL


def rule_facts(
    signals: Mapping[str, int], device_id: str | None, client_ip: str | None, model_score: float | None
) -> dict[str, int | str | float | None]:
    """What rules may name of an assessment besides its score ("" for a fact the request lacked, None
    for the model's score while it warmed up)."""
    return {**signals, "device_id": device_id or "", "client_ip": client_ip or "", "model_score": model_score}


def decide(
    settings: RiskSettings, total: int, facts: Facts | None = None, rules: list[Rule] = ()
) -> tuple[RiskDecision, RiskLevel, Rule | None]:
    """Rules first (first match in Radar's order, over the facts and the score), then the thresholds."""
    rule = first_match(list(rules), {**(facts or {}), "score": total})
    if rule is not None:
        return RiskDecision(rule.action), level_of(settings, total), rule
    if total >= settings.threshold_deny:
        decision = RiskDecision.DENY
    elif total >= settings.threshold_review:
        decision = RiskDecision.REVIEW
    elif total >= settings.threshold_step_up:
        decision = RiskDecision.STEP_UP
    else:
        decision = RiskDecision.ALLOW
    return decision, level_of(settings, total), None
