"""Checks and actions shared by the HTTP and WebSocket handlers."""

from __future__ import annotations

from datetime import UTC, datetime

from ordercast.aws.etas import EventEtas
from ordercast.aws.runtime import Services
from ordercast.errors import Forbidden, OrderNotFound
from ordercast.lifecycle import Actor, may_follow
from ordercast.lifecycle.transitions import check_location
from ordercast.store.base import OrderRecord
from ordercast.wire.frames import encode, format_at


def followable(svc: Services, actor: Actor, order_id: str) -> OrderRecord:
    """The order, if `actor` may follow it (the embedded hub's check).

    Raises:
        OrderNotFound: no such order.
        Forbidden: the actor may not follow it.
    """
    record = svc.store.get_order(order_id)
    if record is None:
        raise OrderNotFound(order_id)
    if not may_follow(actor, record.state):
        raise Forbidden(
            f"a {actor.role} may not follow order {order_id!r}", orderId=order_id
        )
    return record


def report_location(
    svc: Services, actor: Actor, order_id: str, lat: float, lng: float
) -> None:
    """Keep the courier's latest position; tell followers at a bounded rate.

    Raises:
        OrderNotFound: no such order.
        Forbidden: unless the order's assigned courier, or ops.
        InvalidTransition: the order has no courier on the way.
    """
    check_location(actor, followable(svc, actor, order_id).state)
    position = {"lat": lat, "lng": lng, "at": format_at(datetime.now(UTC))}
    if svc.store.save_position(order_id, position, svc.settings.location_interval_s):
        eta = EventEtas(svc.store).now(order_id, position, datetime.now(UTC))
        frame = {
            "type": "courier.location",
            "orderId": order_id,
            **position,
            "eta": eta,
        }
        svc.fanout.broadcast(order_id, encode(frame))
