"""outbox notify: a trigger wakes every instance's relay when rows are committed (PostgreSQL)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 03:00:00

The relays no longer poll: they LISTEN on `shared.outbox.NOTIFY_CHANNEL`. SQLite (one instance)
needs no trigger: the instance that commits wakes its own relay.
"""
from typing import Sequence, Union

from alembic import op

from shared.outbox import add_notify_trigger, drop_notify_trigger


revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    add_notify_trigger(op)


def downgrade() -> None:
    drop_notify_trigger(op)
