"""one binding per account number: normalised numbers, repayment_accounts.released_at, a unique index on held numbers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 23:30:00

"""
import logging
import unicodedata
from datetime import UTC, datetime
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

log = logging.getLogger(f"alembic.{__name__}")
HELD = sa.text("released_at IS NULL")

accounts = sa.table(
    'repayment_accounts',
    sa.column('id', sa.String),
    sa.column('account_number', sa.String),
    sa.column('released_at', shared.db.UTCDateTime(timezone=True)),
)
bindings = sa.table(
    'bindings',
    sa.column('id', sa.String),
    sa.column('repayment_account_id', sa.String),
    sa.column('status', sa.String),
    sa.column('created_at', shared.db.UTCDateTime(timezone=True)),
    sa.column('updated_at', shared.db.UTCDateTime(timezone=True)),
)


def _normalised(number: str) -> str:
    # Frozen here rather than imported, so this revision means the same thing forever. Stored
    # numbers passed str.isdigit(), which also admits full-width and other scripts' digits: each
    # becomes its ASCII digit; anything else (spaces, dashes) goes.
    folded = unicodedata.normalize("NFKC", number)
    return "".join(str(unicodedata.decimal(ch)) for ch in folded if unicodedata.decimal(ch, None) is not None)


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('repayment_accounts') as batch_op:
        batch_op.add_column(sa.Column('released_at', shared.db.UTCDateTime(timezone=True), nullable=True))

    connection = op.get_bind()
    rows = connection.execute(
        sa.select(accounts.c.id, accounts.c.account_number, bindings.c.status, bindings.c.updated_at)
        .select_from(accounts.outerjoin(bindings, bindings.c.repayment_account_id == accounts.c.id))
        .order_by(bindings.c.created_at, accounts.c.id)
    ).all()
    now = datetime.now(UTC)
    held: set[str] = set()
    for account_id, number, status, updated_at in rows:
        values: dict[str, object] = {}
        if (normalised := _normalised(number)) != number:
            values['account_number'] = normalised
        if status is None or status == 'unbound':
            values['released_at'] = updated_at or now
        elif normalised in held:
            # Bound twice before this revision: the oldest binding keeps the number; this one
            # stays active but no longer holds it (ops settle it with the customer).
            values['released_at'] = now
            log.warning("repayment account %s duplicates an older binding's account number; released", account_id)
        else:
            held.add(normalised)
        if values:
            connection.execute(sa.update(accounts).where(accounts.c.id == account_id).values(**values))

    with op.batch_alter_table('repayment_accounts') as batch_op:
        batch_op.create_index('uq_repayment_accounts_held_number', ['account_number'], unique=True, sqlite_where=HELD, postgresql_where=HELD)


def downgrade() -> None:
    """Downgrade schema. The numbers stay normalised: that spelling is valid before this revision too."""
    with op.batch_alter_table('repayment_accounts') as batch_op:
        batch_op.drop_index('uq_repayment_accounts_held_number', sqlite_where=HELD, postgresql_where=HELD)
        batch_op.drop_column('released_at')
