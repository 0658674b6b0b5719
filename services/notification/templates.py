"""Message kinds, their channels, and their texts in zh-CN (default) and en.

Security messages (codes, and what could mean someone else is unbinding: requested, completed,
rejected or denied by a reviewer, a failed or suspicious verification; or holds a second factor: a
device key added or revoked) go by SMS and to the inbox (some on more channels), ignore quiet hours and cannot be turned
off. The others go by push (SMS when push fails) and to the inbox, wait for the end of quiet hours,
and can be turned off per channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from string import Formatter

DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")
CHANNELS = ("sms", "push", "email", "inapp")
# The code in an `otp_code` or `device_enrolment_code` SMS (either locale), for the development tools
# that read the SMS sink back (`unbind demo`, the tests); it must follow the wording of the texts below.
CODE_IN_SMS = re.compile(r"(?:验证码为|verification code is) (\d{6})")


@dataclass(frozen=True)
class Kind:
    security: bool
    texts: dict[str, tuple[str, str]]  # locale -> (title, body)
    # Channels beyond the usual two (email only when the customer has an address on file).
    extra_channels: tuple[str, ...] = ()

    @property
    def channels(self) -> tuple[str, ...]:
        return (("sms", "inapp") if self.security else ("push", "inapp")) + self.extra_channels


KINDS: dict[str, Kind] = {
    "otp_code": Kind(
        True,
        {
            "zh-CN": ("验证码", "【unbind】您的解绑验证码为 {code}，{ttl_minutes} 分钟内有效。请勿泄露给任何人，工作人员不会索取验证码。"),
            "en": ("Verification code", "[unbind] Your unbind verification code is {code}. It expires in {ttl_minutes} minutes. Never share it; staff will never ask for it."),
        },
    ),
    "device_enrolment_code": Kind(
        True,
        {
            "zh-CN": ("添加设备验证码", "【unbind】您正在为账户添加新设备，验证码为 {code}，{ttl_minutes} 分钟内有效。如非本人操作，请勿提供验证码，并立即联系客服。"),
            "en": (
                "Code to add a device",
                "[unbind] To add a new device to your account, your verification code is {code}. It expires in {ttl_minutes} minutes. "
                "If this was not you, do not share it and contact support at once.",
            ),
        },
    ),
    "device_enrolled": Kind(
        True,
        {
            "zh-CN": ("已添加新设备", "您的账户刚刚添加了一台新设备，可用于身份验证。如非本人操作，请立即在“我的设备”中移除该设备并联系客服。"),
            "en": (
                "New device added",
                "A new device was added to your account and can now be used to verify it is you. "
                "If this was not you, remove it under My devices and contact support at once.",
            ),
        },
        extra_channels=("push", "email"),
    ),
    "device_revoked": Kind(
        True,
        {
            "zh-CN": ("设备已移除", "您账户中的一台设备已被移除，不能再用于身份验证。如非本人操作，请立即联系客服。"),
            "en": ("Device removed", "A device was removed from your account and can no longer be used to verify it is you. If this was not you, contact support at once."),
        },
        extra_channels=("push", "email"),
    ),
    "binding_created": Kind(
        False,
        {
            "zh-CN": ("绑定成功", "尾号 {account_last4} 的房贷还款账户已绑定，信用额度由 {credit_limit_before} 元调整为 {credit_limit_after} 元。"),
            "en": ("Account bound", "Your mortgage repayment account ending {account_last4} is bound; credit limit {credit_limit_before} -> {credit_limit_after} CNY."),
        },
    ),
    "unbind_requested": Kind(
        True,
        {
            "zh-CN": (
                "解绑申请已提交",
                "您已申请解绑房贷还款账户。解绑后将不再自动扣款，请按时自行还款，并留意信用额度变化和绑定权益的失效。如非本人操作，请立即取消申请并联系客服。",
            ),
            "en": (
                "Unbind request received",
                "You asked to unbind your mortgage repayment account. After unbinding, instalments are no longer auto-debited: repay on time yourself, "
                "and expect a lower credit limit and lost benefits. If this was not you, cancel the request now and contact support.",
            ),
        },
    ),
    "verification_requested": Kind(
        False,
        {
            "zh-CN": ("请完成身份验证", "请在 {expires_at} 前完成身份验证（{methods}）以继续解绑。"),
            "en": ("Verify it is you", "Complete the identity check ({methods}) before {expires_at} to go on with the unbinding."),
        },
    ),
    "verified": Kind(
        False,
        {
            "zh-CN": ("身份验证通过", "身份验证已通过（{methods}），正在为您解绑。"),
            "en": ("Identity verified", "Your identity is verified ({methods}); the unbinding is under way."),
        },
    ),
    "verification_failed": Kind(
        True,
        {
            "zh-CN": ("身份验证未通过", "身份验证未通过（{reason}），解绑申请未能继续。如非本人操作，请尽快修改密码并联系客服。"),
            "en": (
                "Verification failed",
                "The identity check failed ({reason}) and the unbind request cannot go on. If this was not you, change your password and contact support.",
            ),
        },
    ),
    "biometric_counter_regressed": Kind(
        True,
        {
            "zh-CN": ("设备安全提醒", "我们拒绝了一次来自设备 {device_id} 的异常签名。如非本人操作，请立即联系客服。"),
            "en": ("Device security alert", "We refused an unusual signature from device {device_id}. If this was not you, contact support at once."),
        },
    ),
    "unbind_completed": Kind(
        True,
        {
            "zh-CN": (
                "解绑完成",
                "房贷还款账户已解绑，已取消 {mandates_cancelled} 项自动扣款，信用额度由 {credit_limit_before} 元调整为 {credit_limit_after} 元。"
                "接下来请：1. 立即到贷款机构查看还款状态；2. 如有需要，请贷款机构调整还款计划；3. 如解绑并非本人操作或结果有误，可在 7 天内于申请详情中提出异议。",
            ),
            "en": (
                "Unbinding complete",
                "Your mortgage repayment account is unbound: {mandates_cancelled} auto-debit(s) cancelled, credit limit {credit_limit_before} -> {credit_limit_after} CNY. "
                "Next: 1. check the repayment status at your lender now; 2. if needed, ask your lender to adjust the repayment plan; "
                "3. if you did not ask for this or something is wrong, dispute it from the request page within 7 days.",
            ),
        },
        extra_channels=("email",),
    ),
    "unbind_rejected": Kind(
        True,
        {
            "zh-CN": ("解绑未通过", "您的解绑申请未通过（原因：{reason}）。如有疑问，可在申请详情中提交申诉（仅限一次）。"),
            "en": ("Unbinding rejected", "Your unbind request was rejected (reason: {reason}). If you disagree, you can appeal once from the request details."),
        },
    ),
    "unbind_cancelled": Kind(
        False,
        {
            "zh-CN": ("解绑已取消", "您的解绑申请已取消，绑定与自动扣款保持不变。"),
            "en": ("Unbinding cancelled", "Your unbind request is cancelled; the binding and its auto-debit stay as they were."),
        },
    ),
    "unbind_expired": Kind(
        False,
        {
            "zh-CN": ("解绑申请已过期", "您的解绑申请未在规定时间内完成，已自动关闭，绑定保持不变。如仍需解绑，请重新申请。"),
            "en": ("Unbind request expired", "Your unbind request was not completed in time and is closed; the binding is unchanged. Ask again if you still want to unbind."),
        },
    ),
    "unbind_appealed": Kind(
        False,
        {
            "zh-CN": ("申诉已受理", "我们已收到您的申诉，工作人员将尽快复核。"),
            "en": ("Appeal received", "We received your appeal; a reviewer will look at it soon."),
        },
    ),
    "review_approved": Kind(
        False,
        {
            "zh-CN": ("解绑申请已通过审核", "您的解绑申请已通过人工审核。为保障账户安全，请在申请详情中完成短信验证码和设备验证，验证通过后即为您解绑。"),
            "en": (
                "Unbind request approved",
                "Your unbind request passed our review. To keep your account safe, complete the SMS code and the check on your device from the request page; "
                "once both pass, we unbind the account.",
            ),
        },
    ),
    "review_denied": Kind(
        True,
        {
            "zh-CN": ("解绑申请未通过审核", "很抱歉，您的解绑申请经人工审核未通过，原因：{denial_reason}。绑定和自动扣款保持不变。如有异议，可在申请详情中申诉一次。"),
            "en": (
                "Unbind request declined",
                "Sorry, after review we could not approve your unbind request: {denial_reason}. The binding and its auto-debit stay as they are. "
                "If you disagree, you can appeal once from the request page.",
            ),
        },
    ),
    "appeal_denied": Kind(
        True,
        {
            "zh-CN": ("申诉未通过", "您的申诉已由工作人员重新审核，解绑申请仍未能通过，原因：{denial_reason}。绑定和自动扣款保持不变。如需帮助，请联系客服。"),
            "en": (
                "Appeal declined",
                "Our staff looked at your unbind request again and still could not approve it: {denial_reason}. "
                "The binding and its auto-debit stay as they are. Contact support if you need help.",
            ),
        },
    ),
    "dispute_received": Kind(
        False,
        {
            "zh-CN": ("已收到您的异议", "我们已收到您对这次解绑提出的异议，会安排专人尽快核实，并通过站内信或电话与您联系。"),
            "en": ("Dispute received", "We have your dispute of this unbinding. A member of our staff will look into it soon and contact you in the app or by phone."),
        },
    ),
    "dispute_closed": Kind(
        False,
        {
            "zh-CN": ("异议处理结果", "您对这次解绑提出的异议已处理完毕：{dispute_outcome}"),
            "en": ("Your dispute has been handled", "We have looked into your dispute of the unbinding: {dispute_outcome}"),
        },
    ),
    "follow_up_reminder": Kind(
        False,
        {
            "zh-CN": ("还款提醒", "解绑已完成一天。请到贷款机构确认本期还款状态，避免逾期；如需调整还款计划，请联系贷款机构。"),
            "en": (
                "Repayment reminder",
                "It has been a day since the unbinding. Check this period's repayment status at your lender so nothing falls overdue, "
                "and ask them to adjust the plan if needed.",
            ),
        },
    ),
}

SECURITY_KINDS = frozenset(kind for kind, spec in KINDS.items() if spec.security)

# Parameters that are codes, rendered as the words of the message's locale: parameter -> code -> locale -> words.
LABELS: dict[str, dict[str, dict[str, str]]] = {
    # Why a reviewer denied an unbind request (shared.events.DenialReason).
    "denial_reason": {
        "identity_not_confirmed": {"zh-CN": "未能确认是您本人申请", "en": "we could not confirm that the request came from you"},
        "customer_unreachable": {"zh-CN": "我们未能联系上您核实情况", "en": "we could not reach you to confirm it"},
        "account_security_risk": {
            "zh-CN": "您的账户存在安全风险，为保护资金安全，暂时不能解绑",
            "en": "your account shows a security risk, so to protect your money it cannot be unbound for now",
        },
        "outstanding_repayment": {"zh-CN": "该账户还有待处理的还款事项，请先处理", "en": "there is a repayment on this account to settle first"},
        "lender_requirement": {"zh-CN": "贷款机构要求暂时保留自动扣款", "en": "your lender requires the auto-debit to stay for now"},
        "other": {"zh-CN": "详见文末审核人员留言", "en": "our reviewer explains why in the note at the end"},
    },
    # What came of a customer's dispute of a completed unbind (the reviewer approved or denied it).
    "dispute_outcome": {
        "approve": {
            "zh-CN": "情况属实，工作人员会尽快联系您，协助处理后续事宜。",
            "en": "you were right, and a member of our staff will contact you soon to put things right.",
        },
        "deny": {
            "zh-CN": "经核实，本次解绑办理无误，结果维持不变。如需帮助，请联系客服。",
            "en": "we found the unbinding was carried out correctly, so it stands. Contact support if you need help.",
        },
    },
}
# Appended to a message when the reviewer wrote the customer one (`reviewer_message`).
REVIEWER_MESSAGE = {"zh-CN": "审核人员留言：{reviewer_message}", "en": " A note from your reviewer: {reviewer_message}"}


def render(kind: str, locale: str, params: dict[str, object]) -> tuple[str, str]:
    """Render strictly: an unknown kind or a missing parameter is an error, never a blank."""
    spec = KINDS.get(kind)
    if spec is None:
        raise KeyError(f"no template {kind!r}")
    title, body = spec.texts.get(locale) or spec.texts[DEFAULT_LOCALE]
    if params.get("reviewer_message"):
        body += REVIEWER_MESSAGE.get(locale) or REVIEWER_MESSAGE[DEFAULT_LOCALE]
    needed = {name for _, name, _, _ in Formatter().parse(body) if name}
    if missing := needed - params.keys():
        raise KeyError(f"template {kind!r} lacks parameters {sorted(missing)}")
    values = {name: _value(name, value, locale) for name, value in params.items() if name in needed}
    return title, body.format_map(values)


def _value(name: str, value: object, locale: str) -> object:
    if name in LABELS:
        words = LABELS[name][str(value)]
        return words.get(locale) or words[DEFAULT_LOCALE]
    return ", ".join(map(str, value)) if isinstance(value, list) else value
