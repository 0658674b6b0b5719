"""Why a reviewer denied a request (an unbind, a pause, a switch), in a customer's words: the one
catalogue binding (the request's outcome) and notification (the denial notice) both read, for the
fixed list of `shared.events.DenialReason`."""

from __future__ import annotations

from shared.events import DenialReason
from shared.i18n import Catalogue

DENIAL_REASONS = Catalogue(
    {
        DenialReason.IDENTITY_NOT_CONFIRMED: {
            "zh-CN": "未能确认是您本人申请",
            "en": "we could not confirm that the request came from you",
        },
        DenialReason.CUSTOMER_UNREACHABLE: {
            "zh-CN": "我们未能联系上您核实情况",
            "en": "we could not reach you to confirm it",
        },
        DenialReason.ACCOUNT_SECURITY_RISK: {
            "zh-CN": "您的账户存在安全风险，为保护资金安全，暂时无法办理",
            "en": "your account shows a security risk, so to protect your money we cannot do this for now",
        },
        DenialReason.OUTSTANDING_REPAYMENT: {
            "zh-CN": "该账户还有待处理的还款事项，请先处理",
            "en": "there is a repayment on this account to settle first",
        },
        DenialReason.LENDER_REQUIREMENT: {
            "zh-CN": "贷款机构要求暂时保留自动扣款",
            "en": "your lender requires the auto-debit to stay for now",
        },
        DenialReason.OTHER: {
            "zh-CN": "详见审核人员给您的留言",
            "en": "our reviewer explains why in their note to you",
        },
    }
)


def denial_reason(code: str, locale: str) -> str:
    """The reason in `locale`; KeyError (MissingText) for a code not on the list."""
    return DENIAL_REASONS.render(code, locale)
