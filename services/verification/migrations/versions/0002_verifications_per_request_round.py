"""verifications per request round

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 11:22:20.119273

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: request_id stops being unique (one verification per approval round)."""
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's constraint has no name: the batch copy names it so it can be dropped.
        with op.batch_alter_table("verifications", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}) as batch_op:
            batch_op.drop_constraint("uq_verifications_request_id", type_="unique")
            batch_op.create_index(batch_op.f("ix_verifications_request_id"), ["request_id"], unique=False)
    else:
        op.drop_constraint("verifications_request_id_key", "verifications", type_="unique")
        op.create_index(op.f("ix_verifications_request_id"), "verifications", ["request_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verifications_request_id"))
        batch_op.create_unique_constraint("verifications_request_id_key", ["request_id"])
