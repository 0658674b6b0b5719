"""customer locales and follow-up words

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09 00:00:00

The customers' saved locales (from PreferencesChanged) get their table. Completed requests get the
follow-up items every completion now has (their old codes have no words; one promised an appeal the
API refuses).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FOLLOW_UP = ["check_repayment", "repay_on_time", "adjust_plan", "dispute"]


def upgrade() -> None:
    op.create_table('customer_locales',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('locale', sa.String(length=8), nullable=False),
    sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id')
    )
    requests = sa.table('unbind_requests', sa.column('status', sa.String), sa.column('follow_up', sa.JSON))
    op.execute(requests.update().where(requests.c.status == 'completed').values(follow_up=FOLLOW_UP))


def downgrade() -> None:
    op.drop_table('customer_locales')
