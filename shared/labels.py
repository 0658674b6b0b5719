"""Staff's words for the codes the event stream carries, in every locale: one table for the
dashboard's feed lines (`shared.describe`) and its page (served as `/static/labels.js`, merged into
the page's catalogues by `static/i18n.js`), so the two never word a code differently.

Keys are `group.code`, as the page names them. Customers never read these (their services word
outcomes in their own catalogues); a code no group knows is shown as it is, which only the lender's
own refusal codes and a new client channel can be.
"""

from __future__ import annotations

from shared.events import DenialReason
from shared.i18n import LOCALES, Catalogue

_VERIFICATION_FAILURES = {
    "expired": {"en": "not verified in time", "zh-CN": "验证超时"},
    "too_many_attempts": {"en": "too many wrong attempts", "zh-CN": "验证错误次数过多"},
}
_DENIAL_REASONS = {
    DenialReason.IDENTITY_NOT_CONFIRMED: {"en": "identity not confirmed", "zh-CN": "身份未能确认"},
    DenialReason.CUSTOMER_UNREACHABLE: {"en": "customer unreachable", "zh-CN": "无法联系到客户"},
    DenialReason.ACCOUNT_SECURITY_RISK: {"en": "account security risk", "zh-CN": "账户存在安全风险"},
    DenialReason.OUTSTANDING_REPAYMENT: {"en": "outstanding repayment", "zh-CN": "存在未结清的还款"},
    DenialReason.LENDER_REQUIREMENT: {"en": "lender requirement", "zh-CN": "贷款机构要求"},
    DenialReason.OTHER: {"en": "other (say why in the message)", "zh-CN": "其他（请在留言中说明）"},
}
_OUTCOMES = {
    "risk_denied": {"en": "denied by the risk rules", "zh-CN": "风控规则拒绝"},
    "review_denied": {"en": "denied by a reviewer", "zh-CN": "人工审核拒绝"},
    "verification_failed": {"en": "verification failed", "zh-CN": "身份验证未通过"},
    "no_auto_debit": {"en": "no auto-debit left to pause", "zh-CN": "没有可暂停的自动扣款"},
}


def _grouped(group: str, texts: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {f"{group}.{code}": variants for code, variants in texts.items()}


def _detailed(outcome: str, details: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """`outcome.<outcome>:<detail>` (how binding records a request's outcome), worded from both parts."""
    shapes = {"en": "{outcome}: {detail}", "zh-CN": "{outcome}（{detail}）"}
    return {
        f"outcome.{outcome}:{detail}": {
            locale: shapes[locale].format(outcome=_OUTCOMES[outcome][locale], detail=variants[locale])
            for locale in LOCALES
        }
        for detail, variants in details.items()
    }


LABELS = Catalogue(
    {
        # What risk decided, and what a reviewer decided (a dispute's own words for it).
        "decision.allow": {"en": "allow", "zh-CN": "放行"},
        "decision.step_up": {"en": "step up", "zh-CN": "加强验证"},
        "decision.review": {"en": "review", "zh-CN": "人工审核"},
        "decision.deny": {"en": "deny", "zh-CN": "拒绝"},
        "decision.approve": {"en": "approve", "zh-CN": "批准"},
        "decision.dispute_approve": {"en": "uphold the dispute", "zh-CN": "支持争议"},
        "decision.dispute_deny": {"en": "reject the dispute", "zh-CN": "驳回争议"},
        "kind.unbind": {"en": "unbind", "zh-CN": "解绑"},
        "kind.pause": {"en": "pause auto-debit", "zh-CN": "暂停自动扣款"},
        "kind.switch": {"en": "switch account", "zh-CN": "更换还款账户"},
        "origin.risk": {"en": "risk score", "zh-CN": "风险评分"},
        "origin.appeal": {"en": "appeal", "zh-CN": "申诉"},
        "origin.dispute": {"en": "dispute", "zh-CN": "争议"},
        "method.otp": {"en": "SMS code", "zh-CN": "短信验证码"},
        "method.biometric": {"en": "fingerprint", "zh-CN": "指纹"},
        "unbind_reason.risk_control": {"en": "risk control", "zh-CN": "风险控制"},
        "unbind_reason.fund_planning": {"en": "fund planning", "zh-CN": "资金规划"},
        "unbind_reason.lender_change": {"en": "changing lender", "zh-CN": "更换贷款机构"},
        "unbind_reason.other": {"en": "other", "zh-CN": "其他"},
        "dispute_reason.not_requested_by_me": {"en": "not requested by the customer", "zh-CN": "非本人申请"},
        "dispute_reason.unbound_by_mistake": {"en": "unbound by mistake", "zh-CN": "误操作解绑"},
        "dispute_reason.repayment_problem": {"en": "repayment problem", "zh-CN": "还款出现问题"},
        "dispute_reason.other": {"en": "other", "zh-CN": "其他"},
        # A reviewer's reason: to deny an unbind request, to approve one, or what a dispute turned out to be.
        **_grouped("reason", _DENIAL_REASONS),
        "reason.identity_confirmed_by_call": {
            "en": "identity confirmed by a call",
            "zh-CN": "已电话核实身份",
        },
        "reason.documents_checked": {"en": "documents checked", "zh-CN": "已核验材料"},
        "reason.behaviour_explained": {"en": "behaviour explained", "zh-CN": "客户已说明异常情况"},
        "reason.false_positive": {"en": "false positive", "zh-CN": "误报"},
        "reason.unauthorised_unbind": {
            "en": "unbind not authorised by the customer",
            "zh-CN": "非客户本人授权的解绑",
        },
        "reason.bank_error": {"en": "bank error", "zh-CN": "银行操作失误"},
        "reason.repayment_problem_resolved": {"en": "repayment problem resolved", "zh-CN": "还款问题已解决"},
        "reason.requested_by_customer": {"en": "requested by the customer", "zh-CN": "确为客户本人申请"},
        "reason.no_error_found": {"en": "no error found", "zh-CN": "未发现差错"},
        "reason.referred_to_lender": {"en": "referred to the lender", "zh-CN": "已转交贷款机构处理"},
        # Risk's signals (services/risk/service.py SIGNALS, and the request context risk keeps).
        "signal.device_unknown": {"en": "device not seen before", "zh-CN": "未识别的设备"},
        "signal.device_recent": {
            "en": "device first seen under 7 days ago",
            "zh-CN": "设备首次出现不足 7 天",
        },
        "signal.phone_changed_recently": {
            "en": "phone number changed in the last 30 days",
            "zh-CN": "近 30 天更换过手机号",
        },
        "signal.requests_24h": {"en": "other unbind requests, last 24 h", "zh-CN": "24 小时内的其他解绑请求"},
        "signal.failed_verifications_24h": {
            "en": "failed verifications, last 24 h",
            "zh-CN": "24 小时内验证失败次数",
        },
        "signal.counter_regressions_24h": {
            "en": "device counter regressions, last 24 h",
            "zh-CN": "24 小时内设备计数器回退次数",
        },
        "signal.night_request": {
            "en": "requested between 00:00 and 06:00",
            "zh-CN": "在 00:00 至 06:00 之间发起",
        },
        "signal.instalment_due_soon": {"en": "instalment due within 3 days", "zh-CN": "3 天内有还款到期"},
        "signal.account_age_days": {"en": "account age (days)", "zh-CN": "开户天数"},
        "signal.ip_changed": {"en": "IP address changed", "zh-CN": "IP 地址变化"},
        "signal.rejections_30d": {"en": "rejected requests, last 30 days", "zh-CN": "30 天内被拒绝的请求"},
        "signal.appeals_30d": {"en": "appeals, last 30 days", "zh-CN": "30 天内的申诉"},
        "signal.account_flagged": {"en": "account flagged", "zh-CN": "账户带有异常标记"},
        "signal.device_id": {"en": "device id", "zh-CN": "设备 ID"},
        "signal.client_ip": {"en": "client IP", "zh-CN": "客户端 IP"},
        # The impact's blockers (services/binding/texts.py `blocker.*`), as a customer acknowledges them.
        "blocker.INSTALMENT_DUE_SOON": {"en": "instalment due soon", "zh-CN": "近期有还款到期"},
        "blocker.OVERDUE": {"en": "overdue instalment", "zh-CN": "有逾期未还的还款"},
        "blocker.UNBIND_IN_PROGRESS": {
            "en": "an unbind already in progress",
            "zh-CN": "已有进行中的解绑申请",
        },
        "blocker.CHANGE_IN_PROGRESS": {
            "en": "a pause or switch already in progress",
            "zh-CN": "已有进行中的暂停扣款或更换账户申请",
        },
        # Where a request came from (the app's X-Client-Channel) or a message went.
        "channel.app": {"en": "app", "zh-CN": "手机 App"},
        "channel.web": {"en": "web", "zh-CN": "网页"},
        "channel.sms": {"en": "SMS", "zh-CN": "短信"},
        "channel.push": {"en": "push", "zh-CN": "推送"},
        "channel.inapp": {"en": "in-app", "zh-CN": "站内信"},
        "channel.email": {"en": "email", "zh-CN": "电子邮件"},
        "channel.institution": {"en": "lender webhook", "zh-CN": "贷款机构回调"},
        # Why a verification failed (VerificationFailed, BindingVerificationFailed).
        **_grouped("failure", _VERIFICATION_FAILURES),
        # A lender's refusal of a mandate: its own codes; the ones binding itself records.
        "refusal.not_given": {"en": "no reason given", "zh-CN": "贷款机构未说明"},
        # Why a request was declined (binding's outcome code, UnbindRejected's reason).
        **_grouped("outcome", _OUTCOMES),
        **_detailed("review_denied", _DENIAL_REASONS),
        **_detailed("verification_failed", _VERIFICATION_FAILURES),
    }
)


def label(group: str, code: object, locale: str) -> str:
    """The words for a code in `locale`; a code the table lacks as it is."""
    key = f"{group}.{code}"
    return LABELS.render(key, locale) if key in LABELS else str(code)


def by_locale() -> dict[str, dict[str, str]]:
    """The table per locale, as the page's catalogues hold texts."""
    return {locale: {key: LABELS.render(key, locale) for key in LABELS.keys()} for locale in LOCALES}
