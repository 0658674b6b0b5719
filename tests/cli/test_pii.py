"""The PII scan finds what must not be there, in any spelling, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from tools.pii import Secrets, scan


def secrets(tmp_path: Path) -> Secrets:
    sink = tmp_path / "sms.jsonl"
    sink.write_text(
        json.dumps(
            {"to": "+8613812345678", "text": "【unbind】您的解绑验证码为 482913，5 分钟内有效。"},
            ensure_ascii=False,
        )
        + "\n"
    )
    found = Secrets()
    found.add_phone("+8613812345678")
    found.add_account_number("6222 0212 3456 4821")
    found.add_codes_from_sms_sink(sink)
    return found


def test_codes_phones_and_account_numbers_are_found_in_any_spelling(tmp_path: Path) -> None:
    lines = [
        ("a", '{"message": "sent code 482913"}'),
        ("b", "call +86 138 1234 5678 back"),
        ("c", "phone=13812345678;"),
        ("d", "account 6222-0212-3456-4821 debited"),
        ("e", "iban CN0062220212345648219"),
    ]
    assert [(finding.source, finding.kind) for finding in scan(lines, secrets(tmp_path))] == [
        ("a", "one-time code"), ("b", "phone number"), ("c", "phone number"), ("d", "account number"),
        ("e", "account number"),
    ]  # fmt: skip
    assert all(
        "482913" not in finding.excerpt and "13812345678" not in finding.excerpt
        for finding in scan(lines, secrets(tmp_path))
    )


def test_punctuated_and_full_width_spellings_are_found(tmp_path: Path) -> None:
    found = secrets(tmp_path)
    found.add_phone("+86 139 8765 4321")
    phones = [
        "139.8765.4321",
        "139-8765-4321",
        "139 8765 4321",
        "(139) 8765-4321",
        "139/8765/4321",
        "１３９８７６５４３２１",
        "（１３９）８７６５－４３２１",
    ]
    accounts = [
        "6222.0212.3456.4821",
        "6222/0212/3456/4821",
        "６２２２　０２１２　３４５６　４８２１",
        "６２２２０２１２３４５６４８２１",
    ]
    lines = [(spelled, f'{{"message": "my phone is {spelled}"}}') for spelled in phones]
    lines += [(spelled, f"appeal: account {spelled} was debited") for spelled in accounts]
    lines += [("code", "【unbind】验证码 ４８２９１３。")]
    findings = scan(lines, found)
    assert [(finding.source, finding.kind) for finding in findings] == [
        *((spelled, "phone number") for spelled in phones),
        *((spelled, "account number") for spelled in accounts), ("code", "one-time code"),
    ]  # fmt: skip
    assert all(
        "8765" not in finding.excerpt and "0212" not in finding.excerpt and "２１２" not in finding.excerpt
        for finding in findings
    )


def test_a_secret_given_in_full_width_digits_is_found_in_ascii(tmp_path: Path) -> None:
    found = Secrets()
    found.add_phone("＋８６ １３９ ８７６５ ４３２１")
    assert [finding.kind for finding in scan([("a", "call 13987654321")], found)] == ["phone number"]


def test_masked_values_timestamps_and_other_numbers_are_not_findings(tmp_path: Path) -> None:
    lines = [
        ("a", '{"time": "2026-11-28T13:14:00.482913+00:00", "at": "2026-11-28 13:14:00,482913"}'),
        ("b", "phone 138****5678, account 6222 **** **** 4821, code ••••13"),
        ("c", "credit limit 30000 -> 20300, request 4829130, id b-482913x"),
    ]
    assert scan(lines, secrets(tmp_path)) == []
