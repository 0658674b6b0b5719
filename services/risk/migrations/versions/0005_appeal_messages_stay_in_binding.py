"""appeal messages stay in binding

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00

`UnbindAppealed` no longer carries the customer's words, so a review no longer keeps a copy: ops
read an appeal at binding (`appeal_message` of the request), which holds it.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_column('message')


def downgrade() -> None:
    """Downgrade schema (the copies are not restored: binding holds the appeals)."""
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message', sa.Text(), nullable=True))
