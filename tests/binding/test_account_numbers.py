"""One account, one binding: account numbers normalised before they are stored or compared, held by
one binding across all customers (the database refuses a second, even in a race), free again once
unbound; and a cap on what a customer's bindings add to the credit limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.binding.models import Binding, CreditAccount, RepaymentAccount
from shared.account_numbers import with_check_digit
from tests.binding.conftest import binding_alone
from tests.binding.test_api import assert_problem
from tests.factories import (
    CURRENT_AGREEMENT,
    Customer,
    code_confirmed,
    customer_with_binding,
    lender_callback,
    mandate_of,
    pass_verification,
)
from tests.stack import Stack, auth, on_memory_bus
from tests.verification.test_api import issued_verification


def spellings(number: str) -> list[str]:
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in number)
    return [
        full_width,
        " ".join(groups),
        "-".join(groups),
        "\u3000".join("".join(chr(ord(ch) + 0xFEE0) for ch in g) for g in groups),
        number,
    ]


def new_binding(number: str, instalment: int = 8000) -> dict:
    return {
        "lender": "Example Bank",
        "account_number": number,
        "monthly_instalment": instalment,
        "due_day": 10,
        "agreement_version": CURRENT_AGREEMENT,
    }


async def bind(stack: Stack, user_id: str, number: str, instalment: int = 8000):
    return await stack.client("binding").post(
        "/v1/bindings", json=new_binding(number, instalment), headers=auth(user_id)
    )


async def state(stack: Stack) -> tuple[int, int, dict[str, int]]:
    """Bindings, repayment accounts, and every credit limit by user."""
    async with stack.runtime("binding").session_factory() as session:
        bindings = await session.scalar(select(func.count()).select_from(Binding)) or 0
        accounts = await session.scalar(select(func.count()).select_from(RepaymentAccount)) or 0
        limits = {
            account.user_id: account.credit_limit
            for account in (await session.scalars(select(CreditAccount))).all()
        }
    return bindings, accounts, limits


async def test_copies_of_a_bound_number_are_refused_for_the_owner_and_for_anyone_else(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with binding_alone(database_urls, tmp_path) as stack:
        owner, other = await customer_with_binding(stack), await customer_with_binding(stack)
        before = await state(stack)
        for spelling in spellings(owner.account_number):
            for customer in (owner, other):
                problem = assert_problem(await bind(stack, customer.user_id, spelling), 409, "already-bound")
                assert owner.account_number not in str(problem)
        assert await state(stack) == before, "nothing was bound, no limit was raised"


async def test_a_number_is_stored_normalised(database_urls: dict[str, str], tmp_path: Path) -> None:
    async with binding_alone(database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        number = with_check_digit("622202998875123")
        created = await bind(stack, customer.user_id, spellings(number)[3])
        assert created.status_code == 202, created.text
        assert created.json()["repayment_account"]["account_number"] == f"6222 **** **** {number[-4:]}"
        async with stack.runtime("binding").session_factory() as session:
            stored = await session.scalar(
                select(RepaymentAccount.account_number)
                .join(Binding)
                .where(Binding.id == created.json()["id"])
            )
        assert stored == number


@pytest.mark.parametrize(
    "number",
    [
        "6222029988751235",  # check digit wrong
        "６２２２０２９９８８７５１２３５",  # the same, full width
        "06222029988751234",  # a valid card with a leading 0: a second spelling of it
        "٦٢٢٢٠٢٩٩٨٨٧٥١٢٣٤",  # Arabic-Indic digits
        "6222_0299_8875_1234",
    ],
)
async def test_an_invalid_number_is_422(database_urls: dict[str, str], tmp_path: Path, number: str) -> None:
    async with binding_alone(database_urls, tmp_path) as stack:
        customer = await customer_with_binding(stack)
        before = await state(stack)
        assert_problem(await bind(stack, customer.user_id, number), 422, "validation-error")
        assert await state(stack) == before


async def test_concurrent_bindings_of_one_number_bind_it_once(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    # Different customers lock different credit accounts: only the unique index stands between them.
    async with binding_alone(database_urls, tmp_path) as stack:
        customers = [await customer_with_binding(stack) for _ in range(6)]
        number = with_check_digit("621700123450773")
        forms = spellings(number)
        responses = await asyncio.gather(
            *(bind(stack, customer.user_id, forms[i % len(forms)]) for i, customer in enumerate(customers))
        )
        assert sorted(response.status_code for response in responses) == [202, 409, 409, 409, 409, 409], [
            r.text for r in responses
        ]
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, "already-bound")
        async with stack.runtime("binding").session_factory() as session:
            assert (
                await session.scalar(
                    select(func.count())
                    .select_from(RepaymentAccount)
                    .where(RepaymentAccount.account_number == number)
                )
                == 1
            )


async def test_the_total_uplift_is_capped_and_a_binding_past_the_cap_grants_what_is_left(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    overrides = {"binding": {"run_workers": False, "max_total_limit_uplift": 25_000}}
    async with on_memory_bus(database_urls, tmp_path, ("binding",), overrides=overrides) as stack:
        customer = await customer_with_binding(stack, credit_limit=30_000, contribution=9700)
        granted = []
        for body, instalment in (
            ("622202998875001", 8000),
            ("622202998875002", 20_000),
            ("622202998875003", 6500),
        ):
            created = await bind(stack, customer.user_id, with_check_digit(body), instalment)
            assert created.status_code == 202, created.text
            # The cap applies when the lender confirms: that is when the limit rises.
            await code_confirmed(stack, created.json()["id"])
            mandate = await mandate_of(stack, customer.user_id, created.json()["id"])
            assert (
                await stack.client("binding").post("/v1/lenders/callbacks", **lender_callback(mandate["id"]))
            ).status_code == 200
            view = (
                await stack.client("binding").get(
                    f"/v1/bindings/{created.json()['id']}", headers=auth(customer.user_id)
                )
            ).json()
            granted.append((view["credit_limit_contribution"], view["credit_account"]["credit_limit"]))
        # 9,700 held: 12,000 by the rule fits; then 20,000 by the rule, 3,300 left; then nothing left.
        assert granted == [(12_000, 42_000), (3_300, 45_300), (0, 45_300)]
        impact = (
            await stack.client("binding").get(
                f"/v1/bindings/{(await _last_binding(stack, customer))}/impact",
                headers=auth(customer.user_id),
            )
        ).json()
        assert "limit_uplift" not in [benefit["code"] for benefit in impact["benefits_lost"]]
        assert impact["credit_limit_after"] == impact["credit_limit_before"] == 45_300


async def _last_binding(stack: Stack, customer: Customer) -> str:
    items = (await stack.client("binding").get("/v1/bindings", headers=auth(customer.user_id))).json()[
        "items"
    ]
    return [item["id"] for item in items if item["credit_limit_contribution"] == 0][0]


async def test_an_unbound_number_can_be_bound_again_by_anyone(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with on_memory_bus(
        database_urls,
        tmp_path,
        overrides={"verification": {"otp_resend_interval_seconds": 0}},
    ) as stack:
        owner, other = await customer_with_binding(stack), await customer_with_binding(stack)
        assert_problem(await bind(stack, other.user_id, owner.account_number), 409, "already-bound")
        request_id, verification_id = await issued_verification(stack, owner)
        await pass_verification(stack, owner, request_id, verification_id)
        await stack.wait_for_request(request_id, owner.user_id, lambda body: body["status"] == "completed")
        rebound = await bind(stack, other.user_id, spellings(owner.account_number)[0])
        assert rebound.status_code == 202, rebound.text
        assert_problem(await bind(stack, owner.user_id, owner.account_number), 409, "already-bound")
