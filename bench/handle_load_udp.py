"""The UDP engine: one connected non-blocking socket, epoll, many requests outstanding.

Replies are matched by request id from a fixed offset of the envelope; only the response
code is read, never the body. A reply CNRI splits into datagrams (492 bytes of message
each) is complete when all its parts have come. The timeout is the same for every
attempt, so deadlines come due in the order they were set and a FIFO holds them; entries
for requests already answered are skipped when they reach its head.
"""

from __future__ import annotations

import select
import socket
import time
from collections import deque

from bench.handle_load_base import REPLY_FIELDS, UDP_PART, Pace, RequestMix, Tally, patch_rid

_RCVBUF = 4 << 20


class _Pending:
    __slots__ = ("attempt", "buf", "parts", "rc", "t0")

    def __init__(self, t0: float, buf: bytearray) -> None:
        self.t0 = t0
        self.buf = buf
        self.attempt = 0
        self.parts = 0
        self.rc = 0


class UdpLoad:
    """One run against ``target``; ``run`` returns the Tally."""

    def __init__(self, target: tuple[str, int], mix: RequestMix, pace: Pace) -> None:
        self.mix = mix
        self.pace = pace
        self.tally = Tally()
        self.pending: dict[int, _Pending] = {}
        self.deadlines: deque[tuple[float, int, int]] = deque()  # (when, request id, attempt)
        family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self.sock.setblocking(False)
        self.sock.connect(target)
        self.buf = bytearray(65536)
        self.stop_at = 0.0

    def run(self) -> Tally:
        try:
            self._loop()
        finally:
            self.sock.close()
        return self.tally

    def _loop(self) -> None:
        pace = self.pace
        ep = select.epoll()
        ep.register(self.sock.fileno(), select.EPOLLIN)
        now = time.perf_counter()
        self.stop_at = now + pace.seconds
        drain_until = self.stop_at + pace.timeout * (pace.retries + 1)
        interval = 1.0 / pace.rate if pace.rate > 0 else 0.0
        next_send = now if interval else float("inf")
        if not interval:
            for _ in range(pace.concurrency):
                self._send(now)
        while True:
            if now >= self.stop_at and (not self.pending or now >= drain_until):
                break
            while next_send <= now and now < self.stop_at:
                self.tally.send_lag.append(now - next_send)
                self._send(now)
                next_send += interval
            self._expire(now)
            wake = min(next_send if now < self.stop_at else drain_until, self._next_deadline(drain_until))
            if ep.poll(max(0.0, wake - now)):
                self._receive()
            now = time.perf_counter()
        self.tally.timeouts += len(self.pending)
        ep.close()

    def _next_deadline(self, default: float) -> float:
        return self.deadlines[0][0] if self.deadlines else default

    def _send(self, now: float) -> None:
        rid, buf = self.mix.next()
        try:
            self.sock.send(buf)
        except OSError:  # ECONNREFUSED from an earlier ICMP, a full buffer: the request is lost
            self.tally.connect_errors += 1
            return
        self.tally.sent += 1
        self.pending[rid] = _Pending(now, buf)
        self.deadlines.append((now + self.pace.timeout, rid, 0))

    def _expire(self, now: float) -> None:
        deadlines, pending, tally = self.deadlines, self.pending, self.tally
        while deadlines and deadlines[0][0] <= now:
            _, rid, attempt = deadlines.popleft()
            p = pending.get(rid)
            if p is None or p.attempt != attempt:
                continue
            if attempt < self.pace.retries:
                self._retransmit(rid, p, now)
                continue
            del pending[rid]
            tally.timeouts += 1
            self._refill(now)

    def _retransmit(self, rid: int, p: _Pending, now: float) -> None:
        p.attempt += 1
        p.parts = 0
        patch_rid(p.buf, rid)
        try:
            self.sock.send(p.buf)
        except OSError:
            self.tally.connect_errors += 1
        self.tally.retransmits += 1
        self.deadlines.append((now + self.pace.timeout, rid, p.attempt))

    def _refill(self, now: float) -> None:
        if not self.pace.rate and now < self.stop_at:
            self._send(now)

    def _receive(self) -> None:
        sock, buf, pending, tally = self.sock, self.buf, self.pending, self.tally
        while True:
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                return
            except OSError:  # ICMP port unreachable: nothing listens; the requests will time out
                tally.connect_errors += 1
                return
            if n < 28:
                tally.malformed += 1
                continue
            rid, seq, length, rc = REPLY_FIELDS.unpack_from(buf)
            p = pending.get(rid)
            if p is None:
                tally.late += 1
                continue
            if seq == 0:
                p.rc = rc
            p.parts += 1
            if p.parts * UDP_PART >= length:
                now = time.perf_counter()
                del pending[rid]
                tally.answer(p.rc, now - p.t0, now < self.stop_at)
                self._refill(now)
