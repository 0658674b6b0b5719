"""Keyset pagination cursors: an opaque token for the (created_at, id) of the last row of a page."""

from __future__ import annotations

import base64
from datetime import datetime

from shared.problems import Problem


def encode_cursor(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of a cursor; a 422 problem for anything that is not one of ours."""
    try:
        created_at, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created_at), row_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(422, "invalid-cursor", "Invalid cursor", "Pass `next_cursor` from the previous page unchanged.") from exc
