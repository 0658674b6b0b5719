"""What a customer reads, over the real broker on both databases, in each language: two customers
(one who switched to English in their preferences, one who kept Chinese) bind an account and walk
the paths of an unbind (completed with a device step-up, cancelled, declined by verification then
by review after an appeal), enrol and remove a device, and run into problems. Every text they are
sent (SMS, inbox) and every customer-visible field of the request view, the audit and the problems
must read as words in their language (tests/copy.py), name the account and device as they know
them, and every SMS carries the sender's signature.

The catalogues' own coverage (every key, every locale) is checked without a flow at the end."""

from __future__ import annotations

import ast
import io
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from services.binding import texts as binding_texts
from services.binding.service import FOLLOW_UP_AFTER_PAUSE, FOLLOW_UP_AFTER_SWITCH, FOLLOW_UP_AFTER_UNBIND
from services.notification.templates import PROBLEM_TEXTS as NOTIFICATION_TEXTS
from services.verification import texts as verification_texts
from services.verification.models import VerificationStatus
from shared.denials import DENIAL_REASONS, denial_reason
from shared.i18n import LOCALES, Catalogue, money
from shared.lenders import LENDERS
from shared.problems import _HTTP_CODES, PROBLEM_TEXTS
from tests.binding.test_api import assert_problem
from tests.binding.test_lifecycle import pending_review_for
from tests.copy import assert_customer_copy
from tests.factories import (
    CURRENT_AGREEMENT,
    Customer,
    card_number,
    customer_with_binding,
    decide_review,
    enrolled_device,
    idempotency_key,
    pass_verification,
    unbind_body,
)
from tests.stack import BusTopics, Stack, auth, eventually, running_stack
from tests.verification.test_api import wrong
from tools.device_simulator import DeviceSimulator

ROOT = Path(__file__).resolve().parents[2]
SIGNATURE = "【unbind】"
DEVICE_NAMES = {"zh-CN": "张三的手机", "en": "Zhang's phone"}
# What a reviewer writes to the customer, in the customer's language.
REVIEWER_MESSAGES = {"zh-CN": "如有疑问，请致电客服。", "en": "Call us if you have any questions."}
ACCOUNT = {"zh-CN": "示例银行 尾号 {last4}", "en": "Example Bank mortgage account ending {last4}"}


async def bind(stack: Stack, customer: Customer, lender: str) -> Customer:
    """A binding made through the API at `lender`, its SMS code confirmed (so notification hears
    BindingRequested and BindingCreated; no lender answers its mandate here)."""
    number = card_number()
    body = {
        "lender": lender,
        "account_number": number,
        "monthly_instalment": 6500,
        "due_day": 28,
        "agreement_version": CURRENT_AGREEMENT,
    }
    sent_before = len(stack.codes(customer.phone))
    response = await stack.client("binding").post("/v1/bindings", json=body, headers=auth(customer.user_id))
    assert response.status_code == 202, response.text
    assert response.json()["repayment_account"]["lender_id"] == "example_bank"
    await eventually(lambda: len(stack.codes(customer.phone)) > sent_before, 15, "no binding code was sent")
    code = {"code": stack.latest_code(customer.phone)}
    checked = await stack.client("verification").post(
        f"/v1/verifications/{response.json()['verification_id']}/otp",
        json=code,
        headers=auth(customer.user_id),
    )
    assert checked.status_code == 200, checked.text
    binding_id = response.json()["id"]
    await eventually(
        lambda: _binding_active(stack, customer.user_id, binding_id), 15, "the binding never became active"
    )
    return Customer(
        customer.user_id, customer.phone, number, binding_id, customer.credit_limit, customer.contribution
    )


async def _binding_active(stack: Stack, user_id: str, binding_id: str) -> bool:
    return (await stack.client("binding").get(f"/v1/bindings/{binding_id}", headers=auth(user_id))).json()[
        "status"
    ] == "active"


async def request_unbind(stack: Stack, customer: Customer, **body: Any) -> dict[str, Any]:
    """Ask to unbind; returns the request once it waits for a verification whose code was sent, or for a
    review."""
    sent_before = len(stack.codes(customer.phone))
    headers = {**auth(customer.user_id), "Idempotency-Key": idempotency_key()}
    response = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/unbind-requests", json=unbind_body(**body), headers=headers
    )
    assert response.status_code == 202, response.text
    view = await stack.wait_for_request(
        response.json()["id"],
        customer.user_id,
        lambda view: view["verification"] is not None or view["status"] == "under_review",
    )
    if view["verification"] is not None:
        await eventually(lambda: len(stack.codes(customer.phone)) > sent_before, 15, "no code was sent")
    return view


async def walk_every_path(stack: Stack, customer: Customer, locale: str) -> list[str]:
    """The paths of an unbind, as `customer`; returns the ids of their requests."""
    client, headers = stack.client("binding"), auth(customer.user_id)
    device = await enrolled_device(
        stack, customer, DeviceSimulator.generate(f"d-{customer.user_id}"), name=DEVICE_NAMES[locale]
    )

    # Cancelled while its code waits.
    cancelled = await request_unbind(stack, customer)
    assert (
        await client.post(f"/v1/unbind-requests/{cancelled['id']}/cancel", headers=headers)
    ).status_code == 200

    # Declined: five wrong codes; appealed; declined again by review.
    declined = await request_unbind(stack, customer)
    url = f"/v1/verifications/{declined['verification']['id']}/otp"
    code = stack.latest_code(customer.phone)
    for _ in range(5):
        await stack.client("verification").post(url, json={"code": wrong(code)}, headers=headers)
    await stack.wait_for_request(declined["id"], customer.user_id, lambda view: view["status"] == "rejected")
    appeal = await client.post(
        f"/v1/unbind-requests/{declined['id']}/appeal", json={"message": "it was me"}, headers=headers
    )
    assert appeal.status_code == 200, appeal.text
    review = await pending_review_for(stack, declined["id"])
    denied = await decide_review(
        stack.client("risk"),
        review["id"],
        "deny",
        reason="identity_not_confirmed",
        note="score 90, flagged",
        customer_message=REVIEWER_MESSAGES[locale],
    )
    assert denied.status_code == 200, denied.text
    await stack.wait_for_request(
        declined["id"],
        customer.user_id,
        lambda view: view["status"] == "rejected" and view["appealed_at"] is not None,
    )

    # Completed, from the enrolled phone: a third request in a day goes to review; approved, then a
    # code and the fingerprint.
    done = await request_unbind(stack, customer, device_id=device.device_id)
    if done["status"] == "under_review":
        sent_before = len(stack.codes(customer.phone))
        review = await pending_review_for(stack, done["id"])
        await decide_review(stack.client("risk"), review["id"], "approve")
        done = await stack.wait_for_request(
            done["id"], customer.user_id, lambda view: view["verification"] is not None
        )
        await eventually(
            lambda: len(stack.codes(customer.phone)) > sent_before, 15, "no code after the approval"
        )
    await pass_verification(stack, customer, done["id"], done["verification"]["id"], device=device)
    await stack.wait_for_request(done["id"], customer.user_id, lambda view: view["status"] == "completed")
    disputed = await client.post(
        f"/v1/unbind-requests/{done['id']}/dispute", json={"reason": "repayment_problem"}, headers=headers
    )
    assert disputed.status_code == 200, disputed.text

    # The phone is removed.
    assert (
        await stack.client("verification").delete(f"/v1/devices/{device.device_id}", headers=headers)
    ).status_code == 204
    return [cancelled["id"], declined["id"], done["id"]]


async def problems_answered(stack: Stack, customer: Customer, stranger: Customer) -> list[dict[str, Any]]:
    """A problem of each kind a customer runs into, from each service that answers them."""
    headers = auth(customer.user_id)
    binding, verification, notification = (
        stack.client("binding"),
        stack.client("verification"),
        stack.client("notification"),
    )
    unbind = f"/v1/bindings/{customer.binding_id}/unbind-requests"
    keyed = {**headers, "Idempotency-Key": idempotency_key()}
    nowhere = {
        "lender": "Nowhere Bank",
        "account_number": card_number(),
        "monthly_instalment": 1,
        "due_day": 1,
        "agreement_version": CURRENT_AGREEMENT,
    }
    answers = [
        assert_problem(
            await binding.get(f"/v1/bindings/{stranger.binding_id}", headers=headers), 404, "not-found"
        ),
        assert_problem(
            await binding.post("/v1/bindings", json=nowhere, headers=headers), 422, "unknown-lender"
        ),
        assert_problem(
            await binding.post(unbind, json={"reason": "bored"}, headers=keyed), 422, "validation-error"
        ),
        assert_problem(await binding.post(unbind, json=unbind_body(), headers=keyed), 409, "binding-unbound"),
        assert_problem(await verification.get("/v1/devices/d-none", headers=headers), 404, "not-found"),
        assert_problem(
            await notification.put(
                "/v1/preferences", json={"opt_out": {"otp_code": ["sms"]}}, headers=headers
            ),
            422,
            "security-message",
        ),
    ]
    return answers


# Who a customer may read as having acted: themselves, a service, the system, or staff as `ops`
# (never a reviewer's login).
ACTORS_A_CUSTOMER_SEES = {"ops", "system", "binding", "verification", "risk", "notification"}


def check_request_view(view: dict[str, Any], locale: str, user_id: str) -> None:
    where = f"request {view['id']} ({view['status']})"
    if view["risk"] is not None:
        assert_customer_copy(view["risk"]["summary"], locale, where=f"{where} risk")
    for entry in view["timeline"]:
        assert_customer_copy(entry["detail"], locale, where=f"{where} timeline {entry['event_type']}")
        assert entry["actor"] in ACTORS_A_CUSTOMER_SEES | {user_id}, (
            f"{where} timeline names {entry['actor']}"
        )
    if view["status"] == "rejected":
        assert_customer_copy(view["outcome_reason"], locale, where=f"{where} outcome_reason")
    for item in view["follow_up"]:
        for field in ("title", "body"):
            assert_customer_copy(item[field], locale, where=f"{where} follow_up {item['code']} {field}")
        if item["action"]:
            assert_customer_copy(item["action"]["label"], locale, where=f"{where} follow_up action")
    assert "score" not in str(view) and "flag" not in str(view), "nothing internal reaches the customer"


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_customer_reads_every_path_in_their_language(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path, locale: str
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        seeded = await customer_with_binding(stack)
        stranger = await customer_with_binding(stack)
        if locale == "en":
            # Saved in notification; binding and verification learn it from PreferencesChanged.
            saved = await stack.client("notification").put(
                "/v1/preferences", json={"locale": "en"}, headers=auth(seeded.user_id)
            )
            assert saved.status_code == 200, saved.text
            await eventually(
                lambda: _answers_in_english(stack, seeded), 30, "binding never learnt the saved locale"
            )
        customer = await bind(stack, seeded, "Example Bank" if locale == "en" else "示例银行")
        last4 = customer.account_number[-4:]

        request_ids = await walk_every_path(stack, customer, locale)

        # No Accept-Language: the saved locale (en), or zh-CN.
        for request_id in request_ids:
            view = await stack.request_status(request_id, customer.user_id)
            check_request_view(view, locale, customer.user_id)
            audit = (
                await stack.client("binding").get(
                    f"/v1/unbind-requests/{request_id}/audit", headers=auth(customer.user_id)
                )
            ).json()
            for entry in audit:
                assert_customer_copy(entry["reason"], locale, where=f"audit {entry['action']}")
                assert entry["actor"] in ACTORS_A_CUSTOMER_SEES | {customer.user_id}, (
                    f"audit names {entry['actor']}"
                )
        completed = await stack.request_status(request_ids[-1], customer.user_id)
        assert [item["code"] for item in completed["follow_up"]] == FOLLOW_UP_AFTER_UNBIND
        adjust_plan = next(item for item in completed["follow_up"] if item["code"] == "adjust_plan")
        assert "400-000-9555" in adjust_plan["body"], "the follow-up names the lender's hotline"

        for problem in await problems_answered(stack, customer, stranger):
            assert_customer_copy(problem["detail"], locale, where=f"problem {problem['type']}")
        await check_report(stack, customer, locale)

        # Every SMS and inbox message: words in their language, the account or device named, signed.
        # Each binding's events keep their order, not the order between bindings: wait for all.
        expected = {
            *("binding_created", "unbind_requested", "unbind_cancelled", "verification_failed"),
            *("unbind_rejected", "unbind_appealed", "appeal_denied", "review_approved"),
            *("verification_requested", "verified", "unbind_completed", "dispute_received"),
            *("device_enrolled", "device_revoked"),
        }
        inbox = await eventually(
            lambda: _inbox_with(stack, customer, expected), 30, "a message never reached the inbox"
        )
        assert any(
            REVIEWER_MESSAGES[locale] in message["body"]
            for message in inbox
            if message["kind"] == "appeal_denied"
        ), "the reviewer's message reached the customer"
        account = ACCOUNT[locale].format(last4=last4)
        for message in inbox:
            for text in (message["title"], message["body"]):
                assert_customer_copy(
                    text, locale, allowed=(DEVICE_NAMES[locale],), where=f"inbox {message['kind']}"
                )
            named = DEVICE_NAMES[locale] if message["kind"].startswith("device_") else account
            assert named in message["body"], f"{message['kind']} does not name {named!r}: {message['body']}"
        sms = [message["text"] for message in stack.sms_messages() if message["to"] == customer.phone]
        assert len(sms) >= 10
        for text in sms:
            assert text.startswith(SIGNATURE), f"unsigned SMS: {text}"
            assert_customer_copy(
                text.removeprefix(SIGNATURE), locale, allowed=(DEVICE_NAMES[locale],), where="SMS"
            )
        assert any(
            account in text and ("验证码为" in text or "verification code is" in text) for text in sms
        ), "the code SMS names the account"
        assert any(
            DEVICE_NAMES[locale] in text and ("验证码为" in text or "verification code is" in text)
            for text in sms
        ), "the enrolment code names the device"


async def ask_for(stack: Stack, customer: Customer, kind: str, body: dict[str, Any]) -> str:
    """A pause or a switch request, through its code to completion; returns its id."""
    sent_before = len(stack.codes(customer.phone))
    headers = {**auth(customer.user_id), "Idempotency-Key": idempotency_key()}
    response = await stack.client("binding").post(
        f"/v1/bindings/{customer.binding_id}/{kind}-requests", json=body, headers=headers
    )
    assert response.status_code == 202, response.text
    view = await stack.wait_for_request(
        response.json()["id"], customer.user_id, lambda view: view["verification"] is not None
    )
    await eventually(lambda: len(stack.codes(customer.phone)) > sent_before, 15, "no code was sent")
    await pass_verification(stack, customer, view["id"], view["verification"]["id"])
    await stack.wait_for_request(view["id"], customer.user_id, lambda view: view["status"] == "completed")
    return view["id"]


@pytest.mark.parametrize("locale", LOCALES)
async def test_a_customer_reads_a_pause_and_a_switch_in_their_language(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path, locale: str
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer, other = await customer_with_binding(stack), await customer_with_binding(stack)
        if locale == "en":
            saved = await stack.client("notification").put(
                "/v1/preferences", json={"locale": "en"}, headers=auth(customer.user_id)
            )
            assert saved.status_code == 200, saved.text
            await eventually(
                lambda: _answers_in_english(stack, customer), 30, "binding never learnt the saved locale"
            )
        headers = auth(customer.user_id)
        impact = (
            await stack.client("binding").get(f"/v1/bindings/{customer.binding_id}/impact", headers=headers)
        ).json()
        for alternative in impact["alternatives"]:
            for text in (
                alternative["title"],
                alternative["summary"],
                *alternative["keeps"],
                *alternative["loses"],
            ):
                assert_customer_copy(text, locale, where=f"alternative {alternative['kind']}")

        paused = await ask_for(stack, customer, "pause", {"months": 2})
        pause_url, switch_url = (
            f"/v1/bindings/{customer.binding_id}/{kind}-requests" for kind in ("pause", "switch")
        )
        same = {"lender": "Example Bank", "account_number": customer.account_number}

        async def refused(url: str, body: dict[str, Any], status: int, code: str) -> dict[str, Any]:
            return assert_problem(
                await stack.client("binding").post(
                    url, json=body, headers={**headers, "Idempotency-Key": idempotency_key()}
                ),
                status,
                code,
            )

        answers = [
            await refused(pause_url, {"months": 1}, 409, "auto-debit-paused"),
            await refused(switch_url, same, 422, "same-account"),
            await refused(switch_url, {**same, "account_number": other.account_number}, 409, "already-bound"),
        ]
        new_number = card_number()
        switched = await ask_for(
            stack, customer, "switch", {"lender": "Harbour Bank", "account_number": new_number}
        )
        quiet = await customer_with_binding(stack, auto_debit=False, locale=locale)
        keyed = {**auth(quiet.user_id), "Accept-Language": locale, "Idempotency-Key": idempotency_key()}
        unpaused = await stack.client("binding").post(
            f"/v1/bindings/{quiet.binding_id}/pause-requests", json={"months": 1}, headers=keyed
        )
        answers.append(assert_problem(unpaused, 409, "no-auto-debit"))
        for problem in answers:
            assert_customer_copy(problem["detail"], locale, where=f"problem {problem['type']}")

        for request_id, follow_up in ((paused, ["repay_during_pause"]), (switched, ["until_new_auto_debit"])):
            view = await stack.request_status(request_id, customer.user_id)
            check_request_view(view, locale, customer.user_id)
            assert [item["code"] for item in view["follow_up"]] == follow_up
            for entry in (
                await stack.client("binding").get(
                    f"/v1/unbind-requests/{request_id}/audit", headers=auth(customer.user_id)
                )
            ).json():
                assert_customer_copy(entry["reason"], locale, where=f"audit {entry['action']}")

        inbox = await eventually(
            lambda: _inbox_with(stack, customer, {"mandate_requested"}),
            30,
            "the new mandate's notice never reached the inbox",
        )
        assert {message["kind"] for message in inbox} >= {
            "unbind_requested",
            "verification_requested",
            "verified",
            "auto_debit_paused",
            "repayment_account_switched",
        }
        old = ACCOUNT[locale].format(last4=customer.account_number[-4:])
        new = (
            ACCOUNT[locale]
            .replace("示例银行", "海港银行")
            .replace("Example Bank", "Harbour Bank")
            .format(last4=new_number[-4:])
        )
        for message in inbox:
            for text in (message["title"], message["body"]):
                assert_customer_copy(text, locale, where=f"inbox {message['kind']}")
                assert "解绑" not in text and "unbind" not in text.lower(), (
                    f"{message['kind']} speaks of unbinding: {text}"
                )
            named = new if message["kind"] == "mandate_requested" else old
            assert named in message["body"], f"{message['kind']} does not name {named!r}: {message['body']}"
        sms = [message["text"] for message in stack.sms_messages() if message["to"] == customer.phone]
        for text in sms:
            assert text.startswith(SIGNATURE), f"unsigned SMS: {text}"
            assert_customer_copy(text.removeprefix(SIGNATURE), locale, where="SMS")
            assert "解绑" not in text and "unbind" not in text.lower().removeprefix(SIGNATURE.lower()), text


async def check_report(stack: Stack, customer: Customer, locale: str) -> None:
    """The account report as a PDF, in the customer's language; its reference numbers aside."""
    url, headers = f"/v1/bindings/{customer.binding_id}/report", auth(customer.user_id)
    report = (await stack.client("binding").get(url, headers=headers)).json()
    pdf = await stack.client("binding").get(url, headers={**headers, "Accept": "application/pdf"})
    assert pdf.status_code == 200, pdf.text
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    references = (
        report["binding"]["id"],
        report["user_id"],
        report["binding"]["credit_account"]["id"],
        report["impact"]["impact_hash"][:16],
        "UTC",
    )
    assert_customer_copy(text, locale, allowed=references, where="the account report PDF")


async def _answers_in_english(stack: Stack, customer: Customer) -> bool:
    response = await stack.client("binding").get(
        f"/v1/bindings/{customer.binding_id}", headers=auth(customer.user_id)
    )
    return response.json()["repayment_account"]["lender"] == "Example Bank"


async def _inbox_with(stack: Stack, customer: Customer, kinds: set[str]) -> list[dict[str, Any]] | None:
    items = (
        await stack.client("notification").get("/v1/notifications?limit=200", headers=auth(customer.user_id))
    ).json()["items"]
    return items if kinds <= {item["kind"] for item in items} else None


async def test_accept_language_wins_over_the_saved_locale(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        await stack.client("notification").put(
            "/v1/preferences", json={"locale": "en"}, headers=auth(customer.user_id)
        )
        await eventually(
            lambda: _answers_in_english(stack, customer), 30, "binding never learnt the saved locale"
        )
        url = f"/v1/bindings/{customer.binding_id}"
        chinese = await stack.client("binding").get(
            url, headers={**auth(customer.user_id), "Accept-Language": "zh-CN,zh;q=0.9"}
        )
        assert chinese.json()["repayment_account"]["lender"] == "示例银行"
        # Verification learnt it too: its problems follow the saved locale, or the header.
        missing = await stack.client("verification").get("/v1/devices/d-none", headers=auth(customer.user_id))
        assert assert_problem(missing, 404, "not-found")["detail"] == PROBLEM_TEXTS.render(
            "problem.not-found", "en"
        )
        header = await stack.client("verification").get(
            "/v1/devices/d-none", headers={**auth(customer.user_id), "Accept-Language": "zh-CN"}
        )
        assert assert_problem(header, 404, "not-found")["detail"] == PROBLEM_TEXTS.render(
            "problem.not-found", "zh-CN"
        )


# --- the catalogues themselves --------------------------------------------------------------

CUSTOMER_SERVICES = {
    "binding": binding_texts.TEXTS,
    "verification": verification_texts.TEXTS,
    "notification": NOTIFICATION_TEXTS,
}
# Problems only ops, a service or a lender ever get (the customer never calls these).
NOT_FOR_CUSTOMERS = {"naive-datetime", "not-ready", "request-notice-pending", "unknown-request"}
NOT_FOR_CUSTOMERS |= {
    "invalid-signature",
    "callback-id-reused",
    "callback-in-flight",
    "mandate-decided",
    "mandate-not-requested",
}
NOT_FOR_CUSTOMERS |= {
    "filter-required",
    "one-filter",
    "not-resendable",
}  # support's lookups and resends (staff only)


def problem_codes(paths: list[Path]) -> set[str]:
    """The codes of every problem these files raise or answer: `Problem(status, "code", ...)`,
    `conflict("code", ...)`, `problem_response(request, status, "code", ...)`."""
    codes: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            index = {"Problem": 1, "conflict": 0, "problem_response": 2}.get(name)
            if (
                index is not None
                and len(node.args) > index
                and isinstance(node.args[index], ast.Constant)
                and isinstance(node.args[index].value, str)
            ):
                codes.add(node.args[index].value)
    return codes


def test_the_check_finds_the_problems_a_file_raises(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        'raise Problem(422, "made-up", "T")\nraise conflict("clash", "d")\nproblem_response(r, 409, "other", '
        '"t")\nraise Problem(400, code)\n'
    )
    assert problem_codes([source]) == {"made-up", "clash", "other"}


@pytest.mark.parametrize("service", sorted(CUSTOMER_SERVICES))
def test_every_problem_a_customer_can_get_has_words_in_every_locale(service: str) -> None:
    catalogue = CUSTOMER_SERVICES[service]
    codes = problem_codes(
        [*(ROOT / "services" / service).glob("*.py"), *(ROOT / "shared").glob("*.py")]
    ) | set(_HTTP_CODES.values())
    if service == "verification":
        # Codes made at run time: the status a verification is in, and why an attempt was refused.
        codes |= {
            f"verification-{status}" for status in VerificationStatus if status != VerificationStatus.PENDING
        }
        codes |= {
            "wrong-code",
            "challenge-invalid",
            "device-unknown",
            "device-not-active",
            "device-newer-than-request",
            "signature-invalid",
            "counter-not-increased",
        }
    missing = sorted(
        code
        for code in codes - NOT_FOR_CUSTOMERS
        if f"problem.{code}" not in catalogue and f"problem.{code}" not in PROBLEM_TEXTS
    )
    assert not missing, f"{service} answers problems with no words for a customer: {missing}"


def recorded_actions() -> set[str]:
    """The actions binding writes to a request's audit (`_transition`, `_end`, `_audit`: the 4th argument)."""
    tree = ast.parse((ROOT / "services" / "binding" / "service.py").read_text())
    calls = (
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("_transition", "_end", "_audit")
    )
    return {
        call.args[3].value for call in calls if len(call.args) > 3 and isinstance(call.args[3], ast.Constant)
    }


def test_every_step_of_a_request_has_words_in_its_timeline() -> None:
    actions = recorded_actions()
    assert {"UnbindRequested", "UnbindCompleted", "UnbindExpired"} <= actions
    keys = {f"timeline.{action}" for action in actions - {"RiskAssessed"}} | {
        "timeline.RiskAssessed.pending_verification",
        "timeline.RiskAssessed.under_review",
    }
    assert not sorted(keys - set(binding_texts.TEXTS.keys()))
    follow_ups = FOLLOW_UP_AFTER_UNBIND + FOLLOW_UP_AFTER_PAUSE + FOLLOW_UP_AFTER_SWITCH
    assert {f"follow_up.{code}.title" for code in follow_ups} <= set(binding_texts.TEXTS.keys())


def sample_values(locale: str) -> dict[str, object]:
    amount = money(6500, locale)
    day = binding_texts.day(date(2026, 12, 3), locale)
    return {
        **{
            "attempts_remaining": 3,
            "retry_after": 30,
            "amount_due": amount,
            "amount": amount,
            "due_date": day,
            "value": 10,
            "reason": denial_reason("other", locale),
        },
        **{"resumes_on": day, "last4": "4821"},
    }


@pytest.mark.parametrize("locale", LOCALES)
def test_every_text_of_every_catalogue_reads_as_words(locale: str) -> None:
    """Every key, filled with sample values, including the ones no flow above reaches (expiry, every
    lender)."""
    catalogues: dict[str, Catalogue] = {
        **CUSTOMER_SERVICES,
        "shared": PROBLEM_TEXTS,
        "denials": DENIAL_REASONS,
    }
    for name, catalogue in catalogues.items():
        for key in catalogue.keys():
            for lender in LENDERS.values():
                values = {
                    **sample_values(locale),
                    "lender": lender.name(locale),
                    "hotline": lender.hotline,
                    "methods": binding_texts.text("method.otp", locale),
                }
                values["outcome"] = binding_texts.text("outcome.review_denied", locale)
                assert_customer_copy(catalogue.render(key, locale, **values), locale, where=f"{name} {key}")
