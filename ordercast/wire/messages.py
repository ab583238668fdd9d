"""The sentence a person reads for each event, in the connection's language.

Translations are gettext catalogs (`ordercast/locale/<lang>/LC_MESSAGES/
ordercast.po`, compiled to `.mo` with Babel; see docs/languages.md). They are
read once, the first time a message is asked for; after that every call is a
dictionary lookup. A language without a catalog, or a message a catalog does
not translate, reads in English.
"""

from __future__ import annotations

import gettext
from functools import cache
from importlib import resources
from typing import Any

DEFAULT_LANGUAGE = "en"

LANGUAGES = ("en", "zh-Hans", "es", "pt")
"""Languages with a catalog, as BCP 47 tags; English is the source language."""

DOMAIN = "ordercast"
"""The gettext domain: `ordercast.po` / `ordercast.mo` in each language folder."""

_FOLDERS = {"en": "en", "zh-Hans": "zh_Hans", "es": "es", "pt": "pt"}
"""Catalog folder of each language, in gettext's locale spelling."""

_CHINESE_TRADITIONAL = frozenset({"hant", "tw", "hk", "mo"})
"""Script and region subtags that ask for Traditional Chinese, which we lack."""


def N_(text: str) -> str:
    """Mark `text` for `pybabel extract -k N_`; it is translated when read."""
    return text


EVENT_MESSAGES = {
    "order.received": N_("We have your order and sent it to the restaurant"),
    "order.accepted": N_("The restaurant accepted your order and is preparing it"),
    "order.rejected": N_("The restaurant could not take your order"),
    "courier.assigned": N_("Your courier is on the way to the restaurant"),
    "order.picked_up": N_("Your courier has picked up your order"),
    "delivery.started": N_("Your order is on its way to you"),
    "order.delivered": N_("Your order was delivered. Enjoy your meal"),
    "order.cancelled": N_("Your order was cancelled"),
    "delivery.failed": N_("We could not deliver your order"),
    "dispatch.overdue": N_("Finding a courier is taking longer than usual"),
}
"""The English message of each event; the catalogs translate these strings."""


# translating


def message_for(event: str, data: dict[str, Any], lang: str) -> str:
    """The message for `event` in `lang`, falling back to English.

    `data` lets a message depend on the event, e.g. a rejection by timeout.
    An event without a message reads as its own name.
    """
    del data  # every message reads the same whatever the details, for now
    english = EVENT_MESSAGES.get(event)
    if english is None:
        return event
    return translate(english, lang)


def translate(text: str, lang: str) -> str:
    """`text` (an English source string) in `lang`, or as it is if untranslated.

    `lang` may be any tag; it is matched like `supported_language` does.
    """
    catalog = _catalogs().get(supported_language(lang))
    if catalog is None:
        return text
    return catalog.gettext(text)


@cache
def _catalogs() -> dict[str, gettext.GNUTranslations]:
    """Every compiled catalog, read once; later lookups do no I/O."""
    root = resources.files("ordercast") / "locale"
    catalogs: dict[str, gettext.GNUTranslations] = {}
    for lang, folder in _FOLDERS.items():
        path = root / folder / "LC_MESSAGES" / f"{DOMAIN}.mo"
        if path.is_file():
            with path.open("rb") as file:
                catalogs[lang] = gettext.GNUTranslations(file)
    return catalogs


# choosing a language


def supported_language(lang: str | None) -> str:
    """The language a connection gets for one tag like `pt-BR` or `zh-CN`."""
    return match_language(lang) or DEFAULT_LANGUAGE


def match_language(tag: str | None) -> str | None:
    """The supported language `tag` names, or None.

    Matching is by primary language: `es-MX` is Spanish, `pt-BR` Portuguese.
    Chinese matches Simplified Chinese unless the tag asks for the Traditional
    script (`zh-Hant`) or a region that writes it (`zh-TW`, `zh-HK`, `zh-MO`).
    """
    if not tag:
        return None
    parts = tag.strip().replace("_", "-").lower().split("-")
    primary = parts[0]
    if primary == "zh":
        return None if _CHINESE_TRADITIONAL & set(parts[1:]) else "zh-Hans"
    if primary in ("en", "es", "pt"):
        return primary
    return None


def parse_accept_language(header: str | None) -> list[tuple[str, float]]:
    """The ranges of an Accept-Language header with their weights, best first.

    Follows RFC 9110, section 12.5.4: `q` runs from 0 to 1 (1 when absent);
    a range with `q=0` is "not acceptable" and is dropped; ties keep the
    header's order. A malformed weight makes its range be ignored.
    """
    ranges: list[tuple[str, float]] = []
    for item in (header or "").split(","):
        tag, *params = (part.strip() for part in item.split(";"))
        if not tag:
            continue
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                weight = _weight(value.strip())
        if weight > 0:
            ranges.append((tag, weight))
    return sorted(ranges, key=lambda pair: -pair[1])


def _weight(text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        return 0.0
    return weight if 0.0 <= weight <= 1.0 else 0.0


def negotiate_language(lang: str | None, accept_language: str | None) -> str:
    """The language for a client: its `lang` parameter, else its header's best.

    An explicit `lang` that we support wins. Otherwise the header's ranges
    are tried by weight; `*` accepts English. Nothing usable gives English.
    """
    chosen = match_language(lang)
    if chosen is not None:
        return chosen
    for tag, _ in parse_accept_language(accept_language):
        if tag == "*":
            return DEFAULT_LANGUAGE
        chosen = match_language(tag)
        if chosen is not None:
            return chosen
    return DEFAULT_LANGUAGE
