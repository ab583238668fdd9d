"""The store implementations the contract suite runs against.

Each is described by a picklable spec, so that a real child process can open
its own store on the same database (see the multi-process test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from ordercast.store.base import Store
from ordercast.store.postgres import PostgresStore, asyncpg_url
from ordercast.store.schema import metadata, routing_version
from ordercast.store.sqlite import SqliteStore
from tests.services import fresh_database

Look = Callable[[sa.Connection], Any]


class StoreSpec(Protocol):
    """How to build a new, unopened store on the suite's one database."""

    def make(self) -> Store: ...

    def empty(self) -> AbstractContextManager[StoreSpec]:
        """Another spec, on a database of its own that nothing has touched."""
        ...

    async def look(self, look: Look) -> Any:
        """Run `look` on a plain connection to the database (for inspection)."""
        ...


@dataclass(frozen=True)
class SqliteSpec:
    path: Path

    def make(self) -> Store:
        return SqliteStore(self.path)

    @contextmanager
    def empty(self) -> Iterator[StoreSpec]:
        yield SqliteSpec(self.path.with_name(f"empty-{self.path.name}"))

    async def look(self, look: Look) -> Any:
        def run() -> Any:
            engine = sa.create_engine(f"sqlite:///{self.path}")
            try:
                with engine.connect() as connection:
                    return look(connection)
            finally:
                engine.dispose()

        return await asyncio.to_thread(run)


@dataclass(frozen=True)
class PostgresSpec:
    url: str

    def make(self) -> Store:
        return PostgresStore(self.url, pool_size=4, max_overflow=4)

    @contextmanager
    def empty(self) -> Iterator[StoreSpec]:
        with fresh_database("empty") as url:
            yield PostgresSpec(url)

    async def look(self, look: Look) -> Any:
        engine = create_async_engine(asyncpg_url(self.url))
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(look)
        finally:
            await engine.dispose()

    async def clear(self) -> None:
        """Empty every table (between two tests on the session's database)."""
        tables = ", ".join(t.name for t in metadata.sorted_tables)

        def truncate(connection: sa.Connection) -> None:
            connection.execute(sa.text(f"TRUNCATE {tables}"))
            # the one row the migration seeds (ordercast.store.routing)
            connection.execute(routing_version.insert().values(id=1, version=0))
            connection.commit()

        await self.look(truncate)
