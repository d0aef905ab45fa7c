"""TCP framing (protocol.wire.stream): however a stream is cut into reads, the same messages
come out, or a clean WireError for an envelope whose length is out of bounds, never another
exception; and a stream read with ``read_message`` stops at each message's end."""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.wire.base import ENVELOPE_SIZE, MAX_MESSAGE, Envelope, WireError, decode_envelope, encode_envelope
from protocol.wire.message import Message, OpCode, ResolutionRequest, decode_message, encode_message
from protocol.wire.stream import Framer, frame, read_message

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def message(request_id: int, payload: bytes, *, length: int | None = None, session_id: int = 0) -> bytes:
    env = Envelope(request_id=request_id, session_id=session_id, length=len(payload) if length is None else length)
    return encode_envelope(env) + payload


def by_hand(stream: bytes) -> tuple[list[bytes], bool]:
    """What a stream holds, read the slow, obvious way: its whole messages, and whether an
    envelope with a length outside 0..MAX_MESSAGE stops it."""
    messages: list[bytes] = []
    pos = 0
    while len(stream) - pos >= ENVELOPE_SIZE:
        (length,) = struct.unpack_from(">i", stream, pos + 16)
        if not 0 <= length <= MAX_MESSAGE:
            return messages, True
        if pos + ENVELOPE_SIZE + length > len(stream):
            break
        messages.append(stream[pos : pos + ENVELOPE_SIZE + length])
        pos += ENVELOPE_SIZE + length
    return messages, False


def fed(stream: bytes, cuts: list[int]) -> tuple[list[bytes], bool, Framer]:
    """The messages a Framer gives for ``stream`` delivered in reads cut at ``cuts``, and
    whether it raised WireError (any other exception fails the test)."""
    framer, messages = Framer(), []
    edges = [0, *sorted({min(c, len(stream)) for c in cuts}), len(stream)]
    for start, end in itertools.pairwise(edges):
        try:
            messages += framer.feed(stream[start:end])
        except WireError:
            return messages, True, framer
    return messages, False, framer


streams = st.lists(st.tuples(st.integers(0, 2**31 - 1), st.binary(max_size=60)), max_size=6).map(
    lambda ms: b"".join(message(rid, payload) for rid, payload in ms)
)
bad_lengths = st.one_of(st.integers(-(2**31), -1), st.integers(MAX_MESSAGE + 1, 2**31 - 1))
cut_points = st.lists(st.integers(0, 600), max_size=12)


@FAST
@given(streams, cut_points)
def test_any_cut_of_a_stream_gives_its_messages(stream: bytes, cuts: list[int]) -> None:
    got, failed, framer = fed(stream, cuts)
    assert not failed and got == by_hand(stream)[0] and not framer.pending


@FAST
@given(streams, bad_lengths, cut_points)
def test_a_length_out_of_bounds_is_a_wire_error_wherever_the_stream_is_cut(
    stream: bytes, length: int, cuts: list[int]
) -> None:
    bad = message(77, b"", length=0)[:16] + struct.pack(">i", length)
    got, failed, _ = fed(stream + bad + b"more", cuts)
    assert failed
    expected, _ = by_hand(stream)
    assert got == expected[: len(got)]  # messages before the bad envelope, and none made up


@FAST
@given(st.binary(max_size=400), cut_points)
def test_any_bytes_cut_anywhere_give_what_they_hold_or_a_wire_error(data: bytes, cuts: list[int]) -> None:
    expected, bad = by_hand(data)
    got, failed, framer = fed(data, cuts)
    assert failed == bad
    if failed:
        assert got == expected[: len(got)]
    else:
        assert got == expected
        assert b"".join(got) + bytes(framer.pending) == data


def test_a_read_that_is_one_message_is_given_back_uncopied() -> None:
    one = message(5, b"header and body")
    framer = Framer()
    (got,) = framer.feed(one)
    assert got is one and not framer.pending


def test_a_message_cut_at_every_byte_comes_out_once_whole() -> None:
    one, two = message(1, b"first"), message(2, b"")
    framer, got = Framer(), []
    for i in range(len(one + two)):
        got += framer.feed((one + two)[i : i + 1])
        assert len(got) == (i >= len(one) - 1) + (i >= len(one + two) - 1)
    assert got == [one, two] and not framer.pending


def test_a_bad_length_is_refused_with_the_request_s_ids_as_soon_as_its_envelope_is_in() -> None:
    framer = Framer()
    assert framer.feed(message(9, b"x")) == [message(9, b"x")]
    bad = message(1234, b"", length=300 * 1024, session_id=56)
    assert framer.feed(bad[:19]) == []  # an envelope not yet whole says nothing
    with pytest.raises(WireError, match=r"message length 307200 is outside 0\.\.262144") as caught:
        framer.feed(bad[19:])
    assert caught.value.request_id == 1234
    assert caught.value.envelope is not None and caught.value.envelope.session_id == 56


@pytest.mark.parametrize("length", [-1, -(2**31), MAX_MESSAGE + 1])
def test_lengths_just_out_of_bounds_are_refused_and_the_bounds_are_not(length: int) -> None:
    with pytest.raises(WireError, match="outside"):
        Framer().feed(message(3, b"", length=length))
    framer = Framer()
    assert framer.feed(message(3, b"", length=MAX_MESSAGE)) == []  # allowed: waits for the rest
    assert len(framer.pending) == ENVELOPE_SIZE
    assert framer.feed(message(4, b"", length=0)) == []  # part of the long message's payload


def test_frame_sets_the_length_and_decodes_as_the_codec_writes() -> None:
    msg = Message(OpCode.RESOLUTION, ResolutionRequest("88.118/a"), envelope=Envelope(request_id=8, length=999))
    whole = encode_message(msg)
    assert frame(msg.envelope, whole[ENVELOPE_SIZE:]) == whole
    assert decode_envelope(whole).length == len(whole) - ENVELOPE_SIZE
    assert decode_message(whole).request_id == 8


def reads_of(data: bytes) -> tuple[Callable[[int], asyncio.Future[bytes]], list[int]]:
    """A ``readexactly`` over ``data``, and the sizes it was asked for (as StreamReader's, it
    raises IncompleteReadError when the bytes run out)."""
    pos, asked = [0], []

    def readexactly(n: int) -> asyncio.Future[bytes]:
        asked.append(n)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        chunk = data[pos[0] : pos[0] + n]
        pos[0] += n
        if len(chunk) < n:
            future.set_exception(asyncio.IncompleteReadError(chunk, n))
        else:
            future.set_result(chunk)
        return future

    return readexactly, asked


async def test_read_message_reads_one_message_and_stops_at_its_end() -> None:
    first, second = message(1, b"one"), message(2, b"two!")
    readexactly, asked = reads_of(first + second)
    assert await read_message(readexactly) == (decode_envelope(first), first)
    envelope, data = await read_message(readexactly)
    assert (envelope.request_id, data) == (2, second)
    assert asked == [ENVELOPE_SIZE, 3, ENVELOPE_SIZE, 4]


async def test_read_message_refuses_a_long_message_without_reading_it() -> None:
    readexactly, asked = reads_of(message(6, b"", length=MAX_MESSAGE + 1) + bytes(1000))
    with pytest.raises(WireError, match="outside") as caught:
        await read_message(readexactly)
    assert caught.value.request_id == 6 and asked == [ENVELOPE_SIZE]


async def test_read_message_lets_the_stream_s_end_through() -> None:
    readexactly, _ = reads_of(message(6, b"payload")[:-2])
    with pytest.raises(asyncio.IncompleteReadError) as caught:
        await read_message(readexactly)
    assert len(caught.value.partial) == len(b"payload") - 2
