"""The Handle protocol's transports: UDP and TCP on one port, bounded against abuse.

UDP. Every worker reads its own socket of an SO_REUSEPORT group (``resolver.listeners``):
the kernel keeps one client socket's datagrams on one worker, so the parts of a
multi-datagram request meet in that worker's ``Reassembler``. A cached resolution is
answered inside ``datagram_received``, without a task. Against abuse:

* no amplification: an answer goes out over UDP only if it is at most one datagram (512
  bytes) or twice the request's size, whichever is more (a signed session setup answer,
  664 bytes to a 368-byte request, is sent in two parts as CNRI's server does); a larger
  one is replaced by an error saying so, and CNRI's client (like ours) then asks again over
  TCP, where the handshake proves the source address;
* each non-loopback source address may send ``udp_rate`` requests a second (token
  bucket, bounded table); past it, datagrams are dropped and counted;
* parts of multi-datagram requests are bounded per source and in total, and expire;
* requests waiting for the store are bounded per worker; past that, dropped and counted.

TCP. A connection may carry any number of messages, one after the other, answered in order,
and stays open, KEEP_ALIVE or not, until the client closes it (CNRI's clients send one and
close; China's SDKs send all theirs on one, and may log it in: ``resolver.handle.login``);
a client older than protocol 2.8 (CNRI's 7.x tools) is closed after a request without
KEEP_ALIVE, as CNRI's 7.x server does.
A message must arrive whole within ``message_timeout`` of its first byte, a connection with
nothing in flight is closed after ``idle_timeout``, and a worker holds at most
``max_connections``, at most ``max_connections_per_address`` of them from one client
address: half-open and slow connections cannot pile up, and one address cannot hold every
slot. A client that sends without reading is read no further once ``MAX_QUEUED`` requests
wait or its answers fill the transport's buffer, and cut off if it stays so for
``idle_timeout``. An envelope announcing more than 256 KiB is answered with a protocol error
and the connection closed.
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import ipaddress
import logging
import select
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import cast

from protocol.codes import ResponseCode
from protocol.wire.message import (
    ENVELOPE_SIZE,
    MAX_UDP_PACKET,
    PROTOCOL_VERSION,
    Envelope,
    Reassembler,
    WireError,
    decode_envelope,
    split_datagrams,
)
from protocol.wire.stream import Framer
from resolver import metrics
from resolver.config import DEFAULTS, Config
from resolver.handle.frontend import HandleFrontend, answer_code, error_answer
from resolver.handle.login import Link

log = logging.getLogger("resolver.handle")

RATE_SOURCES = 65_536  # source addresses whose UDP rate is tracked per worker
UDP_IN_FLIGHT = 2048  # UDP requests per worker waiting for an answer
SHUTDOWN_GRACE = 10.0
REASSEMBLY_SWEEP = 1.0  # seconds between two expiries of stale request parts


@dataclass(frozen=True, slots=True)
class HandleLimits:
    """The Handle listeners' limits; every default is ``Config``'s."""

    udp_rate: float = DEFAULTS.handle_udp_rate  # requests a second per source outside ``udp_exempt`` (0: none)
    udp_exempt: tuple[str, ...] = DEFAULTS.handle_udp_exempt
    message_timeout: float = DEFAULTS.handle_message_timeout
    idle_timeout: float = DEFAULTS.handle_idle_timeout
    max_connections: int = DEFAULTS.max_connections
    per_address: int = DEFAULTS.connections_per_address  # of those, from one client address

    @classmethod
    def of(cls, config: Config) -> HandleLimits:
        return cls(
            udp_rate=config.handle_udp_rate,
            udp_exempt=config.handle_udp_exempt,
            message_timeout=config.handle_message_timeout,
            idle_timeout=config.handle_idle_timeout,
            max_connections=config.max_connections,
            per_address=config.connections_per_address,
        )


class SourceRates:
    """Token buckets per source address (a burst of two seconds' worth), least recently seen forgotten first."""

    def __init__(self, rate: float, exempt: tuple[str, ...] = (), sources: int = RATE_SOURCES) -> None:
        self.rate = rate
        self.burst = 2 * rate
        self._sources = sources
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._networks = [ipaddress.ip_network(n, strict=False) for n in exempt]
        self._exempt: dict[str, bool] = {}

    def exempt(self, source: str) -> bool:
        known = self._exempt.get(source)
        if known is None:
            if len(self._exempt) >= self._sources:
                self._exempt.clear()
            try:
                address = ipaddress.ip_address(source)
                known = any(address in n for n in self._networks)
            except ValueError:
                known = False
            self._exempt[source] = known
        return known

    def allow(self, source: str, now: float) -> bool:
        if self.exempt(source):
            return True
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self._sources:
                self._buckets.popitem(last=False)
            self._buckets[source] = [self.burst - 1, now]
            return True
        self._buckets.move_to_end(source)
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1
        return True


def too_large_for_udp(answer: bytes) -> bytes:
    """The error that replaces an answer too large for one datagram (the client retries over TCP)."""
    env = decode_envelope(answer)
    op = int.from_bytes(answer[ENVELOPE_SIZE : ENVELOPE_SIZE + 4], "big", signed=True)
    message = f"the answer is {len(answer)} bytes, more than one {MAX_UDP_PACKET}-byte datagram; ask over TCP"
    return error_answer(env.request_id, env.session_id, env.version, op, ResponseCode.ERROR, message)


class UdpServer(asyncio.DatagramProtocol):
    def __init__(self, frontend: HandleFrontend, limits: HandleLimits) -> None:
        self._frontend = frontend
        self._cached = frontend.cached
        self._rates = SourceRates(limits.udp_rate, limits.udp_exempt) if limits.udp_rate > 0 else None
        self._parts = Reassembler()
        self._tasks: set[asyncio.Task[None]] = set()
        self._observe = metrics.observe
        self._transport: asyncio.DatagramTransport | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass
        self._sweep()

    def _sweep(self) -> None:
        before = self._parts.stats.expired
        self._parts.expire(time.monotonic())
        if self._parts.stats.expired > before:
            metrics.handle_dropped("udp", "fragments", self._parts.stats.expired - before)
        self._sweeper = asyncio.get_running_loop().call_later(REASSEMBLY_SWEEP, self._sweep)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        started = time.perf_counter()
        host = addr[0]
        if self._rates is not None and not self._rates.allow(host, time.monotonic()):
            metrics.handle_dropped("udp", "rate_limited")
            return
        answer = self._cached(data)
        if answer is not None:
            assert self._transport is not None
            if len(answer) <= MAX_UDP_PACKET:
                self._transport.sendto(answer, addr)
                self._observe("udp", "resolve", answer_code(answer), 0, time.perf_counter() - started)
                return
        if len(self._tasks) >= UDP_IN_FLIGHT:
            metrics.handle_dropped("udp", "overload")
            return
        message = self._whole(data, addr)
        if message is None:
            return
        task = asyncio.create_task(self._answer(message, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _whole(self, data: bytes, addr: tuple[str, int]) -> bytes | None:
        """The complete message ``data`` is, or completes; None while parts are missing."""
        if len(data) < ENVELOPE_SIZE or not data[2] & 0x20:  # not one part of several
            return data
        evicted = self._parts.stats.evicted
        try:
            whole = self._parts.add(addr, data, time.monotonic())
        except WireError:
            metrics.handle_dropped("udp", "fragments")
            return None
        if self._parts.stats.evicted > evicted:
            metrics.handle_dropped("udp", "fragments", self._parts.stats.evicted - evicted)
        return whole

    async def _answer(self, message: bytes, addr: tuple[str, int]) -> None:
        answer = await self._frontend.respond(message, addr[0], "udp")
        if len(answer) > MAX_UDP_PACKET and len(answer) > 2 * len(message):
            metrics.handle_dropped("udp", "too_large")
            answer = too_large_for_udp(answer)
        if self._transport is None or self._transport.is_closing():
            return
        if len(answer) <= MAX_UDP_PACKET:
            self._transport.sendto(answer, addr)
            return
        # CNRI's server leaves each part's truncated flag as the request's; clients place
        # parts by their sequence numbers.
        for part in split_datagrams(decode_envelope(answer), answer[ENVELOPE_SIZE:], mark_truncated=False):
            self._transport.sendto(part, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp: %s", exc)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE)
        if self._transport is not None:
            self._transport.close()


MAX_QUEUED = 32  # whole requests a connection may have waiting; past that it is not read
_SUGGEST_AT, _SUGGEST_BITS = 2, 0x03  # the envelope's suggested major version: 0 before protocol 2.8
_KEEP_ALIVE_AT, _KEEP_ALIVE_BIT = ENVELOPE_SIZE + 8, 0x02  # OpFlag.KEEP_ALIVE in the op flags' first byte


def _one_request(message: bytes) -> bool:
    """A request from a client before protocol 2.8 (CNRI's 7.x tools: no suggested version)
    without KEEP_ALIVE: such a client sends one request a connection and closes after reading,
    as CNRI's 7.x server expects; closing first spares the node the wake-up its close costs."""
    return (
        len(message) > _KEEP_ALIVE_AT
        and not message[_SUGGEST_AT] & _SUGGEST_BITS
        and not message[_KEEP_ALIVE_AT] & _KEEP_ALIVE_BIT
    )


ACCEPT_BATCH = 64  # connections accepted in one wake-up of the listener, at most
FIRST_READ = 65_536  # bytes read from a connection as it is accepted
ACCEPT_RETRY = 1.0  # seconds without accepting once the process is out of descriptors or memory
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class TcpServer:
    """The connections of one worker's TCP listener.

    It accepts them itself: a connection whose first read is one cached resolution from a
    client of one request a connection (CNRI's 7.x tools, ``_one_request``) is answered and
    closed there and then, with four system calls and no transport; every other connection
    (more to read, an admin request, a client that keeps it) is handed to the event loop
    as a ``TcpConnection``, with what was read. With the listener's TCP_DEFER_ACCEPT
    (``resolver.listeners``) the kernel wakes the node only once the request has arrived.
    """

    def __init__(self, frontend: HandleFrontend, limits: HandleLimits) -> None:
        self.frontend = frontend
        self.limits = limits
        self.connections: set[TcpConnection] = set()
        self.per_address: dict[str, int] = {}  # open connections by client address; none: no entry
        # Connections answered by the server itself and kept for their client's close or
        # next request, by descriptor: the socket, its client's address, the idle deadline.
        self.waiting: dict[int, tuple[_socket.socket, str, float]] = {}
        self._listener: socket.socket | None = None
        self._poller: select.epoll | None = None
        self._accepting = False
        self._handoffs: set[asyncio.Task[object]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def admit(self, address: str) -> bool:
        """Count one more connection from ``address``, unless it holds its share already."""
        held = self.per_address.get(address, 0)
        if held >= self.limits.per_address:
            return False
        self.per_address[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self.per_address.pop(address) - 1
        if held:
            self.per_address[address] = held

    async def start(self, sock: socket.socket) -> None:
        """Serve ``sock``'s connections. The listener and the connections waiting for their
        client's next move are watched through an epoll of this worker's own (Linux, as the
        node is), itself watched by the loop: the listener with EPOLLEXCLUSIVE, so that a
        connection wakes one worker, not all of them (every worker accepts from the one
        listener: watched directly, each connection would wake them all, and all but one would
        find nothing); a waiting connection costs two epoll_ctl calls and no loop object."""
        self._listener = sock
        self._poller = select.epoll()
        asyncio.get_running_loop().add_reader(self._poller.fileno(), self._ready)
        self._resume_accepting()
        self._sweeper = asyncio.create_task(self._sweep(), name="handle-tcp-sweep")

    def _resume_accepting(self) -> None:
        if self._listener is not None and self._poller is not None and not self._accepting:
            self._poller.register(self._listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
            self._accepting = True

    def _stop_accepting(self) -> None:
        if self._listener is not None and self._poller is not None and self._accepting:
            self._poller.unregister(self._listener.fileno())
            self._accepting = False

    def _ready(self) -> None:
        """The worker's epoll is readable: accept, or read from connections kept after their answer."""
        assert self._poller is not None and self._listener is not None
        listener = self._listener.fileno()
        for fd, _ in self._poller.poll(0):
            if fd == listener:
                if self._accepting:
                    self._accept()
            elif fd in self.waiting:
                self._next(fd)

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        for _ in range(ACCEPT_BATCH):
            try:
                fd, addr = listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # none left, or another worker took it, or the client gave up
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                # As asyncio's own accept loop: stop for a while rather than spin on the error.
                log.warning("tcp: cannot accept (%s); not accepting for %.0f s", exc, ACCEPT_RETRY)
                metrics.handle_dropped("tcp", "limit")
                self._stop_accepting()
                asyncio.get_running_loop().call_later(ACCEPT_RETRY, self._resume_accepting)
                return
            # The C socket, not socket.socket's Python wrapper: a third of this path's Python.
            self._serve(_socket.socket(listener.family, listener.type, listener.proto, fd), addr)

    def _serve(self, conn: _socket.socket, addr: tuple[str, int]) -> None:
        """Answer ``conn``'s one cached request here, or hand the connection to the loop."""
        try:
            first = conn.recv(FIRST_READ, socket.MSG_DONTWAIT)
        except BlockingIOError:
            first = b""  # nothing yet: the connection reads it
        except OSError:
            conn.close()  # reset before it was read
            return
        else:
            if not first:  # closed without a request
                conn.close()
                return
        if first and self._answer(conn, addr, first):
            return
        self._hand_off(conn, first, b"")

    def _answer(self, conn: _socket.socket, addr: tuple[str, int], request: bytes) -> bool:
        """Answer ``request`` if its answer is cached; False if it is not (nothing was sent)."""
        started = time.perf_counter()
        answer = self.frontend.cached(request)
        if answer is None:
            return False
        try:
            sent = conn.send(answer, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        except OSError:
            conn.close()
            return True
        metrics.observe("tcp", "resolve", answer_code(answer), 0, time.perf_counter() - started)
        if sent < len(answer):
            self._hand_off(conn, b"", answer[sent:], keep=not _one_request(request))
        elif _one_request(request):
            conn.close()  # the answer is in the kernel's buffer: it is still delivered
        else:
            self._await_next(conn, addr)
        return True

    def _await_next(self, conn: _socket.socket, addr: tuple[str, int]) -> None:
        """After answering a client that keeps its connection: wait for its close (CNRI's
        9.x tools) or its next request (China's SDKs: the connection is then handed over)."""
        address = str(addr[0])
        if len(self.connections) + len(self.waiting) >= self.limits.max_connections:
            metrics.handle_dropped("tcp", "limit")
            conn.close()
            return
        if not self.admit(address):
            metrics.handle_dropped("tcp", "address_limit")
            conn.close()
            return
        assert self._poller is not None
        fd = conn.fileno()
        self.waiting[fd] = (conn, address, time.monotonic() + self.limits.idle_timeout)
        self._poller.register(fd, select.EPOLLIN)

    def _next(self, fd: int) -> None:
        conn = self._unwait(fd)[0]
        try:
            data = conn.recv(FIRST_READ, socket.MSG_DONTWAIT)
        except BlockingIOError:
            self._hand_off(conn, b"", b"")
            return
        except OSError:
            conn.close()
            return
        if not data:
            conn.close()  # the client is done
        else:
            self._hand_off(conn, data, b"")

    def _unwait(self, fd: int) -> tuple[_socket.socket, str, float]:
        assert self._poller is not None
        self._poller.unregister(fd)
        held = self.waiting.pop(fd)
        self.release(held[1])
        return held

    def _hand_off(self, conn: _socket.socket, first: bytes, unsent: bytes, keep: bool = False) -> None:
        """Have the loop serve ``conn`` as a ``TcpConnection``, its stream starting with ``first``
        (or, with ``unsent``, finish sending that answer, then close unless ``keep``)."""
        sock = socket.socket(conn.family, conn.type, conn.proto, fileno=conn.detach())
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        task: asyncio.Task[object] = loop.create_task(
            loop.connect_accepted_socket(lambda: TcpConnection(self, first, unsent, keep), sock)
        )
        self._handoffs.add(task)
        task.add_done_callback(lambda done: self._handed(done, sock))

    def _handed(self, task: asyncio.Task[object], conn: socket.socket) -> None:
        self._handoffs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("tcp: connection not taken over: %s", task.exception())
            conn.close()

    async def _sweep(self) -> None:
        step = min(self.limits.message_timeout, self.limits.idle_timeout, 1.0) / 4
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.expire(now)
            for fd in [fd for fd, (_, _, deadline) in self.waiting.items() if now > deadline]:
                metrics.handle_dropped("tcp", "idle")
                self._unwait(fd)[0].close()

    async def close(self) -> None:
        self._stop_accepting()
        if self._handoffs:
            await asyncio.wait(set(self._handoffs), timeout=SHUTDOWN_GRACE)
        if self._sweeper is not None:
            self._sweeper.cancel()
        working = {c.worker for c in self.connections if c.worker is not None and not c.worker.done()}
        if working:
            await asyncio.wait(working, timeout=SHUTDOWN_GRACE)
        for connection in list(self.connections):
            connection.close()
        for fd in list(self.waiting):
            self._unwait(fd)[0].close()
        if self._poller is not None:
            asyncio.get_running_loop().remove_reader(self._poller.fileno())
            self._poller.close()
            self._poller = None
        self._listener = None


class TcpConnection(Link, asyncio.Protocol):
    """Messages one after the other: envelope, then as many bytes as it announces; answered
    in order, each once the one before it is.

    A connection stays open for more requests, KEEP_ALIVE or not, until the client closes it
    or leaves it idle past ``idle_timeout``: China's SDKs send every request on one connection
    without the flag, and their login (``resolver.handle.login``; this object is the ``Link``)
    lasts as long as it. Clients that close after reading their answer (CNRI's 9.x tools) make
    the node read the end of the stream and close its side; they keep the TIME_WAIT.

    The one exception is a client older than protocol 2.8 (its envelope suggests no version:
    CNRI's 7.x tools), which sends one request a connection: a request of its without
    KEEP_ALIVE is answered and the connection closed, as CNRI's 7.x server does, sparing the
    wake-up its close would cost (about a fifth of the server's CPU per such answer).

    A client that sends without reading meets backpressure: at most ``MAX_QUEUED`` requests
    wait, and while its answers pile up unread (the transport's buffer over its high-water
    mark) no more are answered or read; a client that stays so past ``idle_timeout`` is cut off.
    """

    # Per-connection states that are rarely set: class defaults, so that a connection that
    # never needs them (a CNRI client's one request) stores nothing for them.
    _paused = False  # reading is paused: too many requests queued, or answers unread
    _writable: asyncio.Future[None] | None = None  # while the client reads too slowly: set when it catches up
    _eof = False  # the client has finished sending: close once its requests are answered
    _last_one = False  # the last request answered came from a client of one request a connection
    _first = b""  # read by the server as it accepted the connection: the first bytes of the stream
    _unsent = b""  # the rest of an answer the server began to send itself: sent, then closed unless kept
    _keep = False

    def __init__(self, server: TcpServer, first: bytes = b"", unsent: bytes = b"", keep: bool = False) -> None:
        self._server = server
        if first:
            self._first = first
        if unsent:
            self._unsent = unsent
            self._keep = keep
        self._frontend = server.frontend
        self._framer = Framer()
        self._transport: asyncio.Transport | None = None
        self.deadline = 0.0  # monotonic; 0: none (a request is being answered)
        self.waiting_for = "idle"  # or "message", or "reader": what the deadline is for
        self._queue: list[bytes] = []
        self.worker: asyncio.Task[None] | None = None
        self.busy = False
        self._address = ""  # the client's address while counted in the server's ``per_address``

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        server = self._server
        if len(server.connections) + len(server.waiting) >= server.limits.max_connections:
            metrics.handle_dropped("tcp", "limit")
            self._transport.abort()
            return
        address = self._peer()
        if address and not server.admit(address):
            metrics.handle_dropped("tcp", "address_limit")
            self._transport.abort()
            return
        self._address = address
        server.connections.add(self)
        self.deadline = time.monotonic() + server.limits.idle_timeout
        self.waiting_for = "idle"
        if self._unsent:
            self._transport.write(self._unsent)
            if not self._keep:
                self._transport.close()
        elif self._first:
            first, self._first = self._first, b""
            self.data_received(first)
            if self._paused:  # the loop starts reading once this returns, whatever was asked: ask again then
                self._paused = False
                asyncio.get_running_loop().call_soon(self._flow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        if self._address:
            self._server.release(self._address)
            self._address = ""
        self.deadline = 0.0
        if self.identity is not None:  # set on login only: a connection that never logged in stores nothing more
            self.identity = None
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()

    def data_received(self, data: bytes) -> None:
        framer = self._framer
        if not framer.pending and not self.busy and self.identity is None:
            # The usual case: one whole request in one read, its answer cached. ``cached``
            # answers only bytes that are exactly one message (at least a header and a
            # handle long), so this read needs no framing. A logged-in connection's
            # resolutions go to ``respond``, which counts them against its quota.
            started = time.perf_counter()
            answer = self._frontend.cached(data)
            if answer is not None:
                assert self._transport is not None
                self._transport.write(answer)
                if _one_request(data):
                    self._transport.close()  # after what was written is sent
                else:
                    self._arm(self._server.limits.idle_timeout, "idle")
                metrics.observe("tcp", "resolve", answer_code(answer), 0, time.perf_counter() - started)
                return
        try:
            self._queue += framer.feed(data)
        except WireError as exc:
            self._refuse(exc)
            return
        if self._queue and not self.busy:
            self.busy = True
            self.deadline = 0.0
            self.worker = asyncio.create_task(self._drain())
        elif framer.pending and (not self.deadline or self.waiting_for != "message"):
            self._arm(self._server.limits.message_timeout, "message")
        if len(self._queue) >= MAX_QUEUED:
            self._flow()

    def eof_received(self) -> bool | None:
        if self.busy or self._queue:
            self._eof = True
            return True  # half-closed: the requests it sent are still answered, then closed
        return None  # closes

    async def _drain(self) -> None:
        try:
            while self._queue:
                message = self._queue.pop(0)
                if self._paused:
                    self._flow()
                cached = self._frontend.cached(message) if self.identity is None else None
                answer = cached or await self._frontend.respond(message, self._peer(), "tcp", self)
                if self._transport is None or self._transport.is_closing():
                    return
                self._transport.write(answer)
                self._last_one = _one_request(message)
                if self._writable is not None:
                    await self._caught_up()
        finally:
            self.busy = False
            self._after_drain()

    def _after_drain(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        limits = self._server.limits
        if self._eof or (self._last_one and not self._queue and not self._framer.pending):
            transport.close()  # after what was written is sent
        elif self._framer.pending:  # part of the next message has come
            self._arm(limits.message_timeout, "message")
        else:
            self._arm(limits.idle_timeout, "idle")

    async def _caught_up(self) -> None:
        """Wait while the client reads too slowly, at most ``idle_timeout`` (the sweep's deadline)."""
        self._arm(self._server.limits.idle_timeout, "reader")
        writable = self._writable
        if writable is not None:
            await writable
        self.deadline = 0.0

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()
        self._flow()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)
        self._flow()

    def _flow(self) -> None:
        """Read while fewer than ``MAX_QUEUED`` requests wait and the client reads its answers."""
        pause = len(self._queue) >= MAX_QUEUED or self._writable is not None
        transport = self._transport
        if pause == self._paused or transport is None or transport.is_closing():
            return
        self._paused = pause
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _peer(self) -> str:
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        return str(peer[0]) if peer else ""

    def _refuse(self, exc: WireError) -> None:
        """Answer an envelope whose length is out of bounds, and close: the stream has lost its framing."""
        metrics.handle_dropped("tcp", "oversize")
        envelope = exc.envelope or Envelope()
        answer = error_answer(  # under the ids as read (Java ints, signed), as every other error answer
            envelope.request_id,
            envelope.session_id,
            PROTOCOL_VERSION,
            None,
            ResponseCode.PROTOCOL_ERROR,
            exc.message,
        )
        assert self._transport is not None
        self._transport.write(answer)
        self.close()

    def _arm(self, seconds: float, reason: str) -> None:
        # A deadline, not a timer: the server's sweep closes what is past it (a timer per
        # connection cost more than answering a cached request).
        self.deadline = time.monotonic() + seconds
        self.waiting_for = reason

    def expire(self, now: float) -> None:
        """Close this connection if it waited past its deadline (busy only while its client does not read)."""
        if not self.deadline or now <= self.deadline or (self.busy and self.waiting_for != "reader"):
            return
        self.deadline = 0.0
        if self.waiting_for == "reader":  # what it was sent would never be read: no flushing it
            metrics.handle_dropped("tcp", "stalled")
            if self._transport is not None:
                self._transport.abort()
            return
        metrics.handle_dropped("tcp", "timeout" if self.waiting_for == "message" else "idle")
        self.close()

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


class HandleUdpListener:
    """A worker's UDP socket of the Handle port, served until closed."""

    def __init__(self, frontend: HandleFrontend, limits: HandleLimits, sock: socket.socket) -> None:
        self._sock = sock
        self._protocol = UdpServer(frontend, limits)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self._protocol, sock=self._sock)

    async def close(self) -> None:
        await self._protocol.close()


class HandleTcpListener:
    def __init__(self, frontend: HandleFrontend, limits: HandleLimits, sock: socket.socket) -> None:
        self._sock = sock
        self._server = TcpServer(frontend, limits)

    async def start(self) -> None:
        await self._server.start(self._sock)

    async def close(self) -> None:
        await self._server.close()
