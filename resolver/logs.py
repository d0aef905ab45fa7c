"""How idnode's processes log: to stderr, one line per event, as text or as JSON.

Text lines are ``time LEVEL logger: message``, with a traceback and any line break escaped
onto the same line (``\\n``).

JSON lines carry ``time`` (ISO-8601, UTC), ``level``, ``logger`` and ``message``, and a
traceback as the one string ``exc_info``. Everything is escaped to ASCII, so that no
character in a message (a newline, U+2028) can split an event or forge another.

The access log (``access_log``) is the logger ``idnode.access``. aiohttp writes the request
line (the path with its query), the status, the size, the Referer and the User-Agent; no
other header, so never an Authorization header. Its JSON lines carry those as fields too.

The start-up announcements (``idnode: listening on ...``), the admin secret generated at a
first start and ``idnode: stopped`` are printed, not logged: scripts read them as they are.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "idnode.access"
# What aiohttp's AccessLogger passes as ``extra`` for its default format.
ACCESS_FIELDS = (
    "remote_address",
    "request_start_time",
    "first_request_line",
    "response_status",
    "response_size",
    "request_header",
)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, on one line: line breaks in a message or traceback become ``\\n``
    (and U+2028 and U+2029 escaped), so one event is one line here too."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if any(c in text for c in "\r\n\u2028\u2029\x85"):
            text = text.translate(_LINE_BREAKS)
        return text


_LINE_BREAKS = str.maketrans({"\r": "\\r", "\n": "\\n", "\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\x85"})


class JsonFormatter(logging.Formatter):
    """One JSON object per event, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ACCESS_FIELDS:
            if name in record.__dict__:
                event[name] = record.__dict__[name]
        if record.exc_info:
            event["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(event, default=str)


def setup(level: str, fmt: str = "text") -> None:
    """Send this process's log to stderr in ``fmt`` ("text" or "json"), from ``level`` up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
