"""anomaly model in shadow mode

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 15:30:00

Assessments keep the model's features, score, version and explanation, and whether the model has yet
to learn them; the model's checkpoint gets a table of its own; a customer's profile gains a time zone
and the client IPs of the last day.
"""
from datetime import datetime, timezone
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('assessments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('features', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('model_score', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('model_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('model_explanation', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('to_learn', sa.Boolean(), nullable=True))
        batch_op.create_index(
            'ix_assessments_to_learn', ['created_at', 'request_id'], unique=False,
            postgresql_where=sa.text('to_learn'), sqlite_where=sa.text('to_learn'),
        )
    with op.batch_alter_table('customer_profiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('time_zone', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('recent_ips', sa.JSON(), nullable=True))
    op.create_table(
        'model_state',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('learned', sa.Integer(), nullable=False),
        sa.Column('state', sa.JSON(), nullable=False),
        sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    # The row learners lock to take turns: there from the start, so two first learners cannot both
    # insert it. An empty fingerprint is "nothing learned yet".
    op.bulk_insert(
        sa.table(
            'model_state',
            sa.column('name', sa.String), sa.column('fingerprint', sa.String), sa.column('version', sa.Integer),
            sa.column('learned', sa.Integer), sa.column('state', sa.JSON),
            sa.column('updated_at', shared.db.UTCDateTime(timezone=True)),
        ),
        [{'name': 'half-space-trees', 'fingerprint': '', 'version': 0, 'learned': 0, 'state': {},
          'updated_at': datetime(2026, 12, 2, tzinfo=timezone.utc)}],
    )



def downgrade() -> None:
    op.drop_table('model_state')
    with op.batch_alter_table('customer_profiles', schema=None) as batch_op:
        batch_op.drop_column('recent_ips')
        batch_op.drop_column('time_zone')
    with op.batch_alter_table('assessments', schema=None) as batch_op:
        batch_op.drop_index('ix_assessments_to_learn')
        batch_op.drop_column('to_learn')
        batch_op.drop_column('model_explanation')
        batch_op.drop_column('model_version')
        batch_op.drop_column('model_score')
        batch_op.drop_column('features')
