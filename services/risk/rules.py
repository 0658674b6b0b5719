"""Risk rules: conditions over the signals that decide before the score thresholds do.

A rule is `{"action": "review", "if": "requests_24h >= 2 and night_request == true", "name": "..."}`.
A condition is one or more comparisons `<signal> <op> <value>` joined by `and`; ops are
>=, >, <=, <, ==, !=; values are integers or true/false. Rules are evaluated in Stripe Radar's
order — every step_up rule, then allow, then deny, then review — and the first that matches
decides. A rule set is validated whole: one bad rule refuses the set.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

ACTIONS = ("step_up", "allow", "deny", "review")  # evaluation order
_OPS: dict[str, Callable[[int, int], bool]] = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne}
_COMPARISON = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+|true|false)\s*$")

DEFAULT_RULES = [
    {"name": "third request in a day", "action": "review", "if": "requests_24h >= 2"},
    {"name": "cloned device key", "action": "deny", "if": "counter_regressions_24h >= 2"},
]


class InvalidRule(ValueError):
    """A rule that cannot be parsed, names an unknown signal or action, or compares wrongly."""


@dataclass(frozen=True)
class Comparison:
    signal: str
    op: str
    value: int

    def holds(self, signals: Mapping[str, int | bool]) -> bool:
        return _OPS[self.op](int(signals.get(self.signal, 0)), self.value)


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    condition: tuple[Comparison, ...]
    text: str

    def matches(self, signals: Mapping[str, int | bool]) -> bool:
        return all(comparison.holds(signals) for comparison in self.condition)


def parse_rules(raw: list[dict], known_signals: set[str]) -> list[Rule]:
    """Validate a whole rule set; raises InvalidRule naming the first bad rule."""
    if not isinstance(raw, list) or len(raw) > 100:
        raise InvalidRule("rules must be a list of at most 100 rules")
    rules = []
    for index, item in enumerate(raw):
        where = f"rule {index + 1}"
        if not isinstance(item, dict) or set(item) - {"name", "action", "if"} or not {"action", "if"} <= set(item):
            raise InvalidRule(f"{where}: needs `action` and `if` (and may have `name`), nothing else")
        action, text, name = item["action"], item["if"], item.get("name") or f"rule {index + 1}"
        if action not in ACTIONS:
            raise InvalidRule(f"{where}: action must be one of {', '.join(ACTIONS)}")
        if not isinstance(text, str) or not text.strip() or len(text) > 500:
            raise InvalidRule(f"{where}: `if` must be a condition of at most 500 characters")
        # The name is stored with each assessment the rule decides (a column of 100 characters).
        if not isinstance(name, str) or len(name) > 100 or not name.isprintable():
            raise InvalidRule(f"{where}: `name` must be printable text of at most 100 characters")
        comparisons = []
        for part in re.split(r"\s+and\s+", text.strip()):
            match = _COMPARISON.match(part)
            if not match:
                raise InvalidRule(f"{where}: cannot read {part!r}; write `<signal> <op> <number|true|false>`")
            signal, op, value = match.groups()
            if signal not in known_signals:
                raise InvalidRule(f"{where}: unknown signal {signal!r}; known: {', '.join(sorted(known_signals))}")
            comparisons.append(Comparison(signal, op, int(value == "true") if value in ("true", "false") else int(value)))
        rules.append(Rule(name, action, tuple(comparisons), text.strip()))
    return rules


def first_match(rules: list[Rule], signals: Mapping[str, int | bool]) -> Rule | None:
    for action in ACTIONS:
        for rule in rules:
            if rule.action == action and rule.matches(signals):
                return rule
    return None
