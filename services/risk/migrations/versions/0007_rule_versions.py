"""rule versions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09 10:00:00

Rule sets say why they were saved and which version a rollback restores. Each assessment keeps the
request's device id and client IP (facts rules may name) and the machine's own decision, before a
deny is sent to review, which a dry run of a rule set compares with. For assessments made before,
that decision is read back: a review whose account flag says "review by deny ..." was a deny.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('rule_sets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('comment', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('restored_from', sa.Integer(), nullable=True))
    with op.batch_alter_table('assessments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('machine_decision', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('device_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('client_ip', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_assessments_created_at', ['created_at'], unique=False)
    op.execute("UPDATE assessments SET machine_decision = decision")
    op.execute(
        "UPDATE assessments SET machine_decision = 'deny' WHERE decision = 'review' AND EXISTS ("
        "SELECT 1 FROM account_flags WHERE account_flags.request_id = assessments.request_id AND account_flags.reason LIKE 'review by deny %')"
    )
    with op.batch_alter_table('assessments', schema=None) as batch_op:
        batch_op.alter_column('machine_decision', existing_type=sa.String(length=16), nullable=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('assessments', schema=None) as batch_op:
        batch_op.drop_index('ix_assessments_created_at')
        batch_op.drop_column('client_ip')
        batch_op.drop_column('device_id')
        batch_op.drop_column('machine_decision')
    with op.batch_alter_table('rule_sets', schema=None) as batch_op:
        batch_op.drop_column('restored_from')
        batch_op.drop_column('comment')
