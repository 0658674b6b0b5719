"""Keyset pagination cursors: an opaque token for the (created_at, id) of the last row of a page."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

from shared.problems import Problem

# The ids a cursor can hold (uuids, `b-...`): anything else never came from encode_cursor.
_ROW_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def encode_cursor(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of a cursor; a 422 problem for anything that is not one of ours."""
    try:
        text, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        created_at = datetime.fromisoformat(text)
        if created_at.tzinfo is None or not _ROW_ID.fullmatch(row_id):
            raise ValueError("not a cursor of ours")
        # Compared in UTC: an instant that leaves years 1-9999 there fails here (OverflowError), not in the
        # query.
        return created_at.astimezone(UTC), row_id
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise Problem(
            422, "invalid-cursor", "Invalid cursor", "Pass `next_cursor` from the previous page unchanged."
        ) from exc
