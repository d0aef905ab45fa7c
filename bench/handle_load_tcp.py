"""The TCP engine: ``concurrency`` non-blocking connections driven by one epoll loop.

CNRI's clients open a connection per request and its server closes it after the reply,
so that is the default: a request's latency includes connect. With ``keepalive`` the
requests carry the KEEP_ALIVE op flag and up to ``per_conn`` of them go one after another
on one connection; a server that closes anyway shows up as ``reconnects`` (the request is
sent again on a new connection, its latency counted from the first send).

On loopback the handshake completes inside ``connect``, so the request is sent at once and
epoll is only asked for the reply (EPOLLOUT only when that send would block). Raw sockets
and ``select.epoll`` cost the client 28–31 CPU µs per connection-and-answer against the
test responder, a Protocol per connection on uvloop 42–43 (a task and a transport per
connection); for UDP the order is reversed (bench/handle_load_udp.py).
"""

from __future__ import annotations

import errno
import heapq
import select
import socket
import time

from bench.handle_load_base import LENGTH_OFFSET, RC_OFFSET, RID_OFFSET, Pace, RequestMix, Tally

_ENVELOPE = 20
_SCAN = 0.01  # how often connections are checked for timeouts


class _Conn:
    __slots__ = ("deadline", "fd", "inbuf", "out", "req", "rid", "served", "sock", "t0", "writing")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.rid = 0  # 0: no request outstanding
        self.t0 = 0.0
        self.deadline = 0.0
        self.req = b""  # the request, whole, for a resend
        self.out = b""  # what of it is not sent yet
        self.inbuf = bytearray()
        self.served = 0
        self.writing = False  # registered for EPOLLOUT rather than EPOLLIN


class TcpLoad:
    """One run against ``target``; ``run`` returns the Tally."""

    def __init__(
        self, target: tuple[str, int], mix: RequestMix, pace: Pace, *, keepalive: bool = False, per_conn: int = 100
    ) -> None:
        self.target = target
        self.family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        self.mix = mix
        self.pace = pace
        self.keepalive = keepalive
        self.per_conn = per_conn if keepalive else 1
        self.tally = Tally()
        self.ep = select.epoll()
        self.conns: dict[int, _Conn] = {}
        self.idle: list[_Conn] = []  # open-loop keepalive: connections waiting for a request
        self.restarts: list[float] = []  # closed loop: slots whose connect failed, retried at these times
        self.stop_at = 0.0

    def run(self) -> Tally:
        try:
            self._loop()
        finally:
            for conn in list(self.conns.values()):
                conn.sock.close()
            self.ep.close()
        return self.tally

    def _loop(self) -> None:
        pace = self.pace
        now = time.perf_counter()
        self.stop_at = now + pace.seconds
        drain_until = self.stop_at + pace.timeout
        interval = 1.0 / pace.rate if pace.rate > 0 else 0.0
        next_send = now if interval else float("inf")
        next_scan = now + _SCAN
        if not interval:
            for _ in range(pace.concurrency):
                self._request(None, now)
        while True:
            busy = self._busy()
            if now >= self.stop_at and (not busy or now >= drain_until):
                break
            while next_send <= now and now < self.stop_at:
                self.tally.send_lag.append(now - next_send)
                self._due(now, busy)
                busy += 1
                next_send += interval
            while self.restarts and self.restarts[0] <= now and now < self.stop_at:
                heapq.heappop(self.restarts)
                self._request(None, now)
            if now >= next_scan:
                self._expire(now)
                next_scan = now + _SCAN
            wake = min(next_send, next_scan, self.restarts[0] if self.restarts else next_scan)
            for fd, events in self.ep.poll(max(0.0, wake - now)):
                self._event(fd, events)
            now = time.perf_counter()
        self.tally.timeouts += self._busy()

    def _busy(self) -> int:
        return len(self.conns) - len(self.idle)

    def _due(self, now: float, busy: int) -> None:
        if self.idle:
            self._request(self.idle.pop(), now)
        elif busy < self.pace.concurrency:
            self._request(None, now)
        else:
            self.tally.skipped += 1

    def _request(self, conn: _Conn | None, now: float, resend: tuple[int, bytes, float] | None = None) -> None:
        """Send the next request (or ``resend``) on ``conn``, or on a new connection."""
        if conn is None:
            conn = self._connect(now)
            if conn is None:
                return
        if resend is None:
            rid, buf = self.mix.next()
            conn.rid, conn.req, conn.t0 = rid, bytes(buf), now
            self.tally.sent += 1
        else:
            conn.rid, conn.req, conn.t0 = resend
        conn.out = conn.req
        conn.deadline = now + self.pace.timeout
        conn.inbuf = bytearray()
        self._write(conn)

    def _connect(self, now: float) -> _Conn | None:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(self.target)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._failed(now)
            return None
        if self.keepalive:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock)
        self.conns[conn.fd] = conn
        self.ep.register(conn.fd, select.EPOLLIN)
        return conn

    def _failed(self, now: float) -> None:
        """A connection that could not carry its request: counted, its slot retried a little later."""
        self.tally.connect_errors += 1
        if not self.pace.rate:
            heapq.heappush(self.restarts, now + 0.001)

    def _write(self, conn: _Conn) -> None:
        try:
            n = conn.sock.send(conn.out)
        except BlockingIOError:
            n = 0
        except OSError:
            self._lost(conn)
            return
        conn.out = conn.out[n:]
        if bool(conn.out) != conn.writing:
            conn.writing = not conn.writing
            self.ep.modify(conn.fd, select.EPOLLOUT if conn.writing else select.EPOLLIN)

    def _event(self, fd: int, events: int) -> None:
        conn = self.conns.get(fd)
        if conn is None:
            return
        if conn.out and events & select.EPOLLOUT:
            self._write(conn)
            return
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._data(conn, data)
        else:
            self._eof(conn)

    def _data(self, conn: _Conn, data: bytes) -> None:
        if conn.inbuf or len(data) < _ENVELOPE:
            conn.inbuf += data
            data = bytes(conn.inbuf)
            if len(data) < _ENVELOPE:
                return
        need = _ENVELOPE + int.from_bytes(data[LENGTH_OFFSET:_ENVELOPE], "big")
        if len(data) < need:
            conn.inbuf = bytearray(data)
            return
        self._answered(conn, data)

    def _answered(self, conn: _Conn, data: bytes) -> None:
        now = time.perf_counter()
        rid = int.from_bytes(data[RID_OFFSET : RID_OFFSET + 4], "big", signed=True)
        if rid != conn.rid or len(data) < RC_OFFSET + 4:
            self.tally.malformed += 1
        else:
            rc = int.from_bytes(data[RC_OFFSET : RC_OFFSET + 4], "big", signed=True)
            self.tally.answer(rc, now - conn.t0, now < self.stop_at)
        conn.rid = 0
        conn.served += 1
        self._next(conn, now)

    def _next(self, conn: _Conn, now: float) -> None:
        """After a reply: the next request on the same connection, or on a new one, or none."""
        reuse = conn.served < self.per_conn and now < self.stop_at
        if not reuse:
            self._drop(conn)
        if now >= self.stop_at:
            return
        if not self.pace.rate:
            self._request(conn if reuse else None, now)
        elif reuse:
            self.idle.append(conn)

    def _eof(self, conn: _Conn) -> None:
        if conn.rid == 0:  # an idle kept-alive connection the server closed
            self._drop(conn)
            self.tally.reconnects += 1
        else:
            self._lost(conn)

    def _lost(self, conn: _Conn) -> None:
        """The connection died with a request on it: sent again if the connection had served
        others before (the server does not keep connections), else a failure."""
        now = time.perf_counter()
        self._drop(conn)
        if conn.served and not conn.inbuf:
            self.tally.reconnects += 1
            self._request(None, now, (conn.rid, conn.req, conn.t0))
        elif conn.inbuf or conn.out != conn.req:  # the request went out: the server closed on it
            self.tally.closed_early += 1
            if not self.pace.rate and now < self.stop_at:
                self._request(None, now)
        else:
            self._failed(now)

    def _drop(self, conn: _Conn) -> None:
        self.conns.pop(conn.fd, None)
        if conn in self.idle:
            self.idle.remove(conn)
        conn.sock.close()

    def _expire(self, now: float) -> None:
        late = [c for c in self.conns.values() if c.rid and c.deadline <= now]
        for conn in late:
            self.tally.timeouts += 1
            self._drop(conn)
            if not self.pace.rate and now < self.stop_at:
                self._request(None, now)
