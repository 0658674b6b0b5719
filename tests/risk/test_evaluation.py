"""The evaluation an analyst runs before promoting the model: the rules, the model at its threshold
and both, measured on a synthetic population with injected takeovers. It is deterministic for a seed,
writes nothing, takes the rules in force and their promoted threshold, and refuses bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.risk.evaluation import Pattern
from services.risk.rules import DEFAULT_RULES
from tests.binding.test_api import assert_problem
from tests.factories import RULES_ADMIN, save_rules
from tests.stack import Stack, auth, on_memory_bus
from tools.main import main

OPS = auth("ops-21", "ops")
SMALL = {"population": 600, "window": 50, "seed": 3}


def evaluate_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["risk", "evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_measures_rules_model_and_both_on_a_small_population(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = evaluate_cli(capsys, "--population", "600", "--window", "50", "--seed", "3", "--json")
    assert code == 0
    result = json.loads(out)
    measures = {measure["name"]: measure for measure in result["measures"]}
    assert list(measures) == ["rules", "model", "rules and model"]
    assert result["warmup"] == 50 and result["threshold"] == 0.8 and result["attacks"] > 0
    assert set(result["attacks_by_pattern"]) == {pattern.value for pattern in Pattern}
    rules, model, both = measures["rules"], measures["model"], measures["rules and model"]
    # The promoted model only adds a review rule: together they catch at least what the rules catch.
    assert both["true_positives"] >= rules["true_positives"] and both["flagged"] >= rules["flagged"]
    # The model learns what is normal: it catches most takeovers and few normal requests.
    assert model["recall"] >= 0.5 and model["false_positive_rate"] <= 0.05, model
    for measure in measures.values():
        assert measure["true_positives"] + measure["false_positives"] == measure["flagged"]
    # The table the README shows, from the same run.
    code, table, _ = evaluate_cli(capsys, "--population", "600", "--window", "50", "--seed", "3")
    assert code == 0 and "| rules and model |" in table and "(seed 3)" in table


def test_the_same_seed_gives_the_same_figures_and_another_seed_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = [
        evaluate_cli(capsys, "--population", "400", "--window", "40", "--seed", seed, "--json")[1]
        for seed in "171"
    ]
    assert runs[0] == runs[2] != runs[1]


def test_one_pattern_only_and_bad_input_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = evaluate_cli(
        capsys, "--population", "400", "--window", "40", "--pattern", "many_ips", "--json"
    )
    assert code == 0 and list(json.loads(out)["attacks_by_pattern"]) == ["many_ips"]
    with pytest.raises(SystemExit) as refused:
        main(["risk", "evaluate", "--pattern", "sim_swap"])
    assert refused.value.code == 2 and "invalid choice: 'sim_swap'" in capsys.readouterr().err
    code, _, err = evaluate_cli(capsys, "--population", "300")
    assert code == 2 and "replay at least 1000" in err
    code, _, err = evaluate_cli(capsys, "--threshold", "1.5")
    assert code == 2 and "threshold" in err


@pytest.fixture
async def risk(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with on_memory_bus(database_urls, tmp_path, services=("risk",)) as stack:
        yield stack


async def evaluation(stack: Stack, body: dict[str, Any], headers: dict[str, str] = RULES_ADMIN) -> Any:
    return await stack.client("risk").post("/v1/model/evaluations", json=body, headers=headers)


async def test_the_api_evaluates_the_rules_in_force_at_their_promoted_threshold(risk: Stack) -> None:
    plain = await evaluation(risk, SMALL)
    assert plain.status_code == 200, plain.text
    in_force = (await risk.client("risk").get("/v1/rules", headers=OPS)).json()["version"]
    assert (plain.json()["threshold"], plain.json()["rules_version"]) == (0.8, in_force)
    # The same population and rules give the CLI's figures.
    promoted = {"name": "anomaly model", "action": "review", "if": "model_score >= 0.75 or model_score > 0.9"}
    saved = await save_rules(risk.client("risk"), [*DEFAULT_RULES, promoted])
    response = await evaluation(risk, SMALL)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["threshold"], result["rules_version"]) == (0.75, saved["version"])
    measures = {measure["name"]: measure for measure in result["measures"]}
    # The rules in force now hold the model's rule: "rules" counts it only where the model has a
    # score, and the rules alone no longer differ from rules and model.
    assert measures["rules"]["flagged"] <= measures["rules and model"]["flagged"]
    status = (await risk.client("risk").get("/v1/model", headers=OPS)).json()
    assert (status["learned"], status["queued"]) == (0, 0), "an evaluation teaches the live model nothing"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"patterns": ["sim_swap"]}, "validation-error"),
        ({"patterns": []}, "validation-error"),
        ({"population": 10**9}, "population-too-large"),
        ({"population": 500}, "population-too-small"),
        ({"threshold": 1.2}, "validation-error"),
        ({"attack_share": 0.9}, "validation-error"),
        ({"seed": "one"}, "validation-error"),
        ({"surprise": 1}, "validation-error"),
    ],
)
async def test_a_bad_evaluation_is_a_problem(risk: Stack, body: dict[str, Any], code: str) -> None:
    assert_problem(await evaluation(risk, body), 422, code)


async def test_only_a_rules_admin_evaluates(risk: Stack) -> None:
    assert_problem(await evaluation(risk, SMALL, OPS), 403, "forbidden")
