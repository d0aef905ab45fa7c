"""Mutations of an encoded Handle message, for bench.fuzzgen_handle: the Mutator and its edge values.

The Mutator edits one message's bytes knowing where the envelope's and the header's fields
are: it sets them to edge values, flips bits, cuts, lengthens and splices, sets a length or
count inside the body (found by looking for a small number) to a huge, negative or
off-by-one value, replaces the credential section with garbage, or puts bytes that are not
UTF-8 into the first string. Unless a mutation chose a length itself, the envelope's and
the header's lengths are set to the bytes there are afterwards, so that most mutated
messages get past the framing to the body's decoder. It draws only from the Random it is
given: the same Random state, the same mutation.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from protocol.wire.message import ENVELOPE_SIZE, HEADER_SIZE, MAX_HANDLE, MAX_MESSAGE, OpCode, OpFlag

# fmt: off
INT32_EDGES = (0, 1, 2, 3, 4, 5, 7, 8, 255, 256, 2047, 2048, 2049, 65535, 65536, MAX_MESSAGE - 1, MAX_MESSAGE,
               MAX_MESSAGE + 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32 - 2, 2**24)
# fmt: on
VERSIONS = ((2, 10), (2, 11), (2, 5), (2, 1), (2, 0), (2, 7), (2, 6), (2, 4), (2, 3))
ODD_VERSIONS = ((0, 0), (1, 0), (1, 255), (2, 255), (3, 0), (5, 0), (5, 2), (7, 1), (255, 255), (2, 12))
BAD_UTF8 = (b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe4\xb8", b"\x00")
UNKNOWN_OPS = (2000, 2001, 3, 99, 106, 199, 202, 303, 403, 500, 999, 1004, 65535, 2**31 - 1, -1, -(2**31))


def pack(*parts: bytes) -> bytes:
    """Length-prefixed byte strings, one after the other, as the protocol writes them."""
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


# Mutations of an encoded message -----------------------------------------------------------


class Mutator:
    """Edits one encoded message (envelope first) as a bytearray; knows where its fields are."""

    def __init__(self, r: random.Random, data: bytes) -> None:
        self.r = r
        self.data = bytearray(data)
        self.fix_length = True  # set the envelope's length to the bytes there are, unless a mutation chose it
        self.fix_body = True
        self.done: list[str] = []

    def int32(self, at: int, value: int) -> None:
        if at + 4 <= len(self.data):
            self.data[at : at + 4] = (value & 0xFFFFFFFF).to_bytes(4, "big")

    def edge(self) -> int:
        r = self.r
        pick = r.random()
        if pick < 0.6:
            return r.choice(INT32_EDGES)
        if pick < 0.8:
            return -r.choice(INT32_EDGES[:12])
        return r.getrandbits(32)

    def body_range(self) -> tuple[int, int]:
        start = ENVELOPE_SIZE + HEADER_SIZE
        return start, max(start, len(self.data))

    def apply(self) -> bytes:
        actions: list[tuple[Callable[[], None], int]] = [
            (self.envelope_field, 14),
            (self.header_field, 14),
            (self.flip_bits, 14),
            (self.cut, 8),
            (self.extend, 6),
            (self.splice, 8),
            (self.length_field, 18),
            (self.credential, 6),
            (self.bad_utf8, 8),
            (self.lengths_lie, 4),
        ]
        for _ in range(self.r.choice((1, 1, 1, 2, 3))):
            self.r.choices([a for a, _ in actions], [w for _, w in actions])[0]()
        if self.fix_body and len(self.data) >= ENVELOPE_SIZE + HEADER_SIZE + 4:  # all but an empty credential
            self.int32(ENVELOPE_SIZE + 20, len(self.data) - ENVELOPE_SIZE - HEADER_SIZE - 4)
        if self.fix_length and len(self.data) >= ENVELOPE_SIZE:
            self.int32(16, len(self.data) - ENVELOPE_SIZE)
        return bytes(self.data)

    # The envelope: versions, flags, session and request ids, sequence, length
    def envelope_field(self) -> None:
        r, d = self.r, self.data
        if len(d) < ENVELOPE_SIZE:  # cut already: no envelope to change
            d += bytes(r.getrandbits(8) for _ in range(r.randrange(4)))
            self.done.append("bytes added to a cut envelope")
            return
        which = r.choice(("version", "flags", "suggest", "session", "request", "sequence", "length", "length"))
        self.done.append(f"envelope {which}")
        if which == "version":
            d[0:2] = bytes(r.choice(ODD_VERSIONS + VERSIONS))
        elif which == "flags":
            d[2] = r.choice((0x80, 0x40, 0x20, 0xE0, 0x03, 0x01, 0xFF, r.getrandbits(8)))
        elif which == "suggest":
            d[3] = r.choice((0, 1, 10, 11, 12, 255))
        elif which == "session":
            self.int32(4, self.edge())
        elif which == "request":
            self.int32(8, self.edge())
        elif which == "sequence":
            self.int32(12, self.edge())
        else:
            actual = len(d) - ENVELOPE_SIZE
            self.int32(
                16,
                r.choice(
                    (
                        actual + 1,
                        actual - 1,
                        actual + 100,
                        0,
                        -1,
                        -(2**31),
                        MAX_MESSAGE + 1,
                        MAX_MESSAGE,
                        2**31 - 1,
                        actual - 4,
                        actual * 2,
                    )
                ),
            )
            self.fix_length = False

    # The header: op code, response code, op flags, site serial, recursion count, expiration, body length
    def header_field(self) -> None:
        r = self.r
        h = ENVELOPE_SIZE
        if len(self.data) < h + HEADER_SIZE:  # cut already: no header to change
            self.flip_bits()
            return
        which = r.choice(("op", "code", "flags", "serial", "recursion", "expiration", "body length", "body length"))
        self.done.append(f"header {which}")
        if which == "op":
            self.int32(h, r.choice((*UNKNOWN_OPS, *(int(op) for op in OpCode))))
        elif which == "code":
            self.int32(h + 4, r.choice((1, 2, 4, 100, 200, 302, 303, 402, 403, 65535, -1, 7, 0)))
        elif which == "flags":
            flags = r.choice(
                (
                    0xFFFFFFFF,
                    0,
                    r.getrandbits(32),
                    int(OpFlag.CERTIFY),
                    int(OpFlag.ENCRYPT),
                    int(OpFlag.RETURN_REQUEST_DIGEST),
                    int(OpFlag.MINT_NEW_SUFFIX),
                    0x000FFFFF,
                )
            )
            self.int32(h + 8, flags)
        elif which == "serial":
            self.data[h + 12 : h + 14] = r.getrandbits(16).to_bytes(2, "big")
        elif which == "recursion":
            self.data[h + 14] = r.choice((1, 7, 8, 9, 255))
            self.data[h + 15] = r.choice((0, 255))  # the reserved byte
        elif which == "expiration":
            self.int32(h + 16, self.edge())
        else:
            body = len(self.data) - h - HEADER_SIZE - 4
            self.int32(h + 20, r.choice((body + 1, body - 1, body + 4, 0, -1, 2**31 - 1, MAX_MESSAGE, body + 5)))
            self.fix_body = False

    def flip_bits(self) -> None:
        r = self.r
        count = r.choice((1, 1, 2, 4, 8, 32))
        if not self.data:
            return
        start = 0 if r.random() < 0.3 else ENVELOPE_SIZE + HEADER_SIZE
        if len(self.data) <= start:
            start = 0
        for _ in range(count):
            at = r.randrange(start, len(self.data))
            self.data[at] ^= 1 << r.randrange(8)
        self.done.append(f"{count} bits flipped")
        if start == 0:
            self.fix_length = self.fix_body = False  # the flips stand as they fell, length fields included

    def cut(self) -> None:
        r = self.r
        at = r.choice(
            (
                r.randrange(len(self.data) + 1),
                r.randrange(max(1, ENVELOPE_SIZE + HEADER_SIZE + 1)),
                len(self.data) - 1,
                len(self.data) - 4,
                19,
                20,
                43,
                44,
            )
        )
        del self.data[max(0, at) :]
        self.done.append(f"cut to {len(self.data)} bytes")
        if r.random() < 0.4:
            self.fix_length = False

    def extend(self) -> None:
        r = self.r
        extra = r.choice(
            (
                b"\x00",
                b"\xff" * 4,
                bytes(4),
                b"\x00\x00\x00\x10",
                bytes(r.getrandbits(8) for _ in range(17)),
                b"\x7f\xff\xff\xff",
                bytes(600),
                b"A" * 3000,
            )
        )
        self.data += extra
        self.done.append(f"{len(extra)} bytes added")
        if r.random() < 0.3:
            self.fix_length = False

    def splice(self) -> None:
        r = self.r
        lo, hi = self.body_range()
        at = r.randrange(lo, hi + 1) if hi > lo else len(self.data)
        pick = r.random()
        if pick < 0.4:
            width = r.choice((1, 2, 4, 8))
            self.data[at : at + width] = bytes(r.getrandbits(8) for _ in range(width))
            self.done.append(f"{width} bytes overwritten at {at}")
        elif pick < 0.7:
            chunk = r.choice((b"\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x00\x08\x01", bytes(12)))
            self.data[at:at] = chunk
            self.done.append(f"{len(chunk)} bytes inserted at {at}")
        else:
            width = r.choice((1, 3, 4, 9))
            del self.data[at : at + width]
            self.done.append(f"{width} bytes removed at {at}")

    def length_field(self) -> None:
        """A 4-byte length or count in the body (found by looking: a small number) set to an edge."""
        r = self.r
        lo, hi = self.body_range()
        spots = [i for i in range(lo, hi - 3) if int.from_bytes(self.data[i : i + 4], "big") <= 4096]
        if not spots:
            self.envelope_field()
            return
        at = r.choice(spots)
        old = int.from_bytes(self.data[at : at + 4], "big")
        value = r.choice((old + 1, old - 1, old + 4, self.edge(), self.edge(), 2**31 - 1, 2**32 - 1, MAX_HANDLE + 1))
        self.int32(at, value)
        self.done.append(f"int at {at}: {old} -> {value & 0xFFFFFFFF}")

    def credential(self) -> None:
        """The credential section (after the body) replaced by garbage."""
        r = self.r
        h = ENVELOPE_SIZE
        body_len = int.from_bytes(self.data[h + 20 : h + 24], "big") if len(self.data) >= h + HEADER_SIZE else 0
        end = min(len(self.data), h + HEADER_SIZE + body_len)
        section = r.choice(
            (
                struct.pack(">I", 2**31 - 1),
                struct.pack(">I", 100) + b"x" * 10,
                pack(b"\x00\x00\x00\x00" + pack(b"") + struct.pack(">i", -1) + pack(b"HS_SIGNED") + b"\xff"),
                pack(bytes(r.getrandbits(8) for _ in range(r.choice((1, 40, 300))))),
                pack(b"\0\0\0\0" + pack(b"\xff" * 3) + struct.pack(">i", 7) + pack(b"HS_MAC", pack(b"SHA1"))),
                b"\x00\x00",
                b"",
            )
        )
        del self.data[end:]
        self.data += section
        self.done.append(f"credential section of {len(section)} bytes")
        self.fix_body = False

    def bad_utf8(self) -> None:
        """The first string of the body (a handle, mostly) made of bytes that are not UTF-8."""
        r = self.r
        at = ENVELOPE_SIZE + HEADER_SIZE
        if len(self.data) < at + 4:
            self.flip_bits()
            return
        length = int.from_bytes(self.data[at : at + 4], "big")
        if length > len(self.data) - at - 4:
            length = 0
        garbage = r.choice(BAD_UTF8)
        text = bytes(self.data[at + 4 : at + 4 + length])
        where = r.randrange(len(text) + 1)
        text = text[:where] + garbage + text[where:]
        self.data[at : at + 4 + length] = pack(text)
        self.done.append(f"bad UTF-8 {garbage.hex()} in the first string")

    def lengths_lie(self) -> None:
        """The envelope's and the header's lengths both off, in the same direction."""
        delta = self.r.choice((-8, -1, 1, 8, 1000))
        self.int32(16, len(self.data) - ENVELOPE_SIZE + delta)
        self.int32(ENVELOPE_SIZE + 20, max(0, len(self.data) - ENVELOPE_SIZE - HEADER_SIZE - 4 + delta))
        self.fix_length = self.fix_body = False
        self.done.append(f"envelope and body lengths off by {delta}")
