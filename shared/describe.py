"""One line of what an event says, for people: the dashboard's live feed (in every locale) and
`unbind demo` (in English).

Fields are named one by one, never dumped, so a line shows only what an ops screen or a terminal
should: no client IP, and no one-time code, full phone or account number, nor free text (no
event holds any). The words come from `LINES`, a catalogue checked like the customers' ones (both
locales name the same fields); the English line keeps the codes as they are (what `unbind demo` and
the feed's `summary` always showed), the Chinese one words each code from `shared.labels`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.events import (
    AutoDebitPaused,
    AutoDebitResumed,
    BindingCreated,
    BindingRequested,
    BindingVerificationFailed,
    BindingVerified,
    BiometricCounterRegressed,
    DeviceEnrolled,
    DeviceRevoked,
    Event,
    MandateConfirmed,
    MandateRefused,
    MandateRequested,
    RepaymentAccountSwitched,
    ReviewDecided,
    RiskAssessed,
    UnbindAppealed,
    UnbindCancelled,
    UnbindCompleted,
    UnbindDisputed,
    UnbindExpired,
    UnbindRejected,
    UnbindRequested,
    VerificationFailed,
    VerificationRequested,
    Verified,
)
from shared.i18n import LOCALES, Catalogue, Locale
from shared.labels import label
from shared.lenders import LENDERS

# `emphasize(text, kind)` may colour a word: kind is "decision" (allow, review, approve...) or "failure".
Emphasis = Callable[[str, str], str]
# The bank's staff read times in Beijing time; the English line keeps UTC, as the demo always printed.
SHANGHAI = ZoneInfo("Asia/Shanghai")

LINES = Catalogue(
    {
        "nothing": {"en": "nothing", "zh-CN": "无"},
        "lender.unknown": {"en": "an unnamed lender", "zh-CN": "未注明的贷款机构"},
        "UnbindRequested": {
            "en": "{asks} · {reason} · {device} · acknowledged {acknowledged} · channel {channel}",
            "zh-CN": "{asks} · 原因：{reason} · {device} · 已确认提示：{acknowledged} · 渠道：{channel}",
        },
        "UnbindRequested.unbind": {"en": "unbind", "zh-CN": "解绑请求"},
        "UnbindRequested.pause": {
            "en": "pause auto-debit {months} month(s)",
            "zh-CN": "暂停自动扣款 {months} 个月",
        },
        "UnbindRequested.switch": {
            "en": "switch to account ···· {last4} at {lender}",
            "zh-CN": "更换还款账户至{lender}尾号 {last4} 的账户",
        },
        "UnbindRequested.device": {"en": "from {device}", "zh-CN": "设备 {device}"},
        "UnbindRequested.no_device": {"en": "no device named", "zh-CN": "未提供设备"},
        "RiskAssessed": {
            "en": "score {score} · {decision} · {needs} · {reasons}",
            "zh-CN": "风险评分 {score} · {decision} · {needs} · {reasons}",
        },
        "RiskAssessed.review": {"en": "needs an ops review", "zh-CN": "需人工审核"},
        "RiskAssessed.methods": {"en": "needs {methods}", "zh-CN": "需验证：{methods}"},
        "RiskAssessed.reason": {"en": "{code}(+{weight})", "zh-CN": "{code}(+{weight})"},
        "RiskAssessed.no_signals": {"en": "no signals", "zh-CN": "无风险信号"},
        "ReviewDecided": {
            "en": "{decision} by {reviewer}{case}{reason}{needs}{message}",
            "zh-CN": "{decision} · 审核员 {reviewer}{case}{reason}{needs}{message}",
        },
        "ReviewDecided.case": {"en": " · {origin} case", "zh-CN": " · {origin}案件"},
        "ReviewDecided.reason": {"en": " · {reason}", "zh-CN": " · 原因：{reason}"},
        "ReviewDecided.needs": {"en": " · needs {methods}", "zh-CN": " · 需验证：{methods}"},
        "ReviewDecided.message": {"en": " · wrote to the customer", "zh-CN": " · 已给客户留言"},
        "VerificationRequested": {
            "en": "verification {verification} · {methods} · expires {expires} UTC",
            "zh-CN": "验证 {verification} · {methods} · 北京时间 {expires} 到期",
        },
        "Verified": {"en": "{methods} passed", "zh-CN": "{methods}验证通过"},
        "VerificationFailed": {"en": "{reason}", "zh-CN": "验证未通过：{reason}"},
        "UnbindRejected": {"en": "{reason}", "zh-CN": "请求被拒绝：{reason}"},
        "BiometricCounterRegressed": {
            "en": "device {device} signed with counter {counter}, not above {last_counter}",
            "zh-CN": "设备 {device} 的签名计数器为 {counter}，未超过上次的 {last_counter}",
        },
        "UnbindCompleted": {
            "en": "{mandates} mandate(s) cancelled · credit limit {before} -> {after} CNY",
            "zh-CN": "已取消 {mandates} 项自动扣款授权 · 信用额度 {before} → {after} 元",
        },
        "AutoDebitPaused": {
            "en": "mandate {mandate} paused for {months} month(s) · resumes {resumes}",
            "zh-CN": "自动扣款授权 {mandate} 已暂停 {months} 个月 · {resumes} 恢复",
        },
        "AutoDebitResumed": {
            "en": "mandate {mandate} active again: the pause ran out",
            "zh-CN": "自动扣款授权 {mandate} 已恢复：暂停期已满",
        },
        "RepaymentAccountSwitched": {
            "en": "account ···· {previous} -> ···· {last4} at {lender} · {mandates} mandate(s) cancelled · the new one awaits the lender",
            "zh-CN": "还款账户由尾号 {previous} 更换为{lender}尾号 {last4} 的账户 · 已取消 {mandates} 项自动扣款授权 · 新授权待贷款机构确认",
        },
        "UnbindAppealed": {
            "en": "appealed by the customer: under review again",
            "zh-CN": "客户已申诉：重新进入人工审核",
        },
        "BindingRequested": {
            "en": "account ···· {last4} at {lender} · auto-debit {auto_debit} · code for verification {verification}",
            "zh-CN": "{lender}尾号 {last4} 的账户 · 自动扣款{auto_debit} · 已发送验证码（验证 {verification}）",
        },
        "BindingRequested.asked": {"en": "asked", "zh-CN": "已申请"},
        "BindingRequested.not_asked": {"en": "not asked", "zh-CN": "未申请"},
        "BindingVerified": {"en": "code confirmed", "zh-CN": "验证码已确认"},
        "BindingVerificationFailed": {"en": "{reason}", "zh-CN": "绑定验证未通过：{reason}"},
        "MandateRefused": {
            "en": "mandate {mandate} refused by {lender} · {reason}",
            "zh-CN": "自动扣款授权 {mandate} 被{lender}拒绝 · 原因：{reason}",
        },
        "UnbindDisputed": {
            "en": "completed unbind disputed by the customer ({reason}): an ops case opens",
            "zh-CN": "客户对已完成的解绑提出争议（{reason}）：已创建运营案件",
        },
        "BindingCreated": {
            "en": "account ···· {last4} bound · auto-debit {auto_debit}",
            "zh-CN": "尾号 {last4} 的账户已绑定 · 自动扣款{auto_debit}",
        },
        "BindingCreated.awaits": {"en": "awaits the lender", "zh-CN": "待贷款机构确认"},
        "BindingCreated.not_asked": {"en": "not asked", "zh-CN": "未申请"},
        "MandateRequested": {
            "en": "mandate {mandate} sent to {lender} · account ···· {last4}",
            "zh-CN": "自动扣款授权 {mandate} 已提交{lender} · 账户尾号 {last4}",
        },
        "MandateConfirmed": {
            "en": "mandate {mandate} confirmed by {lender} · credit limit {before} -> {after} CNY",
            "zh-CN": "{lender}已确认自动扣款授权 {mandate} · 信用额度 {before} → {after} 元",
        },
        "UnbindCancelled": {"en": "cancelled by the customer", "zh-CN": "客户已取消请求"},
        "UnbindExpired": {"en": "expired before it was verified", "zh-CN": "未在时限内完成验证，请求已过期"},
        "DeviceEnrolled": {
            "en": "device {device} added (its SMS code confirmed)",
            "zh-CN": "设备 {device} 已注册（短信验证码已确认）",
        },
        "DeviceRevoked": {"en": "device {device} revoked", "zh-CN": "设备 {device} 已注销"},
    }
)


def _plain(text: str, kind: str) -> str:
    return text


class _Line:
    """What one event's line needs: its locale's words, its codes worded (zh-CN) or kept (en)."""

    def __init__(self, locale: str, emphasize: Emphasis):
        self.locale = locale
        self.emphasize = emphasize

    def text(self, key: str, /, **values: object) -> str:
        return LINES.render(key, self.locale, **values)

    def code(self, group: str, code: object) -> str:
        return str(code) if self.locale == Locale.EN else label(group, code, self.locale)

    def listed(self, items: Iterable[str], english_separator: str) -> str:
        return ("、" if self.locale == Locale.ZH_CN else english_separator).join(items)

    def methods(self, methods: Iterable[Any]) -> str:
        return " + ".join(self.code("method", method) for method in methods) or self.text("nothing")

    def lender(self, lender: str | None) -> str:
        if lender is None:
            return self.text("lender.unknown")
        known = LENDERS.get(lender)
        return known.name(self.locale) if known and self.locale != Locale.EN else lender

    def time(self, at: datetime) -> str:
        return f"{(at if self.locale == Locale.EN else at.astimezone(SHANGHAI)):%H:%M:%S}"


def methods_text(methods: list[Any]) -> str:
    """Verification methods as the demo prints them: `otp + biometric`."""
    return _Line(Locale.EN, _plain).methods(methods)


def _unbind_requested(data: UnbindRequested, line: _Line) -> str:
    if data.kind == "pause":
        asks = line.text("UnbindRequested.pause", months=data.pause_months)
    elif data.kind == "switch":
        asks = line.text(
            "UnbindRequested.switch", last4=data.new_account_last4, lender=line.lender(data.new_lender)
        )
    else:
        asks = line.text("UnbindRequested.unbind")
    device = (
        line.text("UnbindRequested.device", device=data.device_id)
        if data.device_id
        else line.text("UnbindRequested.no_device")
    )
    acknowledged = line.listed((line.code("blocker", code) for code in data.acknowledged), ", ") or line.text(
        "nothing"
    )
    return line.text(
        "UnbindRequested",
        asks=asks,
        reason=line.code("unbind_reason", data.reason),
        device=device,
        acknowledged=acknowledged,
        channel=line.code("channel", data.channel),
    )


def _risk_assessed(data: RiskAssessed, line: _Line) -> str:
    needs = (
        line.text("RiskAssessed.review")
        if data.decision in ("review", "deny")
        else line.text("RiskAssessed.methods", methods=line.methods(data.required_methods))
    )
    reasons = line.listed(
        (
            line.text("RiskAssessed.reason", code=line.code("signal", reason.code), weight=reason.weight)
            for reason in data.reasons
        ),
        " ",
    )
    decision = line.emphasize(line.code("decision", data.decision), "decision")
    return line.text(
        "RiskAssessed",
        score=data.score,
        decision=decision,
        needs=needs,
        reasons=reasons or line.text("RiskAssessed.no_signals"),
    )


def _review_decided(data: ReviewDecided, line: _Line) -> str:
    # A dispute's decision has its own words (uphold or reject it) where codes are worded.
    decision = line.code(
        "decision",
        f"dispute_{data.decision}"
        if data.origin == "dispute" and line.locale != Locale.EN
        else data.decision,
    )
    return line.text(
        "ReviewDecided",
        decision=line.emphasize(decision, "decision"),
        reviewer=data.reviewer,
        case=line.text("ReviewDecided.case", origin=line.code("origin", data.origin))
        if data.origin != "risk"
        else "",
        reason=line.text("ReviewDecided.reason", reason=line.code("reason", data.reason))
        if data.reason
        else "",
        needs=line.text("ReviewDecided.needs", methods=line.methods(data.required_methods))
        if data.required_methods
        else "",
        message=line.text("ReviewDecided.message") if data.customer_message else "",
    )


def _failed(data: VerificationFailed | BindingVerificationFailed, line: _Line) -> str:
    return line.text(type(data).__name__, reason=line.emphasize(line.code("failure", data.reason), "failure"))


def _account_switched(data: RepaymentAccountSwitched, line: _Line) -> str:
    return line.text(
        "RepaymentAccountSwitched",
        previous=data.previous_account_last4,
        last4=data.account_last4,
        lender=line.lender(data.lender),
        mandates=data.mandates_cancelled,
    )


def _binding_requested(data: BindingRequested, line: _Line) -> str:
    auto_debit = line.text("BindingRequested.asked" if data.auto_debit else "BindingRequested.not_asked")
    return line.text(
        "BindingRequested",
        last4=data.account_last4,
        lender=line.lender(data.lender),
        auto_debit=auto_debit,
        verification=data.verification_id,
    )


_DESCRIBE: dict[type[Event], Callable[[Any, _Line], str]] = {
    UnbindRequested: _unbind_requested,
    RiskAssessed: _risk_assessed,
    ReviewDecided: _review_decided,
    VerificationRequested: lambda data, line: line.text(
        "VerificationRequested",
        verification=data.verification_id,
        methods=line.methods(data.methods),
        expires=line.time(data.expires_at),
    ),
    Verified: lambda data, line: line.text("Verified", methods=line.methods(data.methods)),
    VerificationFailed: _failed,
    BindingVerificationFailed: _failed,
    UnbindRejected: lambda data, line: line.text(
        "UnbindRejected", reason=line.emphasize(line.code("outcome", data.reason), "failure")
    ),
    BiometricCounterRegressed: lambda data, line: line.text(
        "BiometricCounterRegressed",
        device=data.device_id,
        counter=data.counter,
        last_counter=data.last_counter,
    ),
    UnbindCompleted: lambda data, line: line.text(
        "UnbindCompleted",
        mandates=data.mandates_cancelled,
        before=data.credit_limit_before,
        after=data.credit_limit_after,
    ),
    AutoDebitPaused: lambda data, line: line.text(
        "AutoDebitPaused", mandate=data.mandate_id, months=data.months, resumes=data.resumes_on.isoformat()
    ),
    AutoDebitResumed: lambda data, line: line.text("AutoDebitResumed", mandate=data.mandate_id),
    RepaymentAccountSwitched: _account_switched,
    UnbindAppealed: lambda data, line: line.text("UnbindAppealed"),
    BindingRequested: _binding_requested,
    BindingVerified: lambda data, line: line.text("BindingVerified"),
    MandateRefused: lambda data, line: line.text(
        "MandateRefused",
        mandate=data.mandate_id,
        lender=line.lender(data.lender),
        reason=line.emphasize(line.code("refusal", data.reason), "failure"),
    ),
    UnbindDisputed: lambda data, line: line.text(
        "UnbindDisputed", reason=line.code("dispute_reason", data.reason)
    ),
    BindingCreated: lambda data, line: line.text(
        "BindingCreated",
        last4=data.account_last4,
        auto_debit=line.text("BindingCreated.awaits" if data.auto_debit else "BindingCreated.not_asked"),
    ),
    MandateRequested: lambda data, line: line.text(
        "MandateRequested", mandate=data.mandate_id, lender=line.lender(data.lender), last4=data.account_last4
    ),
    MandateConfirmed: lambda data, line: line.text(
        "MandateConfirmed",
        mandate=data.mandate_id,
        lender=line.lender(data.lender),
        before=data.credit_limit_before,
        after=data.credit_limit_after,
    ),
    UnbindCancelled: lambda data, line: line.text("UnbindCancelled"),
    UnbindExpired: lambda data, line: line.text("UnbindExpired"),
    DeviceEnrolled: lambda data, line: line.text("DeviceEnrolled", device=data.device_id),
    DeviceRevoked: lambda data, line: line.text("DeviceRevoked", device=data.device_id),
}
DESCRIBED: frozenset[type[Event]] = frozenset(_DESCRIBE)


def describe_event(data: Event, emphasize: Emphasis = _plain, locale: str = Locale.EN) -> str:
    """The event's line in `locale` (English unless told); "" for a type no one reads a line of."""
    describe = _DESCRIBE.get(type(data))
    return describe(data, _Line(locale, emphasize)) if describe else ""


def describe_in_every_locale(data: Event) -> dict[str, str]:
    return {locale: describe_event(data, locale=locale) for locale in LOCALES}
