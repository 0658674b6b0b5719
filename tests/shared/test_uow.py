"""The unit of work commits what was written and only that: one that only read rolls back, so an
idle service's timers commit nothing; a write of any kind (ORM, Core DML, text) commits."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import String, event, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import create_engine, create_session_factory
from shared.events import UnbindCancelled
from shared.keys import SigningKey
from shared.outbox import Outbox
from shared.tables import messaging_tables
from shared.uow import UnitOfWork


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[str] = mapped_column(String(8), primary_key=True)
    text: Mapped[str] = mapped_column(String(20))


OutboxMessage, _ = messaging_tables(Base)
Units = tuple[Callable[[], UnitOfWork], Counter[str]]


@pytest.fixture
async def units(tmp_path: Path) -> AsyncIterator[Units]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'uow.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
        await connection.execute(Note.__table__.insert().values(id="n-1", text="first"))
    commits = Counter[str]()
    event.listen(engine.sync_engine, "commit", lambda _: commits.update(["commit"]))
    outbox = Outbox(OutboxMessage, "unbind.events", SigningKey.generate("binding"))
    yield (lambda: UnitOfWork(create_session_factory(engine), outbox)), commits
    await engine.dispose()


async def read(session: AsyncSession) -> None:
    await session.scalar(select(func.count()).select_from(Note))
    await session.get(Note, "n-1")
    await session.scalar(select(Note).with_for_update())


async def orm_add(session: AsyncSession) -> None:
    session.add(Note(id="n-2", text="second"))


async def orm_change(session: AsyncSession) -> None:
    note = await session.get(Note, "n-1")
    assert note is not None
    note.text = "changed"


async def core_update(session: AsyncSession) -> None:
    await session.execute(update(Note).where(Note.id == "n-1").values(text="changed"))


async def text_update(session: AsyncSession) -> None:
    await session.execute(text("UPDATE notes SET text = 'changed' WHERE id = 'n-1'"))


async def test_a_unit_of_work_that_only_read_commits_nothing(units: Units) -> None:
    unit_of_work, commits = units
    async with unit_of_work() as uow:
        await read(uow.session)
    assert commits["commit"] == 0


@pytest.mark.parametrize("write", [orm_add, orm_change, core_update, text_update])
async def test_every_kind_of_write_commits(
    units: Units, write: Callable[[AsyncSession], Awaitable[None]]
) -> None:
    unit_of_work, commits = units
    async with unit_of_work() as uow:
        await read(uow.session)
        await write(uow.session)
    assert commits["commit"] == 1
    async with unit_of_work() as uow:
        changed = await uow.session.scalar(
            select(func.count()).select_from(Note).where((Note.text == "changed") | (Note.id == "n-2"))
        )
    assert changed == 1, "the write was not made durable"


async def test_an_emitted_event_commits(units: Units) -> None:
    unit_of_work, commits = units
    async with unit_of_work() as uow:
        uow.emit(UnbindCancelled(request_id="r-1", binding_id="b-1", user_id="u-1"))
    assert commits["commit"] == 1
