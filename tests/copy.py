"""What customer-facing copy must never hold: checked on every text a test renders or reads back.

A text fails on a machine code (`INSTALMENT_DUE_SOON`, `risk_denied`, `verification_failed:expired`),
a stray template brace, an internal word (score, rule, flag, weight), an English word in zh-CN or a
Chinese character in en. `allowed` names the customer's own words a text may quote (a device name).
"""

from __future__ import annotations

import re

CJK = re.compile(r"[\u3400-\u9fff]")
SNAKE = re.compile(r"\b[A-Za-z]+(?:_[A-Za-z0-9]+)+\b")
CODE_WITH_COLON = re.compile(r"\b[a-z_]+:[a-z_]+\b")
UPPER_CODE = re.compile(r"\b[A-Z]{2,}(?:_[A-Z0-9]+)+\b")
INTERNAL = re.compile(r"\b(?:score|rule|flag(?:ged)?|weight|signal|null|true|false)\b", re.IGNORECASE)
ENGLISH_WORD = re.compile(r"[A-Za-z]{2,}")


def copy_problems(text: str, locale: str, *, allowed: tuple[str, ...] = ()) -> list[str]:
    """Why `text` is not fit for a customer reading `locale`; empty when it is."""
    for quoted in sorted(allowed, key=len, reverse=True):  # an id inside another goes with it
        text = text.replace(quoted, "")
    found = []
    if "{" in text or "}" in text:
        found.append("a template brace")
    for pattern, what in (
        (SNAKE, "a snake_case word"),
        (CODE_WITH_COLON, "a machine code"),
        (UPPER_CODE, "a machine code"),
        (INTERNAL, "an internal word"),
    ):
        found += [f"{what}: {match!r}" for match in pattern.findall(text)]
    if locale == "zh-CN":
        found += [f"an English word in zh-CN: {word!r}" for word in ENGLISH_WORD.findall(text)]
        if not CJK.search(text):
            found.append("no Chinese at all")
    else:
        found += [f"Chinese in en: {char!r}" for char in CJK.findall(text)]
    return found


def assert_customer_copy(
    text: str | None, locale: str, *, allowed: tuple[str, ...] = (), where: str = ""
) -> None:
    assert text, f"{where}: empty"
    problems = copy_problems(text, locale, allowed=allowed)
    assert not problems, f"{where} ({locale}): {problems} in {text!r}"
