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
