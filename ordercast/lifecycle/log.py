"""A recorded event: one line of an order's append-only log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ordercast.lifecycle.table import Status


@dataclass(frozen=True)
class Event:
    """An event as stored: numbered, identified and timed.

    Within one order, `seq` runs 1, 2, 3, … without gaps; `event_id` is unique
    across all orders.
    """

    order_id: str
    seq: int
    event_id: str
    name: str
    status: Status
    """The order's status once this event is applied."""
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
