"""Business rules of the notification service: templates, the SMS gateway and the inbox."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Formatter

import orjson

from services.notification import repository
from services.notification.models import Contact, Notification, SmsDelivery
from services.notification.schemas import MessageAccepted, MessageIn, NotificationList, NotificationOut
from shared.auth import Principal
from shared.db import utcnow
from shared.events import UnbindCompleted, UnbindRejected
from shared.masking import mask_phone
from shared.problems import Problem
from shared.uow import UnitOfWork

DEFAULT_LOCALE = "zh-CN"

# (title, body) per template and locale; `{name}` placeholders, every one required.
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "otp_code": {
        "zh-CN": ("验证码", "【unbind】您的解绑验证码为 {code}，{ttl_minutes} 分钟内有效。请勿泄露给任何人，工作人员不会索取验证码。"),
        "en": ("Verification code", "[unbind] Your unbind verification code is {code}. It expires in {ttl_minutes} minutes. Never share it; staff will never ask for it."),
    },
    "unbind_completed": {
        "zh-CN": (
            "解绑完成",
            "房贷还款账户已解绑，已取消 {mandates_cancelled} 项自动扣款，信用额度由 {credit_limit_before} 元调整为 {credit_limit_after} 元。"
            "请立即查看房贷账户的还款状态，如有需要请联系贷款机构调整还款计划。",
        ),
        "en": (
            "Unbinding complete",
            "Your mortgage repayment account is unbound: {mandates_cancelled} auto-debit(s) cancelled, "
            "credit limit {credit_limit_before} -> {credit_limit_after} CNY. "
            "Check the repayment status of your mortgage now and, if needed, ask your lender to adjust the repayment plan.",
        ),
    },
    "unbind_rejected": {
        "zh-CN": ("解绑未通过", "您的解绑申请未通过（原因：{reason}）。如有疑问，可在申请详情中提交申诉。"),
        "en": ("Unbinding rejected", "Your unbind request was rejected (reason: {reason}). If you disagree, you can appeal from the request details."),
    },
}


def render(template: str, locale: str, params: dict[str, object]) -> tuple[str, str]:
    """Render a template strictly: an unknown template or a missing parameter is an error, never a blank."""
    variants = TEMPLATES.get(template)
    if variants is None:
        raise KeyError(f"no template {template!r}")
    title, body = variants.get(locale) or variants[DEFAULT_LOCALE]
    needed = {name for _, name, _, _ in Formatter().parse(body) if name}
    if missing := needed - params.keys():
        raise KeyError(f"template {template!r} lacks parameters {sorted(missing)}")
    return title, body.format_map({name: params[name] for name in needed})


@dataclass(frozen=True)
class SmsSink:
    """Development SMS gateway: appends `{to, text, at}` as one JSON line per message."""

    path: Path

    async def send(self, to: str, text: str) -> None:
        line = orjson.dumps({"to": to, "text": text, "at": utcnow().isoformat()}) + b"\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as sink:
            sink.write(line)


async def send_message(uow: UnitOfWork, sink: SmsSink, message: MessageIn) -> MessageAccepted:
    """Send a service's message by SMS, once per message id."""
    contact = await repository.get_contact(uow.session, message.user_id)
    if contact is None:
        raise Problem(422, "unknown-recipient", "Unknown recipient", "No contact details are on file for this user.")
    masked = mask_phone(contact.phone)
    if await repository.get_sms_delivery(uow.session, message.message_id) is not None:
        return MessageAccepted(message_id=message.message_id, status="sent", channel="sms", to=masked)
    try:
        _, text = render(message.template, contact.locale, dict(message.params))
    except KeyError as exc:
        raise Problem(422, "template-parameters", "Template parameters missing", str(exc)) from exc
    # Gateway first, then the record: a crash in between may send twice, never zero times.
    await sink.send(contact.phone, text)
    uow.session.add(SmsDelivery(message_id=message.message_id, user_id=message.user_id, template=message.template, status="sent"))
    return MessageAccepted(message_id=message.message_id, status="sent", channel="sms", to=masked)


async def notify_completed(uow: UnitOfWork, event: UnbindCompleted) -> None:
    await _to_inbox(uow, event.user_id, "unbind_completed", event.request_id, event.model_dump())


async def notify_rejected(uow: UnitOfWork, event: UnbindRejected) -> None:
    await _to_inbox(uow, event.user_id, "unbind_rejected", event.request_id, event.model_dump())


async def _to_inbox(uow: UnitOfWork, user_id: str, kind: str, request_id: str, params: dict[str, object]) -> None:
    contact = await repository.get_contact(uow.session, user_id)
    title, body = render(kind, contact.locale if contact else DEFAULT_LOCALE, params)
    uow.session.add(Notification(id=str(uuid.uuid4()), user_id=user_id, kind=kind, request_id=request_id, title=title, body=body, created_at=utcnow()))


async def list_notifications(uow: UnitOfWork, principal: Principal, limit: int) -> NotificationList:
    rows = await repository.list_notifications(uow.session, principal.subject, limit)
    return NotificationList(items=[NotificationOut.model_validate(row, from_attributes=True) for row in rows])


async def seed_demo_data(uow: UnitOfWork) -> bool:
    """Contact details of Zhang San and Li Si; only into an empty database."""
    if await repository.count_contacts(uow.session):
        return False
    uow.session.add_all([Contact(user_id="u-zhangsan", phone="+8613812345678", locale="zh-CN"), Contact(user_id="u-lisi", phone="+8613987654321", locale="en")])
    return True
