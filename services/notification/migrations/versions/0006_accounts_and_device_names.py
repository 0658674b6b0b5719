"""accounts and device names: what every notice names (a request's lender and last four digits, a device's name)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 00:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('known_requests') as batch:
        batch.add_column(sa.Column('lender', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('account_last4', sa.String(length=4), nullable=True))
    op.create_table('device_names',
    sa.Column('device_id', sa.String(length=128), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('device_id')
    )


def downgrade() -> None:
    op.drop_table('device_names')
    with op.batch_alter_table('known_requests') as batch:
        batch.drop_column('account_last4')
        batch.drop_column('lender')
