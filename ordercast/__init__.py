"""ordercast: live food-delivery order status over WebSocket."""

__version__ = "0.1.0"
