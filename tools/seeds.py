"""The data the tools write into the services' databases: the demo customers `unbind seed` (and
`unbind up`) adds to empty development databases, and the synthetic customers of `unbind chaos`
and `unbind bench` (tools/population.py). Each service's part is a table of its rows, written
through its own models and repository; `DEMO` and `POPULATION` say which services have a part.

None of it belongs in production: the demo phone's key comes from a public seed
(tools/device_simulator.py), which is why `unbind seed` runs in development only.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.binding import agreements
from services.binding import repository as binding_repository
from services.binding.models import (
    Benefit,
    Binding,
    BindingStatus,
    CreditAccount,
    Instalment,
    Mandate,
    MandateStatus,
    RepaymentAccount,
)
from services.binding.models import CustomerLocale as BindingCustomerLocale
from services.binding.service import SHANGHAI, credit_limit_contribution, today
from services.notification import repository as notification_repository
from services.notification.models import Contact, DeviceName
from services.risk import repository as risk_repository
from services.risk.models import CustomerProfile, KnownDevice
from services.verification import repository as verification_repository
from services.verification.models import CustomerLocale as VerificationCustomerLocale
from services.verification.models import Device, DeviceStatus
from shared.db import utcnow
from shared.uow import UnitOfWork
from tools.device_simulator import DEMO_DEVICE_ID, DeviceSimulator
from tools.population import SyntheticCustomer

# --- the demo: Zhang San and Li Si ---------------------------------------------------------

DEMO_PHONE_NAME = "张三的 iPhone"


@dataclass(frozen=True)
class DemoBinding:
    user_id: str
    suffix: str
    account_number: str
    monthly_instalment: int
    due_in_days: int  # from today; negative: overdue


# binding: one active mortgage binding each. Zhang San's instalment is due in 2 days under
# auto-debit (the INSTALMENT_DUE_SOON blocker), Li Si's is overdue (the OVERDUE blocker).
BINDINGS = (
    DemoBinding("u-zhangsan", "zhangsan", "6222021234514821", 6500, due_in_days=2),
    DemoBinding("u-lisi", "lisi", "6217001234507733", 4200, due_in_days=-5),
)
# binding and verification keep a copy of the saved locales: Li Si reads English (as notification's
# contact has it); Zhang San, the default.
SAVED_LOCALES = {"u-lisi": "en"}
# verification: Zhang San's enrolled phone (the demo device key), active.
DEVICES = ((DeviceSimulator.demo(), "u-zhangsan", DEMO_PHONE_NAME),)
# notification: how to reach each of them, and the name of Zhang San's phone (seeded active in
# verification, so never enrolled through a code, which is how notification learns a name).
CONTACTS = (
    {"user_id": "u-zhangsan", "phone": "+8613812345678", "email": "zhangsan@example.com", "locale": "zh-CN"},
    {"user_id": "u-lisi", "phone": "+8613987654321", "locale": "en"},
)
# risk: when each became a customer, and Zhang San's phone (seeded, it announced no DeviceEnrolled).
PROFILES = (
    ("u-zhangsan", datetime(2019, 3, 1, tzinfo=SHANGHAI)),
    ("u-lisi", datetime(2023, 9, 12, tzinfo=SHANGHAI)),
)
KNOWN_DEVICES = (("u-zhangsan", DEMO_DEVICE_ID),)


async def seed_binding(uow: UnitOfWork) -> bool:
    """Only into an empty database, like every demo seed: True if it wrote."""
    if await binding_repository.count_bindings(uow.session):
        return False
    on = today()
    for demo in BINDINGS:
        due = on + timedelta(days=demo.due_in_days)
        binding_id = f"b-{demo.suffix}-mortgage"
        await _active_binding(
            uow, demo.user_id, binding_id, demo.suffix,
            account_number=demo.account_number, monthly_instalment=demo.monthly_instalment, due=due,
        )  # fmt: skip
        # The demo's history: last month's instalment, paid by the auto-debit, and a second benefit.
        previous = (due.replace(day=1) - timedelta(days=1)).replace(day=min(due.day, 28))
        uow.session.add_all(
            [
                Benefit(id=_new_id(), binding_id=binding_id, code="interest_free_days", value=10),
                Instalment(
                    id=_new_id(),
                    repayment_account_id=f"ra-{demo.suffix}",
                    period=previous.strftime("%Y-%m"),
                    amount=demo.monthly_instalment,
                    due_date=previous,
                    paid_at=datetime.combine(previous, datetime.min.time(), SHANGHAI),
                    paid_by="auto_debit",
                ),
            ]
        )
    uow.session.add_all(
        [
            BindingCustomerLocale(user_id=user_id, locale=locale, updated_at=utcnow())
            for user_id, locale in SAVED_LOCALES.items()
        ]
    )
    return True


async def seed_verification(uow: UnitOfWork) -> bool:
    if await verification_repository.count_devices(uow.session):
        return False
    now = utcnow()
    uow.session.add_all(
        [
            Device(
                id=device.device_id,
                user_id=user_id,
                name=name,
                public_key_pem=device.public_key_pem,
                status=DeviceStatus.ACTIVE,
                counter=0,
                created_at=now,
                activated_at=now,
            )
            for device, user_id, name in DEVICES
        ]
    )
    uow.session.add_all(
        [
            VerificationCustomerLocale(user_id=user_id, locale=locale, updated_at=now)
            for user_id, locale in SAVED_LOCALES.items()
        ]
    )
    return True


async def seed_risk(uow: UnitOfWork) -> bool:
    if await risk_repository.count_profiles(uow.session):
        return False
    now = utcnow()
    uow.session.add_all(
        [CustomerProfile(user_id=user_id, account_opened_at=opened) for user_id, opened in PROFILES]
    )
    uow.session.add_all(
        [
            KnownDevice(user_id=user_id, device_id=device_id, first_seen_at=now, enrolled_at=now)
            for user_id, device_id in KNOWN_DEVICES
        ]
    )
    return True


async def seed_notification(uow: UnitOfWork) -> bool:
    if await notification_repository.count_contacts(uow.session):
        return False
    uow.session.add_all([Contact(**contact) for contact in CONTACTS])
    uow.session.add_all(
        [
            DeviceName(device_id=device.device_id, user_id=user_id, name=name, updated_at=utcnow())
            for device, user_id, name in DEVICES
        ]
    )
    return True


# The demo's part of each service that has one: `unbind seed` runs them in this order.
DEMO: dict[str, Callable[[UnitOfWork], Awaitable[bool]]] = {
    "binding": seed_binding,
    "verification": seed_verification,
    "risk": seed_risk,
    "notification": seed_notification,
}


# --- synthetic customers (load and chaos runs) ---------------------------------------------


async def populate_binding(uow: UnitOfWork, customers: Sequence[SyntheticCustomer]) -> None:
    """A credit account and one active mortgage binding each, with auto-debit and an instalment due
    in 20 days, so no blocker needs acknowledging."""
    due = today() + timedelta(days=20)
    for customer in customers:
        suffix = customer.binding_id.removeprefix("b-")
        await _active_binding(
            uow, customer.user_id, customer.binding_id, suffix,
            account_number=customer.account_number, monthly_instalment=customer.monthly_instalment, due=due,
        )  # fmt: skip


async def _active_binding(
    uow: UnitOfWork,
    user_id: str,
    binding_id: str,
    suffix: str,
    *,
    account_number: str,
    monthly_instalment: int,
    due: date,
) -> None:
    """A credit account, a repayment account and their active binding, with its auto-debit, its
    credit-limit benefit and the instalment due on `due`."""
    contribution = credit_limit_contribution(monthly_instalment)
    uow.session.add_all(
        [
            CreditAccount(id=f"ca-{suffix}", user_id=user_id, credit_limit=30_000),
            RepaymentAccount(
                id=f"ra-{suffix}", user_id=user_id, lender="Example Bank", lender_id="example_bank",
                account_number=account_number, monthly_instalment=monthly_instalment, due_day=due.day,
            ),
        ]
    )  # fmt: skip
    await uow.session.flush()
    uow.session.add(
        Binding(
            id=binding_id, user_id=user_id, credit_account_id=f"ca-{suffix}",
            repayment_account_id=f"ra-{suffix}", status=BindingStatus.ACTIVE,
            credit_limit_contribution=contribution, agreement_version=agreements.CURRENT,
        )
    )  # fmt: skip
    await uow.session.flush()
    uow.session.add_all(
        [
            Mandate(id=_new_id(), binding_id=binding_id, kind="auto_debit", status=MandateStatus.ACTIVE),
            Benefit(id=_new_id(), binding_id=binding_id, code="limit_uplift", value=contribution),
            Instalment(
                id=_new_id(),
                repayment_account_id=f"ra-{suffix}",
                period=due.strftime("%Y-%m"),
                amount=monthly_instalment,
                due_date=due,
            ),
        ]
    )


async def populate_notification(uow: UnitOfWork, customers: Sequence[SyntheticCustomer]) -> None:
    """Contact details: the phone the development SMS gateway writes their codes to."""
    uow.session.add_all(
        [Contact(user_id=customer.user_id, phone=customer.phone, locale="zh-CN") for customer in customers]
    )


# The services that keep something of a synthetic customer before it acts.
POPULATION: dict[str, Callable[[UnitOfWork, Sequence[SyntheticCustomer]], Awaitable[None]]] = {
    "binding": populate_binding,
    "notification": populate_notification,
}


def _new_id() -> str:
    return str(uuid.uuid4())
