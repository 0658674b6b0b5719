"""Database plumbing shared by every service: engines, column types and the unit of work.

Each service owns its own database. SQLite (one file per service under `var/`) is the embedded
default; PostgreSQL is reached through asyncpg.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite would otherwise hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_transient(exc: BaseException) -> bool:
    """The database (or the network to it) failed, not the work: the same work may succeed on retry."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
    return isinstance(exc, (OSError, TimeoutError))


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and write-locking transactions."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _serialise_sqlite_writers(engine)
        return engine
    # A fixed pool: overflow connections were opened and closed under bursts, each a new TCP and
    # TLS handshake. No pre-ping (two round trips per checkout): a connection the server dropped
    # fails one unit of work, which the caller retries, and SQLAlchemy then discards the whole pool.
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=30, pool_recycle=1800)


def _serialise_sqlite_writers(engine: AsyncEngine) -> None:
    # pysqlite opens transactions lazily, so a read-then-write unit of work would read outside
    # its transaction. BEGIN IMMEDIATE takes the write lock up front: every unit of work is
    # serialisable on SQLite, at the cost of one writer at a time (the embedded default only).
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class TrackedSession(Session):
    """A session that knows whether its transaction wrote anything (`wrote`), so a unit of work that
    only read can end with a rollback: an idle service's timers then commit nothing."""

    @property
    def wrote(self) -> bool:
        return bool(self.info.get("wrote") or self.new or self.dirty or self.deleted)


@event.listens_for(TrackedSession, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    session.info["wrote"] = True


@event.listens_for(TrackedSession, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    # Anything but a SELECT (Core or ORM DML, text()) counts as a write.
    if not state.is_select:
        state.session.info["wrote"] = True


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=True, sync_session_class=TrackedSession
    )
