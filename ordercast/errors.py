"""Exceptions, and the one place where they become stable error codes.

The tree::

    OrdercastError
    ├── LifecycleDefinitionError   the lifecycle table is wrong (fails at start)
    ├── Refusal                    a normal "no" to a caller; has a `code`
    │   ├── Unauthorized           401 no or bad token
    │   ├── Forbidden              403 role or subject may not do this
    │   ├── OrderNotFound          404
    │   ├── ConnectionGone         410 no such connection (Management API)
    │   ├── OrderExists            409 create with an id already taken
    │   ├── InvalidTransition      409 command does not fit the status
    │   ├── CourierAlreadyAssigned 409 assign_courier with the order's courier
    │   ├── InvalidCommand         422 malformed command
    │   ├── InvalidRequest         422 body or parameter off the API's schema
    │   ├── IdempotencyKeyReused   422 same key, different request
    │   ├── InvalidPattern         422 an event pattern off the pattern language
    │   ├── UnknownTarget          422 a rule names a target that does not exist
    │   ├── RuleNotFound           404
    │   ├── TargetNotFound         404
    │   ├── DeliveryNotFound       404 no dead letter has this id
    │   ├── RuleExists             409 create with a rule id already taken
    │   ├── TargetExists           409 create with a target id already taken
    │   ├── TargetInUse            409 delete a target that a rule still names
    │   └── FrameError             wire: a client frame we cannot act on
    │       ├── InvalidJson
    │       ├── UnknownAction
    │       └── FrameTooLarge
    ├── StoreError                 the store failed; nothing was acknowledged
    └── BusError                   the bus failed; clients resume from the store

Every code has an entry in docs/errors.md.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OrdercastError(Exception):
    """Root of every exception ordercast raises on purpose."""


class LifecycleDefinitionError(OrdercastError):
    """The lifecycle table contradicts itself. Raised at import, never at runtime."""


class StoreError(OrdercastError):
    """The store could not complete a unit of work; it was rolled back."""


class BusError(OrdercastError):
    """The bus could not announce an event."""


class Refusal(OrdercastError):
    """A request that ordercast answers with "no"; it changed nothing.

    Subclasses set `code` (stable, machine-readable) and `http_status`.
    """

    code: ClassVar[str] = "refused"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return self.message

    def to_wire(self) -> dict[str, Any]:
        """The error frame sent on a WebSocket and as an HTTP body."""
        return {
            "type": "error",
            "code": self.code,
            "message": self.message,
            **self.fields,
        }


def internal_error_frame() -> dict[str, Any]:
    """The error frame for a failure of ours (a bug), logged with its traceback.

    HTTP answers it with status 500; on a WebSocket the connection stays open.
    Whether a command was recorded is unknown: retry it with the same
    Idempotency-Key.
    """
    return {
        "type": "error",
        "code": "internal_error",
        "message": "the server failed on this request and logged why",
    }


def store_unavailable_frame(recorded: bool = False) -> dict[str, Any]:
    """The error body of a command the store did not take (HTTP 503).

    Args:
        recorded: on AWS, the command was stored but Step Functions did not
            take it; the retry with the same Idempotency-Key finishes it.
    """
    if recorded:
        told = (
            "the command was recorded but its workflow did not move on; "
            "retry with the same Idempotency-Key to finish it"
        )
    else:
        told = "the command was not recorded; retry with the same Idempotency-Key"
    return {"type": "error", "code": "store_unavailable", "message": told}


def refusal_from_wire(frame: dict[str, Any]) -> Refusal:
    """Rebuild a refusal stored with `Refusal.to_wire` (for idempotent replays)."""
    fields = {k: v for k, v in frame.items() if k not in ("type", "code", "message")}
    for cls in _all_refusals(Refusal):
        if cls.code == frame["code"]:
            refusal = cls.__new__(cls)
            Refusal.__init__(refusal, frame["message"], **fields)
            return refusal
    return Refusal(frame["message"], **fields)


def _all_refusals(cls: type[Refusal]) -> list[type[Refusal]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_refusals(sub))
    return found


class Unauthorized(Refusal):
    code = "unauthorized"
    http_status = 401


class Forbidden(Refusal):
    code = "forbidden"
    http_status = 403


class OrderNotFound(Refusal):
    code = "order_not_found"
    http_status = 404

    def __init__(self, order_id: str) -> None:
        super().__init__(f"there is no order {order_id!r}", orderId=order_id)


class ConnectionGone(Refusal):
    code = "gone"
    http_status = 410

    def __init__(self, connection_id: str) -> None:
        super().__init__(
            f"connection {connection_id!r} is not open", connectionId=connection_id
        )


class OrderExists(Refusal):
    code = "order_exists"
    http_status = 409

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id!r} already exists", orderId=order_id)


class InvalidTransition(Refusal):
    code = "invalid_transition"
    http_status = 409

    def __init__(self, order_id: str, status: str, command: str, allowed: list[str]):
        if allowed:
            hint = f"{command} is accepted only from {', '.join(allowed)}"
        else:
            hint = f"{status} is final"
        doing = "report a location for" if command == "location" else command
        super().__init__(
            f"cannot {doing} order {order_id!r}: it is {status}, and {hint}",
            orderId=order_id,
            status=status,
            command=command,
        )


class CourierAlreadyAssigned(Refusal):
    """`assign_courier` naming the courier the order already has."""

    code = "invalid_transition"
    http_status = 409

    def __init__(self, order_id: str, status: str, courier_id: str):
        super().__init__(
            f"{courier_id!r} is already the courier of order {order_id!r}",
            orderId=order_id,
            status=status,
            command="assign_courier",
        )


class InvalidCommand(Refusal):
    code = "invalid_command"
    http_status = 422


class InvalidRequest(Refusal):
    """A body, header or parameter that does not match the HTTP API's schema.

    FastAPI's validation errors become this, and so do the checks the
    endpoints make themselves; the AWS runtime raises it for the same cases.
    """

    code = "invalid_request"
    http_status = 422


class IdempotencyKeyReused(Refusal):
    code = "idempotency_key_reused"
    http_status = 422

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for a different request",
            idempotencyKey=key,
        )


class FrameError(Refusal):
    """A client frame that cannot be read; answered, never fatal to the socket."""

    code = "invalid_frame"
    http_status = 400


class InvalidJson(FrameError):
    code = "invalid_json"


class UnknownAction(FrameError):
    code = "unknown_action"


class FrameTooLarge(FrameError):
    code = "frame_too_large"


# event routing and webhooks


class InvalidPattern(Refusal):
    """An event pattern that breaks the pattern language (docs/webhooks.md).

    Raised when a rule is defined, never when an event is matched: a pattern
    that was accepted always matches or not, without error.
    """

    code = "invalid_pattern"
    http_status = 422

    def __init__(self, path: str, reason: str) -> None:
        where = path or "the top"
        super().__init__(f"invalid pattern at {where}: {reason}", path=path)


class UnknownTarget(Refusal):
    code = "unknown_target"
    http_status = 422

    def __init__(self, target_ids: list[str]) -> None:
        names = ", ".join(repr(t) for t in target_ids)
        super().__init__(f"no webhook target has the id {names}", targetIds=target_ids)


class RuleNotFound(Refusal):
    code = "rule_not_found"
    http_status = 404

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"there is no rule {rule_id!r}", ruleId=rule_id)


class TargetNotFound(Refusal):
    code = "target_not_found"
    http_status = 404

    def __init__(self, target_id: str) -> None:
        super().__init__(
            f"there is no webhook target {target_id!r}", targetId=target_id
        )


class DeliveryNotFound(Refusal):
    code = "delivery_not_found"
    http_status = 404

    def __init__(self, delivery_id: int) -> None:
        super().__init__(
            f"there is no dead letter {delivery_id}", deliveryId=delivery_id
        )


class RuleExists(Refusal):
    code = "rule_exists"
    http_status = 409

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"rule {rule_id!r} already exists", ruleId=rule_id)


class TargetExists(Refusal):
    code = "target_exists"
    http_status = 409

    def __init__(self, target_id: str) -> None:
        super().__init__(
            f"webhook target {target_id!r} already exists", targetId=target_id
        )


class TargetInUse(Refusal):
    code = "target_in_use"
    http_status = 409

    def __init__(self, target_id: str, rule_ids: list[str]) -> None:
        names = ", ".join(repr(r) for r in rule_ids)
        super().__init__(
            f"webhook target {target_id!r} is named by rule {names}; "
            "change or delete those rules first",
            targetId=target_id,
            ruleIds=rule_ids,
        )
