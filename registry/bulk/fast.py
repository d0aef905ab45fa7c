"""The common shape of a bulk item, checked and encoded without the general parser.

``idnode import`` must check ~100,000 items a second per core to keep up with a COPY; the
general path (``registry.bulk.items.row_from_item``: value_from_json, parse_handle, HandleRecord,
encode_record) costs ~20 us an item. An exported item is nearly always the same shape: a
handle under a few prefixes, values whose data is a string or an HS_ADMIN reference to one of
a few admins, an integer TTL, a timestamp. ``fast_row`` recognises that shape only: it
returns the row the general path would return, or None for anything else (including every
item the general path refuses), and the caller then runs the general path, which says what
is wrong. Whatever depends only on a prefix, a type, an admin reference or a timestamp is
checked once per distinct text.
"""

from __future__ import annotations

import functools
from operator import itemgetter
from typing import Any

from protocol.errors import HandleError
from protocol.identifiers import MAX_REGISTERED_CHARS, NA_PREFIX, ascii_upper, is_at_or_under, parse_prefix
from protocol.jsonfmt import admin_from_json, parse_timestamp, type_from_json
from protocol.records import DEFAULT_PERMISSIONS, DEFAULT_TTL, HS_SECKEY, MAX_INDEX, encode_rows
from registry.bulk.rules import Rules

_VALUE_KEYS = frozenset({"index", "type", "data", "ttl", "timestamp", "permissions"})
_PERMISSIONS = {format(n, "04b"): n for n in range(16)}
_CONTROL = frozenset(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)])
_MISSING = object()
_by_index = itemgetter(0)
CACHED = 4096  # distinct prefixes, types, admin references kept checked
MAX_TIMESTAMP = 2**32 - 1  # the record format keeps 32 bits


@functools.lru_cache(maxsize=CACHED)
def moment(stamp: str) -> int:
    """An item's ISO-8601 timestamp as the record keeps it (raises InvalidValue)."""
    # Cached: an export's values share few distinct times, and parsing one is a tenth of an item's cost.
    return min(max(parse_timestamp(stamp, "timestamp"), 0), MAX_TIMESTAMP)


@functools.lru_cache(maxsize=CACHED)
def _zone(prefix_text: str, node_prefix: str) -> str | None:
    """The normalised prefix of a handle this node may register under, else None."""
    try:
        prefix = parse_prefix(prefix_text)
    except HandleError:
        return None
    if prefix == NA_PREFIX or not is_at_or_under(prefix, node_prefix):
        return None  # prefix handles and refusals: the general path
    return prefix


def _handle(text: Any, rules: Rules) -> tuple[str, str] | None:
    """(key, handle text) of a registrable handle under the node's prefix, else None."""
    if type(text) is not str or len(text) > MAX_REGISTERED_CHARS:
        return None  # 255 characters are at most 1,020 UTF-8 bytes: under the wire's limit too
    if not (text.isascii() and text.isprintable()) and (_has_control(text) or not _utf8(text)):
        return None
    prefix_text, _, suffix = text.partition("/")
    prefix = _zone(prefix_text, rules.node_prefix) if suffix else None
    if prefix is None:
        return None
    return f"{prefix}/{suffix if rules.case_sensitive else ascii_upper(suffix)}", f"{prefix}/{suffix}"


def _has_control(text: str) -> bool:
    return not _CONTROL.isdisjoint(text)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@functools.lru_cache(maxsize=CACHED)
def _plain_type(vtype: str) -> bool:
    """A value type the general path takes as it is (not a secret, which it hashes)."""
    try:
        type_from_json(vtype, "type")
    except HandleError:
        return False
    return vtype.upper() != HS_SECKEY


@functools.lru_cache(maxsize=CACHED)
def _admin(handle: str, index: int, permissions: str) -> bytes | None:
    try:
        return admin_from_json({"handle": handle, "index": index, "permissions": permissions}, "admin")
    except HandleError:
        return None


def _data(data: Any) -> bytes | None:
    if type(data) is dict:
        fmt, inner = data.get("format"), data.get("value")
        if fmt == "string" and type(inner) is str:
            data = inner
        elif fmt == "admin" and type(inner) is dict:
            ref = inner.get("handle"), inner.get("index"), inner.get("permissions")
            if type(ref[0]) is str and type(ref[1]) is int and type(ref[2]) is str:
                return _admin(*ref)
            return None
        else:
            return None
    if type(data) is str:
        return data.encode("utf-8") if data.isascii() or _utf8(data) else None
    return None


def _value_row(item: Any, now: int) -> tuple[Any, ...] | None:
    """A value's row as encode_record writes it, else None."""
    if type(item) is not dict or not _VALUE_KEYS.issuperset(item):
        return None
    index, vtype = item.get("index"), item.get("type")
    if type(index) is not int or not 1 <= index <= MAX_INDEX or type(vtype) is not str or not _plain_type(vtype):
        return None
    data = _data(item.get("data"))
    ttl = item.get("ttl", DEFAULT_TTL)
    given = item.get("permissions")
    permissions = DEFAULT_PERMISSIONS if given is None else _PERMISSIONS.get(given, -1) if type(given) is str else -1
    if data is None or type(ttl) is not int or not 0 <= ttl <= MAX_INDEX or permissions < 0:
        return None
    stamp = item.get("timestamp", _MISSING)
    if type(stamp) is str:
        try:
            stamp_at = moment(stamp)
        except HandleError:
            return None
    else:
        stamp_at = now
    return (index, vtype, data, ttl, stamp_at, permissions, ())


def fast_row(obj: Any, rules: Rules) -> tuple[str, str, bytes] | None:
    """(key, handle, blob): the row ``registry.bulk.items.row_from_item`` gives for ``obj`` if it has
    the common shape, else None."""
    if type(obj) is not dict:
        return None
    names = _handle(obj.get("handle"), rules)
    items = obj.get("values")
    if names is None or type(items) is not list or not items:
        return None
    rows = []
    for item in items:
        row = _value_row(item, rules.now)
        if row is None:
            return None
        rows.append(row)
    indexes = [r[0] for r in rows]
    if len(set(indexes)) != len(rows):
        return None
    if indexes != sorted(indexes):
        rows.sort(key=_by_index)
    blob = encode_rows(names[1], rows)
    return None if len(blob) > rules.max_bytes else (names[0], names[1], blob)
