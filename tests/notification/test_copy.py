"""Every message kind in every locale, for every fact its text can name: lenders, accounts known in
part or not at all, devices named or not, each verification method, each reason and decision. The
copy must read as words, never as codes (tests/copy.py)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from services.notification.templates import KINDS, LOCALES, PHRASES, AccountRef, render
from shared.events import DenialReason
from shared.i18n import variables
from shared.lenders import LENDERS
from tests.copy import assert_customer_copy

DEVICE_NAMES = {"zh-CN": "张三的手机", "en": "Zhang's phone"}
# Every value each variable of a text can take; a kind with a variable not here fails, so a new kind
# gets its samples with it.
SAMPLES: dict[str, list[Any]] = {
    "account": [*(AccountRef(lender_id, "4821") for lender_id in LENDERS), AccountRef(None, "4821"), None],
    "methods": [["otp"], ["otp", "biometric"]],
    "reason": [key.removeprefix("reason.") for key in PHRASES.keys() if key.startswith("reason.")]
    + ["verification_failed:too_many_attempts"],
    "code": ["123456"],
    "ttl_minutes": ["5"],
    "credit_limit_before": [30000],
    "credit_limit_after": [20300],
    "expires_at": ["2026-12-01T06:15:00+00:00"],
    "expected_hours": [24],
    "denial_reason": [str(reason) for reason in DenialReason],
    "dispute_outcome": ["approve", "deny"],
    "pause_months": [1, 3],
    "new_account": [AccountRef("harbour_bank", "5674"), AccountRef(None, "5674")],
    "resumes_on": ["2027-01-28"],
    "previous_account": [AccountRef("example_bank", "4821"), None],
}
# What a reviewer may add to the outcome of a review, in the customer's language (quoted as written).
REVIEWER_MESSAGES = {"zh-CN": "如有疑问，请致电客服。", "en": "Call us if you have any questions."}
REVIEW_OUTCOMES = {"review_approved", "review_denied", "appeal_denied", "dispute_closed"}
# Each kind's texts about a request of another kind than an unbind (a pause, a switch).
VARIANTS = [
    (kind, request_kind) for kind, spec in sorted(KINDS.items()) for request_kind in sorted(spec.variants)
]


def variations(kind: str, locale: str, request_kind: str | None = None) -> list[dict[str, Any]]:
    spec = KINDS[kind]
    texts = spec.variants[request_kind][locale] if request_kind else spec.texts[locale]
    needed = sorted({name for text in texts for name in variables(text)})
    assert set(needed) <= {*SAMPLES, "device"}, (
        f"{kind} names {sorted(set(needed) - {*SAMPLES, 'device'})}: add their values to SAMPLES"
    )
    choices = [SAMPLES[name] if name != "device" else [DEVICE_NAMES[locale], None] for name in needed]
    return [dict(zip(needed, values, strict=True)) for values in itertools.product(*choices)]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_reads_as_words_for_every_fact(kind: str, locale: str) -> None:
    notes = [{}, {"reviewer_message": REVIEWER_MESSAGES[locale]}] if kind in REVIEW_OUTCOMES else [{}]
    for facts in (facts | note for facts in variations(kind, locale) for note in notes):
        title, body = render(kind, locale, facts)
        for text in (title, body):
            assert_customer_copy(text, locale, allowed=(DEVICE_NAMES[locale],), where=f"{kind} with {facts}")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("kind", "request_kind"), VARIANTS)
def test_a_message_about_a_pause_or_a_switch_says_so_in_words_and_never_unbind(
    kind: str, request_kind: str, locale: str
) -> None:
    asks = {
        ("pause", "zh-CN"): ("暂停",),
        ("pause", "en"): ("pause", "pausing"),
        ("switch", "zh-CN"): ("更换", "换到", "新账户"),
        ("switch", "en"): ("switch", "new account"),
    }
    for facts in variations(kind, locale, request_kind):
        title, body = render(kind, locale, facts, request_kind=request_kind)
        for text in (title, body):
            assert_customer_copy(
                text,
                locale,
                allowed=(DEVICE_NAMES[locale],),
                where=f"{kind} of a {request_kind} with {facts}",
            )
        assert "解绑" not in title + body and "unbind" not in (title + body).lower()
        assert any(word in (title + body).lower() for word in asks[(request_kind, locale)]), body


def test_the_stage_messages_and_the_code_have_words_for_each_alternative() -> None:
    told = {
        "otp_code",
        "unbind_requested",
        "verification_requested",
        "verified",
        "verification_failed",
        "unbind_rejected",
        "unbind_cancelled",
        "unbind_expired",
    }
    told |= {"unbind_under_review", "unbind_appealed", "review_approved", "review_denied", "appeal_denied"}
    assert {kind for kind, request_kind in VARIANTS if request_kind == "pause"} == told
    assert {kind for kind, request_kind in VARIANTS if request_kind == "switch"} == told | {
        "mandate_requested",
        "mandate_confirmed",
        "mandate_refused",
    }


@pytest.mark.parametrize("locale", LOCALES)
def test_a_pause_says_how_long_and_until_when_in_words(locale: str) -> None:
    account = AccountRef("example_bank", "4821")
    _, asked = render(
        "unbind_requested", locale, {"account": account, "pause_months": 1}, request_kind="pause"
    )
    _, paused = render("auto_debit_paused", locale, {"account": account, "resumes_on": "2027-01-28"})
    assert ("暂停 1 个月" if locale == "zh-CN" else "for 1 month.") in asked
    assert ("2027 年 1 月 28 日" if locale == "zh-CN" else "28 January 2027") in paused


@pytest.mark.parametrize("locale", LOCALES)
def test_a_notice_names_the_account_by_lender_and_last_four_digits(locale: str) -> None:
    _, body = render(
        "unbind_completed",
        locale,
        {
            "account": AccountRef("example_bank", "4821"),
            "credit_limit_before": 30000,
            "credit_limit_after": 20300,
        },
    )
    assert (
        "示例银行 尾号 4821" if locale == "zh-CN" else "Example Bank mortgage account ending 4821"
    ) in body
    assert ("30,000 元" if locale == "zh-CN" else "CNY 30,000") in body


def test_a_missing_fact_or_a_code_without_words_is_an_error_not_a_blank() -> None:
    with pytest.raises(KeyError, match="code"):
        render("otp_code", "en", {"ttl_minutes": "5", "account": None})
    with pytest.raises(KeyError, match="made_up"):
        render("unbind_rejected", "zh-CN", {"account": None, "reason": "made_up"})
