"""The unit of work: one transaction at a boundary (a request or a handled event).

The boundary opens it, the service layer writes state and stages events into its session through
`emit`, and the boundary commits (or rolls back) once. Service code never commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.cloudevents import Envelope
from shared.events import Event
from shared.outbox import Outbox

AfterCommit = Callable[[], Awaitable[None] | None]


class UnitOfWork:
    """One transaction at a boundary. Commits on a clean exit, rolls back on an exception.

    Work that must only happen once the transaction is durable (waking the outbox relay, sending
    an SMS whose code hash was just stored) is registered with `after_commit`.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        on_commit: Callable[[], None] | None = None,
    ):
        self._session_factory = session_factory
        self._outbox = outbox
        self._on_commit = on_commit
        self._after_commit: list[AfterCommit] = []
        self.emitted = 0
        self.session: AsyncSession

    def emit(self, event: Event) -> Envelope:
        """Stage an event in this transaction; it is published only if the transaction commits."""
        self.emitted += 1
        return self._outbox.add(self.session, event)

    @property
    def wrote(self) -> bool:
        return self.emitted > 0 or getattr(self.session.sync_session, "wrote", True)

    async def release(self) -> None:
        """Give the connection back while the work waits on something else (what was read is
        gone with it; the next query starts a new transaction). Only before anything was written."""
        if self.wrote:
            raise RuntimeError("a unit of work that wrote cannot let its transaction go")
        await self.session.close()

    def after_commit(self, callback: AfterCommit) -> None:
        self._after_commit.append(callback)

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None and self.wrote:
                await self.session.commit()
            else:
                # An error, or a transaction that only read: nothing to make durable.
                await self.session.rollback()
        finally:
            await self.session.close()
        if exc_type is None:
            # Only a transaction that staged events has anything for the relay.
            if self._on_commit and self.emitted:
                self._on_commit()
            # Independent follow-ups (a batch of handled events may send many codes) run together.
            pending = [result for callback in self._after_commit if asyncio.iscoroutine(result := callback())]
            if pending:
                await asyncio.gather(*pending)
