"""Handle messages on a TCP stream (RFC 3652): each is its 20-byte envelope and then the
number of bytes the envelope's length field announces, one message after the other.

Written once here, pure, for the three that speak it: the server's listener, fed whatever
each read delivers, splits with a ``Framer``; a client or any reader that can ask for an
exact number of bytes (asyncio's ``StreamReader.readexactly``) reads with ``read_message``;
both write with ``frame``. A length outside 0..MAX_MESSAGE is refused as soon as the
envelope is in, without waiting for what it announces, with the WireError
``decode_envelope`` raises: it names the request, so a server can still answer it.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from dataclasses import replace

from protocol.wire.base import ENVELOPE_SIZE, MAX_MESSAGE, Envelope, decode_envelope, encode_envelope

LENGTH_AT = 16  # the envelope's length field: the last of its five 4-byte fields
_LENGTH = struct.Struct(">i")  # signed, as decode_envelope reads it: a negative length is refused like a long one

ReadExactly = Callable[[int], Awaitable[bytes]]


def frame(envelope: Envelope, payload: bytes) -> bytes:
    """``payload`` (header, body and credential) as it goes on the wire: ``envelope`` first,
    its length set to the payload's."""
    return encode_envelope(replace(envelope, length=len(payload))) + payload


async def read_message(readexactly: ReadExactly) -> tuple[Envelope, bytes]:
    """The next message of a stream: its envelope, and its bytes (envelope first).

    A length outside 0..MAX_MESSAGE raises WireError before the rest is read; the reader's
    own errors (the stream ending early) pass through.
    """
    head = await readexactly(ENVELOPE_SIZE)
    envelope = decode_envelope(head)
    return envelope, head + await readexactly(envelope.length)


class Framer:
    """Splits the bytes of one stream, as they arrive, into whole messages (envelope first).

    ``pending`` holds the start of a message not yet whole (empty between messages). After a
    WireError the stream has lost its framing: feed it no more.
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The messages ``data`` completes, in order; WireError for a length out of bounds
        (the messages the same ``data`` completed before it are dropped with the stream).

        Each message is copied once, and a read that is exactly one message is not copied.
        """
        pending = self.pending
        buffered = bool(pending)
        if buffered:
            pending += data
        buf = pending if buffered else data
        messages: list[bytes] = []
        pos, size = 0, len(buf)
        while size - pos >= ENVELOPE_SIZE:
            (length,) = _LENGTH.unpack_from(buf, pos + LENGTH_AT)
            if not 0 <= length <= MAX_MESSAGE:
                decode_envelope(bytes(buf[pos : pos + ENVELOPE_SIZE]))  # raises, naming the request
                raise AssertionError(f"decode_envelope accepted a message length of {length}")
            end = pos + ENVELOPE_SIZE + length
            if end > size:
                break
            # A slice of bytes is the one copy (none when whole); of the buffer, through a view.
            messages.append(bytes(memoryview(pending)[pos:end]) if buffered else data[pos:end])
            pos = end
        if buffered:
            del pending[:pos]  # from the front: CPython moves the buffer's start, not its bytes
        elif pos < size:
            pending += memoryview(data)[pos:] if pos else data
        return messages
