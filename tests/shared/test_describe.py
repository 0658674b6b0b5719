"""The feed's lines (shared/describe.py) in English and Chinese: every event type the dashboard reads
has a line in both; the Chinese one words every code (no English left but ids), and neither shows a
number long enough to be a phone, account or code once masked as the feed masks it."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from services.dashboard.main import SUBSCRIPTIONS
from services.risk.scoring import SIGNALS
from shared.describe import DESCRIBED, describe_event, describe_in_every_locale, methods_text
from shared.events import (
    AutoDebitPaused,
    AutoDebitResumed,
    BindingCreated,
    BindingRequested,
    BindingVerificationFailed,
    BindingVerified,
    BiometricCounterRegressed,
    DenialReason,
    DeviceEnrolled,
    DeviceRevoked,
    DisputeReason,
    Event,
    MandateConfirmed,
    MandateRefused,
    MandateRequested,
    RepaymentAccountSwitched,
    ReviewDecided,
    RiskAssessed,
    RiskDecision,
    RiskReason,
    UnbindAppealed,
    UnbindCancelled,
    UnbindCompleted,
    UnbindDisputed,
    UnbindExpired,
    UnbindReason,
    UnbindRejected,
    UnbindRequested,
    VerificationFailed,
    VerificationRequested,
    Verified,
)
from shared.logging import redact
from tests.dashboard.test_i18n import OUTCOMES, binding_codes

# Ids stay as they are in every language (ops copy them into a search); so do the loanwords of
# written Chinese: the "App" of 手机 App and the "IP" of IP 地址.
IDS = ("u-feed", "dev-a1", "ver-77", "man-9", "rev-1")
LOANWORDS = {"App", "IP"}
ABOUT = {"user_id": "u-feed", "request_id": "req-1", "binding_id": "bind-1"}
EXPIRES = datetime(2025, 3, 1, 2, 30, 5, tzinfo=UTC)
EVERY_SIGNAL = [RiskReason(code=name, weight=5, detail="x") for name in SIGNALS]
MANDATE = {**ABOUT, "mandate_id": "man-9", "lender": "example_bank", "account_last4": "4821"}


def examples() -> list[Event]:
    """Each event type the feed describes, in every variant its line has, with every code it words."""
    return [
        *(
            UnbindRequested(
                **ABOUT,
                reason=reason,
                impact_hash="h",
                device_id="dev-a1",
                acknowledged=binding_codes("blocker"),
            )
            for reason in UnbindReason
        ),
        UnbindRequested(
            **ABOUT, kind="pause", pause_months=2, reason="fund_planning", impact_hash="h", channel="web"
        ),
        UnbindRequested(
            **ABOUT,
            kind="switch",
            new_lender="harbour_bank",
            new_account_last4="9931",
            reason="lender_change",
            impact_hash="h",
        ),
        *(
            RiskAssessed(
                **ABOUT,
                score=35,
                level="elevated",
                decision=decision,
                reasons=EVERY_SIGNAL,
                required_methods=["otp", "biometric"],
            )
            for decision in RiskDecision
        ),
        RiskAssessed(**ABOUT, score=0, level="normal", decision="allow", required_methods=["otp"]),
        ReviewDecided(**ABOUT, decision="approve", reviewer="rev-1", required_methods=["otp", "biometric"]),
        *(
            ReviewDecided(
                **ABOUT,
                decision="deny",
                reviewer="rev-1",
                origin="appeal",
                reason=reason,
                customer_message=True,
            )
            for reason in DenialReason
        ),
        ReviewDecided(**ABOUT, decision="approve", reviewer="rev-1", origin="dispute"),
        VerificationRequested(**ABOUT, verification_id="ver-77", methods=["otp"], expires_at=EXPIRES),
        Verified(**ABOUT, verification_id="ver-77", methods=["otp", "biometric"]),
        *(
            VerificationFailed(**ABOUT, verification_id="ver-77", reason=reason)
            for reason in ("expired", "too_many_attempts")
        ),
        *(
            BindingVerificationFailed(**ABOUT, verification_id="ver-77", reason=reason)
            for reason in ("expired", "too_many_attempts")
        ),
        *(UnbindRejected(**ABOUT, reason=outcome) for outcome in OUTCOMES),
        # A counter as long as a phone number: the feed masks it like any long number.
        BiometricCounterRegressed(
            **ABOUT,
            verification_id="ver-77",
            device_id="dev-a1",
            counter=13812345678,
            last_counter=13812345679,
        ),
        UnbindCompleted(**ABOUT, mandates_cancelled=1, credit_limit_before=30000, credit_limit_after=27000),
        AutoDebitPaused(**ABOUT, mandate_id="man-9", months=2, resumes_on=date(2025, 5, 1)),
        AutoDebitResumed(**ABOUT, mandate_id="man-9"),
        RepaymentAccountSwitched(
            **ABOUT,
            previous_account_last4="1234",
            account_last4="4821",
            lender="harbour_bank",
            mandates_cancelled=1,
        ),
        UnbindAppealed(**ABOUT),
        *(
            BindingRequested(
                **ABOUT,
                verification_id="ver-77",
                lender="example_bank",
                account_last4="4821",
                monthly_instalment=3000,
                auto_debit=asked,
            )
            for asked in (True, False)
        ),
        BindingVerified(**ABOUT, verification_id="ver-77"),
        MandateRefused(**MANDATE, reason="not_given"),
        *(UnbindDisputed(**ABOUT, reason=reason) for reason in DisputeReason),
        *(
            BindingCreated(
                **ABOUT,
                lender="example_bank",
                account_last4="4821",
                monthly_instalment=3000,
                auto_debit=asked,
            )
            for asked in (True, False)
        ),
        MandateRequested(**MANDATE, monthly_instalment=3000, due_day=15),
        MandateConfirmed(**MANDATE, credit_limit_before=30000, credit_limit_after=34500),
        UnbindCancelled(**ABOUT),
        UnbindExpired(**ABOUT),
        DeviceEnrolled(user_id="u-feed", device_id="dev-a1"),
        DeviceRevoked(user_id="u-feed", device_id="dev-a1"),
    ]


def test_every_type_the_dashboard_reads_has_a_line_and_is_exercised_here() -> None:
    assert set(SUBSCRIPTIONS) <= DESCRIBED
    assert {type(event) for event in examples()} == DESCRIBED


@pytest.mark.parametrize("event", examples(), ids=lambda event: type(event).__name__)
def test_the_chinese_line_words_every_code_and_neither_line_shows_a_long_number(event: Event) -> None:
    lines = describe_in_every_locale(event)
    assert set(lines) == {"en", "zh-CN"} and all(line.strip() for line in lines.values())
    chinese = lines["zh-CN"]
    assert chinese != lines["en"] and re.search(r"[\u4e00-\u9fff]", chinese), chinese
    left = chinese
    for identifier in IDS:
        left = left.replace(identifier, "")
    assert set(re.findall(r"[A-Za-z_]+", left)) <= LOANWORDS, chinese
    for line in lines.values():
        assert not re.search(r"\d{6,}", redact(line)), line
        assert "None" not in line and "{" not in line, line


def test_the_english_line_is_the_one_the_feed_and_the_demo_always_showed() -> None:
    assessed = RiskAssessed(
        **ABOUT,
        score=35,
        level="elevated",
        decision="review",
        reasons=[RiskReason(code="device_unknown", weight=40, detail="x")],
    )
    assert describe_event(assessed) == "score 35 · review · needs an ops review · device_unknown(+40)"
    assert (
        describe_event(Verified(**ABOUT, verification_id="ver-77", methods=["otp", "biometric"]))
        == "otp + biometric passed"
    )
    assert (
        describe_event(UnbindRejected(**ABOUT, reason="verification_failed:expired"))
        == "verification_failed:expired"
    )
    assert methods_text([]) == "nothing"
    # The demo colours decisions and failures; the words coloured are the line's own.
    marked = describe_event(assessed, lambda text, kind: f"<{kind}:{text}>")
    assert "<decision:review>" in marked


def test_the_chinese_line_reads_as_staff_write_it() -> None:
    assessed = RiskAssessed(
        **ABOUT,
        score=35,
        level="elevated",
        decision="review",
        reasons=[RiskReason(code="device_unknown", weight=40, detail="x")],
    )
    assert (
        describe_event(assessed, locale="zh-CN") == "风险评分 35 · 人工审核 · 需人工审核 · 未识别的设备(+40)"
    )
    requested = UnbindRequested(
        **ABOUT,
        reason="fund_planning",
        impact_hash="h",
        device_id="dev-a1",
        acknowledged=["INSTALMENT_DUE_SOON"],
    )
    assert (
        describe_event(requested, locale="zh-CN")
        == "解绑请求 · 原因：资金规划 · 设备 dev-a1 · 已确认提示：近期有还款到期 · 渠道：手机 App"
    )
    denied = ReviewDecided(
        **ABOUT,
        decision="deny",
        reviewer="rev-1",
        origin="appeal",
        reason="identity_not_confirmed",
        customer_message=True,
    )
    assert (
        describe_event(denied, locale="zh-CN")
        == "拒绝 · 审核员 rev-1 · 申诉案件 · 原因：身份未能确认 · 已给客户留言"
    )
    # Times in Beijing time; lenders by their Chinese names.
    issued = VerificationRequested(**ABOUT, verification_id="ver-77", methods=["otp"], expires_at=EXPIRES)
    assert describe_event(issued, locale="zh-CN") == "验证 ver-77 · 短信验证码 · 北京时间 10:30:05 到期"
    confirmed = MandateConfirmed(**MANDATE, credit_limit_before=30000, credit_limit_after=34500)
    assert (
        describe_event(confirmed, locale="zh-CN")
        == "示例银行已确认自动扣款授权 man-9 · 信用额度 30000 → 34500 元"
    )
    rejected = UnbindRejected(**ABOUT, reason="review_denied:customer_unreachable")
    assert describe_event(rejected, locale="zh-CN") == "请求被拒绝：人工审核拒绝（无法联系到客户）"
