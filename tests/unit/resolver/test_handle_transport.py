"""The Handle TCP listener's connection, driven in-process with a transport that records what it is given.

Cases the Handle protocol fuzzer (bench.fuzz_handle) found, each pinned here.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from bench.handle_load_base import resolution_request
from protocol.codes import ResponseCode
from protocol.wire.message import Envelope, Message, OpCode, ResolutionRequest, decode_message, encode_message
from resolver.handle.transport import HandleLimits, TcpConnection, TcpServer


class Recorder(asyncio.Transport):
    """A TCP transport that keeps what is written and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


class NoFrontend:
    """Nothing to answer: the cases here are refused before any request is read."""

    def cached(self, data: bytes) -> None:
        return None

    async def respond(self, data: bytes, peer: str, transport: str) -> bytes:
        raise AssertionError("no request should reach the front-end")


def connection() -> tuple[TcpConnection, Recorder]:
    server = TcpServer(NoFrontend(), HandleLimits())  # type: ignore[arg-type]
    conn = TcpConnection(server)
    transport = Recorder()
    conn.connection_made(transport)
    return conn, transport


@pytest.mark.parametrize(("request_id", "session_id"), [(-3, -1), (-(2**31), 7), (5, -(2**31)), (2**31 - 1, 0)])
def test_an_envelope_out_of_bounds_is_refused_under_the_ids_it_carries(request_id: int, session_id: int) -> None:
    """The refusal masked the ids to 31 bits: a negative request id was answered under another one
    (UDP and the decoder's own errors keep them as read, as Java's ints are)."""
    envelope = Envelope(request_id=request_id, session_id=session_id)
    head = bytearray(encode_message(Message(OpCode.RESOLUTION, ResolutionRequest("88.118/x"), envelope=envelope)))
    head[16:20] = (300 * 1024).to_bytes(4, "big")  # more than the 256 KiB a message may be
    conn, transport = connection()
    conn.data_received(bytes(head[:20]))
    answer = decode_message(transport.written)
    assert answer.response_code == ResponseCode.PROTOCOL_ERROR
    assert (answer.request_id, answer.envelope.session_id) == (request_id, session_id)
    assert transport.closed


class BigAnswers:
    """Answers every request from the 'cache' with the same large answer."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def cached(self, data: bytes) -> bytes:
        return self.answer

    async def respond(self, data: bytes, peer: str, transport: str) -> bytes:
        raise AssertionError("every answer is cached here")


async def test_an_answer_larger_than_the_socket_takes_at_once_is_sent_whole_then_closed() -> None:
    """The listener answers a cached request itself with a non-blocking send; what the socket
    does not take is finished by a connection of the loop, then closed as the client expects."""
    answer = bytes(range(256)) * 16_384  # 4 MiB: far more than a socket buffer
    server = TcpServer(BigAnswers(answer), HandleLimits())  # type: ignore[arg-type]
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    theirs.sendall(resolution_request("88.118/BIG"))  # as CNRI 7.x: one request, closed by the node
    server._serve(ours, ("127.0.0.1", 40000))
    loop = asyncio.get_running_loop()
    received = bytearray()
    while chunk := await asyncio.wait_for(loop.sock_recv(theirs, 1 << 20), timeout=10):
        received += chunk
    assert bytes(received) == answer
    theirs.close()
    await server.close()
