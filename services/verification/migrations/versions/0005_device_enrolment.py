"""device enrolment: a device key is pending until its own SMS code, listed, revoked and audited

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('verifications') as batch_op:
        batch_op.add_column(sa.Column('purpose', sa.String(length=32), nullable=False, server_default='unbind'))
        batch_op.add_column(sa.Column('device_id', sa.String(length=128), nullable=True))
        batch_op.alter_column('request_id', existing_type=sa.String(length=36), nullable=True)
        batch_op.alter_column('binding_id', existing_type=sa.String(length=64), nullable=True)
    with op.batch_alter_table('unbind_contexts') as batch_op:
        batch_op.add_column(sa.Column('requested_at', shared.db.UTCDateTime(timezone=True), nullable=True))
    # Keys enrolled before this revision stay usable: they are active since they were enrolled.
    with op.batch_alter_table('devices') as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), nullable=False, server_default='active'))
        batch_op.add_column(sa.Column('activated_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', shared.db.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE devices SET activated_at = created_at")
    op.create_table('device_audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('device_id', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('device_audit', schema=None) as batch_op:
        batch_op.create_index('ix_device_audit_device_at', ['device_id', 'at'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('device_audit', schema=None) as batch_op:
        batch_op.drop_index('ix_device_audit_device_at')
    op.drop_table('device_audit')
    with op.batch_alter_table('devices') as batch_op:
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('activated_at')
        batch_op.drop_column('status')
    with op.batch_alter_table('unbind_contexts') as batch_op:
        batch_op.drop_column('requested_at')
    op.execute("DELETE FROM verifications WHERE purpose != 'unbind'")
    with op.batch_alter_table('verifications') as batch_op:
        batch_op.alter_column('binding_id', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('request_id', existing_type=sa.String(length=36), nullable=False)
        batch_op.drop_column('device_id')
        batch_op.drop_column('purpose')
