"""The embedded runtime's store: one SQLite file in WAL mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ordercast.store.sql import SqlStore


class SqliteStore(SqlStore):
    """`Store` on a SQLite file, created with its schema on first `open`.

    Args:
        path: the database file.
        synchronous: SQLite's `synchronous` pragma. FULL (the default) makes a
            commit survive a power cut; NORMAL survives a crash of the process
            but may lose the last commits on a power cut.
    """

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = _engine(self.path, synchronous, "BEGIN IMMEDIATE")
        reader = _engine(self.path, synchronous, "BEGIN")
        super().__init__(writer, reader)

    def _relax(self, connection: Connection) -> Callable[[], None]:
        # SQLite refuses to change the pragma inside a transaction; in WAL
        # mode a NORMAL commit is written but not synced, and the next FULL
        # commit syncs it along with its own
        raw = connection.connection.dbapi_connection
        assert raw is not None, "a checked-out connection has its DBAPI connection"
        raw.execute("PRAGMA synchronous=NORMAL")
        return lambda: raw.execute(f"PRAGMA synchronous={self.synchronous}")


def _engine(path: Path, synchronous: str, begin: str) -> Engine:
    engine = sa.create_engine(f"sqlite:///{path}", pool_size=4, max_overflow=8)

    # pysqlite opens transactions on its own terms; take that over so that the
    # writer holds the write lock from BEGIN (SQLAlchemy's documented recipe).
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine
