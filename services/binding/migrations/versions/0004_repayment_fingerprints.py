"""repayment fingerprints: instalments.payment_fingerprint, so a reused Idempotency-Key is refused

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 00:10:00

"""
import hashlib
import json
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

instalments = sa.table(
    'instalments', sa.column('id', sa.String), sa.column('repayment_account_id', sa.String), sa.column('amount', sa.Integer),
    sa.column('payment_key', sa.String), sa.column('payment_fingerprint', sa.String),
)
bindings = sa.table('bindings', sa.column('id', sa.String), sa.column('repayment_account_id', sa.String))


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('instalments') as batch_op:
        batch_op.add_column(sa.Column('payment_fingerprint', sa.String(length=64), nullable=True))

    # Repayments made before: the request each key stood for was its binding and the instalment's
    # amount (a different amount was refused), fingerprinted as the service does (sorted, compact JSON).
    connection = op.get_bind()
    paid = connection.execute(
        sa.select(instalments.c.id, instalments.c.amount, bindings.c.id)
        .join(bindings, bindings.c.repayment_account_id == instalments.c.repayment_account_id)
        .where(instalments.c.payment_key.is_not(None))
    ).all()
    for instalment_id, amount, binding_id in paid:
        request = json.dumps({"amount": amount, "binding_id": binding_id}, sort_keys=True, separators=(",", ":"))
        fingerprint = hashlib.sha256(request.encode()).hexdigest()
        connection.execute(sa.update(instalments).where(instalments.c.id == instalment_id).values(payment_fingerprint=fingerprint))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('instalments') as batch_op:
        batch_op.drop_column('payment_fingerprint')
