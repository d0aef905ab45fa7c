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

The shape is written as msgspec Structs: a JSON line or a packed item is decoded straight into
them, its types, ranges and keys checked in C (``fast_json``, ``fast_packed``); a decoded object
is converted to them (``fast_row``). What the Structs leave (a handle's prefix, a type's text,
an admin reference, a timestamp) is checked here, once per distinct text. An item the Structs
refuse is refused by the general path too, or is taken by it: the general path gives the reasons.
"""

from __future__ import annotations

import functools
from operator import itemgetter
from typing import Annotated, Any

import msgspec

from protocol.errors import HandleError
from protocol.identifiers import MAX_REGISTERED_CHARS, NA_PREFIX, ascii_upper, is_at_or_under, parse_prefix
from protocol.jsonfmt import admin_from_json, parse_timestamp, type_from_json
from protocol.records import DEFAULT_PERMISSIONS, DEFAULT_TTL, HS_SECKEY, MAX_INDEX, encode_rows
from registry.bulk.rules import Rules

_PERMISSIONS = {format(n, "04b"): n for n in range(16)}
_CONTROL = frozenset(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)])
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


class _Admin(msgspec.Struct):
    # Other keys are ignored, as admin_from_json ignores them.
    handle: str
    index: int
    permissions: str


class _String(msgspec.Struct, tag="string", tag_field="format"):
    value: str


class _AdminData(msgspec.Struct, tag="admin", tag_field="format"):
    value: _Admin


class _Value(msgspec.Struct, forbid_unknown_fields=True):
    index: Annotated[int, msgspec.Meta(ge=1, le=MAX_INDEX)]
    type: str
    data: str | _String | _AdminData
    ttl: Annotated[int, msgspec.Meta(ge=0, le=MAX_INDEX)] = DEFAULT_TTL
    timestamp: str | None = None  # None: stamped with the import's time (any other non-string: the general path)
    permissions: str | None = None


class Item(msgspec.Struct):
    """The common shape of an item (other keys, such as a resolution's ``responseCode``, ignored)."""

    handle: Annotated[str, msgspec.Meta(max_length=MAX_REGISTERED_CHARS)]
    values: Annotated[list[_Value], msgspec.Meta(min_length=1)]


_json_item = msgspec.json.Decoder(Item).decode
_packed_item = msgspec.msgpack.Decoder(Item).decode
_NOT_COMMON = (msgspec.DecodeError, msgspec.ValidationError)


def _data(data: str | _String | _AdminData) -> bytes | None:
    if isinstance(data, _AdminData):
        ref = data.value
        return _admin(ref.handle, ref.index, ref.permissions)
    text = data if isinstance(data, str) else data.value
    return text.encode("utf-8") if text.isascii() or _utf8(text) else None


def _value_row(value: _Value, now: int) -> tuple[Any, ...] | None:
    """A value's row as encode_record writes it, else None."""
    if not _plain_type(value.type):
        return None
    data = _data(value.data)
    given = value.permissions
    permissions = DEFAULT_PERMISSIONS if given is None else _PERMISSIONS.get(given, -1)
    if data is None or permissions < 0:
        return None
    stamp = value.timestamp
    if type(stamp) is str:
        try:
            stamp_at = moment(stamp)
        except HandleError:
            return None
    else:
        stamp_at = now
    return (value.index, value.type, data, value.ttl, stamp_at, permissions, ())


def item_row(item: Item, rules: Rules) -> tuple[str, str, bytes] | None:
    """(key, handle, blob) of a decoded common item, or None where the general path must judge."""
    names = _handle(item.handle, rules)
    if names is None:
        return None
    rows = []
    for value in item.values:
        row = _value_row(value, rules.now)
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


def fast_json(raw: bytes, rules: Rules) -> tuple[str, str, bytes] | None:
    """fast_row of a JSON text, decoded straight into the Structs (no dict built)."""
    try:
        item = _json_item(raw)
    except _NOT_COMMON:
        return None
    return item_row(item, rules)


def fast_packed(raw: bytes | memoryview, rules: Rules) -> tuple[str, str, bytes] | None:
    """fast_row of one packed item, decoded straight into the Structs."""
    try:
        item = _packed_item(raw)
    except _NOT_COMMON:
        return None
    return item_row(item, rules)


def fast_row(obj: Any, rules: Rules) -> tuple[str, str, bytes] | None:
    """(key, handle, blob): the row ``registry.bulk.items.row_from_item`` gives for ``obj`` if it has
    the common shape, else None."""
    try:
        item = msgspec.convert(obj, Item)
    except _NOT_COMMON:
        return None
    return item_row(item, rules)
