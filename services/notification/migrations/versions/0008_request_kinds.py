"""request kinds: what each known request asks, so that its messages say so

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 11:00:00

A request on a binding is an unbind, or a pause of its auto-debit or a switch of its account
(UnbindRequested `kind`); a bind request is `bind`. The requests known before were unbind or bind
requests alike: they read as `unbind`, whose texts they were sent with.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('known_requests') as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='unbind', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('known_requests') as batch_op:
        batch_op.drop_column('kind')
