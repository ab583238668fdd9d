"""The bus port and its implementations, one module per runtime."""
