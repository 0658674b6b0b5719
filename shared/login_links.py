"""One-time sign-in links for the ops dashboard, like a notebook server's token URL.

Whoever may mint ops tokens (in development, `unbind up` with the installation's issuer key) writes
a link file into a folder the dashboard reads (`UNBIND_LOGIN_LINK_DIR`): the file is named by the
SHA-256 of the link's random code and holds the ops token and the link's deadline. The dashboard
claims a file by renaming it, so a link signs in once even when two clicks race, then deletes it.
Only the code travels in the URL; the token never does, and the link cannot be used as a token.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from pathlib import Path

CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")


def _file_of(folder: Path, code: str) -> Path:
    return folder / f"{hashlib.sha256(code.encode()).hexdigest()}.json"


def write_login_link(folder: Path, token: str, ttl_seconds: float) -> str:
    """Store a link for `token`, good once within `ttl_seconds`; returns its code."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    code = secrets.token_urlsafe(32)
    fd = os.open(_file_of(folder, code), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"token": token, "expires_at": time.time() + ttl_seconds}, handle)
    return code


def claim_login_link(folder: Path, code: str) -> str | None:
    """The token of a link not used and not expired, which is used up now; None for any other code."""
    if not CODE_PATTERN.match(code):
        return None
    path = _file_of(folder, code)
    claimed = path.with_suffix(".claimed")
    try:
        os.rename(path, claimed)  # atomic: of two racing claims, one wins
    except FileNotFoundError:
        return None
    try:
        link = json.loads(claimed.read_text())
    except (OSError, ValueError):
        return None
    finally:
        claimed.unlink(missing_ok=True)
    if (
        not isinstance(link, dict)
        or not isinstance(link.get("token"), str)
        or not isinstance(link.get("expires_at"), int | float)
    ):
        return None
    return link["token"] if link["expires_at"] > time.time() else None
