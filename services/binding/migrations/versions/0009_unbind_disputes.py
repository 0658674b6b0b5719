"""unbind disputes: when a request completed, and its one dispute

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:30:00

A completed unbind can be disputed within 7 days of its completion. Requests completed before
take their completion time from their last update (a completed request is not updated again).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('unbind_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('completed_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('disputed_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('dispute_reason', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('dispute_message', sa.Text(), nullable=True))
    requests = sa.table('unbind_requests', sa.column('status', sa.String), sa.column('updated_at', shared.db.UTCDateTime()), sa.column('completed_at', shared.db.UTCDateTime()))
    op.execute(requests.update().where(requests.c.status == 'completed').values(completed_at=requests.c.updated_at))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('unbind_requests', schema=None) as batch_op:
        batch_op.drop_column('dispute_message')
        batch_op.drop_column('dispute_reason')
        batch_op.drop_column('disputed_at')
        batch_op.drop_column('completed_at')
