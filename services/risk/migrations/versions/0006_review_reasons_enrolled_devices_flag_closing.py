"""review reasons, enrolled devices, flag closing

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 10:00:00

A review records a denial's reason (from a fixed list) and the reviewer's message to the customer;
known devices learn of enrolled and revoked device keys; a cleared flag says why it was cleared.
Flags cleared before say nothing (NULL): they were cleared by hand.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('customer_message', sa.Text(), nullable=True))
    with op.batch_alter_table('known_devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enrolled_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', shared.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('account_flags', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cleared_reason', sa.String(length=100), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('account_flags', schema=None) as batch_op:
        batch_op.drop_column('cleared_reason')
    with op.batch_alter_table('known_devices', schema=None) as batch_op:
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('enrolled_at')
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_column('customer_message')
        batch_op.drop_column('reason')
