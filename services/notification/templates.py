"""Message kinds, their channels, and their texts in zh-CN (default) and en.

Security messages (codes, and what could mean someone else is unbinding, pausing the auto-debit or
switching the account: requested, done, rejected or denied by a reviewer, a failed or suspicious
verification; or holds a second factor: a device key added or revoked; or tried to bind an account
and failed its code) go by SMS and to the inbox (some on more channels) and cannot be turned off. The others go by push (SMS when push fails)
and to the inbox, and can be turned off per channel.

When: the inbox copy is written at once, always. Quiet hours hold only the kinds that can wait
(`can_wait`): neither security nor about a request still open (a binding made, a request cancelled
or expired, the reminder after an unbind). Everything else goes at once. A message about an open
request's current stage (`STAGE_KINDS`: neither security nor able to wait) goes stale once the
request moves on: a queued one is then never sent (status `superseded`); see `service.dispatch_due`.

A text names what it is about as the customer knows it: `{account}` ("示例银行 尾号 4821 的房贷还款账户")
and `{device}` (the name the customer gave it). Its variables are facts (codes, amounts, times), put
into words here (`render`): a reason code becomes a phrase of `PHRASES`, an amount "9,700 元". What a
reviewer wrote to the customer (`reviewer_message`) follows the text, marked as theirs.
Every SMS begins with the sender's signature (a setting), added when it is sent.

A message about a request that pauses the auto-debit or switches the account (not an unbind) is the
same kind, in that request's own words: the kind's `variants`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from shared.denials import denial_reason
from shared.i18n import DEFAULT_LOCALE, LOCALES, Catalogue, join, money
from shared.lenders import LENDERS

__all__ = [
    "CHANNELS",
    "CODE_IN_SMS",
    "DEFAULT_LOCALE",
    "KINDS",
    "LOCALES",
    "PROBLEM_TEXTS",
    "SECURITY_KINDS",
    "STAGE_KINDS",
    "AccountRef",
    "Kind",
    "render",
]

CHANNELS = ("sms", "push", "email", "inapp")
# The code in an `otp_code`, `device_enrolment_code` or `binding_code` SMS (either locale), for the development tools
# that read the SMS sink back (`unbind demo`, the tests); it must follow the wording of the texts below.
CODE_IN_SMS = re.compile(r"(?:验证码为|verification code is) (\d{6})")


@dataclass(frozen=True)
class Kind:
    security: bool
    texts: dict[str, tuple[str, str]]  # locale -> (title, body)
    # Channels beyond the usual two (email only when the customer has an address on file).
    extra_channels: tuple[str, ...] = ()
    # Held until the end of the customer's quiet hours: nothing in it is urgent or about an open request.
    can_wait: bool = False
    # Its texts about a request of another kind than an unbind (`pause`, `switch`: shared.events.RequestKind),
    # saying what that request asks.
    variants: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.security and self.can_wait:
            raise ValueError("a security message never waits")

    @property
    def channels(self) -> tuple[str, ...]:
        return (("sms", "inapp") if self.security else ("push", "inapp")) + self.extra_channels


KINDS: dict[str, Kind] = {
    "otp_code": Kind(
        True,
        {
            "zh-CN": (
                "解绑验证码",
                "您正在解绑{account}，验证码为 {code}，{ttl_minutes} 分钟内有效。请勿泄露给他人，工作人员不会向您索取验证码。",
            ),
            "en": (
                "Your unbind code",
                "To unbind {account}, your verification code is {code}. It expires in {ttl_minutes} minutes. Never share it: we will never ask you for it.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": (
                    "暂停扣款验证码",
                    "您正在申请暂停{account}的自动扣款，验证码为 {code}，{ttl_minutes} 分钟内有效。请勿泄露给他人，工作人员不会向您索取验证码。",
                ),
                "en": (
                    "Your code to pause auto-debit",
                    "To pause the auto-debit of {account}, your verification code is {code}. It expires in {ttl_minutes} minutes. Never share it: we will never ask you for it.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "更换账户验证码",
                    "您正在申请将绑定从{account}换到新账户，验证码为 {code}，{ttl_minutes} 分钟内有效。请勿泄露给他人，工作人员不会向您索取验证码。",
                ),
                "en": (
                    "Your code to switch accounts",
                    "To move your binding from {account} to a new account, your verification code is {code}. It expires in {ttl_minutes} minutes. "
                    "Never share it: we will never ask you for it.",
                ),
            },
        },
    ),
    "device_enrolment_code": Kind(
        True,
        {
            "zh-CN": (
                "添加设备验证码",
                "您正在添加新设备{device}，验证码为 {code}，{ttl_minutes} 分钟内有效。如非本人操作，请勿提供验证码，并立即联系客服。",
            ),
            "en": (
                "Your code to add a device",
                "To add the new device {device}, your verification code is {code}. It expires in {ttl_minutes} minutes. "
                "If this was not you, do not share it and contact us at once.",
            ),
        },
    ),
    "binding_code": Kind(
        True,
        {
            "zh-CN": (
                "绑定验证码",
                "您正在绑定{account}，验证码为 {code}，{ttl_minutes} 分钟内有效。如非本人操作，请勿提供验证码，并立即联系客服。",
            ),
            "en": (
                "Your code to bind an account",
                "To bind {account}, your verification code is {code}. It expires in {ttl_minutes} minutes. If this was not you, do not share it and contact us at once.",
            ),
        },
    ),
    "device_enrolled": Kind(
        True,
        {
            "zh-CN": (
                "已添加新设备",
                "您的账户已添加新设备{device}，可用于身份验证。如非本人操作，请立即在“我的设备”中移除该设备并联系客服。",
            ),
            "en": (
                "New device added",
                "The device {device} was added to your account and can now confirm it is you. If this was not you, remove it under My devices and contact us at once.",
            ),
        },
        extra_channels=("push", "email"),
    ),
    "device_revoked": Kind(
        True,
        {
            "zh-CN": (
                "设备已移除",
                "设备{device}已从您的账户中移除，不能再用于身份验证。如非本人操作，请立即联系客服。",
            ),
            "en": (
                "Device removed",
                "The device {device} was removed from your account and can no longer confirm it is you. If this was not you, contact us at once.",
            ),
        },
        extra_channels=("push", "email"),
    ),
    "binding_verification_failed": Kind(
        True,
        {
            "zh-CN": (
                "账户未能绑定",
                "{account}未能绑定：验证码输错次数过多或已过期，本次绑定已取消，您的账户没有任何变化。如需绑定，请重新操作；如非本人操作，请尽快修改登录密码并联系客服。",
            ),
            "en": (
                "Account not bound",
                "We did not bind {account}: the code was entered wrong too often or ran out, so nothing changed. Start again if you still want to bind it. "
                "If this was not you, change your password and contact us.",
            ),
        },
    ),
    "binding_created": Kind(
        False,
        {
            "zh-CN": ("绑定成功", "{account}已绑定到您的信用账户。"),
            "en": ("Account bound", "We bound {account} to your credit account."),
        },
        can_wait=True,
    ),
    "mandate_requested": Kind(
        False,
        {
            "zh-CN": (
                "自动扣款待开通",
                "我们已向贷款机构申请为{account}开通自动扣款，对方确认后会通知您，届时信用额度将相应提升。",
            ),
            "en": (
                "Auto-debit awaiting your lender",
                "We have asked your lender to set up auto-debit for {account}. We will let you know once they confirm; your credit limit rises then.",
            ),
        },
        variants={
            "switch": {
                "zh-CN": (
                    "新账户自动扣款待开通",
                    "我们已向贷款机构申请为{account}开通自动扣款，对方确认后会通知您。开通前不会自动扣款，请按时自行还款。",
                ),
                "en": (
                    "Auto-debit on your new account awaits its lender",
                    "We have asked your lender to set up auto-debit for the account you switched to, {account}. We will let you know once they confirm; "
                    "until then nothing is collected, so repay on time yourself.",
                ),
            },
        },
    ),
    "mandate_confirmed": Kind(
        False,
        {
            "zh-CN": (
                "自动扣款已开通",
                "贷款机构已为{account}开通自动扣款，此后每期房贷将按时自动扣款。您的信用额度已由 {credit_limit_before}提升至 {credit_limit_after}。",
            ),
            "en": (
                "Auto-debit is on",
                "Your lender set up auto-debit for {account}: each instalment is now paid automatically. "
                "Your credit limit is now {credit_limit_after} (it was {credit_limit_before}).",
            ),
        },
        # The binding request is over: good news can wait for the end of quiet hours.
        can_wait=True,
        variants={
            "switch": {
                "zh-CN": (
                    "新账户自动扣款已开通",
                    "贷款机构已为{account}开通自动扣款，此后每期房贷将按时自动扣款。您的信用额度为 {credit_limit_after}。",
                ),
                "en": (
                    "Auto-debit is on for your new account",
                    "Your lender set up auto-debit for the account you switched to, {account}: each instalment is paid automatically again. "
                    "Your credit limit is {credit_limit_after}.",
                ),
            },
        },
    ),
    "mandate_refused": Kind(
        False,
        {
            "zh-CN": (
                "自动扣款未开通",
                "贷款机构未同意为{account}开通自动扣款。账户仍保持绑定，但信用额度不会提升。请记得每期按时自行还款，如有疑问可咨询贷款机构。",
            ),
            "en": (
                "Auto-debit not set up",
                "Your lender declined auto-debit for {account}. The account stays bound, but your credit limit does not rise. "
                "Remember to repay each instalment yourself; your lender can tell you more.",
            ),
        },
        variants={
            "switch": {
                "zh-CN": (
                    "新账户自动扣款未开通",
                    "贷款机构未同意为{account}开通自动扣款。账户仍保持绑定，但绑定带来的额度提升已收回，信用额度调整为 {credit_limit_after}。"
                    "请记得每期按时自行还款，如有疑问可咨询贷款机构。",
                ),
                "en": (
                    "No auto-debit on your new account",
                    "Your lender declined auto-debit for the account you switched to, {account}. It stays bound, but the credit limit increase from the binding is withdrawn: "
                    "your limit is now {credit_limit_after}. Remember to repay each instalment yourself; your lender can tell you more.",
                ),
            },
        },
    ),
    "unbind_requested": Kind(
        True,
        {
            "zh-CN": (
                "解绑申请已提交",
                "您已申请解绑{account}。解绑后房贷不再自动扣款，请每期按时自行还款；绑定带来的信用额度和权益也将取消。如非本人操作，请立即取消申请并联系客服。",
            ),
            "en": (
                "Unbind request received",
                "You asked to unbind {account}. After that, your mortgage is no longer paid automatically: repay each instalment on time yourself. "
                "The credit limit and benefits the binding gave you will end. If this was not you, cancel the request now and contact us.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": (
                    "暂停自动扣款申请已提交",
                    "您已申请将{account}的自动扣款暂停 {pause_months}。暂停期间不会自动扣款，请每期按时自行还款；绑定、权益和信用额度都保持不变。"
                    "如非本人操作，请立即取消申请并联系客服。",
                ),
                "en": (
                    "Auto-debit pause requested",
                    "You asked to pause the auto-debit of {account} for {pause_months}. While it is paused nothing is collected, so repay each instalment on time "
                    "yourself; the binding, its benefits and your credit limit stay. If this was not you, cancel the request now and contact us.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "更换还款账户申请已提交",
                    "您已申请将绑定从{account}换到{new_account}。换好后原账户的自动扣款随即取消，新账户待贷款机构确认后开通自动扣款，绑定权益保持不变。"
                    "如非本人操作，请立即取消申请并联系客服。",
                ),
                "en": (
                    "Account switch requested",
                    "You asked to move your binding from {account} to {new_account}. Once switched, auto-debit on the current account stops, and on the new one "
                    "it starts when its lender confirms; your benefits stay. If this was not you, cancel the request now and contact us.",
                ),
            },
        },
    ),
    "verification_requested": Kind(
        False,
        {
            "zh-CN": (
                "请完成身份验证",
                "为保障账户安全，请在 {expires_at} 前通过{methods}确认是您本人，以继续解绑{account}。",
            ),
            "en": (
                "Confirm it is you",
                "To go on unbinding {account}, confirm it is you with {methods} before {expires_at}.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": (
                    "请完成身份验证",
                    "为保障账户安全，请在 {expires_at} 前通过{methods}确认是您本人，以继续暂停{account}的自动扣款。",
                ),
                "en": (
                    "Confirm it is you",
                    "To go on pausing the auto-debit of {account}, confirm it is you with {methods} before {expires_at}.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "请完成身份验证",
                    "为保障账户安全，请在 {expires_at} 前通过{methods}确认是您本人，以继续将绑定从{account}换到新账户。",
                ),
                "en": (
                    "Confirm it is you",
                    "To go on moving your binding from {account} to the new account, confirm it is you with {methods} before {expires_at}.",
                ),
            },
        },
    ),
    "verified": Kind(
        False,
        {
            "zh-CN": ("身份验证通过", "身份验证已通过，正在为您解绑{account}。"),
            "en": ("Identity confirmed", "Thank you, it is you. We are now unbinding {account}."),
        },
        variants={
            "pause": {
                "zh-CN": ("身份验证通过", "身份验证已通过，正在为您暂停{account}的自动扣款。"),
                "en": (
                    "Identity confirmed",
                    "Thank you, it is you. We are now pausing the auto-debit of {account}.",
                ),
            },
            "switch": {
                "zh-CN": ("身份验证通过", "身份验证已通过，正在为您将绑定从{account}换到新账户。"),
                "en": (
                    "Identity confirmed",
                    "Thank you, it is you. We are now moving your binding from {account} to the new account.",
                ),
            },
        },
    ),
    "verification_failed": Kind(
        True,
        {
            "zh-CN": (
                "身份验证未通过",
                "由于{reason}，解绑{account}的申请已终止。如非本人操作，请尽快修改登录密码并联系客服。",
            ),
            "en": (
                "Identity check failed",
                "We stopped your request to unbind {account}: {reason}. If this was not you, change your password and contact us.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": (
                    "身份验证未通过",
                    "由于{reason}，暂停{account}自动扣款的申请已终止，自动扣款照常进行。如非本人操作，请尽快修改登录密码并联系客服。",
                ),
                "en": (
                    "Identity check failed",
                    "We stopped your request to pause the auto-debit of {account}: {reason}. The auto-debit goes on. If this was not you, change your password and contact us.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "身份验证未通过",
                    "由于{reason}，更换还款账户的申请已终止，{account}的绑定和自动扣款保持不变。如非本人操作，请尽快修改登录密码并联系客服。",
                ),
                "en": (
                    "Identity check failed",
                    "We stopped your request to move your binding from {account} to a new account: {reason}. Nothing changed. "
                    "If this was not you, change your password and contact us.",
                ),
            },
        },
    ),
    "biometric_counter_regressed": Kind(
        True,
        {
            "zh-CN": (
                "设备安全提醒",
                "我们拦截了来自设备{device}的一次异常验证。如非本人操作，请立即联系客服。",
            ),
            "en": (
                "Device security alert",
                "We blocked an unusual verification from your device {device}. If this was not you, contact us at once.",
            ),
        },
    ),
    "unbind_completed": Kind(
        True,
        {
            "zh-CN": (
                "解绑完成",
                "{account}已解绑，自动扣款已取消，信用额度由 {credit_limit_before}调整为 {credit_limit_after}。"
                "请尽快向贷款机构确认本期房贷的还款安排，之后每期请按时自行还款，以免逾期。如解绑并非本人操作或结果有误，可在 7 天内于申请详情中提出异议。",
            ),
            "en": (
                "Unbinding complete",
                "We unbound {account}: its auto-debit is cancelled and your credit limit is now {credit_limit_after} (it was {credit_limit_before}). "
                "Check this month's repayment with your lender soon, and repay each instalment on time yourself from now on. "
                "If you did not ask for this or something is wrong, dispute it from the request details within 7 days.",
            ),
        },
        extra_channels=("email",),
    ),
    "unbind_rejected": Kind(
        True,
        {
            "zh-CN": (
                "解绑申请未通过",
                "很抱歉，您解绑{account}的申请未获通过，原因：{reason}。如有疑问，可在申请详情中提交申诉（仅限一次）。",
            ),
            "en": (
                "Unbind request declined",
                "Your request to unbind {account} was declined: {reason}. If you disagree, you can appeal once from the request details.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": (
                    "暂停申请未通过",
                    "很抱歉，您暂停{account}自动扣款的申请未获通过，原因：{reason}。自动扣款照常进行。如有疑问，可在申请详情中提交申诉（仅限一次）。",
                ),
                "en": (
                    "Pause request declined",
                    "Your request to pause the auto-debit of {account} was declined: {reason}. The auto-debit goes on. "
                    "If you disagree, you can appeal once from the request details.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "更换申请未通过",
                    "很抱歉，您更换还款账户的申请未获通过，原因：{reason}。{account}的绑定和自动扣款保持不变。如有疑问，可在申请详情中提交申诉（仅限一次）。",
                ),
                "en": (
                    "Switch request declined",
                    "Your request to move your binding from {account} to a new account was declined: {reason}. Nothing changed. "
                    "If you disagree, you can appeal once from the request details.",
                ),
            },
        },
    ),
    "unbind_cancelled": Kind(
        False,
        {
            "zh-CN": ("解绑已取消", "您已取消解绑{account}，绑定和自动扣款保持不变。"),
            "en": (
                "Unbinding cancelled",
                "You cancelled unbinding {account}. The binding and its auto-debit stay as they were.",
            ),
        },
        can_wait=True,
        variants={
            "pause": {
                "zh-CN": ("暂停申请已取消", "您已取消暂停{account}的自动扣款，自动扣款照常进行。"),
                "en": (
                    "Pause cancelled",
                    "You cancelled pausing the auto-debit of {account}. It goes on as before.",
                ),
            },
            "switch": {
                "zh-CN": ("更换申请已取消", "您已取消更换还款账户，{account}的绑定和自动扣款保持不变。"),
                "en": (
                    "Switch cancelled",
                    "You cancelled moving your binding from {account}. The binding and its auto-debit stay as they were.",
                ),
            },
        },
    ),
    "unbind_expired": Kind(
        False,
        {
            "zh-CN": (
                "解绑申请已关闭",
                "您解绑{account}的申请未在规定时间内完成，已自动关闭，绑定保持不变。如仍需解绑，请重新申请。",
            ),
            "en": (
                "Unbind request closed",
                "Your request to unbind {account} was not completed in time and is closed; the binding is unchanged. Ask again if you still want to unbind.",
            ),
        },
        can_wait=True,
        variants={
            "pause": {
                "zh-CN": (
                    "暂停申请已关闭",
                    "您暂停{account}自动扣款的申请未在规定时间内完成，已自动关闭，自动扣款照常进行。如仍需暂停，请重新申请。",
                ),
                "en": (
                    "Pause request closed",
                    "Your request to pause the auto-debit of {account} was not completed in time and is closed; the auto-debit goes on. Ask again if you still want to pause it.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "更换申请已关闭",
                    "您更换还款账户的申请未在规定时间内完成，已自动关闭，{account}的绑定保持不变。如仍需更换，请重新申请。",
                ),
                "en": (
                    "Switch request closed",
                    "Your request to move your binding from {account} was not completed in time and is closed; nothing changed. Ask again if you still want to switch.",
                ),
            },
        },
    ),
    "unbind_under_review": Kind(
        False,
        {
            "zh-CN": (
                "解绑申请审核中",
                "为保障您的资金安全，您解绑{account}的申请需要人工审核，预计 {expected_hours} 小时内给您答复。审核期间，绑定和自动扣款保持不变，请照常按时还款。",
            ),
            "en": (
                "Unbind request under review",
                "To keep your money safe, a member of our team will review your request to unbind {account}. Expect an answer within {expected_hours} hours. "
                "Until then the binding and its auto-debit stay as they are, so keep repaying on time.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": (
                    "暂停申请审核中",
                    "为保障您的资金安全，您暂停{account}自动扣款的申请需要人工审核，预计 {expected_hours} 小时内给您答复。审核期间自动扣款照常进行。",
                ),
                "en": (
                    "Pause request under review",
                    "To keep your money safe, a member of our team will review your request to pause the auto-debit of {account}. "
                    "Expect an answer within {expected_hours} hours; until then the auto-debit goes on.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "更换申请审核中",
                    "为保障您的资金安全，您更换还款账户的申请需要人工审核，预计 {expected_hours} 小时内给您答复。审核期间，{account}的绑定和自动扣款保持不变。",
                ),
                "en": (
                    "Switch request under review",
                    "To keep your money safe, a member of our team will review your request to move your binding from {account}. "
                    "Expect an answer within {expected_hours} hours; until then nothing changes.",
                ),
            },
        },
    ),
    "unbind_appealed": Kind(
        False,
        {
            "zh-CN": (
                "申诉已受理",
                "我们已收到您关于解绑{account}的申诉，工作人员将重新审核，预计 {expected_hours} 小时内给您答复。",
            ),
            "en": (
                "Appeal received",
                "We received your appeal about unbinding {account}. A member of our team will look at it again; expect an answer within {expected_hours} hours.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": (
                    "申诉已受理",
                    "我们已收到您关于暂停{account}自动扣款的申诉，工作人员将重新审核，预计 {expected_hours} 小时内给您答复。",
                ),
                "en": (
                    "Appeal received",
                    "We received your appeal about pausing the auto-debit of {account}. A member of our team will look at it again; "
                    "expect an answer within {expected_hours} hours.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "申诉已受理",
                    "我们已收到您关于更换还款账户的申诉，工作人员将重新审核，预计 {expected_hours} 小时内给您答复。",
                ),
                "en": (
                    "Appeal received",
                    "We received your appeal about switching your repayment account. A member of our team will look at it again; expect an answer within {expected_hours} hours.",
                ),
            },
        },
    ),
    "review_approved": Kind(
        False,
        {
            "zh-CN": (
                "解绑申请已通过审核",
                "您解绑{account}的申请已通过人工审核。为保障账户安全，请在申请详情中完成短信验证码和设备验证，验证通过后即为您解绑。",
            ),
            "en": (
                "Unbind request approved",
                "Your request to unbind {account} passed our review. To keep your account safe, complete the SMS code and the check on your device "
                "from the request details; once both pass, we unbind the account.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": (
                    "暂停申请已通过审核",
                    "您暂停{account}自动扣款的申请已通过人工审核。为保障账户安全，请在申请详情中完成短信验证码和设备验证，验证通过后即为您暂停。",
                ),
                "en": (
                    "Pause request approved",
                    "Your request to pause the auto-debit of {account} passed our review. To keep your account safe, complete the SMS code and the check on your device "
                    "from the request details; once both pass, we pause it.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "更换申请已通过审核",
                    "您更换还款账户的申请已通过人工审核。为保障账户安全，请在申请详情中完成短信验证码和设备验证，验证通过后即为您将绑定从{account}换到新账户。",
                ),
                "en": (
                    "Switch request approved",
                    "Your request to move your binding from {account} to a new account passed our review. To keep your account safe, complete the SMS code and "
                    "the check on your device from the request details; once both pass, we switch it.",
                ),
            },
        },
    ),
    "review_denied": Kind(
        True,
        {
            "zh-CN": (
                "解绑申请未通过审核",
                "很抱歉，您解绑{account}的申请经人工审核未通过，原因：{denial_reason}。绑定和自动扣款保持不变。如有异议，可在申请详情中申诉一次。",
            ),
            "en": (
                "Unbind request declined",
                "Sorry, after review we could not approve your request to unbind {account}: {denial_reason}. The binding and its auto-debit stay as they are. "
                "If you disagree, you can appeal once from the request details.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": (
                    "暂停申请未通过审核",
                    "很抱歉，您暂停{account}自动扣款的申请经人工审核未通过，原因：{denial_reason}。自动扣款照常进行。如有异议，可在申请详情中申诉一次。",
                ),
                "en": (
                    "Pause request declined",
                    "Sorry, after review we could not approve your request to pause the auto-debit of {account}: {denial_reason}. The auto-debit goes on. "
                    "If you disagree, you can appeal once from the request details.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "更换申请未通过审核",
                    "很抱歉，您更换还款账户的申请经人工审核未通过，原因：{denial_reason}。{account}的绑定和自动扣款保持不变。如有异议，可在申请详情中申诉一次。",
                ),
                "en": (
                    "Switch request declined",
                    "Sorry, after review we could not approve your request to move your binding from {account} to a new account: {denial_reason}. Nothing changed. "
                    "If you disagree, you can appeal once from the request details.",
                ),
            },
        },
    ),
    "appeal_denied": Kind(
        True,
        {
            "zh-CN": (
                "申诉未通过",
                "工作人员已重新审核您的申诉，解绑{account}的申请仍未能通过，原因：{denial_reason}。绑定和自动扣款保持不变。如需帮助，请联系客服。",
            ),
            "en": (
                "Appeal declined",
                "Our staff looked at your request to unbind {account} again and still could not approve it: {denial_reason}. "
                "The binding and its auto-debit stay as they are. Contact us if you need help.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": (
                    "申诉未通过",
                    "工作人员已重新审核您的申诉，暂停{account}自动扣款的申请仍未能通过，原因：{denial_reason}。自动扣款照常进行。如需帮助，请联系客服。",
                ),
                "en": (
                    "Appeal declined",
                    "Our staff looked at your request to pause the auto-debit of {account} again and still could not approve it: {denial_reason}. "
                    "The auto-debit goes on. Contact us if you need help.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "申诉未通过",
                    "工作人员已重新审核您的申诉，更换还款账户的申请仍未能通过，原因：{denial_reason}。{account}的绑定和自动扣款保持不变。如需帮助，请联系客服。",
                ),
                "en": (
                    "Appeal declined",
                    "Our staff looked again at your request to switch from {account} to a new account and still could not approve it: {denial_reason}. "
                    "Nothing changed. Contact us if you need help.",
                ),
            },
        },
    ),
    "dispute_received": Kind(
        False,
        {
            "zh-CN": (
                "已收到您的异议",
                "我们已收到您对解绑{account}提出的异议，会安排专人尽快核实，并通过站内信或电话与您联系。",
            ),
            "en": (
                "Dispute received",
                "We have your dispute about unbinding {account}. A member of our staff will look into it soon and contact you in the app or by phone.",
            ),
        },
    ),
    "dispute_closed": Kind(
        False,
        {
            "zh-CN": ("异议处理结果", "您对解绑{account}提出的异议已处理完毕：{dispute_outcome}"),
            "en": (
                "Your dispute has been handled",
                "We have looked into your dispute about unbinding {account}: {dispute_outcome}",
            ),
        },
    ),
    "auto_debit_paused": Kind(
        True,
        {
            "zh-CN": (
                "自动扣款已暂停",
                "{account}的自动扣款已暂停，将于 {resumes_on}自动恢复。暂停期间请每期按时自行还款；绑定、权益和信用额度保持不变。如非本人操作，请立即联系客服。",
            ),
            "en": (
                "Auto-debit paused",
                "The auto-debit of {account} is paused and starts again by itself on {resumes_on}. Until then, repay each instalment on time yourself; "
                "the binding, its benefits and your credit limit stay as they are. If this was not you, contact us at once.",
            ),
        },
    ),
    "auto_debit_resumed": Kind(
        False,
        {
            "zh-CN": (
                "自动扣款已恢复",
                "暂停期已结束，{account}的自动扣款已恢复，此后每期房贷将按时自动扣款。",
            ),
            "en": (
                "Auto-debit is back on",
                "The pause is over: the auto-debit of {account} is on again, and each instalment is paid automatically from now on.",
            ),
        },
        # The pause request ended months ago: this can wait for the end of quiet hours.
        can_wait=True,
    ),
    "repayment_account_switched": Kind(
        True,
        {
            "zh-CN": (
                "还款账户已更换",
                "您的绑定已从{previous_account}换到{account}，权益保持不变。原账户的自动扣款已取消，新账户待贷款机构确认后开通自动扣款，在此之前请按时自行还款。"
                "如非本人操作，请立即联系客服。",
            ),
            "en": (
                "Repayment account switched",
                "Your binding moved from {previous_account} to {account}, with its benefits. Auto-debit on the old account is cancelled; on the new one it starts "
                "once its lender confirms, so repay on time yourself until then. If this was not you, contact us at once.",
            ),
        },
        extra_channels=("email",),
    ),
    "follow_up_reminder": Kind(
        False,
        {
            "zh-CN": ("还款提醒", "{account}已解绑一天。请向贷款机构确认本期房贷的还款安排，避免逾期。"),
            "en": (
                "Repayment reminder",
                "It has been a day since you unbound {account}. Check this month's repayment with your lender so that nothing falls overdue.",
            ),
        },
        can_wait=True,
    ),
}

SECURITY_KINDS = frozenset(kind for kind, spec in KINDS.items() if spec.security)
# What the request is at now (to verify, verified, under review...): stale once it has moved on.
STAGE_KINDS = frozenset(kind for kind, spec in KINDS.items() if not spec.security and not spec.can_wait)
# Checked at import: every kind (and each of its variants) in both locales, with the same variables in each.
_TEXTS = Catalogue(
    {
        f"{key}.{part}": {locale: texts[index] for locale, texts in by_locale.items()}
        for kind, spec in KINDS.items()
        for key, by_locale in (
            (kind, spec.texts),
            *((f"{kind}.{request_kind}", variant) for request_kind, variant in spec.variants.items()),
        )
        for index, part in enumerate(("title", "body"))
    }
)

# The words for the facts a text names. Reasons cover both why a verification failed and why a
# request was rejected (`verification_failed:too_many_attempts` reads as its last part).
PHRASES = Catalogue(
    {
        "account.full": {
            "zh-CN": "{lender} 尾号 {last4} 的房贷还款账户",
            "en": "your {lender} mortgage account ending {last4}",
        },
        "account.last4": {
            "zh-CN": "尾号 {last4} 的房贷还款账户",
            "en": "your mortgage account ending {last4}",
        },
        "account.unknown": {"zh-CN": "房贷还款账户", "en": "your mortgage repayment account"},
        "device.named": {"zh-CN": "“{name}”", "en": "“{name}”"},
        "device.unnamed": {"zh-CN": "“未命名设备”", "en": "“Unnamed device”"},
        "method.otp": {"zh-CN": "短信验证码", "en": "an SMS code"},
        "method.biometric": {
            "zh-CN": "手机指纹或面容验证",
            "en": "a fingerprint or face check on your phone",
        },
        "reason.too_many_attempts": {"zh-CN": "验证错误次数过多", "en": "too many wrong attempts"},
        "reason.expired": {"zh-CN": "验证超时", "en": "the time to confirm ran out"},
        "reason.risk_denied": {"zh-CN": "未通过安全校验", "en": "it did not pass our security checks"},
        "reason.review_denied": {"zh-CN": "人工审核未通过", "en": "it did not pass our review"},
        "reason.verification_failed": {"zh-CN": "身份验证未通过", "en": "the identity check failed"},
        # What came of a customer's dispute of a completed unbind (the reviewer approved or denied it).
        "dispute.approve": {
            "zh-CN": "情况属实，工作人员会尽快联系您，协助处理后续事宜。",
            "en": "you were right, and a member of our staff will contact you soon to put things right.",
        },
        "dispute.deny": {
            "zh-CN": "经核实，本次解绑办理无误，结果维持不变。如需帮助，请联系客服。",
            "en": "we found the unbinding was carried out correctly, so it stands. Contact us if you need help.",
        },
        "months.1": {"zh-CN": "1 个月", "en": "1 month"},
        "months.n": {"zh-CN": "{n} 个月", "en": "{n} months"},
        # `month`: its number in zh-CN, its name in en.
        "date": {"zh-CN": "{year} 年 {month} 月 {day} 日", "en": "{day} {month} {year}"},
        # Follows the text when the reviewer wrote the customer a message.
        "reviewer_message": {
            "zh-CN": "审核人员留言：{message}",
            "en": " A note from your reviewer: {message}",
        },
    }
)
# The problems notification answers a customer (`problem.<code>`; see shared.problems).
PROBLEM_TEXTS = Catalogue(
    {
        "problem.security-message": {
            "zh-CN": "安全类消息用于保护您的账户，无法关闭。",
            "en": "Security messages protect your account and cannot be turned off.",
        },
        "problem.unknown-recipient": {
            "zh-CN": "未找到您的联系方式。",
            "en": "We have no contact details for you.",
        },
        "problem.template-parameters": {
            "zh-CN": "消息内容不完整，未发送。",
            "en": "The message is incomplete and was not sent.",
        },
        "problem.sms-unavailable": {
            "zh-CN": "短信暂时无法发送，请稍后重试。",
            "en": "We cannot send text messages right now. Please try again shortly.",
        },
    }
)
# Variables that are amounts in yuan.
AMOUNTS = frozenset({"credit_limit_before", "credit_limit_after", "monthly_instalment", "amount"})


@dataclass(frozen=True)
class AccountRef:
    """A repayment account as its owner knows it; either part may be unknown (older records)."""

    lender: str | None
    last4: str | None


def _account(value: AccountRef | None, locale: str) -> str:
    if value is None or value.last4 is None:
        return PHRASES.render("account.unknown", locale)
    if value.lender is None:
        return PHRASES.render("account.last4", locale, last4=value.last4)
    return PHRASES.render(
        "account.full", locale, lender=LENDERS[value.lender].name(locale), last4=value.last4
    )


def _words(name: str, value: object, locale: str, timezone: str) -> str:
    if name in ("account", "previous_account", "new_account"):
        return _account(value, locale)  # type: ignore[arg-type]
    if name == "pause_months":
        return (
            PHRASES.render("months.1", locale) if value == 1 else PHRASES.render("months.n", locale, n=value)
        )
    if name == "resumes_on":
        day = date.fromisoformat(str(value))
        return PHRASES.render(
            "date",
            locale,
            year=day.year,
            month=day.month if locale == DEFAULT_LOCALE else f"{day:%B}",
            day=day.day,
        )
    if name == "device":
        return (
            PHRASES.render("device.named", locale, name=value)
            if value
            else PHRASES.render("device.unnamed", locale)
        )
    if name == "methods":
        return join([PHRASES.render(f"method.{method}", locale) for method in value], locale)  # type: ignore[attr-defined]
    if name == "reason":
        return PHRASES.render(f"reason.{str(value).rpartition(':')[2]}", locale)
    if name == "denial_reason":
        return denial_reason(str(value), locale)
    if name == "dispute_outcome":
        return PHRASES.render(f"dispute.{value}", locale)
    if name in AMOUNTS:
        return money(int(value), locale)  # type: ignore[call-overload]
    if name == "expires_at":
        return f"{datetime.fromisoformat(str(value)).astimezone(ZoneInfo(timezone)):%H:%M}"
    return str(value)


def render(
    kind: str,
    locale: str,
    facts: Mapping[str, object],
    timezone: str = "Asia/Shanghai",
    *,
    request_kind: str | None = None,
) -> tuple[str, str]:
    """The title and body of a message, its facts put into words in `locale` (in the words of a
    request of `request_kind`, where the kind has them). Strict: an unknown kind, a missing fact or
    a code without a phrase is an error (KeyError), never a blank or a raw code."""
    if kind not in KINDS:
        raise KeyError(f"no template {kind!r}")
    key = f"{kind}.{request_kind}" if f"{kind}.{request_kind}.title" in _TEXTS else kind
    needed = _TEXTS.variables(f"{key}.title") | _TEXTS.variables(f"{key}.body")
    if missing := needed - facts.keys():
        raise KeyError(f"template {kind!r} lacks {sorted(missing)}")
    words = {name: _words(name, facts[name], locale, timezone) for name in needed}
    body = _TEXTS.render(f"{key}.body", locale, **words)
    if facts.get("reviewer_message"):
        body += PHRASES.render("reviewer_message", locale, message=facts["reviewer_message"])
    return _TEXTS.render(f"{key}.title", locale, **words), body
