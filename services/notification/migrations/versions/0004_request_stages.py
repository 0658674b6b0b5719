"""request stages: the latest event that moved a known request on, so that a message about an earlier stage is not sent

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 02:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('known_requests') as batch_op:
        batch_op.add_column(sa.Column('stage_event_id', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('known_requests') as batch_op:
        batch_op.drop_column('stage_event_id')
