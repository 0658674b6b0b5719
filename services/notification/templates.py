"""Message kinds, their channels, their timing, and their texts in zh-CN (default) and en.

Security messages (codes, and what could mean someone else is unbinding: requested, completed,
rejected, a failed or suspicious verification; or holds a second factor: a device key added or
revoked; or tried to bind an account and failed its code) go by SMS and to the inbox (some on more
channels) and cannot be turned off. The others go by push (SMS when push fails) and to the inbox, and
can be turned off per channel.

When: the inbox copy is written at once, always. Quiet hours hold only the kinds that can wait
(`can_wait`): neither security nor about a request still open (a binding made, a request cancelled
or expired, the reminder after an unbind). Everything else goes at once. A message about an open
request's current stage (`STAGE_KINDS`: neither security nor able to wait) goes stale once the
request moves on: a queued one is then never sent (status `superseded`); see `service.dispatch_due`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from string import Formatter

DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")
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
    # The texts of the same message about a request of another kind (a pause of the auto-debit, a
    # switch of the account: shared.events.RequestKind), which says what that request asks.
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
            "zh-CN": ("验证码", "【unbind】您的解绑验证码为 {code}，{ttl_minutes} 分钟内有效。请勿泄露给任何人，工作人员不会索取验证码。"),
            "en": ("Verification code", "[unbind] Your unbind verification code is {code}. It expires in {ttl_minutes} minutes. Never share it; staff will never ask for it."),
        },
        variants={
            "pause": {
                "zh-CN": ("暂停扣款验证码", "【unbind】您正在申请暂停房贷自动扣款，验证码为 {code}，{ttl_minutes} 分钟内有效。请勿泄露给任何人，工作人员不会索取验证码。"),
                "en": (
                    "Code to pause auto-debit",
                    "[unbind] To pause your mortgage auto-debit, your verification code is {code}. It expires in {ttl_minutes} minutes. "
                    "Never share it; staff will never ask for it.",
                ),
            },
            "switch": {
                "zh-CN": ("更换账户验证码", "【unbind】您正在申请更换房贷还款账户，验证码为 {code}，{ttl_minutes} 分钟内有效。请勿泄露给任何人，工作人员不会索取验证码。"),
                "en": (
                    "Code to switch accounts",
                    "[unbind] To switch your mortgage repayment account, your verification code is {code}. It expires in {ttl_minutes} minutes. "
                    "Never share it; staff will never ask for it.",
                ),
            },
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
    "binding_code": Kind(
        True,
        {
            "zh-CN": (
                "绑定验证码",
                "【unbind】您正在将房贷还款账户绑定到信用账户，验证码为 {code}，{ttl_minutes} 分钟内有效。如非本人操作，请勿提供验证码，并立即联系客服。",
            ),
            "en": (
                "Code to bind an account",
                "[unbind] To bind a mortgage repayment account to your credit account, your verification code is {code}. "
                "It expires in {ttl_minutes} minutes. If this was not you, do not share it and contact support at once.",
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
            "zh-CN": ("绑定成功", "尾号 {account_last4} 的房贷还款账户已绑定到您的信用账户。"),
            "en": ("Account bound", "Your mortgage repayment account ending {account_last4} is now bound to your credit account."),
        },
        can_wait=True,
    ),
    "binding_verification_failed": Kind(
        True,
        {
            "zh-CN": (
                "账户绑定未成功",
                "房贷还款账户绑定未成功：验证码验证未通过或已超时，本次绑定已取消，您的账户没有任何变动。如需绑定，请重新操作；如非本人操作，请尽快修改登录密码并联系客服。",
            ),
            "en": (
                "Account not bound",
                "Your mortgage repayment account was not bound: the verification code was entered wrong too often or ran out, so the request was cancelled and nothing changed. "
                "Start again if you still want to bind it; if this was not you, change your password and contact support.",
            ),
        },
    ),
    "mandate_requested": Kind(
        False,
        {
            "zh-CN": ("等待开通自动扣款", "已向贷款机构申请为尾号 {account_last4} 的账户开通自动扣款，机构确认后我们会通知您，届时信用额度将相应提升。"),
            "en": (
                "Auto-debit awaiting your lender",
                "We have asked your lender to set up auto-debit for the account ending {account_last4}. "
                "We will let you know once they confirm; your credit limit rises then.",
            ),
        },
        variants={
            "switch": {
                "zh-CN": ("等待开通自动扣款", "已向贷款机构申请为新账户（尾号 {account_last4}）开通自动扣款，确认后我们会通知您。在此之前不会自动扣款，请按时自行还款。"),
                "en": (
                    "New auto-debit awaiting your lender",
                    "We have asked your lender to set up auto-debit on your new account ending {account_last4} and will let you know once they confirm. "
                    "Until then nothing is collected automatically, so repay on time yourself.",
                ),
            },
        },
    ),
    "mandate_confirmed": Kind(
        False,
        {
            "zh-CN": ("自动扣款已开通", "贷款机构已确认为尾号 {account_last4} 的账户开通自动扣款，此后每期房贷将按时自动扣款。您当前的信用额度为 {credit_limit_after} 元。"),
            "en": (
                "Auto-debit is on",
                "Your lender confirmed auto-debit for the account ending {account_last4}: each instalment is now paid automatically. "
                "Your credit limit is now {credit_limit_after} CNY.",
            ),
        },
        # The binding request is over: good news can wait for the end of quiet hours.
        can_wait=True,
        variants={
            "switch": {
                "zh-CN": (
                    "新账户自动扣款已开通",
                    "贷款机构已确认为新账户（尾号 {account_last4}）开通自动扣款，此后每期房贷将按时自动扣款。您当前的信用额度为 {credit_limit_after} 元。",
                ),
                "en": (
                    "Auto-debit on your new account",
                    "Your lender confirmed auto-debit on your new account ending {account_last4}: each instalment is paid automatically again. "
                    "Your credit limit is {credit_limit_after} CNY.",
                ),
            },
        },
    ),
    "mandate_refused": Kind(
        False,
        {
            "zh-CN": (
                "自动扣款未开通",
                "贷款机构未同意为尾号 {account_last4} 的账户开通自动扣款。账户仍保持绑定，但信用额度不会提升。请记得每期按时自行还款，如有疑问可联系贷款机构。",
            ),
            "en": (
                "Auto-debit not set up",
                "Your lender declined auto-debit for the account ending {account_last4}. The account stays bound, but your credit limit does not rise. "
                "Remember to pay each instalment yourself; your lender can tell you more.",
            ),
        },
        variants={
            "switch": {
                "zh-CN": (
                    "新账户自动扣款未开通",
                    "贷款机构未同意为新账户（尾号 {account_last4}）开通自动扣款。账户仍保持绑定，但绑定带来的额度提升已收回，当前信用额度为 {credit_limit_after} 元。"
                    "请每期按时自行还款，如有疑问可联系贷款机构。",
                ),
                "en": (
                    "No auto-debit on your new account",
                    "Your lender declined auto-debit on your new account ending {account_last4}. The account stays bound, but the credit limit increase "
                    "the binding gave you is withdrawn: your limit is now {credit_limit_after} CNY. Pay each instalment yourself; your lender can tell you more.",
                ),
            },
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
        variants={
            "pause": {
                "zh-CN": (
                    "暂停自动扣款申请已提交",
                    "您已申请暂停房贷自动扣款 {pause_months} 个月。暂停期间不会自动扣款，请每期按时自行还款；绑定、权益和信用额度保持不变。"
                    "如非本人操作，请立即取消申请并联系客服。",
                ),
                "en": (
                    "Auto-debit pause requested",
                    "You asked to pause your mortgage auto-debit for {pause_months} month(s). While it is paused nothing is collected, so repay each instalment "
                    "on time yourself; the binding, its benefits and your credit limit stay. If this was not you, cancel the request now and contact support.",
                ),
            },
            "switch": {
                "zh-CN": (
                    "更换还款账户申请已提交",
                    "您已申请把绑定换到尾号 {new_account_last4} 的还款账户。换好后原账户的自动扣款随即取消，新账户的自动扣款待贷款机构确认后开通，绑定权益保持不变。"
                    "如非本人操作，请立即取消申请并联系客服。",
                ),
                "en": (
                    "Account switch requested",
                    "You asked to move your binding to the repayment account ending {new_account_last4}. Once switched, auto-debit on the current account stops, "
                    "and on the new one it starts when its lender confirms; your benefits stay. If this was not you, cancel the request now and contact support.",
                ),
            },
        },
    ),
    "verification_requested": Kind(
        False,
        {
            "zh-CN": ("请完成身份验证", "请在 {expires_at} 前完成身份验证（{methods}）以继续解绑。"),
            "en": ("Verify it is you", "Complete the identity check ({methods}) before {expires_at} to go on with the unbinding."),
        },
        variants={
            "pause": {
                "zh-CN": ("请完成身份验证", "请在 {expires_at} 前完成身份验证（{methods}），以继续暂停自动扣款。"),
                "en": ("Verify it is you", "Complete the identity check ({methods}) before {expires_at} to go on pausing the auto-debit."),
            },
            "switch": {
                "zh-CN": ("请完成身份验证", "请在 {expires_at} 前完成身份验证（{methods}），以继续更换还款账户。"),
                "en": ("Verify it is you", "Complete the identity check ({methods}) before {expires_at} to go on switching the repayment account."),
            },
        },
    ),
    "verified": Kind(
        False,
        {
            "zh-CN": ("身份验证通过", "身份验证已通过（{methods}），正在为您解绑。"),
            "en": ("Identity verified", "Your identity is verified ({methods}); the unbinding is under way."),
        },
        variants={
            "pause": {
                "zh-CN": ("身份验证通过", "身份验证已通过（{methods}），正在为您暂停自动扣款。"),
                "en": ("Identity verified", "Your identity is verified ({methods}); the auto-debit is being paused."),
            },
            "switch": {
                "zh-CN": ("身份验证通过", "身份验证已通过（{methods}），正在为您更换还款账户。"),
                "en": ("Identity verified", "Your identity is verified ({methods}); the repayment account is being switched."),
            },
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
        variants={
            "pause": {
                "zh-CN": ("身份验证未通过", "身份验证未通过（{reason}），暂停自动扣款的申请未能继续。如非本人操作，请尽快修改密码并联系客服。"),
                "en": (
                    "Verification failed",
                    "The identity check failed ({reason}) and the request to pause the auto-debit cannot go on. If this was not you, change your password and contact support.",
                ),
            },
            "switch": {
                "zh-CN": ("身份验证未通过", "身份验证未通过（{reason}），更换还款账户的申请未能继续。如非本人操作，请尽快修改密码并联系客服。"),
                "en": (
                    "Verification failed",
                    "The identity check failed ({reason}) and the request to switch the repayment account cannot go on. "
                    "If this was not you, change your password and contact support.",
                ),
            },
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
                "接下来请：1. 立即到贷款机构查看还款状态；2. 如有需要，请贷款机构调整还款计划；3. 如有异议，可在申请详情中申诉。",
            ),
            "en": (
                "Unbinding complete",
                "Your mortgage repayment account is unbound: {mandates_cancelled} auto-debit(s) cancelled, credit limit {credit_limit_before} -> {credit_limit_after} CNY. "
                "Next: 1. check the repayment status at your lender now; 2. if needed, ask your lender to adjust the repayment plan; 3. if you disagree, appeal from the request.",
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
        variants={
            "pause": {
                "zh-CN": ("暂停申请未通过", "您暂停自动扣款的申请未通过（原因：{reason}），自动扣款照常进行。如有疑问，可在申请详情中提交申诉（仅限一次）。"),
                "en": (
                    "Pause request rejected",
                    "Your request to pause the auto-debit was rejected (reason: {reason}); the auto-debit goes on as before. "
                    "If you disagree, you can appeal once from the request details.",
                ),
            },
            "switch": {
                "zh-CN": ("更换申请未通过", "您更换还款账户的申请未通过（原因：{reason}），绑定和自动扣款保持不变。如有疑问，可在申请详情中提交申诉（仅限一次）。"),
                "en": (
                    "Switch request rejected",
                    "Your request to switch the repayment account was rejected (reason: {reason}); the binding and its auto-debit stay as they were. "
                    "If you disagree, you can appeal once from the request details.",
                ),
            },
        },
    ),
    "unbind_cancelled": Kind(
        False,
        {
            "zh-CN": ("解绑已取消", "您的解绑申请已取消，绑定与自动扣款保持不变。"),
            "en": ("Unbinding cancelled", "Your unbind request is cancelled; the binding and its auto-debit stay as they were."),
        },
        can_wait=True,
        variants={
            "pause": {
                "zh-CN": ("暂停申请已取消", "您已取消暂停自动扣款的申请，自动扣款照常进行。"),
                "en": ("Pause request cancelled", "Your request to pause the auto-debit is cancelled; the auto-debit goes on as before."),
            },
            "switch": {
                "zh-CN": ("更换申请已取消", "您已取消更换还款账户的申请，绑定和自动扣款保持不变。"),
                "en": ("Switch request cancelled", "Your request to switch the repayment account is cancelled; the binding and its auto-debit stay as they were."),
            },
        },
    ),
    "unbind_expired": Kind(
        False,
        {
            "zh-CN": ("解绑申请已过期", "您的解绑申请未在规定时间内完成，已自动关闭，绑定保持不变。如仍需解绑，请重新申请。"),
            "en": ("Unbind request expired", "Your unbind request was not completed in time and is closed; the binding is unchanged. Ask again if you still want to unbind."),
        },
        can_wait=True,
        variants={
            "pause": {
                "zh-CN": ("暂停申请已过期", "您暂停自动扣款的申请未在规定时间内完成，已自动关闭，自动扣款照常进行。如仍需暂停，请重新申请。"),
                "en": (
                    "Pause request expired",
                    "Your request to pause the auto-debit was not completed in time and is closed; the auto-debit goes on. Ask again if you still want to pause it.",
                ),
            },
            "switch": {
                "zh-CN": ("更换申请已过期", "您更换还款账户的申请未在规定时间内完成，已自动关闭，绑定保持不变。如仍需更换，请重新申请。"),
                "en": (
                    "Switch request expired",
                    "Your request to switch the repayment account was not completed in time and is closed; the binding is unchanged. Ask again if you still want to switch.",
                ),
            },
        },
    ),
    "unbind_under_review": Kind(
        False,
        {
            "zh-CN": (
                "解绑申请审核中",
                "为保障您的资金安全，您的解绑申请需要人工审核，预计 {expected_hours} 小时内给您答复。审核期间，绑定和自动扣款保持不变，请照常按时还款。",
            ),
            "en": (
                "Unbind request under review",
                "To keep your money safe, a member of our team will review your unbind request. Expect an answer within {expected_hours} hours. "
                "Until then the binding and its auto-debit stay as they are, so keep repaying on time.",
            ),
        },
        variants={
            "pause": {
                "zh-CN": ("暂停申请审核中", "为保障您的资金安全，您暂停自动扣款的申请需要人工审核，预计 {expected_hours} 小时内给您答复。审核期间自动扣款照常进行。"),
                "en": (
                    "Pause request under review",
                    "To keep your money safe, a member of our team will review your request to pause the auto-debit. Expect an answer within {expected_hours} hours; "
                    "until then the auto-debit goes on.",
                ),
            },
            "switch": {
                "zh-CN": ("更换申请审核中", "为保障您的资金安全，您更换还款账户的申请需要人工审核，预计 {expected_hours} 小时内给您答复。审核期间绑定和自动扣款保持不变。"),
                "en": (
                    "Switch request under review",
                    "To keep your money safe, a member of our team will review your request to switch the repayment account. "
                    "Expect an answer within {expected_hours} hours; until then the binding and its auto-debit stay as they are.",
                ),
            },
        },
    ),
    "unbind_appealed": Kind(
        False,
        {
            "zh-CN": ("申诉已受理", "我们已收到您的申诉，将重新人工审核您的解绑申请，预计 {expected_hours} 小时内给您答复。"),
            "en": ("Appeal received", "We received your appeal. A member of our team will look at your unbind request again; expect an answer within {expected_hours} hours."),
        },
        variants={
            "pause": {
                "zh-CN": ("申诉已受理", "我们已收到您的申诉，将重新人工审核您暂停自动扣款的申请，预计 {expected_hours} 小时内给您答复。"),
                "en": (
                    "Appeal received",
                    "We received your appeal. A member of our team will look at your request to pause the auto-debit again; expect an answer within {expected_hours} hours.",
                ),
            },
            "switch": {
                "zh-CN": ("申诉已受理", "我们已收到您的申诉，将重新人工审核您更换还款账户的申请，预计 {expected_hours} 小时内给您答复。"),
                "en": (
                    "Appeal received",
                    "We received your appeal. A member of our team will look at your request to switch the repayment account again; "
                    "expect an answer within {expected_hours} hours.",
                ),
            },
        },
    ),
    "review_decided": Kind(
        False,
        {
            "zh-CN": ("人工复核完成", "您的解绑申请已复核，结果：{decision}。"),
            "en": ("Review finished", "Your unbind request was reviewed: {decision}."),
        },
        variants={
            "pause": {
                "zh-CN": ("人工复核完成", "您暂停自动扣款的申请已复核，结果：{decision}。"),
                "en": ("Review finished", "Your request to pause the auto-debit was reviewed: {decision}."),
            },
            "switch": {
                "zh-CN": ("人工复核完成", "您更换还款账户的申请已复核，结果：{decision}。"),
                "en": ("Review finished", "Your request to switch the repayment account was reviewed: {decision}."),
            },
        },
    ),
    "auto_debit_paused": Kind(
        True,
        {
            "zh-CN": (
                "自动扣款已暂停",
                "您的房贷自动扣款已暂停，将于 {resumes_on} 自动恢复。暂停期间请每期按时自行还款；绑定、权益和信用额度保持不变。如非本人操作，请立即联系客服。",
            ),
            "en": (
                "Auto-debit paused",
                "Your mortgage auto-debit is paused and resumes by itself on {resumes_on}. Until then, repay each instalment on time yourself; "
                "the binding, its benefits and your credit limit stay as they are. If this was not you, contact support at once.",
            ),
        },
    ),
    "auto_debit_resumed": Kind(
        False,
        {
            "zh-CN": ("自动扣款已恢复", "暂停期已结束，您的房贷自动扣款已恢复，此后每期将按时自动扣款。"),
            "en": ("Auto-debit resumed", "The pause is over: your mortgage instalments are auto-debited again from now on."),
        },
        # The pause request ended long ago: this can wait for the end of quiet hours.
        can_wait=True,
    ),
    "repayment_account_switched": Kind(
        True,
        {
            "zh-CN": (
                "还款账户已更换",
                "您的绑定已从尾号 {previous_account_last4} 的账户换到尾号 {account_last4} 的账户，权益保持不变。原账户的自动扣款已取消，"
                "新账户的自动扣款待贷款机构确认后开通，在此之前请按时自行还款。如非本人操作，请立即联系客服。",
            ),
            "en": (
                "Repayment account switched",
                "Your binding moved from the account ending {previous_account_last4} to the one ending {account_last4}, with its benefits. "
                "Auto-debit on the old account is cancelled; on the new one it starts once its lender confirms, so repay on time yourself until then. "
                "If this was not you, contact support at once.",
            ),
        },
        extra_channels=("email",),
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
        can_wait=True,
    ),
}

SECURITY_KINDS = frozenset(kind for kind, spec in KINDS.items() if spec.security)
# What the request is at now (to verify, verified, under review...): stale once it has moved on.
STAGE_KINDS = frozenset(kind for kind, spec in KINDS.items() if not spec.security and not spec.can_wait)


def render(kind: str, locale: str, params: dict[str, object], request_kind: str | None = None) -> tuple[str, str]:
    """Render strictly: an unknown kind or a missing parameter is an error, never a blank. About a
    request of another kind than an unbind, the kind's variant for it, where it has one."""
    spec = KINDS.get(kind)
    if spec is None:
        raise KeyError(f"no template {kind!r}")
    texts = spec.variants.get(request_kind or "", spec.texts)
    title, body = texts.get(locale) or texts[DEFAULT_LOCALE]
    needed = {name for _, name, _, _ in Formatter().parse(body) if name}
    if missing := needed - params.keys():
        raise KeyError(f"template {kind!r} lacks parameters {sorted(missing)}")
    values = {name: ", ".join(map(str, value)) if isinstance(value, list) else value for name, value in params.items() if name in needed}
    return title, body.format_map(values)
