"""The rule language: precedence, `not`, parentheses, `in` lists of numbers, device ids and client
IPs or networks, and the refusals (bad tokens, unknown names, type errors, absurd nesting), each
naming the rule and the position."""

from __future__ import annotations

import pytest

from services.risk.rules import DEFAULT_RULES, MAX_DEPTH, InvalidRule, parse_condition, parse_rules
from services.risk.scoring import SIGNALS

NAMES = set(SIGNALS)


def holds(text: str, **facts: int | str) -> bool:
    return parse_condition(text, NAMES).holds(facts)


def refusal(text: str) -> str:
    with pytest.raises(InvalidRule) as refused:
        parse_condition(text, NAMES)
    return str(refused.value)


@pytest.mark.parametrize(
    ("requests", "night", "unknown", "expected"),
    [(1, 0, 0, True), (0, 1, 0, False), (0, 1, 1, True), (0, 0, 1, False)],
)
def test_and_binds_tighter_than_or(requests: int, night: int, unknown: int, expected: bool) -> None:
    text = "requests_24h >= 1 or night_request == true and device_unknown == 1"
    assert holds(text, requests_24h=requests, night_request=night, device_unknown=unknown) is expected


def test_parentheses_group_and_not_negates() -> None:
    grouped = "(requests_24h >= 1 or night_request == true) and device_unknown == 1"
    assert not holds(grouped, requests_24h=1, night_request=0, device_unknown=0), (
        "the group must hold together with device_unknown"
    )
    assert holds(grouped, requests_24h=0, night_request=1, device_unknown=1)
    assert holds("not requests_24h >= 1", requests_24h=0) and not holds(
        "not requests_24h >= 1", requests_24h=2
    )
    # `not` applies to the atom after it, before `and`: not (a) and b.
    assert holds("not night_request == true and score >= 50", night_request=0, score=60)
    assert not holds("not (night_request == true and score >= 50)", night_request=1, score=60)
    assert holds("not not score > 10", score=11)
    assert holds("((((score > 10))))", score=11)


def test_score_and_every_signal_are_numbers_and_absent_signals_count_as_zero() -> None:
    assert holds("score >= 65", score=65) and not holds("score >= 65", score=64)
    assert holds("account_age_days == -1", account_age_days=-1)
    assert holds("rejections_30d < 1"), "a signal an older assessment lacks is 0"
    assert holds("night_request != false", night_request=1)


def test_in_lists_of_numbers_and_device_ids() -> None:
    assert holds("requests_24h in (2, 3)", requests_24h=3) and not holds(
        "requests_24h in (2, 3)", requests_24h=1
    )
    assert holds("requests_24h not in (2, 3)", requests_24h=1)
    devices = 'device_id in ("d-lost", "d-\\"quoted\\"", "d-back\\\\slash")'
    assert (
        holds(devices, device_id="d-lost")
        and holds(devices, device_id='d-"quoted"')
        and holds(devices, device_id="d-back\\slash")
    )
    assert not holds(devices, device_id="d-LOST"), "device ids match exactly"
    assert not holds(devices), "no device: not in any list"
    assert holds('device_id not in ("d-lost")', device_id="")
    assert holds('device_id == ""') and holds('device_id != "d-lost"', device_id="d-other")


@pytest.mark.parametrize(
    ("client_ip", "expected"),
    [
        ("10.20.30.40", True),
        ("203.0.113.7", True),
        ("203.0.113.8", False),
        ("2001:db8:1::5", True),
        ("::ffff:10.0.0.1", True),  # an IPv4 client seen through an IPv6 socket
        ("192.168.1.1", False),
        ("", False),
        ("not-an-address", False),
    ],
)
def test_client_ip_in_addresses_and_networks(client_ip: str, expected: bool) -> None:
    text = 'client_ip in ("10.0.0.0/8", "203.0.113.7", "2001:db8::/32")'
    assert holds(text, client_ip=client_ip) is expected
    assert holds(text.replace(" in ", " not in "), client_ip=client_ip) is not expected


def test_client_ip_compares_as_an_address() -> None:
    assert holds('client_ip == "2001:db8::1"', client_ip="2001:DB8:0::1")
    assert holds('client_ip != "10.0.0.1"', client_ip="")
    assert holds('client_ip == ""', client_ip="") and not holds('client_ip == ""', client_ip="10.0.0.1")


def test_todays_rule_texts_keep_their_meaning() -> None:
    rules = parse_rules(DEFAULT_RULES, NAMES)
    assert [rule.matches({"requests_24h": count}) for rule in rules[:1] for count in (1, 2, 3)] == [
        False,
        True,
        True,
    ]
    assert rules[1].matches({"counter_regressions_24h": 2}) and not rules[1].matches(
        {"counter_regressions_24h": 1}
    )
    assert holds("requests_24h >= 2 and night_request == true", requests_24h=2, night_request=1)
    assert not holds("requests_24h >= 2 and night_request == true", requests_24h=2, night_request=0)
    assert holds("requests_24h>=2   and   account_age_days<90", requests_24h=2, account_age_days=10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("requests_24h >= 1; DROP TABLE rule_sets", "at character 18: cannot read '; DROP TABLE'"),
        ("requests_24h >= 1 && night_request == true", "at character 19: cannot read '&& night_req'"),
        ('device_id == "d-1', "at character 14: cannot read '\"d-1'"),
        ("__import__('os')", "at character 12: cannot read \"'os')\""),
        ("__import__ == 1", "at character 1: unknown name '__import__'"),
        ("shoe_size >= 44", "at character 1: unknown name 'shoe_size'"),
        ("Score >= 44", "at character 1: unknown name 'Score'"),
        ("requests_24h >= lots", "at character 17: requests_24h is a number"),
        ('requests_24h >= "2"', "at character 17: requests_24h is a number"),
        ("device_id == 2", "at character 14: device_id is text"),
        ("device_id == true", "at character 14: device_id is text"),
        ('device_id >= "d-1"', "at character 14: device_id is text: compare it with ==, != or in, not >="),
        ('client_ip < "10.0.0.1"', "at character 13: client_ip is text: compare it with ==, != or in, not <"),
        ('client_ip == "10.0.0.0/8"', "at character 14: client_ip takes an IP address"),
        ('client_ip in ("10.0.0.1/8")', "at character 15: client_ip takes IP addresses or CIDR networks"),
        ('client_ip in ("localhost")', "at character 15: client_ip takes IP addresses or CIDR networks"),
        (
            "requests_24h in (1, ",
            (
                "at character 21: requests_24h is a number: expected an integer (at most 15 digits), true or "
                "false, found the end"
            ),
        ),
        ("requests_24h in ()", "at character 18: requests_24h is a number"),
        ("requests_24h in 1", "at character 17: expected `(` opening the list"),
        ("requests_24h not >= 1", "at character 18: expected `in` after `not`"),
        ("requests_24h >= 1 and", "at character 22: expected a name or `(`, found the end of the condition"),
        (
            "requests_24h >= 1 night_request == 1",
            "at character 19: expected `and`, `or` or the end of the condition, found 'night_request'",
        ),
        ("(requests_24h >= 1", "at character 19: expected `)`"),
        (
            "requests_24h >= 1)",
            "at character 18: expected `and`, `or` or the end of the condition, found ')'",
        ),
        ("requests_24h", "at character 13: expected a comparison"),
        ("and >= 1", "at character 1: expected a name or `(`, found 'and'"),
        (
            "requests_24h >= 1234567890123456",
            "at character 17: requests_24h is a number: expected an integer (at most 15 digits)",
        ),
    ],
)
def test_bad_conditions_are_refused_with_the_position(text: str, message: str) -> None:
    assert refusal(text).startswith(message), refusal(text)


def test_nesting_is_bounded() -> None:
    assert holds("(" * MAX_DEPTH + "score > 1" + ")" * MAX_DEPTH, score=2)
    assert holds("not " * MAX_DEPTH + "score > 1", score=2)
    too_deep = "(" * (MAX_DEPTH + 1) + "score > 1" + ")" * (MAX_DEPTH + 1)
    assert (
        refusal(too_deep)
        == f"at character {MAX_DEPTH + 1}: parentheses and `not` nest deeper than {MAX_DEPTH} levels"
    )
    # Far beyond: refused at the limit, never a RecursionError (500 characters of parentheses).
    assert "nest deeper" in refusal("(" * 250 + ")" * 250)
    assert "nest deeper" in refusal("not " * 125)
    assert "nest deeper" in refusal("(not " * 100)


def test_lists_and_conditions_are_bounded() -> None:
    assert holds(f"requests_24h in ({', '.join(str(n) for n in range(100))})", requests_24h=99)
    assert "at most 100 items" in refusal(f"requests_24h in ({', '.join(str(n) for n in range(101))})")
    with pytest.raises(InvalidRule, match="at most 500 characters"):
        parse_rules([{"action": "review", "if": "score >= 1 " + " " * 500}], NAMES)


def test_a_bad_rule_is_named_by_its_number_and_name() -> None:
    rules = [
        {"name": "fine", "action": "review", "if": "score >= 90"},
        {"name": "typo", "action": "deny", "if": "score >> 1"},
    ]
    with pytest.raises(InvalidRule) as refused:
        parse_rules(rules, NAMES)
    assert str(refused.value).startswith("rule 2 ('typo'): at character 8: score is a number")
    with pytest.raises(InvalidRule, match=r"^rule 1: at character 1: unknown name 'x'"):
        parse_rules([{"action": "deny", "if": "x == 1"}], NAMES)
    with pytest.raises(InvalidRule, match=r"^rule 1 \('n'\): action must be one of"):
        parse_rules([{"name": "n", "action": "block", "if": "score > 1"}], NAMES)


@pytest.mark.parametrize(
    ("text", "score", "expected"),
    [
        ("model_score >= 0.8", 0.8, True),
        ("model_score >= 0.8", 0.79, False),
        ("model_score > 0.5 and requests_24h >= 1", 0.9, True),
        ("model_score < 1", 0.9999, True),
        ("model_score <= 0", 0.0, True),
    ],
)
def test_model_score_compares_as_a_decimal(text: str, score: float, expected: bool) -> None:
    assert holds(text, model_score=score, requests_24h=1) is expected


def test_no_comparison_with_a_missing_model_score_holds() -> None:
    # An assessment made while the model warmed up has no score: the model promotes nothing there.
    assert not holds("model_score >= 0", model_score=None)
    assert not holds("model_score < 1")
    assert holds("not model_score >= 0.5", model_score=None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_score >= 1.5", "model_score is a score from 0 to 1, not 1.5"),
        ("model_score > -0.1", "model_score is a score from 0 to 1, not -0.1"),
        ("model_score >= 2", "model_score is a score from 0 to 1, not 2"),
        ("model_score == 0.5", "compare it with >=, >, <= or <, not '=='"),
        ("model_score in (1)", "compare it with >=, >, <= or <, not 'in'"),
        ('model_score >= "0.5"', "model_score takes a decimal from 0 to 1"),
        ("requests_24h >= 0.5", "requests_24h is a number: expected an integer"),
        ("score >= 50.5", "score is a number: expected an integer"),
    ],
)
def test_model_score_takes_only_a_decimal_from_0_to_1(text: str, message: str) -> None:
    assert message in refusal(text)


def test_a_rule_set_naming_model_score_promotes_the_model_at_its_lowest_threshold() -> None:
    from services.risk.rules import model_thresholds, names_model_score

    rules = parse_rules(
        [
            {
                "name": "model",
                "action": "review",
                "if": "model_score >= 0.85 or (model_score > 0.7 and ip_changed == 1)",
            },
            {"name": "not model", "action": "allow", "if": "not model_score >= 0.2"},
            {"name": "plain", "action": "review", "if": "requests_24h >= 2"},
        ],
        SIGNALS,
    )
    assert [names_model_score(rule) for rule in rules] == [True, True, False]
    assert [model_thresholds(rule.condition) for rule in rules] == [[0.85, 0.7], [], []]
