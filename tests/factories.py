"""Small factories for test data, written through each service's own unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from services.binding.agreements import CURRENT as CURRENT_AGREEMENT
from services.binding.models import Benefit, Binding, BindingStatus, CreditAccount, Instalment, Mandate, RepaymentAccount
from services.binding.service import today
from services.notification import handlers as notification_handlers
from services.notification.models import Contact, InboxEntry, KnownRequest
from services.verification.device_simulator import DeviceSimulator
from shared.account_numbers import with_check_digit
from shared.cloudevents import Envelope
from shared.consumer import EventConsumer, Subscriptions
from shared.uow import UnitOfWork
from tests.stack import BusTopics, Stack, auth, eventually


@dataclass(frozen=True)
class Customer:
    user_id: str
    phone: str
    account_number: str
    binding_id: str
    credit_limit: int
    contribution: int


async def customer_with_binding(
    stack: Stack,
    *,
    user_id: str | None = None,
    credit_limit: int = 30000,
    contribution: int = 9700,
    auto_debit: bool = True,
    due_in_days: int = 20,
    locale: str = "zh-CN",
    email: str | None = None,
    awake: bool = False,
) -> Customer:
    """A customer with a credit account, a mortgage repayment account and an active binding with
    its auto-debit mandate and current instalment, due in `due_in_days` (negative: overdue), in
    binding's database; and contact details in notification's, when it runs (`awake`: without
    quiet hours, so a test reads a message that may wait at any time of day)."""
    suffix = uuid.uuid4().hex[:8]
    user_id = user_id or f"u-{suffix}"
    phone = f"+86138{int(suffix, 16) % 10**8:08d}"
    binding_id = f"b-{suffix}"
    account_number = card_number()
    async with stack.runtime("binding").unit_of_work() as uow:
        if await uow.session.get(CreditAccount, f"ca-{user_id}") is None:
            uow.session.add(CreditAccount(id=f"ca-{user_id}", user_id=user_id, credit_limit=credit_limit))
        uow.session.add_all(
            [
                RepaymentAccount(
                    id=f"ra-{suffix}", user_id=user_id, lender="Example Bank", account_number=account_number, monthly_instalment=6500, due_day=15
                ),
            ]
        )
        await uow.session.flush()
        uow.session.add(
            Binding(
                id=binding_id,
                user_id=user_id,
                credit_account_id=f"ca-{user_id}",
                repayment_account_id=f"ra-{suffix}",
                status=BindingStatus.ACTIVE,
                credit_limit_contribution=contribution,
                agreement_version=CURRENT_AGREEMENT,
            )
        )
        await uow.session.flush()
        due = today() + timedelta(days=due_in_days)
        uow.session.add_all(
            [
                Benefit(id=f"bn-{suffix}", binding_id=binding_id, code="limit_uplift", value=contribution),
                Instalment(id=f"i-{suffix}", repayment_account_id=f"ra-{suffix}", period=due.strftime("%Y-%m"), amount=6500, due_date=due),
            ]
        )
        if auto_debit:
            uow.session.add(Mandate(id=f"m-{suffix}", binding_id=binding_id, kind="auto_debit"))
    if "notification" in stack.apps:
        async with stack.runtime("notification").unit_of_work() as uow:
            if (existing := await uow.session.get(Contact, user_id)) is not None:
                phone = existing.phone
            else:
                quiet = {"quiet_start": "00:00", "quiet_end": "00:00"} if awake else {}
                uow.session.add(Contact(user_id=user_id, phone=phone, email=email, locale=locale, **quiet))
    return Customer(user_id, phone, account_number, binding_id, credit_limit, contribution)


def card_number() -> str:
    """A fresh, valid (Luhn) 16-digit card number."""
    return with_check_digit(f"62220{uuid.uuid4().int % 10**10:010d}")


def unbind_body(reason: str = "fund_planning", **extra: object) -> dict[str, object]:
    return {"reason": reason, **extra}


def idempotency_key() -> str:
    return f"idem-{uuid.uuid4()}"


async def pass_verification(stack: Stack, customer: Customer, request_id: str, verification_id: str, device: DeviceSimulator | None = None) -> dict:
    """Pass every method the verification asks for: the latest SMS code, then the device's signature."""
    client, headers = stack.client("verification"), auth(customer.user_id)
    state = (await client.get(f"/v1/verifications/{verification_id}", headers=headers)).json()
    if "otp" in state["methods"]:
        response = await client.post(f"/v1/verifications/{verification_id}/otp", json={"code": stack.latest_code(customer.phone)}, headers=headers)
        assert response.status_code == 200, response.text
        state = response.json()
    if "biometric" in state["methods"]:
        assert device is not None, "a step-up verification needs the customer's device"
        challenge = (await client.post(f"/v1/verifications/{verification_id}/biometric/challenge", headers=headers)).json()
        signed = device.sign(challenge["challenge"], verification_id, request_id, challenge["impact_hash"])
        response = await client.post(f"/v1/verifications/{verification_id}/biometric", json=signed, headers=headers)
        assert response.status_code == 200, response.text
        state = response.json()
    assert state["status"] == "verified"
    return state


async def pending_device(stack: Stack, customer: Customer, device: DeviceSimulator | None = None) -> tuple[DeviceSimulator, dict[str, Any]]:
    """A device key enrolled with the customer's token alone: pending, its code sent by SMS.
    Returns the device and the enrolment's verification."""
    device = device or DeviceSimulator.generate(f"d-{uuid.uuid4().hex[:8]}")
    sent_before = len(stack.codes(customer.phone))
    response = await stack.client("verification").post("/v1/devices", json=device.enrolment(), headers=auth(customer.user_id))
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["device"]["status"], body["verification"]["purpose"]) == ("pending", "device_enrolment"), body
    await eventually(lambda: len(stack.codes(customer.phone)) > sent_before, 10, "no enrolment code was sent")
    return device, body["verification"]


async def enrolled_device(stack: Stack, customer: Customer, device: DeviceSimulator | None = None) -> DeviceSimulator:
    """An active device key: enrolled, then its SMS code confirmed."""
    device, verification = await pending_device(stack, customer, device)
    code = {"code": stack.latest_code(customer.phone)}
    response = await stack.client("verification").post(f"/v1/verifications/{verification['id']}/otp", json=code, headers=auth(customer.user_id))
    assert response.status_code == 200 and response.json()["status"] == "verified", response.text
    return device


def notification_consumer(
    stack: Stack,
    topics: BusTopics,
    *,
    subscriptions: Subscriptions | None = None,
    unit_of_work: Callable[[], UnitOfWork] | None = None,
    group_id: str | None = None,
    **options: Any,
) -> EventConsumer:
    """A consumer on notification's database and inbox, built as the service builds its own, with
    the test's handlers, unit of work or options (max_attempts, retry_backoff, metrics) instead."""
    runtime = stack.runtime("notification")
    return EventConsumer(
        bus=topics.bus_of("notification"),
        group_id=group_id or runtime.settings.consumer_group,
        topic=topics.topic,
        dlq_topic=topics.dlq_topic,
        unit_of_work=unit_of_work or runtime.unit_of_work,
        inbox_model=InboxEntry,
        subscriptions=subscriptions or notification_handlers.SUBSCRIPTIONS,
        keys=runtime.keys.trusted,
        deps=runtime.deps,
        **options,
    )


async def notification_knows(stack: Stack, *envelopes: Envelope) -> None:
    """Notification knows the requests of these events, as if it had seen their UnbindRequested:
    tests of the consumer's mechanics publish later events alone."""
    async with stack.runtime("notification").unit_of_work() as uow:
        for data in {(e.data.request_id, e.data.binding_id, e.data.user_id) for e in envelopes}:
            uow.session.add(KnownRequest(request_id=data[0], binding_id=data[1], user_id=data[2]))
