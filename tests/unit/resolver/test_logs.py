"""resolver.logs: each event one line of JSON, whatever its message or traceback holds."""

from __future__ import annotations

import datetime as dt
import json
import logging

from resolver.logs import TEXT_FORMAT, JsonFormatter, TextFormatter


def _record(message: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord("resolver.test", logging.WARNING, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_an_event_with_a_traceback_and_line_breaks_is_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError as exc:
        caught = exc
    line = JsonFormatter().format(_record("handle %s\nforged line\u2028and more", "88.118/x\r", exc=caught))
    assert line.splitlines() == [line] and line.isascii()
    event = json.loads(line)
    assert event["level"] == "WARNING" and event["logger"] == "resolver.test"
    assert event["message"] == "handle 88.118/x\r\nforged line\u2028and more"
    assert "Traceback" in event["exc_info"] and "ValueError: bad\nvalue" in event["exc_info"]
    when = dt.datetime.fromisoformat(event["time"])
    assert when.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - when).total_seconds()) < 60


def test_access_fields_are_kept_and_nothing_else_of_extra() -> None:
    line = JsonFormatter().format(
        _record("x", first_request_line="GET /api/handles/88.118/a HTTP/1.1", response_status=200, secret="s3cret")
    )
    event = json.loads(line)
    assert event["first_request_line"] == "GET /api/handles/88.118/a HTTP/1.1" and event["response_status"] == 200
    assert "secret" not in event and "s3cret" not in line


def test_a_text_event_with_a_traceback_is_one_line_too() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError as exc:
        caught = exc
    line = TextFormatter(TEXT_FORMAT).format(_record("handle %s\nforged line\u2028and more", "88.118/x\r", exc=caught))
    assert line.splitlines() == [line]
    assert "WARNING resolver.test: handle 88.118/x\\r\\nforged line\\u2028and more\\nTraceback" in line
    assert line.endswith("ValueError: bad\\nvalue")
