"""verification attempts: every code and device signature checked, with its result, for the ops case view

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-20 10:00:00

Attempts made before this revision were not kept (only their counts, on the verification).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('verification_attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('verification_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('result', sa.String(length=32), nullable=False),
    sa.Column('device_id', sa.String(length=128), nullable=True),
    sa.Column('at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_verification_attempts_verification_at', 'verification_attempts', ['verification_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_verification_attempts_verification_at', table_name='verification_attempts')
    op.drop_table('verification_attempts')
