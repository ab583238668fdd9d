"""One delivery attempt, on paper: its headers, its verdict, the wait before
the next. Pure; the embedded dispatcher and the AWS webhook function share it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ordercast import __version__
from ordercast.webhooks.signing import signed_headers

ATTEMPT_HEADER = "Ordercast-Attempt"
USER_AGENT = f"ordercast-webhooks/{__version__}"

MAX_ERROR_LENGTH = 500
"""Longest error text kept with a delivery or an attempt."""


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again, and when to give up.

    The wait before attempt n + 1 is drawn uniformly from 0 to
    min(`max_delay_s`, `base_s` * 2^(n - 1)): exponential backoff with full
    jitter, so that many deliveries failing at once do not come back at once.
    A `Retry-After` the receiver sent is waited at least (up to `max_delay_s`).
    """

    max_attempts: int = 8
    base_s: float = 1.0
    max_delay_s: float = 600.0

    def gives_up(self, attempts_made: int) -> bool:
        """Whether a delivery that failed `attempts_made` times is dead."""
        return attempts_made >= self.max_attempts

    def delay_s(
        self,
        attempts_made: int,
        retry_after_s: float | None = None,
        draw: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after the `attempts_made`-th failure (1 or more)."""
        ceiling = min(self.max_delay_s, self.base_s * 2.0 ** min(attempts_made - 1, 60))
        delay = draw() * ceiling
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_delay_s))
        return delay


def is_success(status_code: int) -> bool:
    """A 2xx answer delivers; anything else, redirects included, is retried."""
    return 200 <= status_code < 300


def retry_after_s(value: str | None) -> float | None:
    """A `Retry-After` header in seconds (RFC 9110); None for a date or junk."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def request_headers(
    secret: str, event_id: str, body: bytes, timestamp: int, attempt: int
) -> dict[str, str]:
    """Every header of one attempt: content type, signature, attempt number."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ATTEMPT_HEADER: str(attempt),
        **signed_headers(secret, event_id, timestamp, body),
    }


def clip(error: str) -> str:
    """An error text short enough to keep."""
    return (
        error if len(error) <= MAX_ERROR_LENGTH else error[: MAX_ERROR_LENGTH - 1] + "…"
    )
