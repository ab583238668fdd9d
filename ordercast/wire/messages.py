"""The sentence a person reads for each event, in the connection's language."""

from __future__ import annotations

from typing import Any

DEFAULT_LANGUAGE = "en"

_ENGLISH = {
    "order.received": "We have your order and sent it to the restaurant",
    "order.accepted": "The restaurant accepted your order and is preparing it",
    "order.rejected": "The restaurant could not take your order",
    "courier.assigned": "Your courier is on the way to the restaurant",
    "order.picked_up": "Your courier has picked up your order",
    "delivery.started": "Your order is on its way to you",
    "order.delivered": "Your order was delivered. Enjoy your meal",
    "order.cancelled": "Your order was cancelled",
    "delivery.failed": "We could not deliver your order",
    "dispatch.overdue": "Finding a courier is taking longer than usual",
}

_CATALOGS: dict[str, dict[str, str]] = {"en": _ENGLISH}


def message_for(event: str, data: dict[str, Any], lang: str) -> str:
    """The message for `event` in `lang`, falling back to English.

    `data` lets a message depend on the event, e.g. a rejection by timeout.
    """
    del data  # every message reads the same whatever the details, for now
    catalog = _CATALOGS.get(lang.split("-")[0].lower(), _ENGLISH)
    return catalog.get(event) or _ENGLISH.get(event, event)


def supported_language(lang: str | None) -> str:
    """The language a connection gets for `lang` (a tag like `pt-BR`)."""
    if lang and lang.split("-")[0].lower() in _CATALOGS:
        return lang.split("-")[0].lower()
    return DEFAULT_LANGUAGE
