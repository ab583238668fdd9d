"""The wire format: client frames in, server frames out. No I/O here."""
