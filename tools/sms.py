"""The development SMS gateway's file (`<var>/sms.jsonl`, one JSON line `{to, text, at}` per SMS),
read back as it grows: the one-time codes sent to each phone, for the tools that play a customer
(`unbind chaos`, `unbind bench`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from services.notification.templates import CODE_IN_SMS


class SmsSink:
    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._codes: dict[str, list[str]] = {}

    def refresh(self) -> None:
        """Read the complete lines written since the last call."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as file:
            file.seek(self._offset)
            chunk = file.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                message = json.loads(line)
                if match := CODE_IN_SMS.search(message["text"]):
                    self._codes.setdefault(message["to"], []).append(match.group(1))

    def codes(self, phone: str) -> list[str]:
        """Codes sent to `phone` so far, oldest first."""
        return self._codes.get(phone, [])
