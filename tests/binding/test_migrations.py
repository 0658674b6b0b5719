"""Binding's data migrations, on rows written as the previous revision left them: account numbers
normalised, a number bound twice held by its oldest binding; repayments made before fingerprints;
lenders named by their directory id, the follow-up of completed requests in words, bindings made before
agreement versions, requests completed before their completion time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from services.binding.models import Binding, RepaymentAccount, UnbindRequest
from shared.account_numbers import with_check_digit
from shared.db import UTCDateTime
from shared.migrations import upgrade_async
from tests.binding.conftest import binding_alone
from tests.binding.test_account_numbers import bind, spellings
from tests.binding.test_api import assert_problem
from tests.stack import auth

CREDIT = sa.table(
    "credit_accounts",
    sa.column("id", sa.String),
    sa.column("user_id", sa.String),
    sa.column("credit_limit", sa.Integer),
    sa.column("created_at", UTCDateTime()),
)
ACCOUNTS = sa.table(
    "repayment_accounts",
    *(sa.column(name, sa.String) for name in ("id", "user_id", "lender", "account_number")),
    sa.column("monthly_instalment", sa.Integer),
    sa.column("due_day", sa.Integer),
    sa.column("created_at", UTCDateTime()),
)
BINDINGS = sa.table(
    "bindings",
    *(
        sa.column(name, sa.String)
        for name in ("id", "user_id", "credit_account_id", "repayment_account_id", "status")
    ),
    sa.column("credit_limit_contribution", sa.Integer),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
INSTALMENTS = sa.table(
    "instalments",
    *(
        sa.column(name, sa.String)
        for name in ("id", "repayment_account_id", "period", "paid_by", "payment_key")
    ),
    sa.column("amount", sa.Integer),
    sa.column("due_date", sa.Date()),
    sa.column("paid_at", UTCDateTime()),
)


async def at_revision(url: str, revision: str, statements: Sequence[Any]) -> None:
    """Bring binding's database to `revision` and write rows there, as that revision's code did."""
    await upgrade_async("binding", url, revision)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(statement)
    finally:
        await engine.dispose()


def bound(account_id: str, user_id: str, number: str, status: str, *, at: datetime) -> list[Any]:
    return [
        CREDIT.insert().values(id=f"ca-{user_id}", user_id=user_id, credit_limit=30_000, created_at=at),
        ACCOUNTS.insert().values(id=account_id, user_id=user_id, lender="Bank", account_number=number,
            monthly_instalment=6500, due_day=10, created_at=at),
        BINDINGS.insert().values(
            id=f"b-{account_id}", user_id=user_id, credit_account_id=f"ca-{user_id}",
            repayment_account_id=account_id,
            status=status, credit_limit_contribution=9700, created_at=at, updated_at=at,
        ),
    ]  # fmt: skip


async def test_stored_numbers_are_normalised_and_the_oldest_binding_keeps_a_number_bound_twice(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    number = with_check_digit("622202998875999")
    full_width = spellings(number)[0]
    # Before the fix: one account bound four times, in two spellings; two of them since unbound.
    rows = [
        ("ra-1", full_width, "active", 2),
        ("ra-2", number, "active", 3),
        ("ra-3", number, "unbound", 1),
        ("ra-4", full_width, "unbound", 4),
    ]
    statements = [
        row
        for account_id, stored, status, day in rows
        for row in bound(
            account_id, f"u-{account_id}", stored, status, at=datetime(2026, 11, day, tzinfo=UTC)
        )
    ]
    await at_revision(database_urls["binding"], "0002", statements)

    async with binding_alone(database_urls, tmp_path) as stack:
        async with stack.runtime("binding").session_factory() as session:
            accounts = {
                account.id: account for account in (await session.scalars(select(RepaymentAccount))).all()
            }
        assert {account.account_number for account in accounts.values()} == {number}
        assert [
            account_id for account_id, account in sorted(accounts.items()) if account.released_at is None
        ] == ["ra-1"]
        assert_problem(await bind(stack, "u-ra-2", number), 409, "already-bound")


async def test_a_repayment_made_before_fingerprints_replays_and_refuses_another_request_with_its_key(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    paid_at = datetime(2026, 11, 10, tzinfo=UTC)
    paid = INSTALMENTS.insert().values(
        id="i-1",
        repayment_account_id="ra-1",
        period="2026-11",
        amount=6500,
        due_date=date(2026, 11, 10),
        paid_at=paid_at,
        paid_by="manual",
        payment_key="pay-before-0001",
    )
    await at_revision(
        database_urls["binding"],
        "0003",
        [*bound("ra-1", "u-1", with_check_digit("622202998875888"), "active", at=paid_at), paid],
    )

    async with binding_alone(database_urls, tmp_path) as stack:

        async def repay(amount: int):
            headers = {**auth("u-1"), "Idempotency-Key": "pay-before-0001"}
            return await stack.client("binding").post(
                "/v1/bindings/b-ra-1/repayments", json={"amount": amount}, headers=headers
            )

        replay = await repay(6500)
        assert replay.status_code == 200 and replay.json()["period"] == "2026-11", replay.text
        assert_problem(await repay(7000), 422, "idempotency-key-reused")


async def test_accounts_bound_before_lenders_had_ids_are_matched_by_name_and_stay_bound(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    at = datetime(2026, 11, 20, tzinfo=UTC)
    rows = {"ra-1": "Example Bank", "ra-2": " 示例银行", "ra-3": "HARBOUR BANK", "ra-4": "Some Bank"}
    statements = [
        row
        for account_id in rows
        for row in bound(
            account_id,
            f"u-{account_id}",
            with_check_digit(f"62220299887{account_id[-1]}000"),
            "active",
            at=at,
        )
    ]
    statements += [
        ACCOUNTS.update().where(ACCOUNTS.c.id == account_id).values(lender=lender)
        for account_id, lender in rows.items()
    ]
    await at_revision(database_urls["binding"], "0005", statements)

    async with binding_alone(database_urls, tmp_path) as stack:
        async with stack.runtime("binding").session_factory() as session:
            lenders = dict(
                (await session.execute(select(RepaymentAccount.id, RepaymentAccount.lender_id))).all()
            )
        assert lenders == {
            "ra-1": "example_bank",
            "ra-2": "example_bank",
            "ra-3": "harbour_bank",
            "ra-4": None,
        }
        view = (await stack.client("binding").get("/v1/bindings/b-ra-4", headers=auth("u-ra-4"))).json()
        assert (
            view["status"],
            view["credit_limit_contribution"],
            view["repayment_account"]["lender_id"],
        ) == ("active", 9700, None)


# The text columns of unbind_requests since its first revision.
REQUEST_TEXT_COLUMNS = (
    "id binding_id user_id status reason channel impact_hash idempotency_key request_fingerprint".split()
)
REQUESTS = sa.table(
    "unbind_requests",
    *(sa.column(name, sa.String) for name in REQUEST_TEXT_COLUMNS),
    sa.column("follow_up", sa.JSON),
    *(sa.column(name, UTCDateTime()) for name in ("expires_at", "created_at", "updated_at")),
)


async def test_old_follow_ups_read_as_words_and_lenders_by_their_name_in_the_customers_language(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    at = datetime(2026, 11, 10, tzinfo=UTC)
    known = bound("ra-1", "u-1", with_check_digit("622202998875777"), "unbound", at=at)
    known[1] = known[1].values(lender="example bank")
    typed = bound(
        "ra-2", "u-2", with_check_digit("622202998875666"), "active", at=at
    )  # lender "Bank": no directory entry
    old_codes = [
        "check_repayment_status_at_lender",
        "ask_lender_to_adjust_repayment_plan_if_needed",
        "appeal_from_the_request_page_if_you_disagree",
    ]
    completed = REQUESTS.insert().values(
        id="r-1", binding_id="b-ra-1", user_id="u-1", status="completed", reason="fund_planning",
        channel="app", impact_hash="0" * 64,
        idempotency_key="idem-00000001", request_fingerprint="f" * 64, follow_up=old_codes, expires_at=at,
        created_at=at, updated_at=at,
    )  # fmt: skip
    await at_revision(database_urls["binding"], "0005", [*known, *typed, completed])

    async with binding_alone(database_urls, tmp_path) as stack:
        client = stack.client("binding")
        account = (
            await client.get("/v1/bindings/b-ra-1", headers={**auth("u-1"), "Accept-Language": "en"})
        ).json()["repayment_account"]
        assert (account["lender"], account["lender_id"]) == ("Example Bank", "example_bank")
        account = (await client.get("/v1/bindings/b-ra-2", headers=auth("u-2"))).json()["repayment_account"]
        assert (account["lender"], account["lender_id"]) == ("Bank", None), (
            "a name the directory does not know stays as typed"
        )
        request = (await client.get("/v1/unbind-requests/r-1", headers=auth("u-1"))).json()
        assert [item["code"] for item in request["follow_up"]] == [
            "check_repayment",
            "repay_on_time",
            "adjust_plan",
            "dispute",
        ]
        assert "示例银行" in request["follow_up"][0]["body"] and "appeal" not in str(request["follow_up"])


async def test_bindings_before_agreement_versions_record_the_version_in_force_and_requests_their_time(
    database_urls: dict[str, str], tmp_path: Path
) -> None:
    at = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    requests = sa.table(
        "unbind_requests",
        *(sa.column(name, sa.String) for name in REQUEST_TEXT_COLUMNS),
        *(sa.column(name, UTCDateTime()) for name in ("expires_at", "created_at", "updated_at")),
    )
    done = {
        "binding_id": "b-ra-1",
        "user_id": "u-1",
        "reason": "other",
        "channel": "app",
        "impact_hash": "h" * 64,
        "request_fingerprint": "f" * 64,
    }
    statements = [
        *bound("ra-1", "u-1", with_check_digit("622202998875777"), "unbound", at=at),
        requests.insert().values(
            id="r-done",
            status="completed",
            idempotency_key="k-1",
            expires_at=at,
            created_at=at,
            updated_at=at + timedelta(minutes=3),
            **done,
        ),
        requests.insert().values(
            id="r-gone",
            status="cancelled",
            idempotency_key="k-2",
            expires_at=at,
            created_at=at,
            updated_at=at,
            **done,
        ),
    ]
    await at_revision(database_urls["binding"], "0005", statements)

    async with binding_alone(database_urls, tmp_path) as stack:
        async with stack.runtime("binding").session_factory() as session:
            assert (await session.get(Binding, "b-ra-1")).agreement_version == "2026-12"
            assert (await session.get(UnbindRequest, "r-done")).completed_at == at + timedelta(minutes=3)
            assert (await session.get(UnbindRequest, "r-gone")).completed_at is None
        # Completed on its last update, long ago: past the window to dispute it.
        late = await stack.client("binding").post(
            "/v1/unbind-requests/r-done/dispute", json={"reason": "other"}, headers=auth("u-1")
        )
        assert_problem(late, 409, "dispute-window-closed")
