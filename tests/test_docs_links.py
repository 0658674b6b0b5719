"""The README stays a front door, and the documentation holds together in a clone: every relative link
and #anchor of README.md, ARCHITECTURE.md and docs/*.md resolves, and none leaves the repository."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_BYTES = 12 * 1024
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]

# [text](target) and ![alt](target), the target up to the first space (a title may follow) or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _outside_code(text: str) -> list[str]:
    """The lines of a Markdown page outside fenced code blocks, inline code blanked out."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", lambda code: "`" + " " * (len(code.group()) - 2) + "`", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation and symbols dropped (letters of any script,
    digits, '-' and '_' kept), each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    kept = "".join(char for char in text if char in " -_" or unicodedata.category(char)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub gives the headings of a page; a repeated heading gets -1, -2... as there."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    return [target for line in _outside_code(page.read_text()) for target in LINK.findall(line)]


def test_the_readme_is_a_front_door() -> None:
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, (
        f"README.md is {size:,} bytes, over {README_MAX_BYTES:,}: move the detail into docs/"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    assert page.is_file()
    broken = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and (resolved.suffix != ".md" or fragment not in anchors(resolved)):
            broken.append(f"{target}: no heading with that anchor in {resolved.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}:\n  " + "\n  ".join(broken)


def test_the_anchor_rules_are_githubs() -> None:
    assert slug("Demo: `unbind demo`") == "demo-unbind-demo"
    assert slug("Contracts: AsyncAPI and JSON Schemas") == "contracts-asyncapi-and-json-schemas"
    assert (
        slug("Instead of unbinding: pause the auto-debit, or switch the account")
        == "instead-of-unbinding-pause-the-auto-debit-or-switch-the-account"
    )
    assert (
        slug("Walk-through: Zhang San unbinds his mortgage account")
        == "walk-through-zhang-san-unbinds-his-mortgage-account"
    )
    assert slug("The 设计 contract (v2)") == "the-设计-contract-v2"
