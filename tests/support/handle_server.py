"""A small Handle protocol server on loopback UDP and TCP ports, built with the codec, for tests.

It answers resolution requests from a dict of records, the way CNRI's server would, unless
a test replaces what it sends over one transport (``udp`` / ``tcp``: given the request
decoded and the answer it would give, return the bytes to send; ``SILENT`` sends nothing).
It records every request it decoded, per transport.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire.message import (
    ENVELOPE_SIZE,
    Body,
    ErrorResponse,
    Message,
    ResolutionRequest,
    ResolutionResponse,
    decode_envelope,
    decode_message,
    encode_message,
    encode_payload,
    response_to,
    split_datagrams,
)

Reply = Callable[[Message, Message], list[bytes]]  # (request, the proper answer) -> bytes to send


def SILENT(request: Message, answer: Message) -> list[bytes]:
    return []


def as_datagrams(answer: Message) -> list[bytes]:
    """``answer`` split into datagrams as CNRI's server sends them."""
    return split_datagrams(answer.envelope, encode_payload(answer), mark_truncated=False)


def proper_udp(request: Message, answer: Message) -> list[bytes]:
    return as_datagrams(answer)


def proper_tcp(request: Message, answer: Message) -> list[bytes]:
    return [encode_message(answer)]


def reply(request: Message, code: int, body: Body) -> Message:
    return response_to(request, body, code, expiration=int(time.time()) + 43200)


@dataclass
class HandleServer:
    records: dict[str, tuple[HandleValue, ...]] = field(default_factory=dict)  # by handle, upper-cased
    udp: Reply = proper_udp
    tcp: Reply = proper_tcp
    seen_udp: list[Message] = field(default_factory=list)
    seen_tcp: list[Message] = field(default_factory=list)
    udp_port: int = 0
    tcp_port: int = 0
    udp_from_elsewhere: bool = False  # answer from another port than the one asked (a spoofer)

    def answer(self, request: Message) -> Message:
        assert isinstance(request.body, ResolutionRequest)
        handle = request.body.handle
        values = self.records.get(handle.upper())
        if values is None:
            return reply(request, ResponseCode.HANDLE_NOT_FOUND, ErrorResponse("handle not found"))
        return reply(request, ResponseCode.SUCCESS, ResolutionResponse(handle, values))

    async def start(self) -> HandleServer:
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=("127.0.0.1", 0))
        self.udp_port = self._udp.get_extra_info("sockname")[1]
        self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", 0)
        self.tcp_port = self._tcp.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._udp.close()
        self._tcp.close()
        await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readexactly(ENVELOPE_SIZE)
            request = decode_message(head + await reader.readexactly(decode_envelope(head).length))
            self.seen_tcp.append(request)
            sent = self.tcp(request, self.answer(request))
            if not sent:
                await reader.read()  # silent: until the client gives up
            for chunk in sent:
                writer.write(chunk)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: HandleServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        request = decode_message(data)  # the client's requests fit one datagram
        self.server.seen_udp.append(request)
        datagrams = self.server.udp(request, self.server.answer(request))
        if self.server.udp_from_elsewhere:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                for datagram in datagrams:
                    other.sendto(datagram, addr)
            return
        for datagram in datagrams:
            self.transport.sendto(datagram, addr)


@contextmanager
def running_in_thread(server: HandleServer) -> Iterator[HandleServer]:
    """``server`` served by an event loop of its own, for tests that are not async."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
