"""Small factories for test data, written through each service's own unit of work."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import orjson

from services.binding import service as binding_service
from services.binding.agreements import CURRENT as CURRENT_AGREEMENT
from services.binding.models import (
    Benefit,
    Binding,
    BindingStatus,
    CreditAccount,
    Instalment,
    Mandate,
    RepaymentAccount,
)
from services.binding.service import today
from services.notification.main import SUBSCRIPTIONS as NOTIFICATION_SUBSCRIPTIONS
from services.notification.models import Contact, InboxEntry, KnownRequest
from shared.account_numbers import with_check_digit
from shared.cloudevents import Envelope
from shared.consumer import EventConsumer, Subscriptions
from shared.events import BindingVerified
from shared.lenders import LENDER_HEADER, LENDERS, SIGNATURE_HEADER, sign_callback
from shared.uow import UnitOfWork
from tests.keys import KEYS
from tests.stack import BusTopics, Stack, auth, eventually
from tools.device_simulator import DeviceSimulator


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
                    id=f"ra-{suffix}",
                    user_id=user_id,
                    lender="Example Bank",
                    lender_id="example_bank",
                    account_number=account_number,
                    monthly_instalment=6500,
                    due_day=15,
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
                Instalment(
                    id=f"i-{suffix}",
                    repayment_account_id=f"ra-{suffix}",
                    period=due.strftime("%Y-%m"),
                    amount=6500,
                    due_date=due,
                ),
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


def lender_callback(
    mandate_id: str,
    decision: str = "confirmed",
    *,
    lender: str = "example_bank",
    reason: str | None = None,
    callback_id: str | None = None,
    signed_at: float | None = None,
    secret: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments of a lender's signed `POST /v1/lenders/callbacks` (under the lender's own
    secret, unless `secret` says otherwise; signed now, unless `signed_at`)."""
    body = orjson.dumps(
        {
            "callback_id": callback_id or f"cb-{uuid.uuid4()}",
            "mandate_id": mandate_id,
            "decision": decision,
            "reason": reason,
        }
    )
    signature = sign_callback(
        secret or KEYS.secret(LENDERS[lender].secret_name), int(signed_at or time.time()), body
    )
    return {
        "content": body,
        "headers": {"Content-Type": "application/json", LENDER_HEADER: lender, SIGNATURE_HEADER: signature},
    }


def lender_requests(stack: Stack) -> list[dict[str, Any]]:
    """What notification's lender webhook delivered (the development sink of an in-process stack)."""
    sink = stack.var_dir / "institution.jsonl"
    return (
        [orjson.loads(orjson.loads(line)["body"]) for line in sink.read_bytes().splitlines()]
        if sink.exists()
        else []
    )


async def mandate_request(stack: Stack, binding_id: str) -> dict[str, Any]:
    """The lender's copy of a binding's mandate request, once notification delivered it."""

    def find() -> dict[str, Any] | None:
        return next(
            (
                r
                for r in lender_requests(stack)
                if r["type"] == "MandateRequested" and r["binding_id"] == binding_id
            ),
            None,
        )

    return await eventually(find, 30, f"no mandate request reached the lender for {binding_id}")


async def bind_account(
    stack: Stack, user_id: str, phone: str, body: dict[str, Any], *, decision: str | None = "confirmed"
) -> dict[str, Any]:
    """Bind as the app and the lender do: the request, its SMS code, then the lender's signed answer
    to the mandate notification sent it (`decision` None: leave the mandate pending). Returns the
    binding as the customer then sees it."""
    client, headers = stack.client("binding"), auth(user_id)
    sent_before = len(stack.codes(phone))
    asked = await client.post("/v1/bindings", json=body, headers=headers)
    assert asked.status_code == 202 and asked.json()["status"] == "pending", asked.text
    binding = asked.json()
    await eventually(lambda: len(stack.codes(phone)) > sent_before, 15, "no binding code was sent")
    checked = await stack.client("verification").post(
        f"/v1/verifications/{binding['verification_id']}/otp",
        json={"code": stack.latest_code(phone)},
        headers=headers,
    )
    assert checked.status_code == 200 and checked.json()["status"] == "verified", checked.text
    if decision is None or not body.get("auto_debit", True):
        return await wait_for_binding(stack, user_id, binding["id"], lambda view: view["status"] == "active")
    request = await mandate_request(stack, binding["id"])
    answered = await client.post(
        "/v1/lenders/callbacks", **lender_callback(request["mandate_id"], decision, lender=request["lender"])
    )
    assert answered.status_code == 200, answered.text
    return await wait_for_binding(
        stack, user_id, binding["id"], lambda view: view["mandate_status"] != "pending"
    )


async def wait_for_binding(
    stack: Stack,
    user_id: str,
    binding_id: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 30,
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        view = (await stack.client("binding").get(f"/v1/bindings/{binding_id}", headers=auth(user_id))).json()
        return view if predicate(view) else None

    return await eventually(check, timeout, f"binding {binding_id} never reached the expected state")


async def code_confirmed(stack: Stack, binding_id: str) -> None:
    """Binding handles the BindingVerified verification would send once the customer confirmed the code
    (for tests of binding alone, with no verification service and no workers)."""
    runtime = stack.runtime("binding")
    async with runtime.unit_of_work() as uow:
        binding = await uow.session.get(Binding, binding_id)
        assert binding is not None and binding.bind_request_id and binding.verification_id
        verified = BindingVerified(
            request_id=binding.bind_request_id,
            binding_id=binding.id,
            user_id=binding.user_id,
            verification_id=binding.verification_id,
        )
        await binding_service.confirm_binding(uow, runtime.settings, verified)


async def mandate_of(stack: Stack, user_id: str, binding_id: str) -> dict[str, Any]:
    """The binding's newest mandate, as its report shows it (with its id, which the lender was sent)."""
    report = await stack.client("binding").get(f"/v1/bindings/{binding_id}/report", headers=auth(user_id))
    assert report.status_code == 200, report.text
    return report.json()["mandates"][-1]


# Who changes the risk rules in tests: a rules admin (who reads the cases too).
RULES_ADMIN = auth("rules-admin-1", "ops", "rules_admin")


async def save_rules(risk: Any, rules: list[dict[str, Any]], *, comment: str | None = None) -> dict[str, Any]:
    """Save a rule set through risk's (or the dashboard's) client `risk`, as a rules admin, on top of
    the version in force (its ETag as If-Match); returns the version in force after."""
    etag = (await risk.get("/v1/rules", headers=RULES_ADMIN)).headers["ETag"]
    body: dict[str, Any] = {"rules": rules} | ({"comment": comment} if comment else {})
    response = await risk.put("/v1/rules", json=body, headers={**RULES_ADMIN, "If-Match": etag})
    assert response.status_code == 200, response.text
    return response.json()


def card_number() -> str:
    """A fresh, valid (Luhn) 16-digit card number."""
    return with_check_digit(f"62220{uuid.uuid4().int % 10**10:010d}")


def unbind_body(reason: str = "fund_planning", **extra: object) -> dict[str, object]:
    return {"reason": reason, **extra}


def idempotency_key() -> str:
    return f"idem-{uuid.uuid4()}"


async def request_unbind(stack: Stack, customer: Customer, **body: object) -> str:
    """The customer asks to unbind their binding (202); the request's id."""
    response = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests",
        json=unbind_body(**body),
        headers={**auth(customer.user_id), "Idempotency-Key": idempotency_key()},
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def pass_verification(
    stack: Stack,
    customer: Customer,
    request_id: str,
    verification_id: str,
    *,
    device: DeviceSimulator | None = None,
) -> dict:
    """Pass every method the verification asks for: the latest SMS code, then the device's signature."""
    client, headers = stack.client("verification"), auth(customer.user_id)
    state = (await client.get(f"/v1/verifications/{verification_id}", headers=headers)).json()
    if "otp" in state["methods"]:
        # The verification exists before its SMS leaves; until then the latest code is an older one.
        state = await eventually(
            lambda: code_sent(client, verification_id, headers),
            10,
            f"the code of verification {verification_id} was not sent",
        )
        response = await client.post(
            f"/v1/verifications/{verification_id}/otp",
            json={"code": stack.latest_code(customer.phone)},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        state = response.json()
    if "biometric" in state["methods"]:
        assert device is not None, "a step-up verification needs the customer's device"
        challenge = (
            await client.post(f"/v1/verifications/{verification_id}/biometric/challenge", headers=headers)
        ).json()
        signed = device.sign(challenge["challenge"], verification_id, request_id, challenge["impact_hash"])
        response = await client.post(
            f"/v1/verifications/{verification_id}/biometric", json=signed, headers=headers
        )
        assert response.status_code == 200, response.text
        state = response.json()
    assert state["status"] == "verified"
    return state


async def code_sent(client: httpx.AsyncClient, verification_id: str, headers: dict[str, str]) -> dict | None:
    state = (await client.get(f"/v1/verifications/{verification_id}", headers=headers)).json()
    return state if state["otp_delivery"] == "sent" else None


async def pending_device(
    stack: Stack, customer: Customer, device: DeviceSimulator | None = None, name: str = "Phone"
) -> tuple[DeviceSimulator, dict[str, Any]]:
    """A device key enrolled with the customer's token alone: pending, its code sent by SMS.
    Returns the device and the enrolment's verification."""
    device = device or DeviceSimulator.generate(f"d-{uuid.uuid4().hex[:8]}")
    sent_before = len(stack.codes(customer.phone))
    response = await stack.client("verification").post(
        "/v1/devices", json=device.enrolment(name), headers=auth(customer.user_id)
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["device"]["status"], body["verification"]["purpose"]) == ("pending", "device_enrolment"), (
        body
    )
    await eventually(lambda: len(stack.codes(customer.phone)) > sent_before, 10, "no enrolment code was sent")
    return device, body["verification"]


async def enrolled_device(
    stack: Stack, customer: Customer, device: DeviceSimulator | None = None, name: str = "Phone"
) -> DeviceSimulator:
    """An active device key: enrolled, then its SMS code confirmed."""
    device, verification = await pending_device(stack, customer, device, name)
    code = {"code": stack.latest_code(customer.phone)}
    response = await stack.client("verification").post(
        f"/v1/verifications/{verification['id']}/otp", json=code, headers=auth(customer.user_id)
    )
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
        subscriptions=subscriptions or NOTIFICATION_SUBSCRIPTIONS,
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


# A reason that fits each decision of an unbind request (a dispute's decisions take a DisputeFinding).
DEFAULT_REASONS = {"approve": "identity_confirmed_by_call", "deny": "identity_not_confirmed"}


def reviewer_auth(subject: str = "rev-1") -> dict[str, str]:
    """The headers of a reviewer (staff roles add up: a reviewer reads as ops too)."""
    return auth(subject, "ops", "reviewer")


async def decide_review(
    client: httpx.AsyncClient,
    review_id: str,
    decision: str,
    *,
    reason: str | None = None,
    reviewer: str = "rev-1",
    **body: Any,
) -> httpx.Response:
    """Claim a review as `reviewer`, then decide it (`body`: note, customer_message). The
    claim's refusal (a closed case, another's claim, four eyes) is answered as it is."""
    headers = reviewer_auth(reviewer)
    claimed = await client.post(f"/v1/reviews/{review_id}/claim", headers=headers)
    if claimed.status_code != 200:
        return claimed
    return await client.post(
        f"/v1/reviews/{review_id}/decision",
        json={"decision": decision, "reason": reason or DEFAULT_REASONS[decision], **body},
        headers=headers,
    )
