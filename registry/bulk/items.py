"""Bulk records, both ways: one handle.net record per item, as ``GET /api/handles/{h}`` shows it.

An item is ``{"handle": "88.118/x", "values": [...]}`` (a ``responseCode`` beside them, as a
resolution answer carries, is ignored). Files are JSON lines or a msgpack stream of such maps.
Reading checks every item as a registration would be checked (handle syntax, the node's
responsibility, the registrable length, the values as a PUT body's, the size of a PUT body)
and turns it into the row a store keeps: the key, the handle, the packed record. Timestamps
an item carries are kept (the records are moved, not written anew); values without one are
stamped with the import's time. Secrets are hashed as the write path hashes them.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, NamedTuple

import msgpack
import orjson

from protocol.errors import HandleError, InvalidValue, NotResponsible
from protocol.identifiers import check_registrable, check_responsible, parse_handle
from protocol.jsonfmt import value_from_json, value_to_json
from protocol.records import HS_SECKEY, PUBLIC_READ, PUBLIC_WRITE, HandleRecord, HandleValue, encode_record
from registry.bulk.fast import fast_json, fast_packed, fast_row, moment
from registry.bulk.guard import scope_refusal
from registry.bulk.rules import Rules
from registry.identity import secrets

FORMATS = ("jsonl", "msgpack")
BROKEN = b"\xc1"  # msgpack never uses this byte: it marks where a broken stream became unreadable
BROKEN_REASON = "broken msgpack stream:"


class Row(NamedTuple):
    """One record as a store keeps it."""

    key: str
    handle: str
    blob: bytes


class BadItem(NamedTuple):
    line: int
    reason: str


def format_of(name: str, given: str | None) -> str:
    """The format asked for, or the one the file name's extension says (JSON lines for ``-``)."""
    if given:
        return given
    return "msgpack" if name.endswith((".msgpack", ".mpk")) else "jsonl"


def _stamp(obj: Any, n: int, now: int) -> int:
    stamp = obj.get("timestamp") if isinstance(obj, dict) else None
    if not isinstance(stamp, str):
        return now
    try:
        return moment(stamp)
    except InvalidValue:
        raise InvalidValue(f"values[{n}].timestamp: {stamp!r} is not an ISO-8601 time") from None


def _seal(value: HandleValue, fmt: str) -> HandleValue:
    """A secret as the write path keeps it (registry.service.RegistrationService.prepare)."""
    if fmt == "hash":
        data = secrets.check_hash(value.data)
    elif not value.data:
        raise InvalidValue(f"value {value.index}: HS_SECKEY data is empty")
    else:
        data = secrets.hash_secret(value.data)
    return value._replace(data=data, permissions=value.permissions & ~(PUBLIC_READ | PUBLIC_WRITE))


def _values(items: Any, now: int) -> tuple[HandleValue, ...]:
    if not isinstance(items, list) or not items:
        raise InvalidValue("the record carries no values (want a non-empty array 'values')")
    values = []
    for n, item in enumerate(items):
        value, fmt = value_from_json(item, n, _stamp(item, n, now))
        values.append(_seal(value, fmt) if value.type.upper() == HS_SECKEY else value)
    if len({v.index for v in values}) != len(values):
        seen: set[int] = set()
        for value in values:
            if value.index in seen:
                raise InvalidValue(f"index {value.index} appears more than once")
            seen.add(value.index)
    return tuple(values)


def row_from_item(obj: Any, rules: Rules) -> Row:
    """Check one decoded item and return its row; raise HandleError saying what is wrong."""
    fast = fast_row(obj, rules)
    return _scoped(Row(*fast) if fast is not None else general_row(obj, rules), rules)


def _scoped(row: Row, rules: Rules) -> Row:
    outside = scope_refusal(row.handle, rules.scope)
    if outside is not None:
        raise NotResponsible(outside)
    return row


def general_row(obj: Any, rules: Rules) -> Row:
    """row_from_item for any item, of any shape (``fast_row`` takes only the common one)."""
    if not isinstance(obj, dict):
        raise InvalidValue("an item must be an object with 'handle' and 'values'")
    text = obj.get("handle")
    if not isinstance(text, str):
        raise InvalidValue("the item has no 'handle' string")
    handle = parse_handle(text, case_sensitive=rules.case_sensitive)
    check_responsible(handle.zone, rules.node_prefix, handle.text, handle=handle.text)
    check_registrable(handle)
    record = HandleRecord(handle.text, _values(obj.get("values"), rules.now))
    blob = encode_record(record)
    if len(blob) > rules.max_bytes:
        raise InvalidValue(f"the record takes {len(blob)} bytes, over the limit of {rules.max_bytes}")
    return Row(handle.key, handle.text, blob)


def check_raw(raw: bytes, fmt: str, rules: Rules) -> Row | None:
    """The row of one raw item (a line, or one packed map); None for a blank line."""
    if len(raw) > rules.max_bytes:
        raise InvalidValue(f"the item is {len(raw)} bytes, over the limit of {rules.max_bytes}")
    if fmt == "jsonl":
        if not raw.strip():
            return None
        fast = fast_json(raw, rules)
        if fast is not None:
            return _scoped(Row(*fast), rules)
        try:
            obj = orjson.loads(raw)  # ~3x json.loads on exported items
        except orjson.JSONDecodeError:
            obj = _stdlib_json(raw)
    elif raw.startswith(BROKEN):
        raise InvalidValue(f"{BROKEN_REASON} {raw[1:].decode()}; nothing after it can be read")
    else:
        obj = msgpack.unpackb(raw, raw=False)
    return row_from_item(obj, rules)


def _stdlib_json(raw: bytes) -> Any:
    # What orjson refuses, json may take (NaN, integers past 64 bits, lone surrogates, UTF-16):
    # the stdlib parser has the last word, so orjson changes no item's fate, and its wording
    # of the refusals stays.
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidValue(f"not JSON: {exc}") from None


def check_task(task: tuple[int, bytes], fmt: str, rules: Rules) -> tuple[bytes, int, list[BadItem]]:
    """The items of one task of the checking pool, from number ``first`` on: a block of whole
    JSON lines or of whole packed items. The rows come back as what the spool keeps (msgpack
    (number, key, handle, blob) arrays, with their count): a Python row per item through the
    pool's pipe cost the parent a microsecond or two each, and the parent is the pool's
    bottleneck."""
    first, block = task
    pack = msgpack.Packer(use_bin_type=True).pack
    check = _check_lines if fmt == "jsonl" else check_packed
    entries: list[bytes] = []
    bad = check(first, block, rules, entries, pack)
    return b"".join(entries), len(entries), bad


Pack = Callable[[Any], bytes]


def _check_lines(first: int, block: bytes, rules: Rules, entries: list[bytes], pack: Pack) -> list[BadItem]:
    """The spool entries (appended to ``entries``) and refusals of a block of JSON lines: a common
    item goes straight to its entry (~2 us an item less than through check_raw and a Row), any
    other through check_raw."""
    bad: list[BadItem] = []
    fast_ok = not rules.scope  # --prefix: every row goes through the scope check of check_raw
    for line, raw in enumerate(io.BytesIO(block), first):
        fast = fast_json(raw, rules) if fast_ok and len(raw) <= rules.max_bytes else None
        if fast is not None:
            entries.append(pack((line, *fast)))
            continue
        rows: list[tuple[int, Row]] = []
        _judge(line, rows, bad, check_raw, raw, "jsonl", rules)
        entries.extend(pack((n, *row)) for n, row in rows)
    return bad


def check_batch(batch: list[tuple[int, bytes]], fmt: str, rules: Rules) -> tuple[list[tuple[int, Row]], list[BadItem]]:
    """Rows and refusals of numbered raw items (runs in a worker process as well)."""
    rows: list[tuple[int, Row]] = []
    bad: list[BadItem] = []
    for line, raw in batch:
        _judge(line, rows, bad, check_raw, raw, fmt, rules)
    return rows, bad


def check_packed(first: int, block: bytes, rules: Rules, entries: list[bytes], pack: Pack) -> list[BadItem]:
    """_check_lines of a block of msgpack, numbered from ``first``: each item decoded once,
    straight into the common shape's Structs where it has it (raw_items unpacks and re-packs
    each, for check_raw to unpack again)."""
    bad: list[BadItem] = []
    fast_ok = not rules.scope
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(block), 1))
    unpacker.feed(block)
    view = memoryview(block)
    at = 0
    for line in itertools.count(first):
        try:
            unpacker.skip()  # finds where the item ends, building no objects
        except msgpack.OutOfData:
            break
        except (ValueError, msgpack.UnpackException) as exc:
            bad.append(BadItem(line, broken(exc)))
            break
        start, at = at, unpacker.tell()
        raw = view[start:at]
        fast = fast_packed(raw, rules) if fast_ok and 2 * len(raw) <= rules.max_bytes else None
        if fast is not None:
            entries.append(pack((line, *fast)))
            continue
        try:
            obj = msgpack.unpackb(raw, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:  # e.g. a string that is not UTF-8
            bad.append(BadItem(line, broken(exc)))
            break
        size = len(raw)
        if 2 * size > rules.max_bytes:  # re-packed as raw_items does (a float32 comes back as 8 bytes)
            size = len(msgpack.packb(obj, use_bin_type=True))
        rows: list[tuple[int, Row]] = []
        _judge(line, rows, bad, check_object, obj, size, rules)
        entries.extend(pack((n, *row)) for n, row in rows)
    return bad


def check_object(obj: Any, size: int, rules: Rules) -> Row:
    """check_raw of an item already unpacked, ``size`` bytes when packed."""
    if size > rules.max_bytes:
        raise InvalidValue(f"the item is {size} bytes, over the limit of {rules.max_bytes}")
    return row_from_item(obj, rules)


def _judge(
    line: int, rows: list[tuple[int, Row]], bad: list[BadItem], check: Callable[..., Row | None], *args: Any
) -> None:
    try:
        row = check(*args)
    except HandleError as exc:
        bad.append(BadItem(line, exc.message))
        return
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        bad.append(BadItem(line, f"undecodable: {exc}"))
        return
    if row is not None:
        rows.append((line, row))


def broken(exc: Exception) -> str:
    """Why an item of a broken msgpack stream and every one after it cannot be read."""
    return f"{BROKEN_REASON} {exc}; nothing after it can be read"


# Reading raw items ------------------------------------------------------------------


def raw_items(stream: IO[bytes], fmt: str) -> Iterator[bytes]:
    """The items of a stream, undecoded: its lines, or each msgpack object re-packed alone."""
    if fmt == "jsonl":
        yield from stream
        return
    unpacker = msgpack.Unpacker(stream, raw=False, max_buffer_size=64 * 1024 * 1024)
    try:
        for obj in unpacker:
            yield msgpack.packb(obj, use_bin_type=True)
    except (ValueError, msgpack.UnpackException) as exc:
        # A broken stream has no further item boundaries: the rest is one bad item.
        yield BROKEN + str(exc).encode()


# Writing ----------------------------------------------------------------------------


def item_of(record: HandleRecord) -> dict[str, Any]:
    """The exported form of a record: handle and every value, as a resolution answer shows them
    (secrets withheld: an export is no credential; ``idnode backup`` keeps them)."""
    return {"handle": record.handle, "values": [value_to_json(v) for v in secrets.withhold(record.values)]}


def encode_items(records: Iterable[HandleRecord], fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(
            json.dumps(item_of(r), ensure_ascii=False, separators=(",", ":")) + "\n" for r in records
        ).encode()
    return b"".join(msgpack.packb(item_of(r), use_bin_type=True) for r in records)
