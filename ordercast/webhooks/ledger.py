"""Claims and settlements of every worker, written together (group commit)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ordercast.errors import StoreError
from ordercast.webhooks.base import Claimed, ClaimRequest, Settlement, WebhookStore

logger = logging.getLogger(__name__)

LINGER_S = 0.02
"""How long claims and settlements wait to be written together."""


@dataclass
class Ledger:
    """Queues claims and settlements and writes them in one transaction.

    Every worker's bookkeeping takes one turn on the store's writer, instead
    of one turn each.
    """

    store: WebhookStore
    owner: str
    clock: Callable[[], datetime]
    linger_s: float = 0.0
    _settlements: list[tuple[Settlement, asyncio.Future[None]]] = field(
        default_factory=list
    )
    _claims: list[tuple[ClaimRequest, asyncio.Future[Claimed]]] = field(
        default_factory=list
    )
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    async def claim(self, request: ClaimRequest) -> Claimed:
        """Raises: StoreError."""
        answer: asyncio.Future[Claimed] = asyncio.get_running_loop().create_future()
        self._claims.append((request, answer))
        self._ready.set()
        return await answer

    async def settle(self, settlement: Settlement) -> None:
        """Raises: StoreError."""
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settlements.append((settlement, answer))
        self._ready.set()
        await answer

    async def drain(self) -> None:
        """Wait until what is queued now has been written."""
        while self._settlements or self._claims or not self._idle.is_set():
            self._ready.set()
            await asyncio.sleep(0.01)

    async def run(self) -> None:
        self._idle.set()
        while True:
            await self._ready.wait()
            self._idle.clear()
            # linger, so that one transaction carries what every worker has
            # to say: each one takes a turn on the store's writer
            await asyncio.sleep(self.linger_s)
            self._ready.clear()
            settlements, self._settlements = self._settlements, []
            claims, self._claims = self._claims, []
            try:
                await self._write(settlements, claims)
            finally:
                self._idle.set()

    async def _write(
        self,
        settlements: list[tuple[Settlement, asyncio.Future[None]]],
        claims: list[tuple[ClaimRequest, asyncio.Future[Claimed]]],
    ) -> None:
        try:
            claimed = await self.store.exchange(
                [s for s, _ in settlements],
                [c for c, _ in claims],
                self.owner,
                self.clock(),
            )
        except Exception as exc:
            if not isinstance(exc, StoreError):
                logger.exception("webhook ledger failed")
                exc = StoreError(f"webhook ledger failed: {exc}")
            answers: list[asyncio.Future[None] | asyncio.Future[Claimed]] = [
                *(a for _, a in settlements),
                *(a for _, a in claims),
            ]
            for answer in answers:
                if not answer.done():
                    answer.set_exception(exc)
            return
        for _, done in settlements:
            if not done.done():
                done.set_result(None)
        for (_, answer), got in zip(claims, claimed, strict=True):
            if not answer.done():
                answer.set_result(got)
