"""review notes stay in risk

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00

Ops notes no longer travel on `ReviewDecided`, so binding no longer holds them: the copied column
goes, and the audit entries of earlier approvals, which carried the note as their reason (shown to
the customer in the timeline), say what every approval says now. This is the one update the
append-only audit ever gets: an ops note, which may hold a phone number, has no place in it.
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
    with op.batch_alter_table('unbind_requests', schema=None) as batch_op:
        batch_op.drop_column('reviewer_note')
    audit = sa.table('unbind_request_audit', sa.column('action', sa.String), sa.column('reason', sa.Text))
    op.execute(audit.update().where(audit.c.action == 'ReviewDecided').values(reason='approved after review'))


def downgrade() -> None:
    """Downgrade schema (the notes themselves are not restored: risk holds them)."""
    with op.batch_alter_table('unbind_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reviewer_note', sa.Text(), nullable=True))
