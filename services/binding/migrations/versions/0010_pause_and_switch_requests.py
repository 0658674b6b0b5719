"""pause and switch requests

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 10:00:00

The gentler alternatives to an unbind go through the same requests (`unbind_requests.kind`: unbind,
pause or switch; a pause's `pause_months`, a switch's `new_repayment_account_id`). A paused mandate is
`suspended` until `mandates.resumes_at` (the resume sweep reads it; `paused_by` names the pause
request), and the mandate of a switched account carries the switch request's id (`request_id`).
Every request made before is an unbind.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('unbind_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='unbind', nullable=False))
        batch_op.add_column(sa.Column('pause_months', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('new_repayment_account_id', sa.String(length=64), nullable=True))
    with op.batch_alter_table('mandates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('resumes_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('paused_by', sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f('ix_mandates_resumes_at'), ['resumes_at'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('mandates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mandates_resumes_at'))
        batch_op.drop_column('paused_by')
        batch_op.drop_column('resumes_at')
        batch_op.drop_column('request_id')
    with op.batch_alter_table('unbind_requests', schema=None) as batch_op:
        batch_op.drop_column('new_repayment_account_id')
        batch_op.drop_column('pause_months')
        batch_op.drop_column('kind')
