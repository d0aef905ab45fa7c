"""A small Handle protocol client for tests: one request, over UDP or TCP, to a test node."""

from __future__ import annotations

import itertools
import socket

from protocol.wire.message import (
    ENVELOPE_SIZE,
    Envelope,
    Message,
    OpCode,
    ResolutionRequest,
    decode_message,
    encode_message,
    split_datagrams,
)

_IDS = itertools.count(1000)
CNRI_731 = (2, 5)  # what hdl-qresolver 7.3.1 writes


def resolution(handle: str, *, indexes: tuple[int, ...] = (), types: tuple[str, ...] = (), rid: int = 0) -> bytes:
    env = Envelope(request_id=rid or next(_IDS), version=CNRI_731, suggest=CNRI_731)
    return encode_message(Message(OpCode.RESOLUTION, ResolutionRequest(handle, indexes, types), envelope=env))


def udp(port: int, data: bytes, *, timeout: float = 5.0, split: bool = False) -> Message:
    """Send ``data`` (one message; in 512-byte datagrams with ``split``) and decode the whole answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        if split:
            env = decode_message(data).envelope
            parts = split_datagrams(env, data[ENVELOPE_SIZE:])
        else:
            parts = [data]
        for part in parts:
            sock.sendto(part, ("127.0.0.1", port))
        return decode_message(_gathered(sock))


def _gathered(sock: socket.socket) -> bytes:
    """One answer, put together from its datagrams (each places its part by its sequence number)."""
    first, _ = sock.recvfrom(65536)
    length = int.from_bytes(first[16:20], "big")
    parts = {int.from_bytes(first[12:16], "big"): first[ENVELOPE_SIZE:]}
    while sum(len(p) for p in parts.values()) < length:
        more, _ = sock.recvfrom(65536)
        parts[int.from_bytes(more[12:16], "big")] = more[ENVELOPE_SIZE:]
    envelope = bytearray(first[:ENVELOPE_SIZE])
    envelope[12:16] = bytes(4)
    return bytes(envelope) + b"".join(parts[n] for n in sorted(parts))


def udp_raw(port: int, data: bytes, *, timeout: float = 2.0) -> bytes | None:
    """The first datagram answering ``data``, or None if none came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, ("127.0.0.1", port))
        try:
            return sock.recvfrom(65536)[0]
        except TimeoutError:
            return None


def read_message(sock: socket.socket) -> bytes:
    head = _exactly(sock, ENVELOPE_SIZE)
    return head + _exactly(sock, int.from_bytes(head[16:20], "big"))


def _exactly(sock: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(got)} of {n} bytes")
        got += chunk
    return got


def tcp(port: int, *messages: bytes, timeout: float = 5.0, source: str | None = None) -> list[Message]:
    """Send ``messages`` on one connection and read as many answers; ``source`` picks the loopback address."""
    where = None if source is None else (source, 0)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=where) as sock:
        sock.sendall(b"".join(messages))
        return [decode_message(read_message(sock)) for _ in messages]


class Connection:
    """One TCP connection kept for many requests, each answered before the next is sent, as
    China's SDKs keep theirs (no KEEP_ALIVE flag); ``source`` picks the loopback address."""

    def __init__(self, port: int, *, timeout: float = 5.0, source: str | None = None) -> None:
        where = None if source is None else (source, 0)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=where)

    def ask(self, data: bytes) -> Message:
        self.sock.sendall(data)
        return decode_message(read_message(self.sock))

    def closed_by_peer(self, within: float) -> bool:
        """True once the node closed the connection, waiting at most ``within`` seconds."""
        self.sock.settimeout(within)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
