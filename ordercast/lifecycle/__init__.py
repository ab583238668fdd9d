"""The delivery lifecycle: statuses, commands, who may send them, deadlines.

This package does no I/O. It takes the current state of an order and a command
and returns the events to record, or raises a refusal.
"""

from __future__ import annotations

from ordercast.lifecycle.log import Event
from ordercast.lifecycle.table import (
    DEADLINES,
    TRANSITIONS,
    Command,
    Deadline,
    Role,
    Status,
    Transition,
)
from ordercast.lifecycle.transitions import (
    Actor,
    Decision,
    NewEvent,
    OrderState,
    Request,
    Timeouts,
    decide,
    fire_deadline,
    may_follow,
)

__all__ = [
    "DEADLINES",
    "Event",
    "TRANSITIONS",
    "Actor",
    "Command",
    "Deadline",
    "Decision",
    "NewEvent",
    "OrderState",
    "Request",
    "Role",
    "Status",
    "Timeouts",
    "Transition",
    "decide",
    "fire_deadline",
    "may_follow",
]
