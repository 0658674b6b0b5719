"""JSON logs on stdout, one object per line, with the correlation id of the request or event.

Every message and every extra field passes through `redact`, a last line of defence: the code
never logs a one-time code, a phone number or an account number, and if it ever did, any number of
six or more digits is masked before the line is written, however it is spelled: grouped by spaces,
dots, dashes, slashes or brackets (`(139) 8765-4321`), in full-width digits (`１３９８７６５４３２１`).
"""

from __future__ import annotations

import logging
import re
import sys
import unicodedata
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

# ISO dates and times are kept as they are: "2026-11-28" is eight digits, but not a number to hide.
ISO_DATE_TIME = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?:[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?"
    r"(?:Z|[+-]\d\d:?\d\d)?)?"
)
# So are IPv4 addresses (the access log's clients): four octets of 0-255, nothing more.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.])"
# A number as people write it: `\d` is any script's digit (full-width too), between groups up to
# three separators, ASCII or full-width: space, dot, dash, slash, brackets, `(139) 8765-4321`.
_SEPARATOR = r"[ .\-/()\u00a0\u2010-\u2015\u3000\uff08\uff09\uff0d\uff0e\uff0f]"
NUMBER = re.compile(rf"[+\uff0b]?[(\uff08]?\d(?:{_SEPARATOR}{{0,3}}\d)*")
_NUMBER_IN_TEXT = re.compile(
    rf"(?P<keep>{ISO_DATE_TIME.pattern}|{_IPV4})|(?<![\dA-Za-z]){NUMBER.pattern}(?![\dA-Za-z])"
)
# uvicorn adds `color_message`, the same text with ANSI colours: noise in a JSON line.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def digits_of(text: str) -> str:
    """The digits of `text` as ASCII digits, whatever their script: `(１３９) 8765` -> `1398765`."""
    return "".join(str(unicodedata.decimal(char)) for char in text if char.isdecimal())


def redact(text: str) -> str:
    """Mask every number of 6+ digits (codes, phones, account and card numbers), keeping the last 4
    of long numbers so an operator can still tell two accounts apart."""

    def mask(match: re.Match[str]) -> str:
        if match.group("keep"):
            return match.group(0)
        digits = digits_of(match.group(0))
        if len(digits) < 6:
            return match.group(0)
        return "***" + digits[-4:] if len(digits) >= 11 else "******"

    return _NUMBER_IN_TEXT.sub(mask, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(item) for item in value]
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if cid := correlation_id.get():
            entry["correlation_id"] = cid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = _redact_value(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route the root logger (and uvicorn's) to JSON on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("aiokafka").setLevel("WARNING")
