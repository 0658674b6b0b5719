"""review claims, second reviewer

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09 12:00:00

A reviewer claims a case (lapsing at `claim_expires_at`); a deny of a high score keeps the first
reviewer's decision until a second reviewer decides; a customer's reviews are found by user id.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('claimed_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claim_expires_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('first_reviewer', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('first_reason', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('first_note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('first_customer_message', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('first_decided_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_reviews_user_id', ['user_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_index('ix_reviews_user_id')
        batch_op.drop_column('first_decided_at')
        batch_op.drop_column('first_customer_message')
        batch_op.drop_column('first_note')
        batch_op.drop_column('first_reason')
        batch_op.drop_column('first_reviewer')
        batch_op.drop_column('claim_expires_at')
        batch_op.drop_column('claimed_at')
        batch_op.drop_column('claimed_by')
