"""Records to handle.net's JSON, as the REST API answers a resolution.

The engine returns records; this module makes the bytes the REST front-end sends for them.
The unfiltered answer of a handle (``GET /api/handles/{h}``, anonymous, no query) is the one
asked for most: the front-end keeps it beside the cached entry (``Entry.rendered``), made for
the spelling it was asked with, so a cached answer costs one dict lookup.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from protocol.codes import ResponseCode
from protocol.jsonfmt import value_to_json
from protocol.records import HandleValue
from resolver.cache.local import Entry


def values_body(handle_text: str, values: Sequence[HandleValue], ttl: int | None = None) -> bytes:
    """The body of a successful resolution; ``ttl`` overrides every value's (stale answers)."""
    shown = []
    for v in values:
        item = value_to_json(v)
        if ttl is not None:
            item["ttl"] = ttl
        shown.append(item)
    body = {"responseCode": 1, "handle": handle_text, "values": shown}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def not_found_body(handle_text: str) -> bytes:
    body = {"responseCode": int(ResponseCode.HANDLE_NOT_FOUND), "handle": handle_text}
    body["message"] = f"handle {handle_text} not found"
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def unfiltered_body(entry: Entry, handle_text: str) -> bytes:
    """The anonymous, unfiltered answer of ``entry``: its public values, or "not found"."""
    return values_body(handle_text, entry.public) if entry.found else not_found_body(handle_text)


def status_of(entry: Entry) -> int:
    """The HTTP status of the unfiltered answer: 200, or 404 for a negative one."""
    return 200 if entry.found else 404
