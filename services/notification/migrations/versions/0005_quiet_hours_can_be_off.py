"""quiet hours can be off: both times null (a window that started when it ended meant the same)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 03:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('contacts') as batch_op:
        batch_op.alter_column('quiet_start', existing_type=sa.String(length=5), nullable=True)
        batch_op.alter_column('quiet_end', existing_type=sa.String(length=5), nullable=True)
    op.execute("UPDATE contacts SET quiet_start = NULL, quiet_end = NULL WHERE quiet_start = quiet_end")


def downgrade() -> None:
    op.execute("UPDATE contacts SET quiet_start = '00:00', quiet_end = '00:00' WHERE quiet_start IS NULL OR quiet_end IS NULL")
    with op.batch_alter_table('contacts') as batch_op:
        batch_op.alter_column('quiet_end', existing_type=sa.String(length=5), nullable=False)
        batch_op.alter_column('quiet_start', existing_type=sa.String(length=5), nullable=False)
