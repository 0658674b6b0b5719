"""`unbind risk evaluate`: the rules, the anomaly model and both, measured on a synthetic population
with injected account-takeover patterns, in this process (no running stack needed). The risk
service answers the same question about the rules in force at `POST /v1/model/evaluations`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import ValidationError

from services.risk.config import RiskSettings
from services.risk.rules import DEFAULT_RULES, InvalidRule, parse_rules
from services.risk.schemas import EvaluationIn, EvaluationOut, MeasureOut
from services.risk.scoring import SIGNALS
from services.risk.service import run_evaluation
from shared.problems import Problem


def evaluate(options: dict, rules_file: Path | None, as_json: bool) -> int:
    try:
        body = EvaluationIn(**{name: value for name, value in options.items() if value is not None})
        raw = json.loads(rules_file.read_text()) if rules_file else DEFAULT_RULES
        rules = parse_rules(raw, SIGNALS)
        result = run_evaluation(RiskSettings(), body, rules=rules, rules_version=0)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors())
        print(f"unbind risk evaluate: {problems}", file=sys.stderr)
        return 2
    except (InvalidRule, OSError, ValueError) as exc:
        print(f"unbind risk evaluate: the rules: {exc}", file=sys.stderr)
        return 2
    except Problem as exc:
        print(f"unbind risk evaluate: {exc.detail}", file=sys.stderr)
        return 2
    print(result.model_dump_json(indent=2) if as_json else report(result, rules_file))
    return 0


def _row(measure: MeasureOut, patterns: list[str]) -> str:
    by_pattern = " | ".join(f"{measure.recall_by_pattern.get(pattern, 0):.2f}" for pattern in patterns)
    return (
        f"| {measure.name} | {measure.flagged} | {measure.precision:.3f} | {measure.recall:.3f} | "
        f"{measure.false_positive_rate:.2%} | {by_pattern} |"
    )


def report(result: EvaluationOut, rules_file: Path | None) -> str:
    """A Markdown table, as the README shows it."""
    patterns = sorted(result.attacks_by_pattern)
    rules = f"the rules of {rules_file}" if rules_file else "the default rules"
    lines = [
        f"{result.population} requests (seed {result.seed}), {result.attacks} attacks measured "
        f"({', '.join(f'{p} {result.attacks_by_pattern[p]}' for p in patterns)}); the first "
        f"{result.warmup} are the model's warm-up and are not measured. {rules.capitalize()}; the model "
        f"promoted at model_score >= {result.threshold}, window {result.window}. Caught = sent to a person.",
        "",
        f"| decided by | caught | precision | recall | normal requests caught | {' | '.join(patterns)} |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(patterns),
        *(_row(measure, patterns) for measure in result.measures),
        "",
        "The model alone at other thresholds:",
        "",
        "| threshold | caught | precision | recall | normal requests caught |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {m.name.removeprefix('model >= ')} | {m.flagged} | {m.precision:.3f} | {m.recall:.3f} | "
            f"{m.false_positive_rate:.2%} |"
            for m in result.curve
        ),
    ]
    return "\n".join(lines)
