"""Customer-facing wording of the binding service, in zh-CN (the default) and en.

What a customer reads about their binding and their request: the impact and the alternatives it
offers, the request's risk step, timeline, outcome and follow-up, and the problems this service
answers (`problem.<code>`). Texts
take facts (amounts, dates, codes put into words here), never a score, a rule or a note.
"""

from __future__ import annotations

from datetime import date

from shared.i18n import Catalogue, Locale

TEXTS = Catalogue(
    {
        # --- impact --------------------------------------------------------------------------
        "blocker.INSTALMENT_DUE_SOON": {
            "zh-CN": "本期房贷 {amount}将于 {due_date}自动扣款。解绑后不再自动扣款，请先自行还款，或确认您会在到期前自行还款。",
            "en": "This month's instalment of {amount} is due on {due_date} by auto-debit. After unbinding it will not be collected: "
            "repay it first, or confirm you will repay it yourself before it is due.",
        },
        "blocker.OVERDUE": {
            "zh-CN": "您有一期房贷 {amount}已逾期（应还日 {due_date}），请先还清再申请解绑。",
            "en": "An instalment of {amount} due on {due_date} is overdue. Repay it before you unbind.",
        },
        "blocker.UNBIND_IN_PROGRESS": {
            "zh-CN": "该账户已有一笔解绑申请正在处理中。",
            "en": "An unbind request for this account is already in progress.",
        },
        "blocker.CHANGE_IN_PROGRESS": {
            "zh-CN": "该账户已有一笔暂停扣款或更换账户的申请正在处理中。",
            "en": "A request to pause the auto-debit or switch the account is already in progress for this account.",
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
        "benefit.limit_uplift": {"zh-CN": "信用额度提升 {amount}", "en": "Credit limit raised by {amount}"},
        # --- the alternatives the impact offers: what each keeps and gives up --------------------
        "alternative.pause.title": {"zh-CN": "暂停自动扣款", "en": "Pause auto-debit"},
        "alternative.pause.summary": {
            "zh-CN": "先不解绑，只把自动扣款停 1 到 3 个月，到期自动恢复。适合近期手头紧、需要灵活安排资金的时候。",
            "en": "Keep the binding and stop only the auto-debit, for 1 to 3 months; it starts again by itself. Handy when you need room in your budget for a while.",
        },
        "alternative.pause.loses": {
            "zh-CN": "暂停期间不自动扣款，每期房贷需要您自己按时还款",
            "en": "While it is paused nothing is collected automatically: pay each instalment yourself, on time",
        },
        "alternative.switch.title": {"zh-CN": "更换还款账户", "en": "Switch the repayment account"},
        "alternative.switch.summary": {
            "zh-CN": "先不解绑，把绑定换到您名下另一个房贷还款账户，验证一次即可，权益全部保留。适合转贷或换了还款卡的时候。",
            "en": "Keep the binding and move it to another mortgage repayment account of yours in one verified step, with every benefit. "
            "Handy if you refinanced or changed the card you repay from.",
        },
        "alternative.switch.loses.old_mandate": {
            "zh-CN": "尾号 {last4} 的账户将立即停止自动扣款",
            "en": "Auto-debit on the account ending {last4} stops at once",
        },
        "alternative.switch.loses.lender": {
            "zh-CN": "新账户要等贷款机构确认后才开始自动扣款；机构不同意的话，绑定带来的额度提升会收回",
            "en": "Auto-debit on the new account starts once its lender confirms it; if the lender declines, the credit limit increase from the binding is withdrawn",
        },
        "alternative.keeps.binding": {"zh-CN": "绑定关系不变", "en": "The binding stays"},
        "alternative.keeps.limit": {
            "zh-CN": "信用额度保持 {amount}",
            "en": "Your credit limit stays at {amount}",
        },
        "alternative.unavailable.no_auto_debit": {
            "zh-CN": "这个账户目前没有开通自动扣款，无需暂停。",
            "en": "This account has no auto-debit running, so there is nothing to pause.",
        },
        "alternative.unavailable.paused": {
            "zh-CN": "自动扣款已暂停，{resumes_on}会自动恢复。",
            "en": "The auto-debit is already paused; it resumes by itself on {resumes_on}.",
        },
        "alternative.unavailable.in_progress": {
            "zh-CN": "该账户已有一笔申请正在处理中，请等办理完成后再操作。",
            "en": "This account already has a request in progress; wait until it is done.",
        },
        # --- the request: its risk step (never the score, a signal or a rule) -------------------
        "risk.allow": {
            "zh-CN": "安全检查已通过，请输入短信验证码完成验证。",
            "en": "Our security check is done. Confirm it is you with an SMS code.",
        },
        "risk.step_up": {
            "zh-CN": "为保障账户安全，本次申请需要短信验证码和手机指纹或面容验证。",
            "en": "To keep your account safe, this request needs an SMS code and a fingerprint or face check on your phone.",
        },
        "risk.review": {
            "zh-CN": "为保障资金安全，本次申请需要人工审核，审核结果会通过消息通知您。",
            "en": "To keep your money safe, a member of our team will review this request. We will message you with the result.",
        },
        "risk.deny": {
            "zh-CN": "本次申请未通过安全校验。",
            "en": "This request did not pass our security checks.",
        },
        # --- its timeline (by event, and the status it led to) --------------------------------
        "timeline.UnbindRequested": {"zh-CN": "您提交了解绑申请", "en": "You asked to unbind"},
        "timeline.UnbindRequested.pause": {
            "zh-CN": "您申请暂停自动扣款",
            "en": "You asked to pause the auto-debit",
        },
        "timeline.UnbindRequested.switch": {
            "zh-CN": "您申请更换还款账户",
            "en": "You asked to switch the repayment account",
        },
        "timeline.AutoDebitPaused": {"zh-CN": "自动扣款已暂停", "en": "Auto-debit paused"},
        "timeline.AutoDebitResumed": {
            "zh-CN": "暂停期结束，自动扣款已恢复",
            "en": "The pause ended; auto-debit is on again",
        },
        "timeline.RepaymentAccountSwitched": {
            "zh-CN": "还款账户已更换，原账户的自动扣款已取消",
            "en": "Repayment account switched; auto-debit on the old one cancelled",
        },
        "timeline.RiskAssessed.pending_verification": {
            "zh-CN": "安全检查已完成",
            "en": "Security check done",
        },
        "timeline.RiskAssessed.under_review": {
            "zh-CN": "申请已转人工审核",
            "en": "Passed to our team for review",
        },
        "timeline.ReviewDecided": {"zh-CN": "人工审核已通过", "en": "Approved after review"},
        "timeline.VerificationRequested": {
            "zh-CN": "请完成身份验证：{methods}",
            "en": "Confirm it is you with {methods}",
        },
        "timeline.UnbindCompleted": {
            "zh-CN": "解绑完成，自动扣款已取消",
            "en": "Unbound; auto-debit cancelled",
        },
        "timeline.UnbindRejected": {"zh-CN": "{outcome}", "en": "Declined: {outcome}"},
        "timeline.UnbindCancelled": {"zh-CN": "您取消了申请", "en": "You cancelled the request"},
        "timeline.UnbindExpired": {
            "zh-CN": "申请未在规定时间内完成，已自动关闭",
            "en": "Not completed in time; closed",
        },
        "timeline.UnbindAppealed": {
            "zh-CN": "您提交了申诉，等待人工复核",
            "en": "You appealed; waiting for a review",
        },
        "timeline.UnbindDisputed": {
            "zh-CN": "您对解绑提出了异议，工作人员正在核实",
            "en": "You disputed the unbind; our team is looking into it",
        },
        "method.otp": {"zh-CN": "短信验证码", "en": "an SMS code"},
        "method.biometric": {
            "zh-CN": "手机指纹或面容验证",
            "en": "a fingerprint or face check on your phone",
        },
        # --- why a request was declined -------------------------------------------------------
        "outcome.risk_denied": {"zh-CN": "未通过安全校验", "en": "it did not pass our security checks"},
        "outcome.review_denied": {"zh-CN": "人工审核未通过", "en": "it did not pass our review"},
        "outcome.review_denied.because": {
            "zh-CN": "人工审核未通过：{reason}",
            "en": "it did not pass our review: {reason}",
        },
        "outcome.verification_failed": {"zh-CN": "身份验证未通过", "en": "the identity check failed"},
        "outcome.verification_failed.too_many_attempts": {
            "zh-CN": "验证错误次数过多",
            "en": "too many wrong attempts to confirm it was you",
        },
        "outcome.no_auto_debit": {
            "zh-CN": "该账户已没有可暂停的自动扣款",
            "en": "there was no auto-debit left to pause",
        },
        "outcome.verification_failed.expired": {
            "zh-CN": "未在规定时间内完成身份验证",
            "en": "the identity check was not completed in time",
        },
        # --- what to do after unbinding: each names the lender and its hotline ------------------
        "follow_up.check_repayment.title": {"zh-CN": "确认本期还款", "en": "Check this month's repayment"},
        "follow_up.check_repayment.body": {
            "zh-CN": "自动扣款已取消。请尽快向{lender}确认本期房贷的还款方式，避免逾期。",
            "en": "Auto-debit is cancelled. Check with {lender} soon how this month's instalment will be paid, so that it does not fall overdue.",
        },
        "follow_up.repay_on_time.title": {"zh-CN": "之后每期按时还款", "en": "Repay each instalment on time"},
        "follow_up.repay_on_time.body": {
            "zh-CN": "今后每期房贷需要您自行还款。可在{lender}设置其他账户自动还款，或每月按时转账。",
            "en": "From now on you repay your mortgage yourself. Set up automatic payment from another account at {lender}, or transfer each instalment on time.",
        },
        "follow_up.adjust_plan.title": {
            "zh-CN": "如需调整还款计划",
            "en": "If you need to change your repayment plan",
        },
        "follow_up.adjust_plan.body": {
            "zh-CN": "如需更换还款账户或调整还款日，请联系{lender}客服 {hotline}。",
            "en": "To change the repayment account or the due day, call {lender} customer service on {hotline}.",
        },
        "follow_up.adjust_plan.body.no_hotline": {
            "zh-CN": "如需更换还款账户或调整还款日，请联系{lender}。",
            "en": "To change the repayment account or the due day, contact {lender}.",
        },
        "follow_up.repay_during_pause.title": {
            "zh-CN": "暂停期间按时还款",
            "en": "Repay on time while paused",
        },
        "follow_up.repay_during_pause.body": {
            "zh-CN": "暂停期间不会自动扣款，请每期按时向{lender}还款，避免逾期。暂停期满后会恢复自动扣款。",
            "en": "While the auto-debit is paused, repay each instalment to {lender} on time so that nothing falls overdue. It starts again by itself when the pause ends.",
        },
        "follow_up.until_new_auto_debit.title": {
            "zh-CN": "新账户扣款开通前按时还款",
            "en": "Repay on time until the new auto-debit starts",
        },
        "follow_up.until_new_auto_debit.body": {
            "zh-CN": "新账户的自动扣款要等{lender}确认后才开始，开通后我们会通知您。在此之前请每期按时自行还款。",
            "en": "Auto-debit on your new account starts once {lender} confirms it; we will tell you when. Until then, repay each instalment on time yourself.",
        },
        "follow_up.dispute.title": {
            "zh-CN": "如对解绑有异议",
            "en": "If something about this unbind is wrong",
        },
        "follow_up.dispute.body": {
            "zh-CN": "解绑完成后 7 天内，您可以在申请详情中提出异议，我们的工作人员会跟进处理。",
            "en": "Within 7 days of the unbind, you can raise a dispute from the request details, and our team will look into it.",
        },
        "follow_up.call": {"zh-CN": "致电{lender} {hotline}", "en": "Call {lender} on {hotline}"},
        # --- problems (the `detail` of what this service answers a customer) -----------------
        "problem.already-bound": {
            "zh-CN": "该还款账户已被绑定，请勿重复绑定。",
            "en": "This repayment account is already bound.",
        },
        "problem.too-many-pending-bindings": {
            "zh-CN": "您有多笔绑定正在等待短信验证，请先完成验证，或待其失效后再试。",
            "en": "Several bindings are still waiting for their SMS code. Confirm one, or wait until they lapse, then try again.",
        },
        "problem.agreement-superseded": {
            "zh-CN": "服务协议已更新，请阅读并同意最新版本后再绑定。",
            "en": "The agreement has been updated. Read and accept the current version, then bind again.",
        },
        "problem.agreement-unknown": {
            "zh-CN": "未找到该版本的服务协议，请阅读并同意最新版本后再绑定。",
            "en": "We have no agreement of that version. Read and accept the current one, then bind again.",
        },
        "problem.not-completed": {
            "zh-CN": "只有已完成的解绑才能提出异议。",
            "en": "Only a completed unbind can be disputed.",
        },
        "problem.already-disputed": {
            "zh-CN": "您已对这次解绑提出过异议，工作人员正在处理。",
            "en": "You have already disputed this unbind; our team is looking into it.",
        },
        "problem.dispute-window-closed": {
            "zh-CN": "已超过 7 天的异议期限，如需帮助，请联系客服。",
            "en": "The 7 days to dispute this unbind have passed. Contact us if you need help.",
        },
        "problem.binding-not-bound": {
            "zh-CN": "该账户尚未绑定成功，暂时无法办理。",
            "en": "This account was never bound, so there is nothing to change.",
        },
        "problem.unknown-lender": {
            "zh-CN": "暂不支持该贷款机构，请从可选机构中选择。",
            "en": "We do not work with this lender yet. Choose one of the lenders offered.",
        },
        "problem.no-credit-account": {
            "zh-CN": "请先开通信用账户，再绑定还款账户。",
            "en": "Open a credit account before you bind a repayment account.",
        },
        "problem.idempotency-key-reused": {
            "zh-CN": "请求重复，请刷新后重试。",
            "en": "This request was already sent with other details. Refresh and try again.",
        },
        "problem.nothing-due": {
            "zh-CN": "当前没有待还的房贷。",
            "en": "No instalment is waiting to be paid.",
        },
        "problem.amount-mismatch": {
            "zh-CN": "本期应还 {amount_due}，请按应还金额还款。",
            "en": "This month's instalment is {amount_due}. Pay that amount.",
        },
        "problem.binding-unbound": {"zh-CN": "该账户已解绑。", "en": "This account is already unbound."},
        "problem.overdue": {
            "zh-CN": "您有逾期未还的房贷，请先还清再办理。",
            "en": "An instalment is overdue. Repay it first.",
        },
        "problem.blockers-not-acknowledged": {
            "zh-CN": "请先阅读并确认解绑影响中的提示事项。",
            "en": "Read and confirm the points listed in the impact of unbinding first.",
        },
        "problem.impact-changed": {
            "zh-CN": "解绑影响已有变化，请重新查看后再提交。",
            "en": "The impact of unbinding has changed. Look at it again, then send your request.",
        },
        "problem.concurrent-request": {
            "zh-CN": "您的申请正在处理中，请稍后重试。",
            "en": "Your request is being processed. Try again in a moment.",
        },
        "problem.unbind-in-progress": {
            "zh-CN": "该账户已有一笔申请正在处理中，请等办理完成后再操作。",
            "en": "This account already has a request in progress. Wait until it is done.",
        },
        "problem.same-account": {
            "zh-CN": "这就是当前绑定的还款账户，请换一个账户。",
            "en": "This is the account the binding already uses. Choose another one.",
        },
        "problem.no-auto-debit": {
            "zh-CN": "这个账户目前没有开通自动扣款，无需暂停。",
            "en": "This account has no auto-debit running, so there is nothing to pause.",
        },
        "problem.auto-debit-paused": {
            "zh-CN": "自动扣款已经暂停，{resumes_on}会自动恢复。",
            "en": "The auto-debit is already paused; it resumes by itself on {resumes_on}.",
        },
        "problem.not-open": {
            "zh-CN": "该申请已结束，无法取消。",
            "en": "This request has already ended and cannot be cancelled.",
        },
        "problem.not-rejected": {
            "zh-CN": "只有未通过的申请才能申诉。",
            "en": "Only a declined request can be appealed.",
        },
        "problem.already-appealed": {
            "zh-CN": "每笔申请只能申诉一次，您已提交过申诉。",
            "en": "A request can be appealed once, and you have already appealed this one.",
        },
        "problem.binding-busy": {
            "zh-CN": "该账户已有其他申请在处理中，或已解绑。",
            "en": "This account has another request in progress, or is no longer bound.",
        },
        "problem.report-unavailable": {
            "zh-CN": "报告暂时无法生成，请稍后重试。",
            "en": "The report cannot be made right now. Please try again later.",
        },
    }
)


def text(key: str, locale: str, **values: object) -> str:
    return TEXTS.render(key, locale, **values)


def day(value: date, locale: str) -> str:
    """A date as a customer reads it: `12 月 3 日`, `3 December 2026`."""
    return f"{value.month} 月 {value.day} 日" if locale == Locale.ZH_CN else f"{value.day} {value:%B %Y}"
