"""The PII scan: no one-time code, full phone number or full account number in the event stream or
in any service's log.

Given what must never appear (the codes taken from the SMS sink, the customers' phones and account
numbers), every number of every line is checked, spelled any way people write one: grouped by
spaces, dots, dashes, slashes or brackets (`(139) 8765-4321`), in full-width digits
(`１３９８７６５４３２１`). ISO timestamps are removed first: their microseconds are six digits too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from services.notification.templates import CODE_IN_SMS
from shared.logging import ISO_DATE_TIME, NUMBER, digits_of, redact


@dataclass
class Secrets:
    """What must not appear: national phone numbers (11 digits), account numbers, codes."""

    phones: set[str] = field(default_factory=set)
    account_numbers: set[str] = field(default_factory=set)
    codes: set[str] = field(default_factory=set)

    def add_phone(self, phone: str) -> None:
        digits = digits_of(phone)
        self.phones.add(digits[2:] if digits.startswith("86") and len(digits) == 13 else digits)

    def add_account_number(self, number: str) -> None:
        self.account_numbers.add(digits_of(number))

    def add_codes_from_sms_sink(self, sink: Path) -> None:
        if sink.exists():
            self.codes.update(CODE_IN_SMS.findall(sink.read_text(errors="replace")))


@dataclass(frozen=True)
class Finding:
    source: str
    kind: str
    excerpt: str  # the offending line, itself redacted, so the report leaks nothing


def scan(lines: Iterable[tuple[str, str]], secrets: Secrets) -> list[Finding]:
    """Findings in `(source, text)` lines: a code as a whole number, a phone or account number
    anywhere inside a longer one."""
    long_secrets = {
        length: {s for s in secrets.phones | secrets.account_numbers if len(s) == length}
        for length in {len(s) for s in secrets.phones | secrets.account_numbers}
    }
    findings = []
    for source, text in lines:
        bare = ISO_DATE_TIME.sub(" ", text)
        for match in NUMBER.finditer(bare):
            digits = digits_of(match.group(0))
            kind = None
            if len(digits) == 6 and digits in secrets.codes and _stands_alone(bare, match):
                kind = "one-time code"
            else:
                for length, candidates in long_secrets.items():
                    windows = {digits[i : i + length] for i in range(len(digits) - length + 1)}
                    if windows & candidates:
                        kind = "phone number" if windows & secrets.phones else "account number"
                        break
            if kind:
                findings.append(Finding(source, kind, redact(text)[:200]))
    return findings


def _stands_alone(text: str, match: re.Match[str]) -> bool:
    """A code is a whole word: `b-482913x` is an id that happens to contain its digits."""
    before = text[match.start() - 1] if match.start() else " "
    after = text[match.end()] if match.end() < len(text) else " "
    return not (before.isalnum() or after.isalnum())


def log_lines(log_dir: Path) -> Iterable[tuple[str, str]]:
    for path in sorted(log_dir.glob("*.log*")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            yield f"{path.name}:{number}", line


def record_lines(topic: str, records: Iterable[object]) -> Iterable[tuple[str, str]]:
    """Each Kafka record as text: key, value and every header value."""
    for record in records:
        parts = [getattr(record, "key", None) or b"", getattr(record, "value", None) or b""]
        parts += [value for _, value in getattr(record, "headers", None) or ()]
        where = f"{topic}@{getattr(record, 'partition', '?')}:{getattr(record, 'offset', '?')}"
        yield where, " ".join(part.decode(errors="replace") for part in parts)
