"""Tables of the SQL stores, shared by SQLite and PostgreSQL.

Times are integer milliseconds since the Unix epoch (UTC), portable across
both databases. Alembic migrations in `migrations/` create these tables; this
module must match the latest migration (a test checks it).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_id", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("restaurant_id", sa.String(128), nullable=False, index=True),
    sa.Column("courier_id", sa.String(128), index=True),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
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

deadlines = sa.Table(
    "deadlines",
    metadata,
    sa.Column("order_id", sa.String(128), primary_key=True),
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("due_at_ms", sa.BigInteger, nullable=False, index=True),
    # until when a node holds it to fire it (None: nobody); see Store
    sa.Column("leased_until_ms", sa.BigInteger),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("subject", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(128), nullable=False),
    # the first outcome: the order and the seqs it appended, or the refusal
    sa.Column("answer", sa.JSON, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

# event routing and webhooks (docs/webhooks.md)

PENDING = "pending"
"""A delivery that is due, waits for a retry, or is being sent."""
DEAD = "dead"
"""A delivery that gave up: on the dead-letter list until replayed or discarded."""

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""An autoincrementing key: SQLite only autoincrements INTEGER PRIMARY KEY."""

routing_version = sa.Table(
    "routing_version",
    metadata,
    # one row (id 1), bumped by every change to rules or targets, so that
    # every process sharing the database sees the change
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

webhook_targets = sa.Table(
    "webhook_targets",
    metadata,
    sa.Column("target_id", sa.String(64), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secret", sa.String(255), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    # null: the server's setting
    sa.Column("max_attempts", sa.Integer),
    sa.Column("timeout_ms", sa.Integer),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

routing_rules = sa.Table(
    "routing_rules",
    metadata,
    sa.Column("rule_id", sa.String(64), primary_key=True),
    sa.Column("pattern", sa.JSON, nullable=False),
    sa.Column("target_ids", sa.JSON, nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)

# The outbox: one row per (target, event) that is due or dead, written in
# the transaction of its event and deleted once the target took it.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("delivery_id", ID, primary_key=True, autoincrement=True),
    sa.Column("target_id", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(128), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("event_id", sa.String(32), nullable=False),
    sa.Column("rule_ids", sa.JSON, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    # pending (due, or waiting for a retry), or dead (gave up)
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at_ms", sa.BigInteger, nullable=False),
    # who is sending it, until when; 0 when nobody is
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until_ms", sa.BigInteger, nullable=False),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.String(500)),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    # one delivery per event and target; finds the first one of an order
    sa.Index(
        "ix_webhook_deliveries_target_order_seq",
        "target_id",
        "order_id",
        "seq",
        unique=True,
    ),
    sa.Index(
        "ix_webhook_deliveries_target_due",
        "target_id",
        "state",
        "next_attempt_at_ms",
    ),
)

# Recent attempts per target (the delivery log), pruned to a bounded length.
webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
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
    # delivered, retrying, dead, or test
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Index("ix_webhook_attempts_target_attempt", "target_id", "attempt_id"),
)
