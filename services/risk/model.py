"""The anomaly model: river's Half-Space Trees over the features of `features.py`, learning online.

Half-Space Trees (Tan, Ting & Liu, 2011) keep, per node of random trees, the mass of the current
window (`l_mass`, learning) and of the last completed one (`r_mass`, scoring). A score reads only the
reference masses, so the model that scores changes only when a window completes: that count is the
model's version, and every risk instance that loaded a version scores exactly alike.

The checkpoint is plain numbers (never a pickle: a row of the database must not be able to run code):
the trees are rebuilt from the seed and the masses laid back in their depth-first order. Its
fingerprint covers the parameters and the features, so a checkpoint of another shape is never read
into this one.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import json
import math
import sys
import types
import zlib
from array import array
from dataclasses import dataclass

from services.risk.features import FEATURES, scaled

NAME = "half-space-trees"
# The drift measure (the population stability index, as credit-risk model monitoring uses) compares
# the scores of blocks of this many windows, binned in tenths. One window is too few: each version
# rescales the scores a little, and a stationary population read window by window seemed to shift.
DRIFT_WINDOWS = 4
BINS = 10
# A bin with no score counts as this share, so that the index stays finite.
EMPTY_BIN_SHARE = 1e-4
EXPLAINED_FEATURES = 3
# A feature whose baseline moves the score by less than this explains nothing worth showing.
SMALLEST_CONTRIBUTION = 0.005


def _half_space_trees() -> type:
    """river's HalfSpaceTrees, pure Python, without the rest of `river.utils`, `river.tree` and
    `river.anomaly`: those packages' own modules import numpy, scipy.stats and every tree learner
    (95 MB more in each risk process, 0.9 s at start) for nothing HalfSpaceTrees uses. Each package is
    given as its folder alone, so only the modules HalfSpaceTrees imports load; a process that
    imported the packages already keeps them. tests/risk/test_model.py exercises what it uses."""
    for package in ("river.utils", "river.tree", "river.anomaly"):
        if package not in sys.modules:
            spec = importlib.util.find_spec(package)
            assert spec is not None and spec.submodule_search_locations is not None, package
            folder = types.ModuleType(package)
            folder.__path__ = list(spec.submodule_search_locations)
            sys.modules[package] = folder
    return importlib.import_module("river.anomaly.hst").HalfSpaceTrees


HalfSpaceTrees = _half_space_trees()


@dataclass(frozen=True)
class ModelParameters:
    trees: int
    height: int
    window: int
    seed: int

    def fingerprint(self) -> str:
        shape = {
            "model": NAME,
            "parameters": [self.trees, self.height, self.window, self.seed],
            "features": {name: feature.baseline for name, feature in FEATURES.items()},
        }
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Contribution:
    """How much one feature pushed a score up: the score minus the score with that feature at its
    baseline."""

    feature: str
    value: float
    contribution: float


class CheckpointMismatch(ValueError):
    """A checkpoint of another model shape, or damaged."""


def population_stability(expected: list[int], actual: list[int]) -> float:
    """PSI = sum over bins of (a - e) * ln(a / e), on shares; above 0.25 reads as a shift."""
    expected_total, actual_total = sum(expected), sum(actual)
    if not expected_total or not actual_total:
        return 0.0
    index = 0.0
    for e_count, a_count in zip(expected, actual, strict=True):
        e = max(e_count / expected_total, EMPTY_BIN_SHARE)
        a = max(a_count / actual_total, EMPTY_BIN_SHARE)
        index += (a - e) * math.log(a / e)
    return index


class AnomalyModel:
    """One Half-Space Trees model with its place in the stream: `version` windows completed,
    `learned` requests learned, and the score distribution of each window for the drift measure."""

    def __init__(self, parameters: ModelParameters):
        self.parameters = parameters
        self._trees = HalfSpaceTrees(
            n_trees=parameters.trees,
            height=parameters.height,
            window_size=parameters.window,
            seed=parameters.seed,
        )
        # River grows the trees on the first example; growing them now fixes their shape from the seed.
        self._trees.learn_one(scaled({}))
        self._trees.counter = 0
        for node in self._nodes():
            node.l_mass = 0
        self.version = 0
        self.learned = 0
        # The scores of the current block, in tenths, and how many of its windows are complete.
        self.block_scores = [0] * BINS
        self.block_windows = 0
        # The first scored block's: what drift is measured against (None: not taken yet).
        self.baseline: list[int] | None = None
        self.drift: float | None = None

    def _nodes(self) -> list:
        return [node for nodes in self._trees._tree_nodes for node in nodes]

    @property
    def ready(self) -> bool:
        """Scores only once a first window of requests has been learned."""
        return self.version > 0

    def score(self, features: dict[str, float]) -> float | None:
        """How anomalous the request is, 0 (like most) to 1 (like none); None while warming up."""
        return round(self._trees.score_one(scaled(features)), 4) if self.ready else None

    def explain(self, features: dict[str, float], score: float) -> list[Contribution]:
        """The features that pushed the score up the most. Only features away from their baseline
        are tried: a request with k of them costs k scores more, an unremarkable one none."""
        x = scaled(features)
        contributions = []
        for name, feature in FEATURES.items():
            at_baseline = feature.scale(feature.baseline)
            if x[name] == at_baseline:
                continue
            without = self._trees.score_one({**x, name: at_baseline})
            if (pushed := score - without) >= SMALLEST_CONTRIBUTION:
                contributions.append(
                    Contribution(name, features.get(name, feature.baseline), round(pushed, 4))
                )
        contributions.sort(key=lambda item: -item.contribution)
        return contributions[:EXPLAINED_FEATURES]

    def learn(self, features: dict[str, float], score: float | None) -> None:
        """Learn one request; `score` is what it was given when assessed (None: while warming up)."""
        if score is not None:
            self.block_scores[min(BINS - 1, int(score * BINS))] += 1
        self._trees.learn_one(scaled(features))
        self.learned += 1
        if self._trees.counter == 0:  # a window completed: its masses now score
            self.version += 1
            self._close_window()

    def _close_window(self) -> None:
        self.block_windows += 1
        if self.block_windows < DRIFT_WINDOWS:
            return
        # A block that is mostly warm-up (unscored) says nothing of the distribution.
        if sum(self.block_scores) >= DRIFT_WINDOWS * self.parameters.window // 2:
            if self.baseline is None:
                self.baseline = self.block_scores
            else:
                self.drift = round(population_stability(self.baseline, self.block_scores), 4)
        self.block_scores, self.block_windows = [0] * BINS, 0

    def checkpoint(self) -> dict:
        nodes = self._nodes()
        masses = array("I", [node.l_mass for node in nodes] + [node.r_mass for node in nodes])
        return {
            "fingerprint": self.parameters.fingerprint(),
            "version": self.version,
            "learned": self.learned,
            "counter": self._trees.counter,
            "block_scores": self.block_scores,
            "block_windows": self.block_windows,
            "baseline": self.baseline,
            "drift": self.drift,
            "masses": base64.b64encode(zlib.compress(masses.tobytes())).decode(),
        }

    @classmethod
    def restore(cls, parameters: ModelParameters, state: dict) -> AnomalyModel:
        """The model of a checkpoint; CheckpointMismatch when it is of another shape or damaged."""
        model = cls(parameters)
        model.load(state)
        return model

    def load(self, state: dict) -> None:
        """Take a checkpoint's masses into these trees (same shape: no rebuilding), all or nothing."""
        if state.get("fingerprint") != self.parameters.fingerprint():
            raise CheckpointMismatch("the checkpoint is of another model shape")
        nodes = self._nodes()
        try:
            masses = array("I")
            masses.frombytes(zlib.decompress(base64.b64decode(state["masses"])))
            counter, version, learned = int(state["counter"]), int(state["version"]), int(state["learned"])
            block_scores = [int(count) for count in state["block_scores"]]
            block_windows = int(state["block_windows"])
            baseline = state["baseline"]
            baseline = None if baseline is None else [int(count) for count in baseline]
            drift = None if state["drift"] is None else float(state["drift"])
        except (KeyError, TypeError, ValueError, zlib.error) as exc:
            raise CheckpointMismatch(f"the checkpoint is damaged: {exc}") from None
        if (
            len(masses) != 2 * len(nodes)
            or len(block_scores) != BINS
            or not 0 <= block_windows < DRIFT_WINDOWS
            or (baseline is not None and len(baseline) != BINS)
            or not 0 <= counter < self.parameters.window
        ):
            raise CheckpointMismatch("the checkpoint does not fit the trees")
        for index, node in enumerate(nodes):
            node.l_mass, node.r_mass = masses[index], masses[len(nodes) + index]
        self._trees.counter = counter
        self._trees._first_window = version == 0
        self.version, self.learned = version, learned
        self.block_scores, self.block_windows = block_scores, block_windows
        self.baseline, self.drift = baseline, drift
