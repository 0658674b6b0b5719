"""Every query of the risk service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Row, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.risk.models import (
    AccountFlag,
    Assessment,
    CustomerProfile,
    KnownDevice,
    ModelState,
    ObservedEvent,
    Review,
    ReviewStatus,
    RuleSet,
)


async def count_recent_events(
    session: AsyncSession, user_id: str, windows: Mapping[str, datetime], *, excluding: tuple[str, str]
) -> dict[str, int]:
    """How many events of each type in `windows` the customer had since that type's instant, in one
    query; `excluding` = (event type, request id) leaves out the event being assessed."""
    excluded_type, excluded_request = excluding

    def in_window(event_type: str, since: datetime) -> ColumnElement[bool]:
        condition = and_(ObservedEvent.event_type == event_type, ObservedEvent.occurred_at >= since)
        return (
            and_(condition, ObservedEvent.request_id != excluded_request)
            if event_type == excluded_type
            else condition
        )

    query = (
        select(ObservedEvent.event_type, func.count())
        .where(
            ObservedEvent.user_id == user_id,
            or_(*(in_window(event_type, since) for event_type, since in windows.items())),
        )
        .group_by(ObservedEvent.event_type)
    )
    counts = dict((await session.execute(query)).tuples().all())
    return {event_type: counts.get(event_type, 0) for event_type in windows}


async def get_assessment(session: AsyncSession, request_id: str) -> Assessment | None:
    return await session.get(Assessment, request_id)


async def get_review(session: AsyncSession, review_id: str, *, for_update: bool = False) -> Review | None:
    query = select(Review).where(Review.id == review_id)
    return await session.scalar(query.with_for_update() if for_update else query)


async def pending_reviews_of(session: AsyncSession, request_id: str) -> Sequence[Review]:
    query = (
        select(Review)
        .where(Review.request_id == request_id, Review.status == ReviewStatus.PENDING)
        .with_for_update()
    )
    return (await session.scalars(query)).all()


async def list_reviews(
    session: AsyncSession,
    *,
    status: str | None = None,
    request_id: str | None = None,
    user_id: str | None = None,
    limit: int,
) -> Sequence[tuple[Review, int | None]]:
    """Reviews oldest first, each with its request's assessment score (None without one)."""
    query = (
        select(Review, Assessment.score)
        .outerjoin(Assessment, Assessment.request_id == Review.request_id)
        .order_by(Review.created_at, Review.id)
        .limit(limit)
    )
    for column, value in (
        (Review.status, status),
        (Review.request_id, request_id),
        (Review.user_id, user_id),
    ):
        if value:
            query = query.where(column == value)
    return (await session.execute(query)).tuples().all()


async def score_of(session: AsyncSession, request_id: str) -> int | None:
    return await session.scalar(select(Assessment.score).where(Assessment.request_id == request_id))


async def deniers_of(session: AsyncSession, request_id: str) -> set[str]:
    """Everyone who denied the request in one of its reviews: the reviewer of a deny, and a first
    reviewer whose deny waited for (or was settled by) a second one."""
    query = select(Review.reviewer, Review.status, Review.first_reviewer).where(
        Review.request_id == request_id
    )
    deniers = set()
    for reviewer, status, first_reviewer in (await session.execute(query)).tuples():
        if status == ReviewStatus.DENIED and reviewer:
            deniers.add(reviewer)
        if first_reviewer:
            deniers.add(first_reviewer)
    return deniers


async def latest_rule_set(session: AsyncSession) -> RuleSet | None:
    return await session.scalar(select(RuleSet).order_by(RuleSet.version.desc()).limit(1))


async def get_rule_set(session: AsyncSession, version: int) -> RuleSet | None:
    return await session.get(RuleSet, version)


async def list_rule_sets(session: AsyncSession, limit: int) -> Sequence[RuleSet]:
    return (await session.scalars(select(RuleSet).order_by(RuleSet.version.desc()).limit(limit))).all()


async def assessments_since(session: AsyncSession, since: datetime) -> AsyncIterator[Row]:
    """What a dry run replays of each assessment made since `since`, newest first, streamed."""
    query = (
        select(
            Assessment.request_id,
            Assessment.user_id,
            Assessment.score,
            Assessment.signals,
            Assessment.device_id,
            Assessment.client_ip,
            Assessment.model_score,
            Assessment.machine_decision,
        )
        .where(Assessment.created_at >= since)
        .order_by(Assessment.created_at.desc(), Assessment.request_id.desc())
        .execution_options(yield_per=500)
    )
    async for row in await session.stream(query):
        yield row


async def active_flag(session: AsyncSession, user_id: str) -> AccountFlag | None:
    return await session.scalar(
        select(AccountFlag).where(AccountFlag.user_id == user_id, AccountFlag.cleared_at.is_(None)).limit(1)
    )


async def active_flags(
    session: AsyncSession, user_id: str, *, request_id: str | None = None
) -> Sequence[AccountFlag]:
    """A customer's active flags (only those raised by `request_id`, when given), locked."""
    query = select(AccountFlag).where(AccountFlag.user_id == user_id, AccountFlag.cleared_at.is_(None))
    if request_id is not None:
        query = query.where(AccountFlag.request_id == request_id)
    return (await session.scalars(query.with_for_update())).all()


async def list_flags(session: AsyncSession, active_only: bool) -> Sequence[AccountFlag]:
    query = select(AccountFlag).order_by(AccountFlag.flagged_at.desc(), AccountFlag.id.desc()).limit(500)
    if active_only:
        query = query.where(AccountFlag.cleared_at.is_(None))
    return (await session.scalars(query)).all()


async def flags_of(session: AsyncSession, user_id: str) -> Sequence[AccountFlag]:
    query = (
        select(AccountFlag)
        .where(AccountFlag.user_id == user_id)
        .order_by(AccountFlag.flagged_at.desc(), AccountFlag.id.desc())
        .limit(500)
    )
    return (await session.scalars(query)).all()


async def known_devices_of(session: AsyncSession, user_id: str) -> Sequence[KnownDevice]:
    return (
        await session.scalars(
            select(KnownDevice)
            .where(KnownDevice.user_id == user_id)
            .order_by(KnownDevice.first_seen_at, KnownDevice.device_id)
        )
    ).all()


async def count_profiles(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(CustomerProfile)) or 0


async def model_state(session: AsyncSession, name: str, *, for_update: bool = False) -> ModelState | None:
    """The checkpoint; `for_update` makes learners of several instances take turns."""
    return await session.get(ModelState, name, with_for_update=for_update)


async def model_version(session: AsyncSession, name: str) -> Row | None:
    """The checkpoint's shape and version, without its masses."""
    query = select(ModelState.fingerprint, ModelState.version).where(ModelState.name == name)
    return (await session.execute(query)).first()


async def to_learn(session: AsyncSession, limit: int) -> Sequence[Row]:
    """The assessments the model has yet to learn, oldest first."""
    query = (
        select(Assessment.request_id, Assessment.features, Assessment.model_score)
        .where(Assessment.to_learn.is_(True))
        .order_by(Assessment.created_at, Assessment.request_id)
        .limit(limit)
    )
    return (await session.execute(query)).all()


async def mark_learned(session: AsyncSession, request_ids: Sequence[str]) -> None:
    await session.execute(
        update(Assessment).where(Assessment.request_id.in_(request_ids)).values(to_learn=None)
    )


async def count_to_learn(session: AsyncSession) -> int:
    query = select(func.count()).select_from(Assessment).where(Assessment.to_learn.is_(True))
    return await session.scalar(query) or 0
