"""The anomaly model on its own: it scores only after a window, a window is a version, a checkpoint
brings back exactly the model that was saved (and refuses another shape or damage), an explanation
names the features that pushed the score up, and the drift index moves when the scores shift."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.risk import evaluation
from services.risk.features import FEATURES, Behaviour, features_of
from services.risk.model import (
    DRIFT_WINDOWS,
    AnomalyModel,
    CheckpointMismatch,
    ModelParameters,
    population_stability,
)

AT = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai
PARAMETERS = ModelParameters(trees=15, height=8, window=50, seed=7)


def customer(rng: random.Random) -> dict[str, float]:
    """An ordinary request: an old device, an old account, daytime, now and then a retry or a new IP."""
    return features_of(
        Behaviour(
            at=AT + timedelta(hours=rng.uniform(-4, 4)),
            device_first_seen_at=AT - timedelta(days=rng.uniform(100, 900)),
            account_opened_at=AT - timedelta(days=rng.uniform(400, 3000)),
            requests_24h=int(rng.random() < 0.1),
            ip_changed=rng.random() < 0.2,
            monthly_instalment=round(rng.uniform(3000, 8000)),
        )
    )


TAKEOVER = features_of(
    Behaviour(
        at=AT.replace(hour=18),  # 02:00 in Shanghai
        device_first_seen_at=None,
        phone_changed_at=AT - timedelta(days=1),
        account_opened_at=AT - timedelta(days=2000),
        ip_changed=True,
        ips_24h=4,
        monthly_instalment=5000,
    )
)


def trained(windows: int, seed: int = 1) -> AnomalyModel:
    model, rng = AnomalyModel(PARAMETERS), random.Random(seed)
    for _ in range(windows * PARAMETERS.window):
        features = customer(rng)
        model.learn(features, model.score(features))
    return model


def test_the_model_scores_from_its_first_window_and_each_window_is_a_version() -> None:
    model, rng = AnomalyModel(PARAMETERS), random.Random(2)
    for _ in range(PARAMETERS.window - 1):
        model.learn(customer(rng), None)
    assert model.score(TAKEOVER) is None and model.version == 0
    model.learn(customer(rng), None)
    assert model.version == 1 and model.learned == PARAMETERS.window
    # Learning within a window changes no score: only a completed window does.
    before = model.score(TAKEOVER)
    model.learn(TAKEOVER, before)
    assert model.score(TAKEOVER) == before


def test_a_takeover_scores_above_every_ordinary_request() -> None:
    model = trained(windows=4)
    rng = random.Random(99)
    ordinary = [model.score(customer(rng)) for _ in range(200)]
    assert model.score(TAKEOVER) > max(ordinary), (model.score(TAKEOVER), max(ordinary))


def test_the_explanation_names_what_pushed_the_score_up() -> None:
    model = trained(windows=4)
    score = model.score(TAKEOVER)
    explanation = model.explain(TAKEOVER, score)
    assert 1 <= len(explanation) <= 3
    assert {item.feature for item in explanation} <= {
        "device_new", "device_age_days", "phone_change_age_days", "hour_local", "ip_changed", "ips_24h",
    }  # fmt: skip
    assert [item.contribution for item in explanation] == sorted(
        (item.contribution for item in explanation), reverse=True
    )
    assert all(item.contribution > 0 for item in explanation)
    assert {item.feature: item.value for item in explanation}.get("phone_change_age_days", 1) == 1
    # A request with every feature at its baseline has nothing to explain.
    baseline = {name: feature.baseline for name, feature in FEATURES.items()}
    assert model.explain(baseline, model.score(baseline)) == []


def test_a_checkpoint_brings_back_the_same_model() -> None:
    model = trained(windows=3)
    extra, rng = [], random.Random(5)
    for _ in range(17):  # part of a window learned: it must survive too
        features = customer(rng)
        model.learn(features, model.score(features))
        extra.append(features)
    restored = AnomalyModel.restore(PARAMETERS, model.checkpoint())
    assert (restored.version, restored.learned) == (model.version, model.learned) == (3, 167)
    assert restored.score(TAKEOVER) == model.score(TAKEOVER)
    # And it goes on learning exactly as the original: the next window ends at the same request.
    for features in [customer(rng) for _ in range(33)]:
        model.learn(features, model.score(features))
        restored.learn(features, restored.score(features))
    assert restored.version == model.version == 4
    assert restored.checkpoint() == model.checkpoint()


def test_a_checkpoint_of_another_shape_or_damaged_is_refused() -> None:
    checkpoint = trained(windows=1).checkpoint()
    other = ModelParameters(trees=15, height=8, window=60, seed=7)
    with pytest.raises(CheckpointMismatch, match="another model shape"):
        AnomalyModel.restore(other, checkpoint)
    for damage in (
        {"masses": "not base64!"},
        {"block_scores": [1, 2]},
        {"counter": 10_000},
        {"version": None},
    ):
        with pytest.raises(CheckpointMismatch):
            AnomalyModel.restore(PARAMETERS, checkpoint | damage)
    model = trained(windows=2)
    before = model.checkpoint()
    with pytest.raises(CheckpointMismatch):
        model.load(checkpoint | {"masses": checkpoint["masses"][:-8]})
    assert model.checkpoint() == before, "a refused checkpoint must change nothing"


def test_the_drift_index_stays_low_for_the_same_population_and_rises_when_it_shifts() -> None:
    assert population_stability([10, 20, 30, 40], [10, 20, 30, 40]) == 0
    assert population_stability([10, 20, 30, 40], [40, 30, 20, 10]) > 0.25
    parameters = ModelParameters(trees=25, height=8, window=250, seed=2026)
    model = AnomalyModel(parameters)
    block = DRIFT_WINDOWS * parameters.window
    # Warm-up, the baseline block, then two blocks of the same noisy population, measured.
    for request in evaluation.population(parameters.window + 3 * block, attack_share=0, patterns=[], seed=4):
        features = features_of(request.behaviour)
        model.learn(features, model.score(features))
    assert model.baseline is not None and model.drift is not None and model.drift < 0.25, model.drift
    # Then a quarter of the requests are takeovers.
    shifted = evaluation.population(block, attack_share=0.25, patterns=list(evaluation.Pattern), seed=5)
    for request in shifted:
        features = features_of(request.behaviour)
        model.learn(features, model.score(features))
    assert model.drift > 0.25
