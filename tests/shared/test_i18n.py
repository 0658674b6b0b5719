"""The catalogue mechanics: strict rendering, checked catalogues, locale negotiation, amounts."""

from __future__ import annotations

import pytest

from shared.i18n import Catalogue, MissingText, join, money, negotiate, resolve


def test_a_missing_variable_or_key_is_an_error_never_a_blank() -> None:
    texts = Catalogue({"greeting": {"zh-CN": "{name}，您好", "en": "Hello, {name}"}})
    assert texts.render("greeting", "en", name="Li Si") == "Hello, Li Si"
    with pytest.raises(MissingText, match="name"):
        texts.render("greeting", "zh-CN")
    with pytest.raises(MissingText, match="farewell"):
        texts.render("farewell", "en")


@pytest.mark.parametrize(
    "variants",
    [
        {"zh-CN": "您好"},
        {"zh-CN": "您好", "en": "Hello", "fr": "Bonjour"},
        {"zh-CN": "{name}，您好", "en": "Hello"},
    ],
    ids=["a locale missing", "a locale too many", "different variables"],
)
def test_a_catalogue_is_checked_when_it_is_built(variants: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Catalogue({"greeting": variants})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("en-GB,en;q=0.9", "en"),
        ("zh-TW", "zh-CN"),
        ("fr-FR, en;q=0.5, zh;q=0.8", "zh-CN"),
        ("fr-FR", None),
        ("en;q=0, zh", "zh-CN"),
        ("en;q=abc", None),
    ],
)
def test_accept_language_names_a_supported_language_or_none(header: str | None, expected: str | None) -> None:
    assert negotiate(header) == expected


def test_the_header_wins_then_the_saved_locale_then_chinese() -> None:
    assert resolve("en", "zh-CN") == "en"
    assert resolve(None, "en") == "en"
    assert resolve("fr", "en") == "en"
    assert resolve(None, None) == "zh-CN"
    assert resolve(None, "xx") == "zh-CN"


def test_amounts_and_lists_read_as_a_customer_writes_them() -> None:
    assert money(9700, "zh-CN") == "9,700 元" and money(9700, "en") == "CNY 9,700"
    assert join(["短信验证码", "手机指纹或面容验证"], "zh-CN") == "短信验证码和手机指纹或面容验证"
    assert join(["an SMS code", "a fingerprint"], "en") == "an SMS code and a fingerprint"
    assert join(["an SMS code"], "en") == "an SMS code"
