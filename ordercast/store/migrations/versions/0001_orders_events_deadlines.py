"""orders, their event logs, deadlines and idempotency keys

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("restaurant_id", sa.String(128), nullable=False),
        sa.Column("courier_id", sa.String(128)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    for column in ("customer_id", "restaurant_id", "courier_id", "status"):
        op.create_index(f"ix_orders_{column}", "orders", [column])
    op.create_table(
        "events",
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(32), nullable=False, unique=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("actor_subject", sa.String(128), nullable=False),
    )
    op.create_table(
        "deadlines",
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("due_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_deadlines_due_at_ms", "deadlines", ["due_at_ms"])
    op.create_table(
        "idempotency_keys",
        sa.Column("subject", sa.String(128), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("answer", sa.JSON, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("deadlines")
    op.drop_table("events")
    op.drop_table("orders")
