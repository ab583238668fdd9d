"""The store port and its implementations, one module per runtime."""
