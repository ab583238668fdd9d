"""The cluster runtime's store: PostgreSQL through asyncpg.

The unit of work is the same synchronous SQLAlchemy code as SQLite's
(`ordercast.store.sql`); SQLAlchemy's asyncio layer runs it on an asyncpg
connection (`AsyncConnection.run_sync`), so no thread waits on the network
and the event loop serves other connections while PostgreSQL works.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ordercast.errors import StoreError
from ordercast.store.sql import SqlStore, Work, migrate

logger = logging.getLogger(__name__)

RETRIES = 5
"""Attempts at a write transaction that lost a race to another node."""

RETRY_PAUSE_S = 0.01
"""Pause before the first retry; doubled for each further one."""

RETRYABLE_STATES = frozenset({"40001", "40P01", "23505"})
"""SQLSTATEs of a lost race: serialization failure, deadlock, unique violation.

Two nodes that create the same order, or use the same idempotency key, at
the same moment both find nothing under their locks; one insert then fails
on the primary key. Run again, its batch reads what the other committed
(`OrderExists`, or the replayed answer).
"""

MIGRATION_LOCK = 0x6F72646572636173
"""Advisory lock key held while migrating, so nodes starting together migrate once."""


def asyncpg_url(url: str) -> sa.URL:
    """`postgresql://…` (or `postgres://…`) as SQLAlchemy's asyncpg URL.

    Raises:
        ValueError: not a PostgreSQL URL.
    """
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {url}")
    return parsed.set(drivername="postgresql+asyncpg")


class PostgresStore(SqlStore):
    """`Store` on a PostgreSQL database shared by every node of a cluster.

    Args:
        url: `postgresql://user:password@host:port/database`.
        pool_size: connections kept open to PostgreSQL.
        max_overflow: connections opened beyond `pool_size` under load and
            closed when returned.
        pool_timeout_s: how long a unit of work waits for a free connection
            before it fails with `StoreError`.
    """

    def __init__(
        self,
        url: str,
        pool_size: int = 10,
        max_overflow: int = 10,
        pool_timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        self.url = asyncpg_url(url)
        self._engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout_s,
            pool_pre_ping=True,
        )

    async def open(self) -> None:
        try:
            await self._write(_migrate_once)
        except StoreError as exc:
            # the driver's own words ("database "x" does not exist"), without
            # SQLAlchemy's wrapping
            cause = getattr(exc.__cause__, "orig", None) or exc.__cause__ or exc
            reason = _reason(cause)
            raise StoreError(f"cannot open the PostgreSQL store: {reason}") from exc

    async def close(self) -> None:
        await super().close()
        await self._engine.dispose()

    async def _write(self, work: Work, *args: Any) -> Any:
        for attempt in range(RETRIES):
            self._check_open()
            try:
                async with self._engine.begin() as connection:
                    return await connection.run_sync(work, *args)
            except sa.exc.DBAPIError as exc:
                if _state_of(exc) not in RETRYABLE_STATES or attempt == RETRIES - 1:
                    raise StoreError(f"not recorded: {_reason(exc)}") from exc
                logger.debug("! write lost a race (%s); again", _state_of(exc))
                await asyncio.sleep(RETRY_PAUSE_S * 2**attempt)
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                raise StoreError(f"not recorded: {_reason(exc)}") from exc
        raise AssertionError("the loop returns or raises")  # pragma: no cover

    async def _write_lax(self, work: Work) -> Any:
        def lax(connection: Connection) -> Any:
            # this transaction's commit does not wait for the WAL to reach disk
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            return work(connection)

        return await self._write(lax)

    async def _read(self, work: Work, *args: Any) -> Any:
        self._check_open()
        try:
            async with self._engine.connect() as connection:
                return await connection.run_sync(work, *args)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise StoreError(f"could not read: {_reason(exc)}") from exc


def _migrate_once(connection: Connection) -> None:
    # held until this transaction ends: a node that starts at the same time
    # waits, then finds the schema at head and has nothing to do
    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
    migrate(connection)


def _state_of(exc: sa.exc.DBAPIError) -> str | None:
    """The SQLSTATE behind a driver error, if it has one."""
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(state) if state else None


def _reason(exc: BaseException) -> str:
    """The first line of the error, without SQLAlchemy's long help text."""
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
