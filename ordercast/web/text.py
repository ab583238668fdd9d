"""Words of the tracking page, marked for the gettext catalogs.

The page is rendered in the viewer's language: these strings go through the
same catalogs as event messages (`ordercast.wire.messages.translate`) and
reach the page's script as one JSON object. `{placeholders}` are filled in
by the script.
"""

from __future__ import annotations

from ordercast.wire.messages import N_, translate

PAGE_TEXT = {
    "title": N_("Track your order"),
    "order": N_("Order {orderId}"),
    "step.RECEIVED": N_("Order received"),
    "step.ACCEPTED": N_("Being prepared"),
    "step.COURIER_ASSIGNED": N_("Courier assigned"),
    "step.PICKED_UP": N_("Picked up"),
    "step.IN_DELIVERY": N_("On its way"),
    "step.DELIVERED": N_("Delivered"),
    "final.REJECTED": N_("Not accepted by the restaurant"),
    "final.CANCELLED": N_("Cancelled"),
    "final.FAILED": N_("Delivery failed"),
    "steps": N_("Progress of your order"),
    "eta": N_("Estimated arrival"),
    "eta.at": N_("around {time}"),
    "eta.in": N_("in about {minutes} min"),
    "eta.now": N_("any minute now"),
    "eta.none": N_("not known yet"),
    "delivered.at": N_("Delivered at {time}"),
    "map": N_("Map of your delivery"),
    "map.restaurant": N_("Restaurant"),
    "map.customer": N_("Delivery address"),
    "map.courier": N_("Courier"),
    "map.waiting": N_("The courier appears here once they are on the move"),
    "map.noplaces": N_("No map for this order"),
    "link.live": N_("Live"),
    "link.connecting": N_("Connecting…"),
    "link.lost": N_("Connection lost. Reconnecting…"),
    "link.offline": N_("You are offline. We will catch up when you are back"),
    "link.refused": N_("This tracking link is not valid any more"),
    "link.missing": N_("This tracking link is incomplete"),
    "link.notfound": N_("We cannot find this order"),
}
"""Keys the page's script uses, with their English text."""


def page_text(lang: str) -> dict[str, str]:
    """Every page string in `lang` (English where a catalog lacks one)."""
    return {key: translate(text, lang) for key, text in PAGE_TEXT.items()}
