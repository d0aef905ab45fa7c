"""The little DER that SM2 keys and signatures need: a SubjectPublicKeyInfo and SEQUENCE { r, s }.

``cryptography`` parses SubjectPublicKeyInfo for the curves it knows, and SM2's is not one of
them. This reader takes only definite lengths, checks each against the bytes that remain,
and raises InvalidValue naming its subject for anything else.
"""

from __future__ import annotations

from protocol.errors import InvalidValue

SEQUENCE, INTEGER, BIT_STRING, NULL, OID = 0x30, 0x02, 0x03, 0x05, 0x06


class Reader:
    """Reads DER elements from ``data`` in order."""

    def __init__(self, data: bytes, subject: str) -> None:
        self.data, self.pos, self.subject = data, 0, subject

    def _fail(self, what: str) -> InvalidValue:
        return InvalidValue(f"{self.subject} is not valid DER: {what} at byte {self.pos}")

    def peek(self) -> int | None:
        """The next element's tag, or None at the end."""
        return self.data[self.pos] if self.pos < len(self.data) else None

    def element(self, tag: int) -> bytes:
        """The contents of the next element, which must have ``tag``."""
        data, pos = self.data, self.pos
        if pos + 2 > len(data):
            raise self._fail("an element cut short")
        if data[pos] != tag:
            raise self._fail(f"tag {data[pos]:#04x} where {tag:#04x} was expected")
        length, pos = data[pos + 1], pos + 2
        if length & 0x80:
            count = length & 0x7F
            if not 0 < count <= 4 or pos + count > len(data):
                raise self._fail("a length this reader does not take")
            length, pos = int.from_bytes(data[pos : pos + count], "big"), pos + count
        if pos + length > len(data):
            raise self._fail(f"an element of {length} bytes with {len(data) - pos} left")
        self.pos = pos + length
        return data[pos : pos + length]

    def sequence(self) -> Reader:
        return Reader(self.element(SEQUENCE), self.subject)

    def integer(self) -> int:
        """A non-negative INTEGER (the only kind keys and signatures hold)."""
        raw = self.element(INTEGER)
        if not raw or raw[0] & 0x80:
            raise self._fail("an empty or negative integer")
        return int.from_bytes(raw, "big")

    def oid(self) -> str:
        """An OBJECT IDENTIFIER in dotted form."""
        raw = self.element(OID)
        if not raw or raw[-1] & 0x80:
            raise self._fail("an object identifier cut short")
        arcs, value = [], 0
        for byte in raw:
            value = value << 7 | byte & 0x7F
            if not byte & 0x80:
                arcs.append(value)
                value = 0
        first = min(arcs[0] // 40, 2)
        return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))

    def bit_string(self) -> bytes:
        """A BIT STRING of whole bytes."""
        raw = self.element(BIT_STRING)
        if not raw or raw[0] != 0:
            raise self._fail("a bit string that is not whole bytes")
        return raw[1:]

    def done(self) -> None:
        if self.pos != len(self.data):
            raise self._fail(f"{len(self.data) - self.pos} bytes after the end")


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def sequence(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def integer(n: int) -> bytes:
    """A non-negative INTEGER, minimal (a leading zero only to keep it positive)."""
    return tlv(INTEGER, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | arc & 0x7F)
            arc >>= 7
        out += bytes(reversed(chunk))
    return tlv(OID, bytes(out))


def bit_string(data: bytes) -> bytes:
    return tlv(BIT_STRING, b"\0" + data)
