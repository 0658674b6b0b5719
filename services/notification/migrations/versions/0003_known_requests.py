"""known requests: the unbind requests binding opened, which every later event must name

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 00:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('known_requests',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('binding_id', sa.String(length=64), nullable=True),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('seen_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('request_id')
    )
    # Requests already under way were announced by their UnbindRequested message: keep them known
    # (their binding was not recorded, so only the customer is checked for them).
    op.execute(
        "INSERT INTO known_requests (request_id, binding_id, user_id, seen_at) "
        "SELECT request_id, NULL, MIN(user_id), MIN(created_at) FROM deliveries "
        "WHERE kind = 'unbind_requested' AND request_id IS NOT NULL GROUP BY request_id"
    )


def downgrade() -> None:
    op.drop_table('known_requests')
