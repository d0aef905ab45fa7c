"""A small Handle protocol client for tests: one request, over UDP or TCP, to a test node."""

from __future__ import annotations

import itertools
import socket

from protocol.wire.bodies import KEY_EXCHANGE_DH
from protocol.wire.message import (
    DEFAULT_REQUEST_FLAGS,
    ENVELOPE_SIZE,
    Envelope,
    Message,
    OpCode,
    ResolutionRequest,
    SessionSetupRequest,
    decode_message,
    encode_message,
    split_datagrams,
)
from protocol.wire.session import DhPublic, encode_dh_public

_IDS = itertools.count(1000)
CNRI_731 = (2, 5)  # what hdl-qresolver 7.3.1 writes
FFDHE2048_P = int(  # RFC 7919's group: a sound safe prime, but not one CNRI's clients send
    "FFFFFFFFFFFFFFFFADF85458A2BB4A9AAFDC5620273D3CF1D8B9C583CE2D3695A9E13641146433FBCC939DCE249B3EF9"
    "7D2FE363630C75D8F681B202AEC4617AD3DF1ED5D5FD65612433F51F5F066ED0856365553DED1AF3B557135E7F57C935"
    "984F0C70E0E68B77E2A689DAF3EFE8721DF158A136ADE73530ACCA4F483A797ABC0AB182B324FB61D108A94BB2C8E3FB"
    "B96ADAB760D7F4681D4F42A3DE394DF4AE56EDE76372BB190B07A7C8EE0A6D709E02FCE1CDF7E2ECC03404CD28342F61"
    "9172FE9CE98583FF8E4F1232EEF28183C3FE3B1B4C6FAD733BB5FCBC2EC22005C58EF1837D1683B2C6F34A26C1B2EFFA"
    "886B423861285C97FFFFFFFFFFFFFFFF",
    16,
)


def resolution(handle: str, *, indexes: tuple[int, ...] = (), types: tuple[str, ...] = (), rid: int = 0) -> bytes:
    env = Envelope(request_id=rid or next(_IDS), version=CNRI_731, suggest=CNRI_731)
    return encode_message(Message(OpCode.RESOLUTION, ResolutionRequest(handle, indexes, types), envelope=env))


def session_setup(p: int, x: int = 0x1234567890ABCDEF, *, identity: str = "0.NA/88.118", rid: int = 0) -> bytes:
    """An anonymous SESSION_SETUP asking for a Diffie-Hellman key in the group of ``p`` (g = 2),
    with the client's public value 2^x mod p, for ``identity``'s index 300."""
    mine = encode_dh_public(DhPublic(pow(2, x, p), p, 2))
    body = SessionSetupRequest(KEY_EXCHANGE_DH, 600, identity, 300, public_key=mine)
    env = Envelope(request_id=rid or next(_IDS), version=(2, 10), suggest=(2, 10))
    return encode_message(Message(OpCode.SESSION_SETUP, body, envelope=env, flags=DEFAULT_REQUEST_FLAGS))


def udp(port: int, data: bytes, *, timeout: float = 5.0, split: bool = False, source: str | None = None) -> Message:
    """Send ``data`` (one message; in 512-byte datagrams with ``split``) and decode the whole answer;
    ``source`` picks the loopback address it comes from."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        if source is not None:
            sock.bind((source, 0))
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


def copies_at_once(port: int, datagram: bytes, copies: int, *, timeout: float = 10) -> list[int]:
    """Send ``datagram`` from ``copies`` sockets at once (each its own port, so the kernel spreads
    them over the workers) and give back each copy's response code."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(copies)]
    try:
        for sock in socks:
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", port))
        for sock in socks:
            sock.send(datagram)
        return [decode_message(sock.recv(65536)).response_code for sock in socks]
    finally:
        for sock in socks:
            sock.close()
