"""What an import may not change unasked: credentials that exist, the node's prefix handle, and
handles outside the prefixes it was given.

A file is input, not authority: without ``--replace-credentials`` an import that would change an
existing HS_ADMIN, HS_SECKEY, HS_PUBKEY or HS_VLIST value (replace, add beside, or remove one),
or the node's own prefix handle ``0.NA/<node prefix>`` in any way, is refused. "Existing" is
what the store holds before the import: a record the store does not hold may carry any of them
(that is how an export is restored into an empty store). Timestamps and TTLs are not compared
(an export carries them as they were; they grant nothing).

The checks are pure: ``scope_refusal`` runs in the checking pool, ``refusal`` compares a spooled
row with the record the store holds (read in one batch per chunk, by the caller).
"""

from __future__ import annotations

import msgpack

from protocol.errors import HandleError
from protocol.identifiers import NA_PREFIX, is_at_or_under, parse_prefix
from protocol.records import CREDENTIAL_TYPES, HandleRecord, HandleValue

CREDENTIALS = CREDENTIAL_TYPES
ASK = "--replace-credentials allows it"
OUTSIDE = "is outside --prefix"


def scope_refusal(handle: str, scope: tuple[str, ...]) -> str | None:
    """Why ``handle`` is outside the prefixes an import was limited to, or None.

    A prefix handle ``0.NA/X`` belongs to the prefix X.
    """
    if not scope:
        return None
    prefix, _, suffix = handle.partition("/")
    try:
        zone = parse_prefix(suffix) if prefix.upper() == NA_PREFIX else parse_prefix(prefix)
    except HandleError:
        zone = prefix
    if any(is_at_or_under(zone, allowed) for allowed in scope):
        return None
    return f"{handle} {OUTSIDE} {', '.join(scope)}"


def _held(value: HandleValue) -> tuple[object, ...]:
    """What a value grants: all of it but its timestamp and TTL."""
    return (value.index, value.type.upper(), value.data, value.permissions, value.references)


def _held_rows(blob: bytes) -> list[tuple[object, ...]]:
    """_held of each value of a packed record, read from its rows: decode_record costs twice as much
    (it builds and checks every value; the rows were checked when they were made)."""
    _, _, rows = msgpack.unpackb(blob, raw=False, use_list=False)
    return [(index, vtype.upper(), data, permissions, refs) for index, vtype, data, _, _, permissions, refs in rows]


def _credentials(held: list[tuple[object, ...]]) -> dict[object, tuple[object, ...]]:
    return {h[0]: h for h in held if h[1] in CREDENTIALS}


def refusal(old: HandleRecord | None, blob: bytes, node_key: str, key: str) -> str | None:
    """Why writing the row ``(key, blob)`` over ``old`` needs ``--replace-credentials``, or None."""
    if old is None:
        return None
    handle = old.handle
    if key == node_key:
        if sorted(map(_held, old.values)) != sorted(_held_rows(blob)):
            return f"{handle} is this node's prefix handle and would change ({ASK})"
        return None
    before = _credentials(list(map(_held, old.values)))
    if not before and b"HS_" not in blob.upper():
        return None  # no credential before, none after: the common case decodes nothing more
    after = _credentials(_held_rows(blob))
    if before == after:
        return None
    differ = [i for i in before.keys() | after.keys() if before.get(i) != after.get(i)]
    changed = sorted({str(h[1]) for i in differ for h in (before.get(i), after.get(i)) if h is not None})
    return f"{handle}: would change its {', '.join(changed)} ({ASK})"
