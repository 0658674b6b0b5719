"""Field types for request models: what no database column can hold is refused with a 422 when
the request is read, on every backend, instead of failing with a 500 when it is written.

PostgreSQL's text refuses the NUL character (SQLite stores it); an instant is stored and compared
in UTC, where a value near the ends of years 1-9999 (0001-01-01T00:00+01:00) no longer exists.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def _without_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


def _within_utc(value: datetime) -> datetime:
    # A naive value is left to the caller's own rule (a 422 that says how to add a time zone).
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None
    return value


FreeText = Annotated[str, AfterValidator(_without_nul)]
Instant = Annotated[datetime, AfterValidator(_within_utc)]
