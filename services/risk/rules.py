"""Risk rules: conditions over an assessment's facts that decide before the score thresholds do.

A rule is `{"action": "review", "if": "requests_24h >= 2 and night_request == true", "name": "..."}`.
The condition is read by a tokenizer and a recursive-descent parser (never eval'd):

    expr  := and ('or' and)*
    and   := unary ('and' unary)*
    unary := 'not' unary | atom
    atom  := '(' expr ')' | NAME OP literal | NAME ['not'] 'in' '(' literal (',' literal)* ')'

OP is >=, >, <=, <, ==, !=; a literal is an integer, true, false (1 and 0) or a double-quoted string
(escapes: \\" and \\\\ only). Names are the number signals, `score`, and the string facts `device_id`
and `client_ip` ("" when the request had none). `model_score` is the anomaly model's score, a decimal
from 0 to 1 compared with >=, >, <= or < only; while the model warms up an assessment has none, and no
comparison with it holds (so `not` of one does). Numbers compare with number names only, strings
with string names only (and with == and != only); `client_ip` takes IP addresses and, in lists, CIDR
networks, checked when the rule is saved. Rules are evaluated in Stripe Radar's order — every
step_up rule, then allow, then deny, then review — and the first that matches decides. A rule set is
validated whole: one bad rule refuses the set.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

ACTIONS = ("step_up", "allow", "deny", "review")  # evaluation order
STRING_NAMES = frozenset({"device_id", "client_ip"})
MODEL_SCORE = "model_score"
MAX_RULES = 100
MAX_CONDITION_LENGTH = 500
MAX_LIST_ITEMS = 100
# Parentheses and `not`s nested deeper than this are refused: no person writes them, and the
# parser's recursion stays bounded whatever the text.
MAX_DEPTH = 16
_OPS: dict[str, Callable[[object, object], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
_TOKEN = re.compile(
    r"""(?P<op>>=|<=|==|!=|>|<)|(?P<lparen>\()|(?P<rparen>\))|(?P<comma>,)
    |(?P<decimal>-?\d+\.\d+(?![\w.]))|(?P<int>-?\d+(?!\w))
    |(?P<string>"(?:[^"\\]|\\["\\])*")|(?P<name>[A-Za-z_]\w*)""",
    re.VERBOSE,
)

DEFAULT_RULES = [
    {"name": "third request in a day", "action": "review", "if": "requests_24h >= 2"},
    {"name": "cloned device key", "action": "deny", "if": "counter_regressions_24h >= 2"},
]

Facts = Mapping[str, int | str | float | None]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidRule(ValueError):
    """A rule that cannot be parsed, names an unknown fact or action, or compares wrongly."""


class Condition(Protocol):
    def holds(self, facts: Facts) -> bool: ...


def _ip(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address (an IPv4-mapped IPv6 one as IPv4), None when absent or not an address."""
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        return None
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


def _text(facts: Facts, name: str) -> str:
    return str(facts.get(name) or "")


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Condition, ...]

    def holds(self, facts: Facts) -> bool:
        return any(part.holds(facts) for part in self.parts)


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Condition, ...]

    def holds(self, facts: Facts) -> bool:
        return all(part.holds(facts) for part in self.parts)


@dataclass(frozen=True)
class Negation:
    part: Condition

    def holds(self, facts: Facts) -> bool:
        return not self.part.holds(facts)


@dataclass(frozen=True)
class Comparison:
    """`name op value`: numbers by value, `device_id` as text, `client_ip` as an address ("" = none)."""

    name: str
    op: str
    value: int | float | str

    def holds(self, facts: Facts) -> bool:
        if self.name == MODEL_SCORE:
            actual = facts.get(MODEL_SCORE)
            return actual is not None and _OPS[self.op](float(actual), self.value)
        if self.name not in STRING_NAMES:
            return _OPS[self.op](int(facts.get(self.name, 0)), self.value)
        actual: object = _text(facts, self.name)
        if self.name == "client_ip" and self.value:
            actual = _ip(actual)
            return _OPS[self.op](actual, _ip(self.value)) if actual is not None else self.op == "!="
        return _OPS[self.op](actual, self.value)


@dataclass(frozen=True)
class Membership:
    """`name [not] in (...)`: numbers and device ids by equality, client IPs by network."""

    name: str
    values: frozenset[int | str] | tuple[IpNetwork, ...]
    negated: bool

    def holds(self, facts: Facts) -> bool:
        if self.name == "client_ip":
            address = _ip(_text(facts, self.name))
            found = address is not None and any(address in network for network in self.values)  # type: ignore[operator]
        elif self.name in STRING_NAMES:
            found = _text(facts, self.name) in self.values
        else:
            found = int(facts.get(self.name, 0)) in self.values
        return found != self.negated


@dataclass(frozen=True)
class _Token:
    kind: str  # op, lparen, rparen, comma, int, string, name, end
    text: str
    at: int  # 1-based character position in the condition

    def shown(self) -> str:
        return "the end of the condition" if self.kind == "end" else repr(self.text)


def _tokens(text: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        match = _TOKEN.match(text, position)
        if match is None:
            found = text[position]
            hint = (
                'a string ends with " and escapes only \\" and \\\\'
                if found == '"'
                else "not part of the rule language"
            )
            raise InvalidRule(
                f"at character {position + 1}: cannot read {text[position : position + 12]!r} ({hint})"
            )
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(), position + 1))
        position = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str, numbers: frozenset[str]):
        self.tokens = _tokens(text)
        self.index = 0
        self.depth = 0
        self.numbers = numbers

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def fail(self, message: str, token: _Token | None = None) -> InvalidRule:
        return InvalidRule(f"at character {(token or self.token).at}: {message}")

    def advance(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        if self.token.kind == "name" and self.token.text == word:
            self.index += 1
            return True
        return False

    def expect(self, kind: str, wanted: str) -> _Token:
        if self.token.kind != kind:
            raise self.fail(f"expected {wanted}, found {self.token.shown()}")
        return self.advance()

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"parentheses and `not` nest deeper than {MAX_DEPTH} levels")

    def parse(self) -> Condition:
        condition = self.expr()
        if self.token.kind != "end":
            raise self.fail(f"expected `and`, `or` or the end of the condition, found {self.token.shown()}")
        return condition

    def expr(self) -> Condition:
        parts = [self.conjunction()]
        while self.keyword("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def conjunction(self) -> Condition:
        parts = [self.unary()]
        while self.keyword("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def unary(self) -> Condition:
        if self.token.kind == "name" and self.token.text == "not":
            self.nest()
            self.advance()
            condition = Negation(self.unary())
            self.depth -= 1
            return condition
        return self.atom()

    def atom(self) -> Condition:
        if self.token.kind == "lparen":
            self.nest()
            self.advance()
            condition = self.expr()
            self.expect("rparen", "`)`")
            self.depth -= 1
            return condition
        name = self.token
        if name.kind != "name" or name.text in _KEYWORDS:
            raise self.fail(f"expected a name or `(`, found {name.shown()}")
        if name.text not in self.numbers and name.text not in STRING_NAMES:
            raise self.fail(
                f"unknown name {name.text!r}; known: {', '.join(sorted(self.numbers | STRING_NAMES))}"
            )
        self.advance()
        if name.text == MODEL_SCORE:
            return self.model_score()
        negated = self.keyword("not")
        if negated or self.keyword("in"):
            if negated and not self.keyword("in"):
                raise self.fail(f"expected `in` after `not`, found {self.token.shown()}")
            return self.membership(name.text, negated)
        op = self.expect("op", "a comparison (>=, >, <=, <, ==, !=) or `in`")
        return Comparison(name.text, op.text, self.literal(name.text, op.text))

    def model_score(self) -> Comparison:
        op = self.token
        if op.kind != "op" or op.text in ("==", "!="):
            raise self.fail(
                f"model_score is a decimal score: compare it with >=, >, <= or <, not {op.shown()}"
            )
        self.advance()
        token = self.advance()
        if token.kind not in ("int", "decimal") or len(token.text) > 15:
            raise self.fail(f"model_score takes a decimal from 0 to 1, found {token.shown()}", token)
        value = float(token.text)
        if not 0 <= value <= 1:
            raise self.fail(f"model_score is a score from 0 to 1, not {token.text}", token)
        return Comparison(MODEL_SCORE, op.text, value)

    def membership(self, name: str, negated: bool) -> Membership:
        self.expect("lparen", "`(` opening the list")
        items = [self.literal(name, "in")]
        while self.token.kind == "comma":
            self.advance()
            items.append(self.literal(name, "in"))
            if len(items) > MAX_LIST_ITEMS:
                raise self.fail(f"a list holds at most {MAX_LIST_ITEMS} items")
        self.expect("rparen", "`,` or `)` closing the list")
        if name == "client_ip":
            return Membership(name, tuple(ipaddress.ip_network(item) for item in items), negated)
        return Membership(name, frozenset(items), negated)

    def literal(self, name: str, op: str) -> int | str:
        token = self.advance()
        if name not in STRING_NAMES:
            if token.kind == "int" and len(token.text) <= 15:
                return int(token.text)
            if token.kind == "name" and token.text in ("true", "false"):
                return int(token.text == "true")
            raise self.fail(
                f"{name} is a number: expected an integer (at most 15 digits), true or false, found "
                f"{token.shown()}",
                token,
            )
        if token.kind != "string":
            raise self.fail(
                f'{name} is text: expected a double-quoted string ("..."), found {token.shown()}', token
            )
        if op not in ("==", "!=", "in"):
            raise self.fail(f"{name} is text: compare it with ==, != or in, not {op}", token)
        value = re.sub(r"\\([\"\\])", r"\1", token.text[1:-1])
        if name == "client_ip":
            return self.ip_literal(value, token, in_list=op == "in")
        return value

    def ip_literal(self, value: str, token: _Token, *, in_list: bool) -> str:
        """An address (or "" for none) to compare with; an address or CIDR network in a list."""
        try:
            if in_list:
                ipaddress.ip_network(value)
            elif value:
                ipaddress.ip_address(value)
        except ValueError as exc:
            wanted = "IP addresses or CIDR networks (10.0.0.0/8)" if in_list else "an IP address"
            raise self.fail(f"client_ip takes {wanted}: {exc}", token) from None
        return value


def parse_condition(text: str, numbers: Iterable[str]) -> Condition:
    """The condition of `text` over the number names `numbers` (plus `score` and `model_score`) and the
    string facts."""
    return _Parser(text, frozenset(numbers) | {"score", MODEL_SCORE}).parse()


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    condition: Condition
    text: str

    def matches(self, facts: Facts) -> bool:
        return self.condition.holds(facts)


def parse_rules(raw: list[dict], signals: Iterable[str]) -> list[Rule]:
    """Validate a whole rule set over the number `signals`; raises InvalidRule naming the first bad
    rule and where in its condition it went wrong."""
    if not isinstance(raw, list) or len(raw) > MAX_RULES:
        raise InvalidRule(f"rules must be a list of at most {MAX_RULES} rules")
    numbers = frozenset(signals)
    rules = []
    for index, item in enumerate(raw):
        where = f"rule {index + 1}"
        if (
            not isinstance(item, dict)
            or set(item) - {"name", "action", "if"}
            or not {"action", "if"} <= set(item)
        ):
            raise InvalidRule(f"{where}: needs `action` and `if` (and may have `name`), nothing else")
        action, text, name = item["action"], item["if"], item.get("name") or f"rule {index + 1}"
        # The name is stored with each assessment the rule decides (a column of 100 characters).
        if not isinstance(name, str) or len(name) > 100 or not name.isprintable():
            raise InvalidRule(f"{where}: `name` must be printable text of at most 100 characters")
        where = f"rule {index + 1} ({name!r})" if item.get("name") else where
        if action not in ACTIONS:
            raise InvalidRule(f"{where}: action must be one of {', '.join(ACTIONS)}")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_CONDITION_LENGTH:
            raise InvalidRule(
                f"{where}: `if` must be a condition of at most {MAX_CONDITION_LENGTH} characters"
            )
        try:
            condition = parse_condition(text, numbers)
        except InvalidRule as exc:
            raise InvalidRule(f"{where}: {exc}") from None
        rules.append(Rule(name, action, condition, text.strip()))
    return rules


def first_match(rules: list[Rule], facts: Facts) -> Rule | None:
    for action in ACTIONS:
        for rule in rules:
            if rule.action == action and rule.matches(facts):
                return rule
    return None


def names_model_score(rule: Rule) -> bool:
    """Whether the rule reads the anomaly model's score: a rule that does promotes the model."""
    return any(token.kind == "name" and token.text == MODEL_SCORE for token in _tokens(rule.text))


def model_thresholds(condition: Condition) -> list[float]:
    """The thresholds `model_score >= x` (or `> x`) of a condition, outside any `not`."""
    if isinstance(condition, AnyOf | AllOf):
        return [value for part in condition.parts for value in model_thresholds(part)]
    if isinstance(condition, Comparison) and condition.name == MODEL_SCORE and condition.op in (">=", ">"):
        return [float(condition.value)]
    return []
