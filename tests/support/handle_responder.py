"""A tiny Handle responder over UDP and TCP, built from protocol.wire.message, for load-generator tests.

What it answers depends on the handle's name: a name containing ``missing`` gets
HANDLE_NOT_FOUND, ``fail`` gets ERROR, ``drop`` gets nothing at all, ``big`` gets a
record too large for one datagram; any other name gets one URL value. Over TCP it closes
the connection after each reply, as CNRI's server does, unless the request carries
KEEP_ALIVE. ``python -m tests.handle_responder`` runs it in its own process and prints
its port.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import cast

from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire.message import (
    ENVELOPE_SIZE,
    ErrorResponse,
    Message,
    OpFlag,
    ResolutionRequest,
    ResolutionResponse,
    WireError,
    decode_message,
    encode_message,
    encode_payload,
    response_to,
    split_datagrams,
)


def answer(request: Message) -> Message | None:
    """The reply to a decoded request, or None to stay silent."""
    body = request.body
    handle = body.handle if isinstance(body, ResolutionRequest) else ""
    expiration = int(time.time()) + 43200
    if "drop" in handle:
        return None
    if "missing" in handle:
        return response_to(request, ErrorResponse(), ResponseCode.HANDLE_NOT_FOUND, expiration=expiration)
    if "fail" in handle:
        return response_to(request, ErrorResponse("no"), ResponseCode.ERROR, expiration=expiration)
    data = b"x" * 2000 if "big" in handle else f"https://example.org/{handle}".encode()
    value = HandleValue(index=1, type="URL", data=data, ttl=86400)
    return response_to(request, ResolutionResponse(handle, (value,)), expiration=expiration)


class UdpResponder(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = answer(decode_message(data))
        except WireError:
            return
        if reply is not None:
            for part in split_datagrams(reply.envelope, encode_payload(reply), mark_truncated=False):
                self.transport.sendto(part, addr)


async def _tcp_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, WireError):
        while True:
            head = await reader.readexactly(ENVELOPE_SIZE)
            length = int.from_bytes(head[16:20], "big")
            request = decode_message(head + await reader.readexactly(length))
            reply = answer(request)
            if reply is not None:
                writer.write(encode_message(reply))
                await writer.drain()
            if not request.flags & OpFlag.KEEP_ALIVE:
                break
    writer.close()


async def start(host: str = "127.0.0.1") -> tuple[int, asyncio.DatagramTransport, asyncio.Server]:
    """UDP and TCP on one free port of ``host``; returns (port, udp transport, tcp server)."""
    loop = asyncio.get_running_loop()
    for _ in range(50):  # the kernel may offer a TCP port whose UDP twin is taken: try another
        server = await asyncio.start_server(_tcp_client, host, 0)
        port = server.sockets[0].getsockname()[1]
        try:
            transport, _ = await loop.create_datagram_endpoint(UdpResponder, local_addr=(host, port))
        except OSError:
            server.close()
            continue
        return port, transport, server
    raise OSError("no port free for both TCP and UDP")


async def _serve_forever() -> None:
    port, _, server = await start()
    print(port, flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    runner = uvloop.run if "--uvloop" in sys.argv else asyncio.run
    runner(_serve_forever())
