"""lender codes and customer locales

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 00:00:00

A repayment account names its lender by a code of the lender directory (shared/lenders.py) rather
than by the text typed when it was bound: the accounts bound with a name the directory knows get
its code; any other name stays as it was typed (shown back to its owner as it is). The customers'
saved locales (from PreferencesChanged) get their table. Completed requests get the follow-up items
every completion now has (their old codes have no words; one promised an appeal the API refuses).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import shared.db


revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# The directory as it was when this migration was written (a migration does not follow later edits).
NAMES = {"EXAMPLE_BANK": ("Example Bank", "示例银行"), "LIGHTHOUSE_BANK": ("Lighthouse Bank", "灯塔银行"), "RIVERSIDE_RURAL_BANK": ("Riverside Rural Bank", "江畔农商银行")}


FOLLOW_UP = ["check_repayment", "repay_on_time", "adjust_plan"]


def upgrade() -> None:
    op.create_table('customer_locales',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('locale', sa.String(length=8), nullable=False),
    sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id')
    )
    accounts = sa.table('repayment_accounts', sa.column('lender', sa.String))
    for code, names in NAMES.items():
        op.execute(accounts.update().where(sa.func.lower(accounts.c.lender).in_([name.lower() for name in names])).values(lender=code))
    requests = sa.table('unbind_requests', sa.column('status', sa.String), sa.column('follow_up', sa.JSON))
    op.execute(requests.update().where(requests.c.status == 'completed').values(follow_up=FOLLOW_UP))


def downgrade() -> None:
    accounts = sa.table('repayment_accounts', sa.column('lender', sa.String))
    for code, (name, _) in NAMES.items():
        op.execute(accounts.update().where(accounts.c.lender == code).values(lender=name))
    op.drop_table('customer_locales')
