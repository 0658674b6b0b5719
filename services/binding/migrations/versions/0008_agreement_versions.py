"""agreement versions: a binding records the version of the agreement its customer accepted

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00

Bindings made before had no version on record: they are taken to stand under the version in force
when this migration runs, 2026-12 (the seeded demo bindings among them).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# A literal, not the service's current version: this migration means what it meant when written.
VERSION_IN_FORCE = '2026-12'


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agreement_version', sa.String(length=16), nullable=True))
    bindings = sa.table('bindings', sa.column('agreement_version', sa.String))
    op.execute(bindings.update().values(agreement_version=VERSION_IN_FORCE))
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.alter_column('agreement_version', existing_type=sa.String(length=16), nullable=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_column('agreement_version')
