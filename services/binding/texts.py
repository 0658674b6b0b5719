"""Customer-facing wording of the binding service, in zh-CN (the default) and en."""

from __future__ import annotations

DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")

_TEXTS: dict[str, dict[str, str]] = {
    "blocker.INSTALMENT_DUE_SOON": {
        "zh-CN": "当期房贷 {amount} 元将于 {due_date} 自动扣款。解绑后不再自动扣款，请先自行还款，或确认您会在到期前自行还款。",
        "en": "This period's instalment of {amount} CNY is due on {due_date} by auto-debit. After unbinding it will not be collected: "
        "repay it first, or confirm you will repay it yourself before it is due.",
    },
    "blocker.OVERDUE": {
        "zh-CN": "您有逾期未还的房贷 {amount} 元（应还日 {due_date}）。请先结清逾期款项再解绑。",
        "en": "An instalment of {amount} CNY due on {due_date} is overdue. Settle it before unbinding.",
    },
    "blocker.UNBIND_IN_PROGRESS": {
        "zh-CN": "该绑定已有一笔处理中的解绑申请。",
        "en": "An unbind request for this binding is already in progress.",
    },
    "blocker.CHANGE_IN_PROGRESS": {
        "zh-CN": "该绑定已有一笔处理中的申请（暂停自动扣款或更换还款账户），请等它办完再操作。",
        "en": "A request to pause the auto-debit or switch the repayment account of this binding is already in progress; wait until it is done.",
    },
    "alternative.pause.title": {"zh-CN": "暂停自动扣款", "en": "Pause auto-debit"},
    "alternative.pause.summary": {
        "zh-CN": "不解绑，只让自动扣款停 1 到 3 个月，到期自动恢复。适合近期需要灵活安排资金的情况。",
        "en": "Keep the binding and stop only the auto-debit, for 1 to 3 months; it starts again by itself. Useful when you need room in your budget for a while.",
    },
    "alternative.pause.loses": {
        "zh-CN": "暂停期间不会自动扣款，每期房贷需要您自己按时还款",
        "en": "While paused nothing is auto-debited: pay each instalment yourself, on time",
    },
    "alternative.switch.title": {"zh-CN": "更换还款账户", "en": "Switch the repayment account"},
    "alternative.switch.summary": {
        "zh-CN": "不解绑，把绑定换到您的另一个房贷还款账户，验证一次即可，权益全部保留。适合转贷或换了银行卡的情况。",
        "en": "Keep the binding and move it to another mortgage repayment account of yours in one verified step, with every benefit. "
        "Useful if you refinanced or changed bank.",
    },
    "alternative.switch.loses.old_mandate": {
        "zh-CN": "尾号 {account_last4} 账户的自动扣款随即取消",
        "en": "Auto-debit on the account ending {account_last4} stops at once",
    },
    "alternative.switch.loses.lender": {
        "zh-CN": "新账户的自动扣款要等贷款机构确认后才开始；如果机构不同意，额度提升将收回",
        "en": "Auto-debit on the new account starts once its lender confirms it; if the lender declines, the credit limit increase is withdrawn",
    },
    "alternative.keeps.binding": {"zh-CN": "绑定关系保持不变", "en": "The binding stays"},
    "alternative.keeps.limit": {"zh-CN": "信用额度保持 {credit_limit} 元", "en": "Your credit limit stays at {credit_limit} CNY"},
    "alternative.unavailable.no_auto_debit": {
        "zh-CN": "该绑定目前没有生效中的自动扣款，无需暂停。",
        "en": "This binding has no auto-debit running, so there is nothing to pause.",
    },
    "alternative.unavailable.paused": {
        "zh-CN": "自动扣款已暂停，将于 {resumes_on} 自动恢复。",
        "en": "The auto-debit is already paused; it resumes by itself on {resumes_on}.",
    },
    "alternative.unavailable.in_progress": {
        "zh-CN": "该绑定已有一笔处理中的申请，请等它办完再操作。",
        "en": "This binding already has a request in progress; wait until it is done.",
    },
    "credit.effect": {
        "zh-CN": "解绑本身不会作为违约记入征信；但部分机构可能将取消自动扣款视为还款意愿降低。请确保之后每期按时还款。",
        "en": "Unbinding itself is not reported as a default; some institutions may read the end of auto-debit as a lower willingness to repay. "
        "Keep paying every instalment on time.",
    },
    "credit.effect.overdue": {
        "zh-CN": "您当前有逾期款项，逾期记录可能已影响征信。",
        "en": "You have an overdue instalment, which may already affect your credit record.",
    },
    "benefit.interest_free_days": {
        "zh-CN": "免息期延长 {value} 天",
        "en": "{value} extra interest-free days",
    },
    "benefit.limit_uplift": {
        "zh-CN": "信用额度提升 {value} 元",
        "en": "Credit limit raised by {value} CNY",
    },
}


def negotiate_locale(accept_language: str | None) -> str:
    """The first supported language of an Accept-Language header (quality order), else zh-CN."""
    if not accept_language:
        return DEFAULT_LOCALE
    ranked: list[tuple[float, str]] = []
    for part in accept_language.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((quality, tag.strip().lower()))
    for _, tag in sorted(ranked, key=lambda item: -item[0]):
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LOCALE


def text(key: str, locale: str, **values: object) -> str:
    variants = _TEXTS[key]
    return (variants.get(locale) or variants[DEFAULT_LOCALE]).format(**values)
