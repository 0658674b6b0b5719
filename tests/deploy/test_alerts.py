"""deploy/observability/prometheus/alerts.yml against the code: every expression parses as PromQL,
every metric it reads is one a service exports (from a running app's /metrics), every recorded
series it reads is recorded there, and every alert has a severity, a summary and a runbook that
exists in the docs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import Stack, on_memory_bus

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/observability/prometheus/alerts.yml"
METRIC = re.compile(r"\bunbind_[a-z0-9_]+\b")
RECORDED = re.compile(r"\bunbind:[a-z0-9_:]+\b")


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


@pytest.fixture
async def stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with on_memory_bus(database_urls, tmp_path) as running:
        yield running


@pytest.mark.parametrize("database_urls", ["sqlite"], indirect=True)
async def test_every_metric_a_rule_reads_is_exported(stack: Stack) -> None:
    exported: set[str] = set()
    for service in stack.apps:
        text = (await stack.client(service).get("/metrics")).text
        exported |= {
            sample.name for family in text_string_to_metric_families(text) for sample in family.samples
        }
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        name = rule.get("alert") or rule["record"]
        assert set(METRIC.findall(rule["expr"])) - exported == set(), name
        assert set(RECORDED.findall(rule["expr"])) - recorded == set(), name


def test_every_rule_parses_and_every_alert_has_a_runbook() -> None:
    operations = (ROOT / "docs/operations.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in operations.splitlines() if line.startswith("#")}  # fmt: skip
    alerts = [rule for rule in rules() if "alert" in rule]
    assert alerts
    for rule in rules():
        promql_parser.parse(rule["expr"])  # raises ValueError on a bad expression
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"] and re.fullmatch(r"\d+[smh]", alert["for"]), alert["alert"]
        path, _, anchor = alert["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md" and anchor in anchors, alert["annotations"]["runbook"]


def test_a_broken_expression_is_refused_by_the_parser() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("max(unbind_risk_model_score_psi > 0.25")
