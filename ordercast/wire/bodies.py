"""Bodies of the HTTP API's requests, shared by every runtime's handlers.

Pure pydantic models, so the AWS handlers validate exactly what the embedded
server validates without importing FastAPI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

ID_PATTERN = r"^[A-Za-z0-9._:~-]{1,128}$"
"""Order, customer, restaurant and courier ids."""

MAX_DETAILS_BYTES = 8192
"""`details` as JSON, at most: it travels in every follower's first frame, and
API Gateway's frames stop at 32 KB."""

MAX_DETAILS_DEPTH = 4
"""Objects and arrays nested in `details`, at most."""

MAX_NUMBER = 1e9
"""Largest magnitude of a number in `details`; past it no model reads sense."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CreateOrder(_Body):
    """Body of `POST /orders`."""

    order_id: str | None = Field(None, alias="orderId", pattern=ID_PATTERN)
    """Chosen by the caller, or generated when absent."""
    customer_id: str = Field(alias="customerId", pattern=ID_PATTERN)
    restaurant_id: str = Field(alias="restaurantId", pattern=ID_PATTERN)
    details: dict[str, Any] = Field(default_factory=dict, max_length=32)
    """Free-form data recorded with the `order.received` event: at most 8 KB
    of JSON, 4 levels deep, numbers within ±1e9."""

    @field_validator("details")
    @classmethod
    def _small_and_plain(cls, details: dict[str, Any]) -> dict[str, Any]:
        _check_value(details, depth=0)
        size = len(orjson.dumps(details))
        if size > MAX_DETAILS_BYTES:
            raise ValueError(
                f"details take {size} bytes as JSON, over {MAX_DETAILS_BYTES}"
            )
        return details


def _check_value(value: Any, depth: int) -> None:
    if isinstance(value, dict | list):
        if depth > MAX_DETAILS_DEPTH:
            raise ValueError(f"details nest deeper than {MAX_DETAILS_DEPTH} levels")
        for item in value.values() if isinstance(value, dict) else value:
            _check_value(item, depth + 1)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # NaN fails both comparisons, so it is refused here too
        if not -MAX_NUMBER <= value <= MAX_NUMBER:
            raise ValueError(f"a number in details is outside ±{MAX_NUMBER:g}")


CommandName = Literal[
    "accept",
    "reject",
    "assign_courier",
    "pick_up",
    "start_delivery",
    "deliver",
    "cancel",
    "fail",
]


class CommandBody(_Body):
    """Body of `POST /orders/{orderId}/commands`."""

    command: CommandName
    courier_id: str | None = Field(None, alias="courierId", pattern=ID_PATTERN)
    reason: str | None = Field(None, max_length=200)


class LocationBody(_Body):
    """Body of `POST /orders/{orderId}/location`."""

    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)


def describe_error(error: Mapping[str, Any]) -> str:
    """One pydantic (or FastAPI) validation error as a person reads it:
    where (`courierId`, `query.limit`), then what is wrong."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        # FastAPI puts the character offset where a field name would go
        why = (error.get("ctx") or {}).get("error", "")
        at = f" at character {loc[-1]}" if len(loc) > 1 else ""
        return f"the body is not valid JSON{at}" + (f" ({why})" if why else "")
    if loc == ("body",) and error.get("type") == "model_attributes_type":
        return "the body must be a JSON object, sent as application/json"
    where = ".".join(str(p) for p in loc if p != "body")
    return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))
