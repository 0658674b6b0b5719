"""The binding agreement, one file per version and locale (`<version>.<locale>.md`, its first line
the title). A binding records the version its customer accepted; only the current version can be
accepted for a new one. A version, once published, is never edited: a change is a new version.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from shared.problems import Problem

DIRECTORY = Path(__file__).resolve().parent
# Every version ever published, oldest first, with the day it came into force; the last is current.
VERSIONS: dict[str, date] = {
    "2025-06": date(2025, 6, 1),
    "2026-12": date(2026, 12, 1),
}
CURRENT = list(VERSIONS)[-1]
VERSION_PATTERN = r"^\d{4}-\d{2}$"


@dataclass(frozen=True)
class Agreement:
    version: str
    locale: str
    title: str
    text: str


@functools.cache
def agreement(version: str, locale: str) -> Agreement | None:
    """The text of a published version in a locale (zh-CN or en); None for a version never published."""
    if version not in VERSIONS:
        return None
    content = (DIRECTORY / f"{version}.{locale}.md").read_text(encoding="utf-8")
    title, _, body = content.partition("\n")
    return Agreement(
        version=version, locale=locale, title=title.removeprefix("# ").strip(), text=body.strip()
    )


def require_current(version: str) -> None:
    """422 unless `version` is the one a customer can accept today."""
    if version == CURRENT:
        return
    if version in VERSIONS:
        raise Problem(
            422,
            "agreement-superseded",
            "Agreement superseded",
            f"Version {version} of the agreement is superseded; show the customer version {CURRENT}.",
            current_version=CURRENT,
        )
    raise Problem(
        422,
        "agreement-unknown",
        "Unknown agreement",
        f"There is no version {version} of the agreement; the current one is {CURRENT}.",
        current_version=CURRENT,
    )
