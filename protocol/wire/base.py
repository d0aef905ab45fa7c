"""Primitives of the Handle binary protocol (RFC 3652) as CNRI's ``net.handle.hdllib`` writes them.

Constants, op codes and flags, the one exception malformed input may raise, the one bounded
reader of untrusted bytes (value data and key encodings use it too, with their own
exceptions), the 20-byte envelope and the handle value layout. Every length and count is
checked against the bytes that remain before anything is allocated.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from protocol.codes import ResponseCode
from protocol.errors import ProtocolViolation
from protocol.records import HandleValue

ENVELOPE_SIZE = 20
HEADER_SIZE = 24
MAX_MESSAGE = 262144  # Common.MAX_MESSAGE_LENGTH: the envelope's length field may not exceed it
MAX_HANDLE = 2048  # Common.MAX_HANDLE_LENGTH, in UTF-8 bytes
MAX_VALUES = 2048  # Common.MAX_HANDLE_VALUES
MAX_UDP_PACKET = 512  # a datagram, envelope included
MAX_UDP_DATA = MAX_UDP_PACKET - ENVELOPE_SIZE  # CNRI places part n at n * 492, whatever the sender's size

PROTOCOL_VERSION = (2, 11)  # what CNRI 9 speaks; 7.3 and the Chinese SDKs speak 2.10
COMPATIBILITY_VERSION = (2, 3)  # what CNRI sends to a server whose HS_SITE it has not read


class OpCode(IntEnum):
    RESERVED = 0
    RESOLUTION = 1
    GET_SITE_INFO = 2
    CREATE_HANDLE = 100
    DELETE_HANDLE = 101
    ADD_VALUE = 102
    REMOVE_VALUE = 103
    MODIFY_VALUE = 104
    LIST_HANDLES = 105
    CHALLENGE_RESPONSE = 200  # the client's answer to a challenge (CNRI: OC_RESPONSE_TO_CHALLENGE)
    VERIFY_RESPONSE = 201  # asks an identity's home server to check an answer
    HOME_PREFIX = 300
    UNHOME_PREFIX = 301
    LIST_HOMED_PREFIXES = 302
    SESSION_SETUP = 400
    SESSION_TERMINATE = 401
    SESSION_EXCHANGE_KEY = 402
    GET_NEXT_TXN_ID = 1000
    RETRIEVE_TXN_LOG = 1001
    DUMP_HANDLES = 1002
    BACKUP_SERVER = 1003
    # China's identifier SDKs (CAICT's ID-SDK MessageCommon, Teleinfo's AbstractMessage): a
    # login that lasts for the TCP connection it was made on.
    LOGIN = 2000  # OC_LOGIN, "密码登录": an identity and its secret, in clear
    LOGIN_ID_SYSTEM = 2001  # OC_LOGIN_ID_SYSTEM, "idis 登录自定义": an identity, then the usual challenge


class OpFlag(IntFlag):
    """The header's 32-bit opFlag field; bits CNRI does not know are kept as they came."""

    AUTHORITATIVE = 0x80000000
    CERTIFY = 0x40000000
    ENCRYPT = 0x20000000
    RECURSIVE = 0x10000000
    CACHE_CERTIFY = 0x08000000
    CONTINUOUS = 0x04000000
    KEEP_ALIVE = 0x02000000
    PUBLIC_ONLY = 0x01000000
    RETURN_REQUEST_DIGEST = 0x00800000
    OVERWRITE = 0x00400000
    MINT_NEW_SUFFIX = 0x00200000
    DO_NOT_REFER = 0x00100000


# What an unmodified CNRI client puts in a resolution request (cacheCertify, recursive and
# ignoreRestrictedValues default to true in AbstractMessage).
DEFAULT_REQUEST_FLAGS = OpFlag.RECURSIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY

ENV_COMPRESSED = 0x80
ENV_ENCRYPTED = 0x40
ENV_TRUNCATED = 0x20
_ENV_SUGGEST_MAJOR = 0x03  # since 2.8 the low bits of the flag byte carry the suggested major version


class WireError(ProtocolViolation):
    """Bytes that are not a Handle message; says what is wrong and, once the header was read,
    which request it was so the server can still answer it (with ``code``)."""

    def __init__(
        self,
        message: str,
        *,
        request_id: int | None = None,
        op_code: int | None = None,
        envelope: Envelope | None = None,
        code: ResponseCode = ResponseCode.PROTOCOL_ERROR,
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.op_code = op_code
        self.envelope = envelope
        self.code = code


def version_at_least(version: tuple[int, int], wanted: tuple[int, int]) -> bool:
    """AbstractMessage.hasEqualOrGreaterVersion: major 5 is how some very old clients wrote 2.0."""
    if version[0] == 5:
        return wanted[0] == 5 and version[1] >= wanted[1]
    if wanted[0] == 5:
        return True
    return version >= wanted


class ReadErrors:
    """What a Reader raises when the bytes are not what they should be, and in what words.

    These are the wire protocol's: a WireError naming the field. A format whose callers
    expect another exception or other words (a value's data, a key) passes the Reader
    others (``WholeErrors``); they are only asked on the way to raising, so reading costs
    nothing more.
    """

    __slots__ = ()

    def short(self, r: Reader, n: int, what: str) -> Exception:
        """``what`` needs ``n`` bytes and fewer remain (or ``n`` is negative)."""
        return WireError(f"{what} needs {n} bytes but {r.end - r.pos} remain")

    def too_long(self, r: Reader, n: int, what: str, limit: int) -> Exception:
        """``what`` announces ``n`` bytes, more than ``limit``."""
        return WireError(f"{what} is {n} bytes, more than the {limit} allowed")

    def too_many(self, r: Reader, n: int, what: str) -> Exception:
        """A count of ``n`` elements that the bytes left could not hold."""
        return WireError(f"{n} {what} cannot fit in the {r.end - r.pos} bytes that remain")

    def not_utf8(self, r: Reader, what: str) -> Exception:
        return WireError(f"{what} is not UTF-8")

    def trailing(self, r: Reader) -> Exception:
        """Bytes after what should have been the end."""
        return WireError(f"{r.end - r.pos} bytes follow the end")


WIRE_ERRORS = ReadErrors()
Refusal = Callable[["Reader"], Exception]


class WholeErrors(ReadErrors):
    """The errors of a format whose users see the whole, not its fields (a value's data, a key):
    any overrun is the one ``truncated`` refusal; each refusal is the caller's exception and words."""

    __slots__ = ("_not_utf8", "_trailing", "_truncated")

    def __init__(self, *, truncated: Refusal, not_utf8: Refusal, trailing: Refusal) -> None:
        self._truncated, self._not_utf8, self._trailing = truncated, not_utf8, trailing

    def short(self, r: Reader, n: int, what: str) -> Exception:
        return self._truncated(r)

    def too_long(self, r: Reader, n: int, what: str, limit: int) -> Exception:
        return self._truncated(r)

    def too_many(self, r: Reader, n: int, what: str) -> Exception:
        return self._truncated(r)

    def not_utf8(self, r: Reader, what: str) -> Exception:
        return self._not_utf8(r)

    def trailing(self, r: Reader) -> Exception:
        return self._trailing(r)


class Reader:
    """A bounded cursor over untrusted bytes (a message, a slice of one, a value's data, a key):
    every overrun raises what ``errors`` makes (a WireError unless told), never IndexError."""

    __slots__ = ("data", "end", "errors", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None, *, errors: ReadErrors = WIRE_ERRORS) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        self.errors = errors

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > self.end - self.pos:
            raise self.errors.short(self, n, what)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int(struct.unpack(">H", self.take(2, what))[0])

    def i32(self, what: str) -> int:
        return int(struct.unpack(">i", self.take(4, what))[0])

    def u32(self, what: str) -> int:
        return int(struct.unpack(">I", self.take(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack(">Q", self.take(8, what))[0])

    def blob(self, what: str, limit: int = MAX_MESSAGE) -> bytes:
        n = self.u32(f"length of {what}")
        if n > limit:
            raise self.errors.too_long(self, n, what, limit)
        return self.take(n, what)

    def text(self, what: str, limit: int = MAX_MESSAGE) -> str:
        try:
            return self.blob(what, limit).decode("utf-8")
        except UnicodeDecodeError:
            raise self.errors.not_utf8(self, what) from None

    def handle(self, what: str = "handle") -> str:
        return self.text(what, MAX_HANDLE)

    def count(self, what: str, min_item_size: int, limit: int = MAX_MESSAGE) -> int:
        """An element count, refused when the bytes left could not hold that many elements."""
        n = self.u32(f"number of {what}")
        if n > limit or n * min_item_size > self.end - self.pos:
            raise self.errors.too_many(self, n, what)
        return n

    def done(self) -> None:
        """Refuse bytes left over: for a format that must end where its reader does."""
        if self.pos != self.end:
            raise self.errors.trailing(self)


def pack_blob(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def pack_text(text: str) -> bytes:
    return pack_blob(text.encode("utf-8"))


# The envelope -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """The 20 bytes in front of every message (and of every datagram of a UDP message).

    ``version`` is what the message is written in; ``suggest`` is the highest version the
    sender speaks (CNRI answers in the suggested version, capped at its own).
    ``sequence`` is CNRI's messageId, the datagram's place in a multi-datagram message, and
    ``length`` the length of the whole message after the envelope.
    """

    request_id: int = 0
    session_id: int = 0
    version: tuple[int, int] = PROTOCOL_VERSION
    suggest: tuple[int, int] = PROTOCOL_VERSION
    compressed: bool = False
    encrypted: bool = False
    truncated: bool = False
    sequence: int = 0
    length: int = 0


_ENVELOPE = struct.Struct(">BBBBiiii")


def encode_envelope(env: Envelope) -> bytes:
    if not 0 <= env.suggest[0] <= _ENV_SUGGEST_MAJOR:
        raise ValueError(f"suggested major version {env.suggest[0]} does not fit the envelope's two bits")
    flags = (
        (ENV_COMPRESSED if env.compressed else 0)
        | (ENV_ENCRYPTED if env.encrypted else 0)
        | (ENV_TRUNCATED if env.truncated else 0)
        | env.suggest[0]
    )
    return _ENVELOPE.pack(*env.version, flags, env.suggest[1], env.session_id, env.request_id, env.sequence, env.length)


def decode_envelope(data: bytes) -> Envelope:
    """Read the envelope at the start of ``data`` (a datagram or a whole message)."""
    if len(data) < ENVELOPE_SIZE:
        raise WireError(f"a message envelope is {ENVELOPE_SIZE} bytes, got {len(data)}")
    major, minor, flags, suggest_minor, session_id, request_id, sequence, length = _ENVELOPE.unpack_from(data)
    suggest = (flags & _ENV_SUGGEST_MAJOR, suggest_minor)
    if suggest[0] == 0:  # written before 2.8: the sender suggests what it sends
        suggest = (major, minor)
    env = Envelope(
        request_id=request_id,
        session_id=session_id,
        version=(major, minor),
        suggest=suggest,
        compressed=bool(flags & ENV_COMPRESSED),
        encrypted=bool(flags & ENV_ENCRYPTED),
        truncated=bool(flags & ENV_TRUNCATED),
        sequence=sequence,
        length=length,
    )
    if not 0 <= length <= MAX_MESSAGE:
        raise WireError(f"message length {length} is outside 0..{MAX_MESSAGE}", request_id=request_id, envelope=env)
    return env


# Handle values (RFC 3651 §3, Encoder.encodeHandleValue) --------------------------------

_VALUE_FIXED = struct.Struct(">iIBIB")  # index, timestamp, ttl type, ttl, permissions
_VALUE_MIN_SIZE = _VALUE_FIXED.size + 12  # type, data and reference count lengths


def encode_value(v: HandleValue) -> bytes:
    parts = [
        _VALUE_FIXED.pack(v.index, v.timestamp, 1 if v.ttl_absolute else 0, v.ttl, v.permissions & 0x0F),
        pack_text(v.type),
        pack_blob(v.data),
        struct.pack(">I", len(v.references)),
    ]
    parts += [pack_text(handle) + struct.pack(">i", index) for index, handle in v.references]
    return b"".join(parts)


def decode_value(r: Reader) -> HandleValue:
    index, timestamp, ttl_type, ttl, permissions = _VALUE_FIXED.unpack(r.take(_VALUE_FIXED.size, "handle value"))
    vtype = r.text("value type")
    data = r.blob("value data")
    refs = _decode_references(r)
    return HandleValue(
        index=index,
        type=vtype,
        data=data,
        ttl=ttl,
        ttl_absolute=ttl_type != 0,  # CNRI knows 0 (relative) and 1 (absolute)
        timestamp=timestamp,
        permissions=permissions & 0x0F,
        references=refs,
    )


def _decode_references(r: Reader) -> tuple[tuple[int, str], ...]:
    refs = []
    for _ in range(r.count("value references", 8)):
        handle = r.handle("reference handle")
        refs.append((r.i32("reference index"), handle))
    return tuple(refs)


def encode_values(values: tuple[HandleValue, ...] | list[HandleValue]) -> bytes:
    return struct.pack(">I", len(values)) + b"".join(encode_value(v) for v in values)


def decode_values(r: Reader) -> tuple[HandleValue, ...]:
    count = r.count("handle values", _VALUE_MIN_SIZE, MAX_VALUES)
    return tuple(decode_value(r) for _ in range(count))
