"""The store implementations the contract suite runs against.

Each is described by a picklable spec, so that a real child process can open
its own store on the same database (see the multi-process test).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ordercast.store.base import Store
from ordercast.store.sqlite import SqliteStore


class StoreSpec(Protocol):
    """How to build a new, unopened store on the suite's one database."""

    def make(self) -> Store: ...


@dataclass(frozen=True)
class SqliteSpec:
    path: Path

    def make(self) -> Store:
        return SqliteStore(self.path)
