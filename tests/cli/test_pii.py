"""The PII scan finds what must not be there, in any spelling, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from shared.cli.pii import Secrets, scan


def secrets(tmp_path: Path) -> Secrets:
    sink = tmp_path / "sms.jsonl"
    sink.write_text(json.dumps({"to": "+8613812345678", "text": "【unbind】您的解绑验证码为 482913，5 分钟内有效。"}, ensure_ascii=False) + "\n")
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
        ("a", "one-time code"), ("b", "phone number"), ("c", "phone number"), ("d", "account number"), ("e", "account number"),
    ]  # fmt: skip
    assert all("482913" not in finding.excerpt and "13812345678" not in finding.excerpt for finding in scan(lines, secrets(tmp_path)))


def test_masked_values_timestamps_and_other_numbers_are_not_findings(tmp_path: Path) -> None:
    lines = [
        ("a", '{"time": "2026-11-28T13:14:00.482913+00:00", "at": "2026-11-28 13:14:00,482913"}'),
        ("b", "phone 138****5678, account 6222 **** **** 4821, code ••••13"),
        ("c", "credit limit 30000 -> 20300, request 4829130, id b-482913x"),
    ]
    assert scan(lines, secrets(tmp_path)) == []
