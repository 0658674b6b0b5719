"""The page's words (static/i18n.js, and the codes' words it loads from shared/labels.py): both
catalogues hold the same keys, every key the page uses is in them, no text of the HTML escapes them,
and the codes the page shows have a label."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from services.binding.texts import TEXTS as BINDING_TEXTS
from services.dashboard.api import STATIC
from services.dashboard.projection import KIND_STAGES, KINDS, STAGES, STATES
from services.risk.features import FEATURES
from services.risk.models import ApprovalReason, DisputeFinding, ReviewStatus
from services.risk.scoring import SIGNALS
from shared import labels
from shared.events import (
    DenialReason,
    DisputeReason,
    ReviewOrigin,
    RiskDecision,
    UnbindReason,
    VerificationMethod,
)

LOCALES = ("en", "zh-CN")
# Same in both languages on purpose: the placeholder of a value not known yet.
SAME_IN_BOTH = {"common.not_known"}
TRANSLATED_ATTRIBUTES = ("placeholder", "title", "aria-label")
VOID = {"meta", "link", "input", "br", "img", "hr"}


def catalogues() -> dict[str, dict[str, str]]:
    """The page's words as it holds them: i18n.js's, with the codes' words of labels.js merged in."""
    source = (STATIC / "i18n.js").read_text()
    found = re.search(r"const CATALOGUES = (\{.*?\});\n// end of catalogues", source, re.DOTALL)
    assert found, "i18n.js must hold `const CATALOGUES = {...};` followed by `// end of catalogues`"
    books = json.loads(found.group(1))
    for locale, words in labels.by_locale().items():
        assert not set(words) & set(books[locale]), f"worded twice: {sorted(set(words) & set(books[locale]))}"
        books[locale] |= words
    return books


def binding_codes(group: str) -> list[str]:
    """The codes binding words for customers under `group.` (each needs staff words too)."""
    return sorted(
        {key.removeprefix(f"{group}.") for key in BINDING_TEXTS.keys() if key.startswith(f"{group}.")}
        - {"review_denied.because"}
    )


# How binding records a request's outcome: `verification_failed.expired` is worded as
# `verification_failed:expired`.
OUTCOMES = [code.replace(".", ":") for code in binding_codes("outcome")] + [
    f"review_denied:{reason}" for reason in DenialReason
]


class _Texts(HTMLParser):
    """Text and translatable attributes of the page that no catalogue key covers."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, str | None]] = []
        self.keys: set[str] = set()
        self.untranslated: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.keys.update(
            value for name, value in attributes.items() if name.startswith("data-i18n") and value
        )
        for name in TRANSLATED_ATTRIBUTES:
            if (
                attributes.get(name)
                and f"data-i18n-{name}" not in attributes
                and attributes.get("translate") != "no"
            ):
                self.untranslated.append(f"<{tag} {name}={attributes[name]!r}>")
        if tag not in VOID:
            self.stack.append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if not text or not self.stack:
            return
        parent = self.stack[-1]
        covered = "data-i18n" in parent or any(
            attributes.get("translate") == "no" for attributes in self.stack
        )
        # Script and style never hold text here (CSP), and a lone "–" is the not-known-yet value.
        if not covered and text != "–":
            self.untranslated.append(text)


def page_texts() -> _Texts:
    parser = _Texts()
    parser.feed((STATIC / "index.html").read_text())
    return parser


def keys_used_by_the_script() -> set[str]:
    script = (STATIC / "app.js").read_text()
    called = re.findall(r"""\bt\(\s*"([\w.-]+)"(?=[,)])""", script)
    # Keys handed to a helper (a table's columns, a fact's label), named by their prefix.
    named = re.findall(
        r'"#?((?:col|case|rules|decide|reviews|customer|customers|common|problem)\.[\w.-]+)"', script
    )
    return set(called) | set(named)


def test_both_catalogues_hold_the_same_keys_and_chinese_for_each() -> None:
    books = catalogues()
    assert set(books) == set(LOCALES)
    assert set(books["en"]) == set(books["zh-CN"]), set(books["en"]) ^ set(books["zh-CN"])
    for key, text in books["zh-CN"].items():
        assert text.strip(), key
        if key not in SAME_IN_BOTH and re.search(r"[a-z]{3,}", books["en"][key]):
            assert text != books["en"][key], f"{key} is not translated: {text!r}"
        # The same {placeholders} in both languages, so no value is lost in one of them.
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", books["en"][key])), key


def test_every_key_the_page_uses_is_in_the_catalogues() -> None:
    known = set(catalogues()["en"])
    used = page_texts().keys | keys_used_by_the_script()
    assert used, "the page names no key"
    assert not used - known, sorted(used - known)


def test_no_text_of_the_page_escapes_the_catalogues() -> None:
    assert page_texts().untranslated == []


@pytest.mark.parametrize(
    ("group", "codes"),
    [
        ("state", STATES),
        ("stage", STAGES + KIND_STAGES),
        ("kind", KINDS),
        ("origin", list(ReviewOrigin)),
        ("decision", list(RiskDecision)),
        ("reason", list(DenialReason)),
        ("reason", list(ApprovalReason)),
        ("reason", list(DisputeFinding)),
        ("review_status", list(ReviewStatus)),
        ("outcome", OUTCOMES),
        ("blocker", binding_codes("blocker")),
        ("unbind_reason", list(UnbindReason)),
        ("dispute_reason", list(DisputeReason)),
        ("signal", list(SIGNALS)),
        # The anomaly model's inputs, named in a case's explanation of its score.
        ("feature", list(FEATURES)),
        ("method", list(VerificationMethod)),
    ],
)
def test_every_code_the_page_shows_has_a_label_in_both_languages(group: str, codes: list[str]) -> None:
    books = catalogues()
    for locale in LOCALES:
        missing = [code for code in codes if f"{group}.{code}" not in books[locale]]
        assert not missing, (locale, group, missing)
