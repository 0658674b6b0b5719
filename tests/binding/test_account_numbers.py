"""One account, one binding: account numbers normalised before they are stored or compared, held by
one binding across all customers (the database refuses a second, even in a race), free again once
unbound; and a cap on what a customer's bindings add to the credit limit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from services.binding.models import Binding, CreditAccount, RepaymentAccount
from shared.account_numbers import with_check_digit
from shared.db import UTCDateTime
from shared.migrations import upgrade_async
from tests.binding.test_api import assert_problem
from tests.factories import Customer, customer_with_binding, pass_verification
from tests.stack import Stack, auth, make_bus_topics, running_stack
from tests.verification.test_api import issued_verification

BINDING_ONLY = {"binding": {"run_workers": False}}


def spellings(number: str) -> list[str]:
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in number)
    return [full_width, " ".join(groups), "-".join(groups), "\u3000".join("".join(chr(ord(ch) + 0xFEE0) for ch in g) for g in groups), number]


def new_binding(number: str, instalment: int = 8000) -> dict:
    return {"lender": "Example Bank", "account_number": number, "monthly_instalment": instalment, "due_day": 10}


async def bind(stack: Stack, user_id: str, number: str, instalment: int = 8000):
    return await stack.client("binding").post("/v1/bindings", json=new_binding(number, instalment), headers=auth(user_id))


async def state(stack: Stack) -> tuple[int, int, dict[str, int]]:
    """Bindings, repayment accounts, and every credit limit by user."""
    async with stack.runtime("binding").session_factory() as session:
        bindings = await session.scalar(select(func.count()).select_from(Binding)) or 0
        accounts = await session.scalar(select(func.count()).select_from(RepaymentAccount)) or 0
        limits = {account.user_id: account.credit_limit for account in (await session.scalars(select(CreditAccount))).all()}
    return bindings, accounts, limits


async def test_copies_of_a_bound_number_are_refused_for_the_owner_and_for_anyone_else(database_urls: dict[str, str], tmp_path: Path) -> None:
    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path, ("binding",), BINDING_ONLY) as stack:
        owner, other = await customer_with_binding(stack), await customer_with_binding(stack)
        before = await state(stack)
        for spelling in spellings(owner.account_number):
            for customer in (owner, other):
                problem = assert_problem(await bind(stack, customer.user_id, spelling), 409, "already-bound")
                assert owner.account_number not in str(problem)
        assert await state(stack) == before, "nothing was bound, no limit was raised"


async def test_a_number_is_stored_normalised(database_urls: dict[str, str], tmp_path: Path) -> None:
    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path, ("binding",), BINDING_ONLY) as stack:
        customer = await customer_with_binding(stack)
        number = with_check_digit("622202998875123")
        created = await bind(stack, customer.user_id, spellings(number)[3])
        assert created.status_code == 201, created.text
        assert created.json()["repayment_account"]["account_number"] == f"6222 **** **** {number[-4:]}"
        async with stack.runtime("binding").session_factory() as session:
            stored = await session.scalar(select(RepaymentAccount.account_number).join(Binding).where(Binding.id == created.json()["id"]))
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
    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path, ("binding",), BINDING_ONLY) as stack:
        customer = await customer_with_binding(stack)
        before = await state(stack)
        assert_problem(await bind(stack, customer.user_id, number), 422, "validation-error")
        assert await state(stack) == before


async def test_concurrent_bindings_of_one_number_bind_it_once(database_urls: dict[str, str], tmp_path: Path) -> None:
    # Different customers lock different credit accounts: only the unique index stands between them.
    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path, ("binding",), BINDING_ONLY) as stack:
        customers = [await customer_with_binding(stack) for _ in range(6)]
        number = with_check_digit("621700123450773")
        forms = spellings(number)
        responses = await asyncio.gather(*(bind(stack, customer.user_id, forms[i % len(forms)]) for i, customer in enumerate(customers)))
        assert sorted(response.status_code for response in responses) == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, "already-bound")
        async with stack.runtime("binding").session_factory() as session:
            assert await session.scalar(select(func.count()).select_from(RepaymentAccount).where(RepaymentAccount.account_number == number)) == 1


async def test_the_total_uplift_is_capped_and_a_binding_past_the_cap_grants_what_is_left(database_urls: dict[str, str], tmp_path: Path) -> None:
    overrides = {"binding": {"run_workers": False, "max_total_limit_uplift": 25_000}}
    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path, ("binding",), overrides) as stack:
        customer = await customer_with_binding(stack, credit_limit=30_000, contribution=9700)
        granted = []
        for body, instalment in (("622202998875001", 8000), ("622202998875002", 20_000), ("622202998875003", 6500)):
            created = await bind(stack, customer.user_id, with_check_digit(body), instalment)
            assert created.status_code == 201, created.text
            granted.append((created.json()["credit_limit_contribution"], created.json()["credit_account"]["credit_limit"]))
        # 9,700 held: 12,000 by the rule fits; then 20,000 by the rule, 3,300 left; then nothing left.
        assert granted == [(12_000, 42_000), (3_300, 45_300), (0, 45_300)]
        impact = (await stack.client("binding").get(f"/v1/bindings/{(await _last_binding(stack, customer))}/impact", headers=auth(customer.user_id))).json()
        assert "limit_uplift" not in [benefit["code"] for benefit in impact["benefits_lost"]]
        assert impact["credit_limit_after"] == impact["credit_limit_before"] == 45_300


async def _last_binding(stack: Stack, customer: Customer) -> str:
    items = (await stack.client("binding").get("/v1/bindings", headers=auth(customer.user_id))).json()["items"]
    return [item["id"] for item in items if item["credit_limit_contribution"] == 0][0]


async def test_an_unbound_number_can_be_bound_again_by_anyone(database_urls: dict[str, str], tmp_path: Path) -> None:
    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path, overrides={"verification": {"otp_resend_interval_seconds": 0}}) as stack:
        owner, other = await customer_with_binding(stack), await customer_with_binding(stack)
        assert_problem(await bind(stack, other.user_id, owner.account_number), 409, "already-bound")
        request_id, verification_id = await issued_verification(stack, owner)
        await pass_verification(stack, owner, request_id, verification_id)
        await stack.wait_for_request(request_id, owner.user_id, lambda body: body["status"] == "completed")
        rebound = await bind(stack, other.user_id, spellings(owner.account_number)[0])
        assert rebound.status_code == 201, rebound.text
        assert_problem(await bind(stack, owner.user_id, owner.account_number), 409, "already-bound")


ACCOUNTS = sa.table(
    "repayment_accounts",
    *(sa.column(name, sa.String) for name in ("id", "user_id", "lender", "account_number")),
    sa.column("monthly_instalment", sa.Integer),
    sa.column("due_day", sa.Integer),
    sa.column("created_at", UTCDateTime()),
)
BINDINGS = sa.table(
    "bindings",
    *(sa.column(name, sa.String) for name in ("id", "user_id", "credit_account_id", "repayment_account_id", "status")),
    sa.column("credit_limit_contribution", sa.Integer),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
CREDIT = sa.table("credit_accounts", sa.column("id", sa.String), sa.column("user_id", sa.String), sa.column("credit_limit", sa.Integer), sa.column("created_at", UTCDateTime()))


async def test_the_migration_normalises_stored_numbers_and_the_oldest_binding_keeps_a_number_bound_twice(database_urls: dict[str, str], tmp_path: Path) -> None:
    number = with_check_digit("622202998875999")
    full_width = spellings(number)[0]
    # Before the fix: the same account bound three times, in two spellings; one of them since unbound.
    rows = [("ra-1", "u-1", full_width, "active", 1), ("ra-2", "u-2", number, "active", 2), ("ra-3", "u-3", number, "unbound", 0), ("ra-4", "u-4", full_width, "unbound", 3)]
    url = database_urls["binding"]
    await upgrade_async("binding", url, "0002")
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        for account_id, user_id, stored, status, day in rows:
            at = datetime(2026, 11, 1 + day, tzinfo=UTC)
            await connection.execute(CREDIT.insert().values(id=f"ca-{user_id}", user_id=user_id, credit_limit=30_000, created_at=at))
            await connection.execute(
                ACCOUNTS.insert().values(id=account_id, user_id=user_id, lender="Bank", account_number=stored, monthly_instalment=6500, due_day=10, created_at=at)
            )
            await connection.execute(
                BINDINGS.insert().values(
                    id=f"b-{account_id}", user_id=user_id, credit_account_id=f"ca-{user_id}", repayment_account_id=account_id,
                    status=status, credit_limit_contribution=9700, created_at=at, updated_at=at,
                )
            )  # fmt: skip
    await engine.dispose()

    async with running_stack(make_bus_topics("memory", None), database_urls, tmp_path, ("binding",), BINDING_ONLY) as stack:
        async with stack.runtime("binding").session_factory() as session:
            accounts = {account.id: account for account in (await session.scalars(select(RepaymentAccount))).all()}
        assert {account.account_number for account in accounts.values()} == {number}
        assert [account_id for account_id, account in sorted(accounts.items()) if account.released_at is None] == ["ra-1"]
        assert_problem(await bind(stack, "u-2", number), 409, "already-bound")
