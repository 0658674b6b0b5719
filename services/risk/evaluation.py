"""How well the rules and the anomaly model catch account takeover, measured on a synthetic
population before an analyst promotes the model (`POST /v1/model/evaluations`, `unbind risk evaluate`).

Normal customers behave noisily (new phones, typos in codes, late nights, travel); a share of the
requests are injected account-takeover patterns. Each request goes through the same `features_of`
and `signals_of` as a live one, the model scores it and then learns it (as the stream would), and
the decisions come from the same `decide` with the rules given. A request counts as caught when
the machine sends it to a person (review or deny). The first window is the model's warm-up: it has
no score, so it is left out of every measure.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from services.risk.config import RiskSettings
from services.risk.features import Behaviour, features_of, signals_of
from services.risk.model import AnomalyModel, ModelParameters
from services.risk.rules import Rule, parse_rules
from services.risk.scoring import SIGNALS, decide, rule_facts, score
from shared.events import RiskDecision

START = datetime(2026, 11, 1, tzinfo=UTC)
CAUGHT = (RiskDecision.REVIEW, RiskDecision.DENY)
CURVE = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


class Pattern(StrEnum):
    """An account-takeover pattern the population can hold."""

    # A stolen phone number ported to a new phone, used at night from a new device.
    NEW_DEVICE_PHONE_CHANGE_NIGHT = "new_device_phone_change_night"
    # Someone guessing or phishing one-time codes: a burst of failed verifications.
    FAILED_CODE_BURST = "failed_code_burst"
    # A credential-stuffing or proxy setup: requests from many IP addresses in a day.
    MANY_IPS = "many_ips"


@dataclass(frozen=True)
class Request:
    behaviour: Behaviour
    pattern: Pattern | None


def _normal(rng: random.Random, at: datetime) -> Behaviour:
    """A customer going about their business: most signals quiet, some noise in each."""
    hour = rng.uniform(0, 24) if rng.random() < 0.06 else min(23.9, max(6.0, rng.gauss(14, 3.5)))
    at = at.replace(hour=0, minute=0) + timedelta(hours=hour - 8)  # the hour in Asia/Shanghai
    device = rng.random()
    phone = rng.random()
    account = rng.random()
    ip_changed = rng.random() < 0.25
    return Behaviour(
        at=at,
        device_given=device < 0.97,
        device_first_seen_at=at - timedelta(days=rng.lognormvariate(5.3, 1.0)) if device < 0.85 else None,
        devices_30d=rng.choices((0, 1, 2), (80, 15, 5))[0],
        account_opened_at=(
            at - timedelta(days=rng.uniform(5, 90))
            if account < 0.05
            else None
            if account < 0.07
            else at - timedelta(days=min(3650.0, rng.lognormvariate(7.3, 0.6)))
        ),
        phone_changed_at=(
            at - timedelta(days=rng.uniform(1, 30))
            if phone < 0.04
            else at - timedelta(days=rng.lognormvariate(6.5, 0.7))
            if phone < 0.34
            else None
        ),
        ip_changed=ip_changed,
        ips_24h=rng.choices((1, 2, 3), (80, 17, 3) if not ip_changed else (40, 50, 10))[0],
        requests_24h=rng.choices((0, 1, 2), (88, 10, 2))[0],
        failed_verifications_24h=rng.choices((0, 1, 2), (88, 9, 3))[0],
        counter_regressions_24h=int(rng.random() < 0.003),
        rejections_30d=int(rng.random() < 0.03),
        appeals_30d=int(rng.random() < 0.015),
        instalment_due_soon=rng.random() < 0.1,
        account_flagged=rng.random() < 0.01,
        monthly_instalment=round(rng.lognormvariate(8.4, 0.6)),
    )


def _new_device_phone_change_night(rng: random.Random, b: Behaviour) -> Behaviour:
    night = b.at.replace(hour=0, minute=0) + timedelta(hours=rng.uniform(-2, 5) - 8)
    return replace(
        b,
        at=night,
        device_given=True,
        device_first_seen_at=None,
        phone_changed_at=night - timedelta(days=rng.uniform(0.2, 7)),
        ip_changed=rng.random() < 0.7,
        ips_24h=rng.choice((1, 2)),
    )


def _failed_code_burst(rng: random.Random, b: Behaviour) -> Behaviour:
    return replace(
        b,
        failed_verifications_24h=rng.randint(3, 8),
        requests_24h=rng.randint(1, 3),
        device_first_seen_at=None if rng.random() < 0.5 else b.device_first_seen_at,
    )


def _many_ips(rng: random.Random, b: Behaviour) -> Behaviour:
    return replace(
        b,
        ips_24h=rng.randint(4, 9),
        ip_changed=True,
        requests_24h=rng.randint(1, 4),
        device_first_seen_at=None if rng.random() < 0.4 else b.device_first_seen_at,
    )


INJECTIONS: dict[Pattern, Callable[[random.Random, Behaviour], Behaviour]] = {
    Pattern.NEW_DEVICE_PHONE_CHANGE_NIGHT: _new_device_phone_change_night,
    Pattern.FAILED_CODE_BURST: _failed_code_burst,
    Pattern.MANY_IPS: _many_ips,
}


def population(size: int, *, attack_share: float, patterns: list[Pattern], seed: int) -> list[Request]:
    """`size` requests over 30 days, in time order, a share of them attacks of the given patterns."""
    rng = random.Random(seed)
    instants = sorted(START + timedelta(days=rng.uniform(0, 30)) for _ in range(size))
    requests = []
    for at in instants:
        behaviour = _normal(rng, at)
        pattern = rng.choice(patterns) if rng.random() < attack_share else None
        if pattern is not None:
            behaviour = INJECTIONS[pattern](rng, behaviour)
        requests.append(Request(behaviour, pattern))
    return requests


@dataclass
class Tally:
    """What one way of deciding caught."""

    name: str
    flagged: int = 0
    true_positives: int = 0
    caught_by_pattern: dict[str, int] = field(default_factory=dict)

    def count(self, caught: bool, pattern: Pattern | None) -> None:
        if not caught:
            return
        self.flagged += 1
        if pattern is not None:
            self.true_positives += 1
            self.caught_by_pattern[pattern] = self.caught_by_pattern.get(pattern, 0) + 1


@dataclass(frozen=True)
class Measure:
    name: str
    flagged: int
    true_positives: int
    false_positives: int
    precision: float
    recall: float
    false_positive_rate: float
    recall_by_pattern: dict[str, float]


@dataclass(frozen=True)
class Evaluation:
    population: int
    attacks: int
    warmup: int
    attacks_by_pattern: dict[str, int]
    measures: list[Measure]
    # The model alone at other thresholds, to choose one from.
    curve: list[Measure]


def _measure(tally: Tally, attacks_by_pattern: dict[str, int], normals: int) -> Measure:
    attacks = sum(attacks_by_pattern.values())
    false_positives = tally.flagged - tally.true_positives
    return Measure(
        name=tally.name,
        flagged=tally.flagged,
        true_positives=tally.true_positives,
        false_positives=false_positives,
        precision=round(tally.true_positives / tally.flagged, 3) if tally.flagged else 0.0,
        recall=round(tally.true_positives / attacks, 3) if attacks else 0.0,
        false_positive_rate=round(false_positives / normals, 4) if normals else 0.0,
        recall_by_pattern={
            pattern: round(tally.caught_by_pattern.get(pattern, 0) / count, 3)
            for pattern, count in attacks_by_pattern.items()
        },
    )


def evaluate(
    requests: list[Request],
    *,
    settings: RiskSettings,
    rules: list[Rule],
    threshold: float,
    window: int,
) -> Evaluation:
    """Replay `requests` through the model (score, then learn) and the rules, with the thresholds of
    `settings`: decided as a live assessment is."""
    model = AnomalyModel(
        ModelParameters(
            trees=settings.model_trees, height=settings.model_height, window=window, seed=settings.model_seed
        )
    )
    promoted = [*rules, *parse_rules([_promoted_rule(threshold)], SIGNALS)]
    tallies = {name: Tally(name) for name in ("rules", "model", "rules and model")}
    curve = {cut: Tally(f"model >= {cut}") for cut in CURVE}
    attacks_by_pattern: dict[str, int] = {}
    warmup = normals = 0
    for request in requests:
        features = features_of(request.behaviour)
        model_score = model.score(features)
        model.learn(features, model_score)
        if model_score is None:
            warmup += 1
            continue
        if request.pattern is None:
            normals += 1
        else:
            attacks_by_pattern[request.pattern] = attacks_by_pattern.get(request.pattern, 0) + 1
        signals = signals_of(request.behaviour)
        total, _ = score(signals)
        by_rules, _, _ = decide(settings, total, rule_facts(signals, None, None, None), rules)
        together, _, _ = decide(settings, total, rule_facts(signals, None, None, model_score), promoted)
        tallies["rules"].count(by_rules in CAUGHT, request.pattern)
        tallies["model"].count(model_score >= threshold, request.pattern)
        tallies["rules and model"].count(together in CAUGHT, request.pattern)
        for cut, tally in curve.items():
            tally.count(model_score >= cut, request.pattern)
    return Evaluation(
        population=len(requests),
        attacks=sum(attacks_by_pattern.values()),
        warmup=warmup,
        attacks_by_pattern=attacks_by_pattern,
        measures=[_measure(tally, attacks_by_pattern, normals) for tally in tallies.values()],
        curve=[_measure(tally, attacks_by_pattern, normals) for tally in curve.values()],
    )


def _promoted_rule(threshold: float) -> dict[str, str]:
    return {"name": "anomaly model", "action": "review", "if": f"model_score >= {threshold}"}
