"""The embedded runtime's store: one SQLite file in WAL mode."""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ordercast.errors import StoreError
from ordercast.store.sql import SqlStore, Work


class SqliteStore(SqlStore):
    """`Store` on a SQLite file, created with its schema on first `open`.

    Writes go through one thread, so a process holds SQLite's write lock from
    one place; reads run on other threads, beside it (WAL mode).

    Args:
        path: the database file.
        synchronous: SQLite's `synchronous` pragma. FULL (the default) makes a
            commit survive a power cut; NORMAL survives a crash of the process
            but may lose the last commits on a power cut.
    """

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        super().__init__()
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _engine(self.path, synchronous, "BEGIN IMMEDIATE")
        self._reader = _engine(self.path, synchronous, "BEGIN")
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="store-writer")

    async def close(self) -> None:
        await super().close()
        self._write_thread.shutdown(wait=True)
        self._writer.dispose()
        self._reader.dispose()

    async def _write(self, work: Work, *args: Any) -> Any:
        return await self._on_writer(self._in_transaction, work, *args)

    async def _write_lax(self, work: Work) -> Any:
        return await self._on_writer(self._in_lax_transaction, work)

    async def _on_writer(self, run: Work, *args: Any) -> Any:
        self._check_open()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._write_thread, run, *args)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"not recorded: {exc}") from exc

    async def _read(self, work: Work, *args: Any) -> Any:
        self._check_open()
        try:
            return await asyncio.to_thread(self._on_reader, work, *args)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"could not read: {exc}") from exc

    def _in_transaction(self, work: Work, *args: Any) -> Any:
        with self._writer.begin() as connection:
            return work(connection, *args)

    def _on_reader(self, work: Work, *args: Any) -> Any:
        self._check_open()
        with self._reader.connect() as connection:
            return work(connection, *args)

    def _in_lax_transaction(self, work: Work) -> Any:
        # SQLite takes the pragma only outside a transaction; in WAL mode a
        # NORMAL commit is written but not synced, and the next FULL commit
        # syncs it along with its own
        with self._writer.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None, "a checked-out connection has its DBAPI one"
            raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with connection.begin():
                    return work(connection)
            finally:
                raw.execute(f"PRAGMA synchronous={self.synchronous}")


def _engine(path: Path, synchronous: str, begin: str) -> Engine:
    engine = sa.create_engine(f"sqlite:///{path}", pool_size=4, max_overflow=8)

    # pysqlite opens transactions on its own terms; take that over so that the
    # writer holds the write lock from BEGIN (SQLAlchemy's documented recipe).
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # first, so that switching to WAL waits for a store that is migrating
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


def claim_for_one_server(path: Path) -> IO[bytes]:
    """Hold `<path>.lock` for as long as the returned file stays open.

    An embedded server announces events on its in-process bus, so a second
    server on the same file would never hear the first one's events and its
    followers would miss them. The lock is the operating system's: a process
    that dies, even by SIGKILL, lets go of it.

    Raises:
        StoreError: another process holds it.
    """
    lock = path.with_name(f"{path.name}.lock").open("ab")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StoreError(
            f"another ordercast server is serving {path}: servers that share a "
            "store need the cluster runtime (PostgreSQL and Redis)"
        ) from None
    return lock
