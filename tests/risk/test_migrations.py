"""Risk's data migrations, on rows written as the previous revision left them: the machine's own
decision of assessments made before it was stored (a review raised by a deny was a deny)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from services.risk.models import Assessment, RuleSet
from shared.db import UTCDateTime
from shared.migrations import upgrade_async

AT = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
ASSESSMENTS = sa.table(
    "assessments",
    *(
        sa.column(name, sa.String)
        for name in ("request_id", "binding_id", "user_id", "level", "decision", "matched_rule")
    ),
    *(sa.column(name, sa.JSON) for name in ("signals", "reasons", "required_methods")),
    sa.column("score", sa.Integer),
    sa.column("rules_version", sa.Integer),
    sa.column("created_at", UTCDateTime()),
)
FLAGS = sa.table(
    "account_flags",
    *(sa.column(name, sa.String) for name in ("user_id", "reason", "request_id")),
    sa.column("flagged_at", UTCDateTime()),
    sa.column("cleared_at", UTCDateTime()),
)


def assessment(request_id: str, decision: str, score: int) -> sa.Insert:
    return ASSESSMENTS.insert().values(
        request_id=request_id, binding_id="b-1", user_id=f"u-{request_id}", level="normal", decision=decision,
        matched_rule=None,
        signals={"requests_24h": 0}, reasons=[], required_methods=[], score=score, rules_version=1,
        created_at=AT,
    )  # fmt: skip


async def test_the_machine_decision_of_older_assessments_is_read_back(database_urls: dict[str, str]) -> None:
    url = database_urls["risk"]
    await upgrade_async("risk", url, "0006")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in (
                assessment("r-allow", "allow", 0),
                assessment("r-step", "step_up", 40),
                assessment("r-review", "review", 70),
                assessment("r-deny-score", "review", 90),
                assessment("r-deny-rule", "review", 10),
                FLAGS.insert().values(
                    user_id="u-r-review", reason="review by score 70", request_id="r-review", flagged_at=AT
                ),
                FLAGS.insert().values(
                    user_id="u-r-deny-score",
                    reason="review by deny by score 90",
                    request_id="r-deny-score",
                    flagged_at=AT,
                ),
                # Cleared since: still the record of what the machine decided.
                FLAGS.insert().values(
                    user_id="u-r-deny-rule",
                    reason="review by deny by rule 'cloned device key'",
                    request_id="r-deny-rule",
                    flagged_at=AT,
                    cleared_at=AT,
                ),
            ):
                await connection.execute(statement)
        await upgrade_async("risk", url)
        async with engine.connect() as connection:
            decisions = dict(
                (await connection.execute(select(Assessment.request_id, Assessment.machine_decision)))
                .tuples()
                .all()
            )
            rule_set = (
                await connection.execute(select(RuleSet.version, RuleSet.comment, RuleSet.restored_from))
            ).one()
    finally:
        await engine.dispose()
    assert decisions == {
        "r-allow": "allow",
        "r-step": "step_up",
        "r-review": "review",
        "r-deny-score": "deny",
        "r-deny-rule": "deny",
    }
    assert tuple(rule_set) == (1, None, None)
