"""JSON logs with correlation ids, and the redaction that keeps codes and numbers out of them."""

from __future__ import annotations

import logging

import orjson
import pytest

from shared.logging import JsonFormatter, correlation_id, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("code 493021 sent", "code ****** sent"),
        ("to +8613812345678", "to ***5678"),
        ("account 6222 0212 3456 4821", "account ***4821"),
        ("account 6222021234564821.", "account ***4821."),
        ("port 8001, 3 attempts, year 2026", "port 8001, 3 attempts, year 2026"),
        ("request 2f6c2b7e-1d2a-4c1b-9f0e-123456789012", "request 2f6c2b7e-1d2a-4c1b-9f0e-***9012"),
        # Dates and times are not numbers to hide; what follows them still is.
        (
            "at 2026-11-28T13:37:08.123456+00:00 code 482913",
            "at 2026-11-28T13:37:08.123456+00:00 code ******",
        ),
        ("due 2026-12-10, 2026-12-10 08:00", "due 2026-12-10, 2026-12-10 08:00"),
        ("not a date 2026-13-45 6789", "not a date ***6789"),
        # An IPv4 address (the access log's client) is no number to hide; five groups are.
        ("from 10.20.130.240:8001", "from 10.20.130.240:8001"),
        ("call 139.123.45.67.8", "call ***5678"),
        ("version 1.2.3, 4 / 5", "version 1.2.3, 4 / 5"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "spelled",
    [
        "139.8765.4321",
        "139-8765-4321",
        "139 8765 4321",
        "(139) 8765-4321",
        "139/8765/4321",
        "１３９８７６５４３２１",
        "（１３９）８７６５－４３２１",
        "+86 139 8765 4321",
    ],
)
def test_redact_masks_a_phone_however_it_is_spelled(spelled: str) -> None:
    assert redact(f"call me on {spelled}, thanks") == "call me on ***4321, thanks"


@pytest.mark.parametrize(
    "spelled",
    [
        "6222.0212.3456.4821",
        "6222/0212/3456/4821",
        "６２２２　０２１２　３４５６　４８２１",
        "６２２２０２１２３４５６４８２１",
        "(6222) 0212-3456-4821",
    ],
)
def test_redact_masks_an_account_number_however_it_is_spelled(spelled: str) -> None:
    assert redact(f"account {spelled} was debited") == "account ***4821 was debited"


def test_redact_masks_a_code_in_full_width_digits() -> None:
    assert redact("验证码为４８２９１３，") == "验证码为******，"


def test_json_line_carries_correlation_id_and_redacts_extras() -> None:
    record = logging.LogRecord("unbind.test", logging.INFO, __file__, 1, "sent code %s", ("123456",), None)
    record.phone = "+8613812345678"
    token = correlation_id.set("req-1")
    try:
        line = JsonFormatter("binding").format(record)
    finally:
        correlation_id.reset(token)
    entry = orjson.loads(line)
    assert entry["service"] == "binding"
    assert entry["correlation_id"] == "req-1"
    assert entry["message"] == "sent code ******"
    assert entry["phone"] == "***5678"
    assert entry["level"] == "info"
