"""rule versions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09 10:00:00

Filled in by the rules work of issue 17 (versions, rollback, the machine's own decision for the dry run).
"""
from typing import Sequence, Union


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""


def downgrade() -> None:
    """Downgrade schema."""
