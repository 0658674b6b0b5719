"""closed requests: unbind_contexts.closed_at

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 13:25:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('unbind_contexts') as batch_op:
        batch_op.add_column(sa.Column('closed_at', shared.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('unbind_contexts') as batch_op:
        batch_op.drop_column('closed_at')
