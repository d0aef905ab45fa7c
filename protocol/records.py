"""Handle values and records (RFC 3651 §3), and their compact msgpack encoding.

The msgpack form is what stores keep and caches hold. Its first element is a format
version, so an encoding change can never be misread as the old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import msgpack

from protocol.errors import ProtocolViolation

DEFAULT_TTL = 86400
MAX_INDEX = 2**31 - 1
MAX_TYPE_CHARS = 128

# Value permission bits, written left to right as admin-read, admin-write,
# public-read, public-write ("1110" is the default).
ADMIN_READ = 0b1000
ADMIN_WRITE = 0b0100
PUBLIC_READ = 0b0010
PUBLIC_WRITE = 0b0001
DEFAULT_PERMISSIONS = ADMIN_READ | ADMIN_WRITE | PUBLIC_READ
SECRET_PERMISSIONS = ADMIN_READ | ADMIN_WRITE

# Conventional value types.
HS_ADMIN = "HS_ADMIN"
HS_SITE = "HS_SITE"
HS_SERV = "HS_SERV"
HS_VLIST = "HS_VLIST"
HS_PUBKEY = "HS_PUBKEY"
HS_SECKEY = "HS_SECKEY"
URL = "URL"
# Who may act for a handle: its admins and the credentials identities log in with. Changing
# one is changing an admin (registry.authority); import leaves existing ones alone unless told.
CREDENTIAL_TYPES = frozenset((HS_ADMIN, HS_SECKEY, HS_PUBKEY, HS_VLIST))

_STORE_FORMAT = 1


class HandleValue(NamedTuple):
    """One typed value of a handle record.

    A named tuple rather than a frozen dataclass: batch registration builds millions of
    these, and a tuple is built several times faster.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index, deliberately: it is the Handle name
    type: str
    data: bytes
    ttl: int = DEFAULT_TTL
    ttl_absolute: bool = False  # ttl is then an expiry time in epoch seconds
    timestamp: int = 0  # epoch seconds, set by the server on write
    permissions: int = DEFAULT_PERMISSIONS
    references: tuple[tuple[int, str], ...] = ()

    @property
    def public_read(self) -> bool:
        return bool(self.permissions & PUBLIC_READ)

    @property
    def admin_read(self) -> bool:
        return bool(self.permissions & ADMIN_READ)

    def type_matches(self, wanted: str) -> bool:
        """handle.net type filter: exact (case-insensitive), or a subtype when ``wanted`` ends with '.'."""
        mine = self.type.upper()
        wanted = wanted.upper()
        if wanted.endswith("."):
            return mine == wanted[:-1] or mine.startswith(wanted)
        return mine == wanted


@dataclass(frozen=True, slots=True)
class HandleRecord:
    """A handle and its values, kept ordered by index."""

    handle: str
    values: tuple[HandleValue, ...] = field(default=())

    def __post_init__(self) -> None:
        indexes = [v.index for v in self.values]
        if indexes != sorted(indexes):
            object.__setattr__(self, "values", tuple(sorted(self.values, key=lambda v: v.index)))

    def value_at(self, index: int) -> HandleValue | None:
        for value in self.values:
            if value.index == index:
                return value
        return None

    def indexes(self) -> set[int]:
        return {v.index for v in self.values}

    def with_values(self, values: list[HandleValue] | tuple[HandleValue, ...]) -> HandleRecord:
        return replace(self, values=tuple(sorted(values, key=lambda v: v.index)))


def _value_row(v: HandleValue) -> tuple[Any, ...]:
    # msgpack writes tuples as arrays, so the references need no copying.
    ttl = -v.ttl - 1 if v.ttl_absolute else v.ttl  # sign bit carries the TTL type
    return (v.index, v.type, v.data, ttl, v.timestamp, v.permissions, v.references)


def _value_from_row(row: list[Any]) -> HandleValue:
    index, vtype, data, ttl, timestamp, permissions, refs = row
    if not (_ints(index, ttl, timestamp, permissions) and isinstance(vtype, str) and isinstance(data, bytes)):
        raise ProtocolViolation("stored value has a field of the wrong type")
    if not all(isinstance(r, list) and len(r) == 2 and _ints(r[0]) and isinstance(r[1], str) for r in refs):
        raise ProtocolViolation("stored value has a malformed reference")
    absolute = ttl < 0
    return HandleValue(
        index=index,
        type=vtype,
        data=data,
        ttl=-ttl - 1 if absolute else ttl,
        ttl_absolute=absolute,
        timestamp=timestamp,
        permissions=permissions,
        references=tuple((i, h) for i, h in refs),
    )


def _ints(*objs: Any) -> bool:
    return all(type(o) is int for o in objs)


def encode_record(record: HandleRecord) -> bytes:
    """Encode a record as versioned msgpack."""
    return encode_rows(record.handle, [_value_row(v) for v in record.values])


def encode_rows(handle: str, rows: list[tuple[Any, ...]]) -> bytes:
    """What encode_record writes, from value rows already in its order (by index) and form:
    (index, type, data, ttl (negative: -expiry - 1), timestamp, permissions, references)."""
    return msgpack.packb([_STORE_FORMAT, handle, rows], use_bin_type=True)  # type: ignore[no-any-return]


def decode_record(blob: bytes) -> HandleRecord:
    """Decode what encode_record wrote; raise ProtocolViolation on anything else."""
    try:
        version, handle, rows = msgpack.unpackb(blob, raw=False)
        if version != _STORE_FORMAT:
            raise ProtocolViolation(f"unknown record format version {version}")
        if not isinstance(handle, str):
            raise ProtocolViolation("stored record's handle is not text")
        return HandleRecord(handle, tuple(_value_from_row(r) for r in rows))
    except ProtocolViolation:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolViolation(f"undecodable stored record: {exc}") from None
