"""The oracle of bench.fuzz_handle: what a reply, and a TCP connection's end, must be. Pure: bytes in, verdicts out.

A reply must decode with the project's decoder as a response (a response code the protocol
defines). Over TCP, ``frames`` reads a stream as a server frames it (an envelope, then as many
bytes as its length says), and ``judge_tcp`` holds the replies and the connection's end
against it: replies in order under the ids of the messages they answer, a close only where a
server may close. Over UDP, ``udp_expectations`` says which datagrams must be answered and
which may be dropped, and a ``Gatherer`` puts replies in several datagrams together.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from protocol.codes import ResponseCode
from protocol.wire.message import ENVELOPE_SIZE, MAX_MESSAGE, MAX_UDP_DATA, Message, WireError, decode_message

HANG_SECONDS = 5.0  # a reply (or a close) owed for longer than this is a hang


def read_reply(raw: bytes) -> tuple[Message | None, str | None]:
    """The reply decoded, or why it is no Handle response."""
    try:
        message = decode_message(raw)
    except WireError as exc:
        return None, f"reply does not decode: {exc.message}"
    if message.is_request:
        return None, "reply is a request (response code 0)"
    if message.response_code not in ResponseCode._value2member_map_:
        return None, f"reply has response code {message.response_code}, which the protocol does not define"
    return message, None


def int32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big", signed=True)


@dataclass
class Frames:
    """What a TCP stream carries for a server that frames it: whole messages (request id, kept),
    the request id of an envelope whose length is out of bounds (framing stops there), and
    whether the stream stops inside a message."""

    messages: list[tuple[int, bool]] = field(default_factory=list)
    refused: int | None = None
    partial: bool = False


def frames(stream: bytes) -> Frames:
    found = Frames()
    pos = 0
    while len(stream) - pos >= ENVELOPE_SIZE:
        length = int32(stream, pos + 16)
        if not 0 <= length <= MAX_MESSAGE:
            found.refused = int32(stream, pos + 8)
            return found
        end = pos + ENVELOPE_SIZE + length
        if end > len(stream):
            break
        # Kept: KEEP_ALIVE, or a client of protocol 2.8 or later (it suggests a version); a
        # client before 2.8 without the flag is closed after its answer, as CNRI 7.x closes it.
        keep_alive = length > 8 and bool(stream[pos + ENVELOPE_SIZE + 8] & 0x02 or stream[pos + 2] & 0x03)
        found.messages.append((int32(stream, pos + 8), keep_alive))
        pos = end
    found.partial = pos < len(stream)
    return found


def judge_tcp(
    expected: Frames, replies: list[bytes], end: str, *, slow: bool = False
) -> tuple[list[tuple[Message, bytes]], list[str]]:
    """The replies decoded (with their bytes), and what is wrong with them and with how the connection ended.

    ``slow``: writing the pieces took so long that the node may have given up on the message."""
    problems: list[str] = []
    decoded: list[tuple[Message, bytes]] = []
    for raw in replies:
        message, problem = read_reply(raw)
        if problem is not None:
            problems.append(problem)
        elif message is not None:
            decoded.append((message, raw))
    if problems:
        return decoded, problems
    wanted = [rid for rid, _ in expected.messages]
    answered = 0
    for i, (message, _) in enumerate(decoded):
        if i < len(wanted) and message.request_id == wanted[i]:
            answered += 1
        elif expected.refused is not None and i == len(decoded) - 1 and message.request_id == expected.refused:
            pass  # the refusal of the envelope out of bounds, last
        else:
            shown = wanted[i] if i < len(wanted) else "none (no more messages)"
            problems.append(f"wrong request id: reply {i} carries {message.request_id}, expected {shown}")
            return decoded, problems
    if end == "hang":
        problems.append(f"hang: neither a reply nor a close within {HANG_SECONDS:.0f} s, after {len(replies)} replies")
    elif answered < len(wanted) and not slow and not _may_close(expected, answered, end):
        problems.append(f"closed: the connection ended ({end}) after {answered} of {len(wanted)} replies")
    return decoded, problems


def _may_close(expected: Frames, answered: int, end: str) -> bool:
    """May the node end the connection with only ``answered`` messages answered?"""
    if expected.refused is not None:
        return True  # the messages read with the bad envelope go with the stream
    keep = [keep for _, keep in expected.messages]
    if answered and not keep[answered - 1]:
        return True  # it answered a client before 2.8 without KEEP_ALIVE, and closed before the next came
    # A close with our bytes unread is a reset, and a reset discards the replies not yet read: after
    # any message the node may close on, the replies before it may be lost.
    return end == "reset" and not all(keep)


def udp_expectations(units: list[bytes]) -> tuple[collections.Counter[int], set[int]]:
    """Request ids that must be answered (whole messages), and those that may be (parts, short datagrams)."""
    required: collections.Counter[int] = collections.Counter()
    optional: set[int] = set()
    for unit in units:
        if len(unit) < ENVELOPE_SIZE:
            optional.add(0)
        elif unit[2] & 0x20:
            optional.add(int32(unit, 8))
        else:
            required[int32(unit, 8)] += 1
    return required, optional


class Gatherer:
    """Puts the datagrams of replies together: each carries its part number and the whole length."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[int, bytes]] = {}
        self.heads: dict[int, bytes] = {}

    def add(self, datagram: bytes) -> bytes | str | None:
        """A whole reply, a problem, or None while parts are missing."""
        if len(datagram) < ENVELOPE_SIZE:
            return f"reply datagram of {len(datagram)} bytes, shorter than an envelope"
        rid, sequence, length = int32(datagram, 8), int32(datagram, 12), int32(datagram, 16)
        if sequence == 0 and len(datagram) - ENVELOPE_SIZE == length:
            return datagram
        if not 0 <= length <= MAX_MESSAGE or not 0 <= sequence <= length // MAX_UDP_DATA:
            return f"reply datagram says part {sequence} of {length} bytes"
        parts = self.parts.setdefault(rid, {})
        parts[sequence] = datagram[ENVELOPE_SIZE:]
        if sequence == 0:
            self.heads[rid] = datagram[:ENVELOPE_SIZE]
        if sum(len(p) for p in parts.values()) < length or rid not in self.heads:
            return None
        del self.parts[rid]
        head = bytearray(self.heads.pop(rid))
        head[12:16] = bytes(4)
        return bytes(head) + b"".join(parts[n] for n in sorted(parts))
