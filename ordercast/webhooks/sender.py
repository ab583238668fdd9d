"""Posting one signed attempt to a target, with aiohttp."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from ordercast.routing.rules import Target
from ordercast.webhooks.attempts import clip, is_success, request_headers, retry_after_s

MAX_RESPONSE_BYTES = 16 * 1024
"""Most of a target's answer that is read; the rest is dropped."""


async def post(
    session: aiohttp.ClientSession,
    target: Target,
    event_id: str,
    body: bytes,
    attempt: int,
    timeout_s: float,
) -> tuple[int | None, str | None, float | None, int]:
    """Post one signed attempt: (status, error, Retry-After, latency in ms).

    Never raises for what the network or the target does: a refused
    connection or a timeout comes back as an error text with no status.
    """
    headers = request_headers(target.secret, event_id, body, int(time.time()), attempt)
    status = error = wait_s = None
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(
                target.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                wait_s = retry_after_s(response.headers.get("Retry-After"))
                # read the answer's first bytes, so the connection can be reused
                await response.content.read(MAX_RESPONSE_BYTES)
    except TimeoutError:
        error = f"no answer within {timeout_s:g} s"
    except aiohttp.ClientConnectorError as exc:
        error = clip(f"cannot connect: {exc}")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        error = clip(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    latency_ms = round((time.perf_counter() - started) * 1000)
    if status is not None and not is_success(status):
        error = f"answered {status}"
    return status, error, wait_s, latency_ms


def new_session(concurrency: int) -> aiohttp.ClientSession:
    """A connection pool for one target. aiohttp rather than httpx: a request
    costs a tenth of the CPU (measured for bench/webhooks.py)."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    # the whole attempt is timed by `post`; proxies come from settings, not
    # from the server's environment
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        trust_env=False,
        auto_decompress=False,
    )
