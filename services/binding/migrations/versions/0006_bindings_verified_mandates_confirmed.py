"""bindings verified, mandates confirmed by their lender

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 10:00:00

A binding now waits for the customer's SMS code (`bindings.verification_id`, its bind request in
`bind_request_id`), and its mandate for the lender's signed callback (`mandates.decided_at`,
`refusal_reason`; the callbacks in `lender_callbacks`). Repayment accounts name their lender of the
directory (`lender_id`): accounts bound before are matched by the name typed, and one whose name is
not in the directory keeps none (its mandate was active from the start, so no lender need call back).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# The directory as it was at this revision (shared.lenders may grow; this migration must not change).
NAMES = {'example_bank': ('example_bank', 'example bank', '示例银行'), 'harbour_bank': ('harbour_bank', 'harbour bank', '海港银行')}
accounts = sa.table('repayment_accounts', sa.column('lender', sa.String), sa.column('lender_id', sa.String))


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('repayment_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lender_id', sa.String(length=64), nullable=True))
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bind_request_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('verification_id', sa.String(length=36), nullable=True))
    with op.batch_alter_table('mandates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('decided_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('refusal_reason', sa.String(length=64), nullable=True))
    op.create_table(
        'lender_callbacks',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('lender_id', sa.String(length=64), nullable=False),
        sa.Column('callback_id', sa.String(length=64), nullable=False),
        sa.Column('mandate_id', sa.String(length=36), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('received_at', shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('lender_id', 'callback_id', name='uq_lender_callbacks_id'),
    )
    for lender_id, names in NAMES.items():
        op.execute(accounts.update().where(sa.func.lower(sa.func.trim(accounts.c.lender)).in_(names)).values(lender_id=lender_id))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('lender_callbacks')
    with op.batch_alter_table('mandates', schema=None) as batch_op:
        batch_op.drop_column('refusal_reason')
        batch_op.drop_column('decided_at')
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_column('verification_id')
        batch_op.drop_column('bind_request_id')
    with op.batch_alter_table('repayment_accounts', schema=None) as batch_op:
        batch_op.drop_column('lender_id')
