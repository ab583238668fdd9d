"""JSON log lines for the cluster runtime, one object per line with fixed keys.

STYLE.md: cluster and AWS output JSON. A line always has `at`, `level`,
`logger` and `message`; the context fields of docs/logging.md (`order_id`,
`seq`, `connection_id`) when the record carries them; `exception` with the
traceback for ERROR lines.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

CONTEXT_FIELDS = ("order_id", "seq", "connection_id")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_json_logging(level: str) -> None:
    """Send every log line to stderr as JSON (uvicorn's own lines included)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
