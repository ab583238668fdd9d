"""routing rules, webhook targets, the webhook outbox and its delivery log

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    version = op.create_table(
        "routing_version",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])
    op.create_table(
        "webhook_targets",
        sa.Column("target_id", sa.String(64), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(255), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("max_attempts", sa.Integer),
        sa.Column("timeout_ms", sa.Integer),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "routing_rules",
        sa.Column("rule_id", sa.String(64), primary_key=True),
        sa.Column("pattern", sa.JSON, nullable=False),
        sa.Column("target_ids", sa.JSON, nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", ID, primary_key=True, autoincrement=True),
        sa.Column("target_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("rule_ids", sa.JSON, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at_ms", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until_ms", sa.BigInteger, nullable=False),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.String(500)),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_webhook_deliveries_target_order_seq",
        "webhook_deliveries",
        ["target_id", "order_id", "seq"],
        unique=True,
    )
    op.create_index(
        "ix_webhook_deliveries_target_due",
        "webhook_deliveries",
        ["target_id", "state", "next_attempt_at_ms"],
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("attempt_id", ID, primary_key=True, autoincrement=True),
        sa.Column("target_id", sa.String(64), nullable=False),
        sa.Column("delivery_id", sa.BigInteger),
        sa.Column("order_id", sa.String(128)),
        sa.Column("seq", sa.Integer),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.String(500)),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
    )
    op.create_index(
        "ix_webhook_attempts_target_attempt",
        "webhook_attempts",
        ["target_id", "attempt_id"],
    )


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("routing_rules")
    op.drop_table("webhook_targets")
    op.drop_table("routing_version")
