"""Blocking Handle protocol clients for the Locust users: one resolution at a time, checked.

Locust runs its users on gevent, which patches ``socket``: a plain blocking socket with a
timeout yields to the other users while it waits. So these clients are the simplest ones
that behave like a real client, written with the node's own codec (``protocol.wire``):

* ``UdpResolver``: one connected datagram socket; a request goes out once (a lost datagram
  is a timeout, counted as a failure, not hidden by a resend), and datagrams answering other
  request ids (late answers to requests already given up on) are skipped;
* ``TcpResolver``: one connection kept for request after request, as China's SDKs keep
  theirs, each request carrying KEEP_ALIVE; any error closes it and the next request opens a
  new one. A kept connection the server has closed meanwhile (its idle timeout) is opened
  again and the request sent once more, as a client would, timed from the first send.

The request is ``bench.handle_load_base.resolution_request`` suggesting protocol 2.10 (what
China's SDKs send), with a fresh request id each. An answer counts as a success only if it
is a whole Handle message under that id, a resolution response with response code 1
(SUCCESS) for the handle asked; anything else raises ``HandleFailure`` with a message
saying what came back. These modules never import Locust, so they run anywhere.
"""

from __future__ import annotations

import itertools
import random
import socket
import time
from typing import Final

from bench.handle_load_base import RID_OFFSET, SDK_SUGGEST, loopback_target, resolution_request
from protocol.codes import ResponseCode
from protocol.wire.base import ENVELOPE_SIZE, MAX_MESSAGE, WireError, decode_envelope
from protocol.wire.message import ErrorResponse, OpCode, Reassembler, ResolutionResponse, decode_message

TIMEOUT: Final = 5.0  # seconds for one answer (and for a TCP connect)
_SHOWN = 120  # characters of a server's error message kept in a failure


class HandleFailure(Exception):
    """A resolution that did not succeed; the message says what came back (or did not)."""


def check_answer(answer: bytes, request_id: int, handle: str) -> None:
    """HandleFailure unless ``answer`` (a whole message, envelope first) is SUCCESS for ``handle``
    under ``request_id``."""
    try:
        message = decode_message(answer)
    except WireError as exc:
        raise HandleFailure(f"not a Handle message: {exc.message}") from None
    if message.request_id != request_id:
        raise HandleFailure(f"answered request id {message.request_id}, not {request_id}")
    if message.is_request or message.op_code != OpCode.RESOLUTION:
        raise HandleFailure(f"not a resolution response (op code {int(message.op_code)}, code {message.response_code})")
    body = message.body
    if message.response_code != ResponseCode.SUCCESS:
        # The handle shown as [h], so that Locust counts one failure per kind, not per handle.
        said = body.message.replace(handle, "[h]")[:_SHOWN] if isinstance(body, ErrorResponse) else ""
        raise HandleFailure(_code_name(message.response_code) + (f": {said}" if said else ""))
    if not isinstance(body, ResolutionResponse) or body.handle.casefold() != handle.casefold():
        shown = body.handle if isinstance(body, ResolutionResponse) else type(body).__name__
        raise HandleFailure(f"SUCCESS, but for {shown!r}, not {handle!r}")


def _code_name(code: int) -> str:
    try:
        return f"{ResponseCode(code).name} ({code})"
    except ValueError:
        return f"response code {code}"


class _Requests:
    """Request bytes for a handle, each under a fresh request id."""

    def __init__(self, *, keepalive: bool) -> None:
        self.keepalive = keepalive
        self._ids = itertools.count(random.randrange(1, 1 << 30))

    def build(self, handle: str) -> tuple[int, bytes]:
        request_id = next(self._ids) & 0x7FFFFFFF or 1
        request = bytearray(resolution_request(handle, keepalive=self.keepalive, suggest=SDK_SUGGEST))
        request[RID_OFFSET : RID_OFFSET + 4] = request_id.to_bytes(4, "big")
        return request_id, bytes(request)


class UdpResolver:
    """Resolutions over UDP from one connected socket (only the server's datagrams arrive)."""

    def __init__(self, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        address = loopback_target(host, port)
        self.sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(address)
        self._requests = _Requests(keepalive=False)

    def resolve(self, handle: str) -> int:
        """The answer's size in bytes; HandleFailure for anything but SUCCESS."""
        request_id, request = self._requests.build(handle)
        deadline = time.monotonic() + self.timeout
        try:
            self.sock.send(request)
            answer = self._answer(request_id, deadline)
        except OSError as exc:  # a timeout, or ICMP port unreachable as ConnectionRefusedError
            raise HandleFailure(f"UDP: {_os_error(exc, self.timeout)}") from None
        check_answer(answer, request_id, handle)
        return len(answer)

    def _answer(self, request_id: int, deadline: float) -> bytes:
        """The whole message answering ``request_id``, from one datagram or several."""
        parts = Reassembler(max_pending=1, max_per_source=1, max_bytes=MAX_MESSAGE)
        skipped = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                self.sock.settimeout(remaining)
                datagram = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"no answer within {self.timeout:g} s ({skipped} for other requests)") from None
            try:
                if decode_envelope(datagram).request_id != request_id:
                    skipped += 1
                    continue
                whole = parts.add("server", datagram, time.monotonic())
            except WireError as exc:
                raise HandleFailure(f"UDP: not a Handle datagram: {exc.message}") from None
            if whole is not None:
                return whole

    def close(self) -> None:
        self.sock.close()


class TcpResolver:
    """Resolutions over one kept TCP connection, opened again after any error."""

    def __init__(self, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.address = loopback_target(host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.answered = 0  # on the current connection
        self.connections = 0  # opened so far
        self._requests = _Requests(keepalive=True)

    def resolve(self, handle: str) -> int:
        """The answer's size in bytes; HandleFailure for anything but SUCCESS."""
        request_id, request = self._requests.build(handle)
        try:
            answer = self._exchange(request, request_id)
        except (OSError, _Closed) as exc:
            self.close()
            raise HandleFailure(f"TCP: {_os_error(exc, self.timeout)}") from None
        except HandleFailure:
            self.close()  # the stream cannot be trusted past a message that was not one
            raise
        check_answer(answer, request_id, handle)
        return len(answer)

    def _exchange(self, request: bytes, request_id: int) -> bytes:
        kept = self.sock is not None and self.answered > 0
        try:
            answer = self._send_and_read(request, request_id)
        except (_Closed, ConnectionResetError, BrokenPipeError) as exc:
            if not kept or (isinstance(exc, _Closed) and exc.partial):
                raise
            self.close()  # the server dropped a kept, idle connection: ask again on a new one
            answer = self._send_and_read(request, request_id)
        self.answered += 1
        return answer

    def _send_and_read(self, request: bytes, request_id: int) -> bytes:
        sock = self.sock or self._connect()
        sock.sendall(request)
        head = _read_exactly(sock, ENVELOPE_SIZE)
        try:
            envelope = decode_envelope(head)
        except WireError as exc:
            raise HandleFailure(f"TCP: not a Handle message: {exc.message}") from None
        if envelope.request_id != request_id:
            raise HandleFailure(f"TCP: answered request id {envelope.request_id}, not {request_id}")
        return head + _read_exactly(sock, envelope.length)

    def _connect(self) -> socket.socket:
        self.sock = socket.create_connection(self.address, timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        self.answered = 0
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _Closed(Exception):
    """The server closed the connection; ``partial`` bytes of a message had come."""

    def __init__(self, partial: int) -> None:
        super().__init__(f"the server closed the connection after {partial} bytes of an answer")
        self.partial = partial


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise _Closed(len(buf))
        buf += chunk
    return bytes(buf)


def _os_error(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, _Closed):
        return str(exc)
    if isinstance(exc, TimeoutError) and str(exc) in ("", "timed out"):  # the socket's own words
        return f"TimeoutError: nothing within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}"
