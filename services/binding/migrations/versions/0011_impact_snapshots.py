"""impact snapshots

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-20 10:00:00

Each request keeps the impact the customer saw when asking (`unbind_requests.impact_snapshot`, the
ImpactOut in their language) and the blockers they accepted (`acknowledged`), for the ops case view.
Requests made before have neither (null).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('unbind_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('impact_snapshot', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('acknowledged', sa.JSON(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('unbind_requests', schema=None) as batch_op:
        batch_op.drop_column('acknowledged')
        batch_op.drop_column('impact_snapshot')
