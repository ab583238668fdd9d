"""deadline leases: a node fires the deadlines it leased, and only those

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deadlines", sa.Column("leased_until_ms", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("deadlines") as batch:
        batch.drop_column("leased_until_ms")
