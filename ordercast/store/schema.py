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
