"""The two tables every service has beside its own: the outbox it publishes from and the inbox that
keeps each consumed event once."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from shared.consumer import InboxMixin
from shared.outbox import OutboxMixin


def messaging_tables(base: type[DeclarativeBase]) -> tuple[type[OutboxMixin], type[InboxMixin]]:
    """The outbox and inbox tables in the service's own metadata (`base`), for its migrations."""
    namespace = {"__module__": base.__module__}
    return type("OutboxMessage", (OutboxMixin, base), namespace), type(
        "InboxEntry", (InboxMixin, base), namespace
    )
