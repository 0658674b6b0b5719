"""ops lookup and resends: contacts found by their masked phone, deliveries resent by ops

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-20 10:00:00

`contacts.phone_key` holds the digits a masked phone shows (first 3, last 4), indexed, so ops find
a customer by `138****5678` without a scan; filled here for every contact already on file. A delivery
resent by ops names the one it repeats (`resend_of`), who asked (`resent_by`), when and why;
`deliveries.request_id` is indexed for the messages of a case.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db
from shared.masking import phone_key


revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('contacts') as batch_op:
        batch_op.add_column(sa.Column('phone_key', sa.String(length=8), nullable=True))
    contacts = sa.table('contacts', sa.column('user_id', sa.String), sa.column('phone', sa.String), sa.column('phone_key', sa.String))
    connection = op.get_bind()
    for user_id, phone in connection.execute(sa.select(contacts.c.user_id, contacts.c.phone)).all():
        connection.execute(contacts.update().where(contacts.c.user_id == user_id).values(phone_key=phone_key(phone)))
    with op.batch_alter_table('contacts') as batch_op:
        batch_op.alter_column('phone_key', existing_type=sa.String(length=8), nullable=False)
        batch_op.create_index('ix_contacts_phone_key', ['phone_key'], unique=False)
    with op.batch_alter_table('deliveries') as batch_op:
        batch_op.add_column(sa.Column('resend_of', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('resent_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('resent_at', shared.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resend_reason', sa.Text(), nullable=True))
        batch_op.create_index('ix_deliveries_request_id', ['request_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries') as batch_op:
        batch_op.drop_index('ix_deliveries_request_id')
        batch_op.drop_column('resend_reason')
        batch_op.drop_column('resent_at')
        batch_op.drop_column('resent_by')
        batch_op.drop_column('resend_of')
    with op.batch_alter_table('contacts') as batch_op:
        batch_op.drop_index('ix_contacts_phone_key')
        batch_op.drop_column('phone_key')
