"""Sending a plan to a running server through its public HTTP API.

Simulated time maps to wall time by `speed` (simulated seconds per wall
second). The steps of one order go out strictly in order, each after the
previous one was answered; different orders proceed concurrently, with a
bounded number of requests in flight. Every request carries an
`Idempotency-Key`, so a request retried after a transport error is applied at
most once (DESIGN.md, HTTP API).

Given the URLs of several nodes of a cluster, the driver deals the orders
out to them in turn; an order whose node stops answering moves to the next
node and retries there, with the same key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ordercast.auth import issue_token
from ordercast.errors import OrdercastError
from ordercast.lifecycle import Command, Role, Status
from ordercast.replay.plan import (
    DISPATCH_DEADLINE_MINUTES,
    RESTAURANT_DEADLINE_MINUTES,
    Leg,
    Plan,
    Step,
)
from ordercast.replay.tracks import position_at
from ordercast.settings import Settings

logger = logging.getLogger(__name__)

_CLOCK_REFRESH_S = 0.25


class ServerUnavailable(OrdercastError):
    """No ordercast server answered at the replay's URL."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(url, cause)
        self.url = url
        self.cause = cause

    def __str__(self) -> str:
        return f"no ordercast server answers at {self.url} ({self.cause})"


@dataclass(frozen=True)
class DriverOptions:
    """Where to send a plan, how fast, and how hard to try."""

    url: str = "http://127.0.0.1:8000"
    more_urls: tuple[str, ...] = ()
    """Other nodes of the same cluster; orders are dealt out to all of them."""
    secret: str | None = None
    """Token secret; None reads ORDERCAST_TOKEN_SECRET (or the development one)."""
    speed: float = 60.0
    """Simulated seconds per wall second: 60 plays one minute per second."""
    concurrency: int = 64
    """Most requests in flight at once."""
    acks: Path | None = None
    """If set, every acknowledged command is appended here as one JSON line."""
    retries: int = 5
    """Retries of a request after a transport error or a 5xx answer."""
    backoff_s: float = 0.2
    """Wait before the first retry; doubled for each further one."""
    max_backoff_s: float = 2.0
    request_timeout_s: float = 10.0
    show_progress: bool = True
    fix_interval_s: float = 1.0
    """Wall seconds between two positions of one moving courier."""

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.more_urls)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"speed must be positive, not {self.speed}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")


@dataclass
class ReplaySummary:
    """What a replay did, for the final table and for tests."""

    orders: int
    created: int = 0
    finished: int = 0
    """Orders whose steps were all answered, or that were given up."""
    sent: int = 0
    """Commands sent (create included), each counted once however often retried."""
    acknowledged: int = 0
    refused: int = 0
    """Answered 409: the command did not fit the order's status (or id taken)."""
    failed: int = 0
    """Given up after retries, or refused for another reason (401, 403, 422)."""
    retried: int = 0
    """Requests sent again after a transport error or a 5xx answer."""
    abandoned: list[str] = field(default_factory=list)
    """Orders whose remaining steps were skipped after a refusal or failure."""
    statuses: dict[str, str] = field(default_factory=dict)
    """Last status the server acknowledged for each order."""
    positions: int = 0
    """Courier positions the server accepted."""
    positions_refused: int = 0
    """Courier positions refused or lost (they are never retried)."""
    interrupted: bool = False
    """Stopped (Ctrl-C) before every order was done."""
    replayed: int = 0
    """Acknowledged with the first answer to the same Idempotency-Key: applied
    by an earlier attempt, or by an earlier replay with the same prefix."""

    def status_counts(self) -> Counter[str]:
        """How many orders the server last acknowledged in each status."""
        return Counter(self.statuses.values())


def timeouts_hint(speed: float) -> str:
    """The server deadlines that match a replay at `speed`, as one line."""
    restaurant_s = RESTAURANT_DEADLINE_MINUTES * 60 / speed
    dispatch_s = DISPATCH_DEADLINE_MINUTES * 60 / speed
    return (
        f"server deadlines matching --speed {speed:g}: "
        f"ORDERCAST_RESTAURANT_TIMEOUT_S={restaurant_s:g} "
        f"ORDERCAST_DISPATCH_TIMEOUT_S={dispatch_s:g}"
    )


async def run_replay(
    plan: Plan, options: DriverOptions, console: Console | None = None
) -> ReplaySummary:
    """Send `plan` to the server at `options.url`; return once every order is done.

    Raises:
        ServerUnavailable: the server does not answer `GET /healthz`.
    """
    console = console or Console()
    limits = httpx.Limits(max_connections=options.concurrency)
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for url in options.urls:
            client = httpx.AsyncClient(
                base_url=url, timeout=options.request_timeout_s, limits=limits
            )
            clients.append(await stack.enter_async_context(client))
            await _check_server(client, url)
        with _acks_file(options.acks) as acks:
            driver = Driver(plan, options, clients, acks)
            with _progress(console, options.show_progress) as progress:
                try:
                    await driver.run(progress)
                except asyncio.CancelledError:
                    # Ctrl-C: asyncio.run cancels this task; what was done so
                    # far is still worth reporting, and the command says so
                    driver.summary.interrupted = True
    return driver.summary


async def _check_server(client: httpx.AsyncClient, url: str) -> None:
    try:
        response = await client.get("/healthz")
    except httpx.TransportError as exc:
        raise ServerUnavailable(url, exc.__class__.__name__) from exc
    if response.status_code != 200:
        raise ServerUnavailable(url, f"/healthz answered {response.status_code}")


@contextlib.contextmanager
def _acks_file(path: Path | None) -> Iterator[IO[bytes] | None]:
    if path is None:
        yield None
        return
    with path.open("ab") as file:
        yield file


@contextlib.contextmanager
def _progress(console: Console, enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("sim minute [bold]{task.fields[clock]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("finished, {task.fields[created]} created"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        yield progress


class Driver:
    """Plays one plan against one server or cluster; build it through `run_replay`."""

    def __init__(
        self,
        plan: Plan,
        options: DriverOptions,
        clients: list[httpx.AsyncClient],
        acks: IO[bytes] | None = None,
    ) -> None:
        self.plan = plan
        self.options = options
        self.clients = clients
        """One per node; each order goes to one of them (`_client_of`)."""
        self.acks = acks
        self.secret = options.secret or Settings().token_secret
        self.by_order: dict[str, list[Step]] = {}
        for step in plan.steps:
            self.by_order.setdefault(step.order_id, []).append(step)
        self.legs_of: dict[str, list[Leg]] = {}
        for leg in plan.legs:
            self.legs_of.setdefault(leg.order_id, []).append(leg)
        self.summary = ReplaySummary(orders=len(self.by_order))
        self._node_of = {order_id: i for i, order_id in enumerate(self.by_order)}
        self._tokens: dict[tuple[Role, str], str] = {}
        self._warned: set[tuple[int, str]] = set()
        self._slots = asyncio.Semaphore(options.concurrency)
        self._started_at = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    async def run(self, progress: Progress | None = None) -> None:
        """Drive every order to its last step, concurrently."""
        loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        self._start_progress(progress)
        clock = asyncio.create_task(self._refresh_clock())
        try:
            async with asyncio.TaskGroup() as group:
                for order_id, steps in self.by_order.items():
                    group.create_task(self._drive_order(order_id, steps))
        finally:
            clock.cancel()
            self._update_progress()

    # timing

    def sim_minute(self) -> float:
        """The simulated minute the replay has reached."""
        elapsed_s = asyncio.get_running_loop().time() - self._started_at
        return self.plan.start_minute + elapsed_s * self.options.speed / 60

    async def _sleep_until(self, at_minute: float) -> None:
        offset_s = (at_minute - self.plan.start_minute) * 60 / self.options.speed
        delay_s = self._started_at + offset_s - asyncio.get_running_loop().time()
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    async def _move_until(self, order_id: str, at_minute: float) -> None:
        """Wait for `at_minute`, reporting the courier's position meanwhile.

        Positions come from the plan's legs at the replay clock, one every
        `fix_interval_s` wall seconds while a leg of this order is under way;
        the leg starts with a command this task has already sent, so the
        courier is assigned by the time it reports.
        """
        legs = self.legs_of.get(order_id)
        if not legs:
            await self._sleep_until(at_minute)
            return
        while (now := self.sim_minute()) < at_minute:
            leg = next((g for g in legs if g.start_minute <= now < g.end_minute), None)
            if leg is not None:
                await self._report(leg, *position_at(leg.path, now))
            left_s = (at_minute - self.sim_minute()) * 60 / self.options.speed
            await asyncio.sleep(max(0.0, min(self.options.fix_interval_s, left_s)))

    async def _report(self, leg: Leg, lat: float, lng: float) -> None:
        headers = {"Authorization": f"Bearer {self._token(Role.COURIER, leg.subject)}"}
        path = f"/orders/{leg.order_id}/location"
        try:
            async with self._slots:
                response = await self._client_of(leg.order_id).post(
                    path, json={"lat": lat, "lng": lng}, headers=headers
                )
        except httpx.TransportError:
            self.summary.positions_refused += 1
            return
        if response.status_code == 202:
            self.summary.positions += 1
        else:
            self.summary.positions_refused += 1

    # orders

    async def _drive_order(self, order_id: str, steps: list[Step]) -> None:
        for index, step in enumerate(steps):
            await self._move_until(order_id, step.at_minute)
            if not await self._send(step, index):
                self.summary.abandoned.append(order_id)
                break
        # not reached when the replay is interrupted: the order is not finished
        self.summary.finished += 1
        self._update_progress()

    async def _send(self, step: Step, index: int) -> bool:
        """Send one step; True if the server applied it."""
        self.summary.sent += 1
        response = await self._post_with_retries(step, index)
        if response is None:
            self.summary.failed += 1
            logger.warning("gave up on order %s", step.order_id)
            return False
        if response.is_success:
            if response.headers.get("Idempotent-Replayed") == "true":
                self.summary.replayed += 1
            self._acknowledge(step, response.json())
            return True
        code = _error_code(response)
        logger.debug("! %s %s: %s", step.order_id, step.command, code)
        if response.status_code == 409:
            self.summary.refused += 1
        else:
            self.summary.failed += 1
            self._warn_once(response.status_code, code)
        return False

    def _warn_once(self, status: int, code: str) -> None:
        """One warning per kind of unexpected answer (a wrong secret: every one)."""
        if (status, code) not in self._warned:
            self._warned.add((status, code))
            logger.warning(
                "server answered %d %s; giving up those orders", status, code
            )

    async def _post_with_retries(self, step: Step, index: int) -> httpx.Response | None:
        """The server's answer, or None if it never gave one that counts."""
        for attempt in range(self.options.retries + 1):
            if attempt:
                self.summary.retried += 1
                await asyncio.sleep(self._backoff_s(attempt))
            try:
                async with self._slots:
                    response = await self._post(step, index)
            except httpx.TransportError as exc:
                logger.debug("! %s %s: %r", step.order_id, step.command, exc)
                self._move_on(step.order_id)
                continue
            if response.status_code < 500:
                return response
            self._move_on(step.order_id)
        return None

    def _client_of(self, order_id: str) -> httpx.AsyncClient:
        """The node the order's requests go to now."""
        return self.clients[self._node_of[order_id] % len(self.clients)]

    def _move_on(self, order_id: str) -> None:
        """Send the order's requests to the next node (this one failed them)."""
        self._node_of[order_id] += 1

    def _backoff_s(self, attempt: int) -> float:
        backoff_s = self.options.backoff_s * 2 ** (attempt - 1)
        return float(min(backoff_s, self.options.max_backoff_s))

    async def _post(self, step: Step, index: int) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self._token(step.role, step.subject)}",
            "Idempotency-Key": f"replay-{step.order_id}-{index}",
        }
        logger.debug("> %s %s", step.order_id, step.command)
        client = self._client_of(step.order_id)
        if step.command is Command.CREATE:
            body = {"orderId": step.order_id, **step.fields}
            return await client.post("/orders", json=body, headers=headers)
        body = {"command": step.command.value, **step.fields}
        path = f"/orders/{step.order_id}/commands"
        return await client.post(path, json=body, headers=headers)

    def _token(self, role: Role, subject: str) -> str:
        key = (role, subject)
        if key not in self._tokens:
            self._tokens[key] = issue_token(self.secret, role, subject)
        return self._tokens[key]

    def _acknowledge(self, step: Step, answer: dict[str, Any]) -> None:
        self.summary.acknowledged += 1
        if step.command is Command.CREATE:
            self.summary.created += 1
        status = str(answer["order"]["status"])
        self.summary.statuses[step.order_id] = status
        if self.acks is None or not answer["events"]:
            return
        last = answer["events"][-1]
        line = {
            "orderId": step.order_id,
            "command": step.command.value,
            "seq": last["seq"],
            "eventId": last["eventId"],
            "status": status,
        }
        self.acks.write(orjson.dumps(line) + b"\n")
        self.acks.flush()

    # progress

    def _start_progress(self, progress: Progress | None) -> None:
        self._progress = progress
        if progress is not None:
            self._task = progress.add_task(
                "replay", total=self.summary.orders, clock="", created=0
            )
            self._update_progress()

    async def _refresh_clock(self) -> None:
        while True:
            self._update_progress()
            await asyncio.sleep(_CLOCK_REFRESH_S)

    def _update_progress(self) -> None:
        if self._progress is None or self._task is None:
            return
        clock = min(self.sim_minute(), self.plan.end_minute)
        self._progress.update(
            self._task,
            completed=self.summary.finished,
            clock=f"{clock:.0f}",
            created=self.summary.created,
        )


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", ""))
    except ValueError:
        return ""


def summary_table(plan: Plan, summary: ReplaySummary) -> Table:
    """Final statuses, planned and acknowledged, with counts of commands."""
    planned = Counter(status.value for status in plan.intended.values())
    acknowledged = summary.status_counts()
    table = Table(title=f"replay of {plan.instance}")
    table.add_column("status")
    table.add_column("planned", justify="right")
    table.add_column("acknowledged", justify="right")
    order = {status.value: index for index, status in enumerate(Status)}
    for status in sorted(planned.keys() | acknowledged.keys(), key=order.__getitem__):
        table.add_row(status, str(planned[status]), str(acknowledged[status]))
    return table


def summary_line(summary: ReplaySummary) -> str:
    """Counts of commands, and a reminder about orders left to the deadline."""
    earlier = f" ({summary.replayed} by earlier requests)" if summary.replayed else ""
    counts = (
        f"commands: {summary.sent} sent, {summary.acknowledged} acknowledged{earlier}, "
        f"{summary.refused} refused, {summary.failed} failed "
        f"({summary.retried} retries); {len(summary.abandoned)} orders abandoned; "
        f"{summary.positions} courier positions sent."
    )
    if summary.interrupted:
        return (
            f"interrupted with {summary.finished} of {summary.orders} orders "
            f"finished; {counts}"
        )
    if summary.failed:
        return f"{counts} Were the servers up, with this token secret?"
    return f"{counts} Orders left RECEIVED are rejected by the restaurant deadline."
