"""The embedded runtime's store: one SQLite file in WAL mode."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = _engine(self.path, synchronous, "BEGIN IMMEDIATE")
        reader = _engine(self.path, synchronous, "BEGIN")
        super().__init__(writer, reader)


def _engine(path: Path, synchronous: str, begin: str) -> Engine:
    engine = sa.create_engine(f"sqlite:///{path}", pool_size=4, max_overflow=8)

    # pysqlite opens transactions on its own terms; take that over so that the
    # writer holds the write lock from BEGIN (SQLAlchemy's documented recipe).
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=10000")
        _enable_wal(cursor)
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


WAL_ATTEMPTS = 50


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL, waiting while another connection switches it.

    Changing the journal mode needs the file to itself, and SQLite answers
    "database is locked" at once, without the busy timeout, when several
    connections open a new file together.
    """
    for attempt in range(WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.02)
