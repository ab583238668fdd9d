"""Log output of the `ordercast` commands: context fields, and no secrets.

Only entry points configure logging (docs/logging.md); this is what they
install. Context travels in `extra` fields (`order_id`, `seq`,
`connection_id`): text lines append them as `key=value`; JSON lines (cluster
nodes, STYLE.md) are one object with fixed keys: `at`, `level`, `logger`,
`message`, the context fields the record carries, and `exception` with the
traceback of an ERROR.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from enum import StrEnum

import orjson


class LogLevel(StrEnum):
    """Levels the commands log at (docs/logging.md)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


CONTEXT_FIELDS = ("order_id", "seq", "connection_id")
"""`extra` fields shown after the message, when a record has them."""

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_TOKEN = re.compile(r"((?:^|[?&])token=)[^&\s\"]+")
_BEARER = re.compile(r"(\bbearer(?:\.|\s+))[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE)
"""A token after `Bearer ` (a header) or `bearer.` (a WebSocket subprotocol);
as long as a token is, so that prose naming a Bearer header stays as it is."""


class ContextFormatter(logging.Formatter):
    """The plain format, followed by whichever context fields the record has."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        ]
        if not context:
            return line
        head, newline, rest = line.partition("\n")
        return f"{head} {' '.join(context)}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

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


class RedactTokens(logging.Filter):
    """Blanks tokens: `token=` query parameters, which uvicorn logs with each
    handshake, and the `Bearer` ones of headers it logs at DEBUG.

    Browsers can only send the token in the URL (DESIGN.md), and a token in a
    log file is a key anyone reading it can use.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                redact(arg) if isinstance(arg, str) else arg
                for arg in (
                    record.args if isinstance(record.args, tuple) else (record.args,)
                )
            )
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def redact(text: str) -> str:
    """`text` with every token in it (`token=…`, `Bearer …`) replaced."""
    return _BEARER.sub(r"\1[redacted]", _TOKEN.sub(r"\1[redacted]", text))


def configure(level: str, as_json: bool = False) -> None:
    """Log `level` and worse to stderr, with context and without tokens.

    uvicorn's own lines go through the same handler (`log_config=None`).
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if as_json else ContextFormatter(FORMAT))
    handler.addFilter(RedactTokens())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # httpx logs every request at INFO (webhooks, the replay); ours say what matters
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.root.level))
