"""The UDP engine: one connected datagram endpoint on uvloop, many requests outstanding.

Measured against a raw non-blocking socket driven by ``select.epoll`` in the same
process, both against the same responder (32 outstanding, 3 s runs, three alternations):
uvloop cost the client 16–17.5 CPU µs per answer, epoll 20.7–21.8 (user 9–10.6 against
13.3–14.1; the kernel's share is the same). uvloop's loop runs in C and hands each datagram
to ``datagram_received`` without a Python-level poll, recv and EAGAIN per wake-up.
(Over TCP it is the other way round; see bench/handle_load_tcp.py.)

Requests go round-robin over ``sockets`` connected sockets (source ports): a server that
spreads UDP over workers with SO_REUSEPORT (idnode) hashes each source port to one worker,
so a single socket would load one worker only; CNRI's clients also use a new port per
request. Replies are matched by request id at a fixed envelope offset; only the response code is
read, never the body. A reply CNRI splits into datagrams (492 bytes of message each) is
complete when all its parts came. The timeout is the same for every attempt, so deadlines
come due in the order they were set: a FIFO holds them, and entries of requests already
answered are dropped when they reach its head. A timer checks it every 10 ms (1 ms in
open loop, which also sends the requests that came due).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import cast

import uvloop

from bench.handle_load_base import REPLY_FIELDS, UDP_PART, Pace, RequestMix, Tally, patch_rid
from protocol.codes import ResponseCode

_Pending = tuple[float, bytearray, int]  # first send, request bytes, attempt
_TICK_CLOSED = 0.01
_TICK_OPEN = 0.001


class UdpLoad(asyncio.DatagramProtocol):
    """One run against ``target``; ``run`` returns the Tally (it runs its own event loop)."""

    def __init__(self, target: tuple[str, int], mix: RequestMix, pace: Pace, *, sockets: int = 16) -> None:
        if sockets < 1:
            raise ValueError(f"a UDP load needs at least one socket, not {sockets}")
        self.target = target
        self.sockets = sockets
        self.mix = mix
        self.pace = pace
        self.tally = Tally()
        self.pending: dict[int, _Pending] = {}
        self.partial: dict[int, tuple[int, int]] = {}  # replies in several datagrams: parts seen, code
        self.deadlines: deque[tuple[float, int, int]] = deque()  # (when, request id, attempt)
        self.interval = 1.0 / pace.rate if pace.rate > 0 else 0.0
        self.stop_at = self.drain_until = self.next_send = 0.0
        self.senders: list[Callable[[bytes], None]] = []
        self.next_sender: Callable[[], Callable[[bytes], None]] = iter(()).__next__
        self.done: asyncio.Future[None] | None = None

    def run(self) -> Tally:
        uvloop.run(self._main())
        return self.tally

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        transports = [
            (await loop.create_datagram_endpoint(lambda: self, remote_addr=self.target))[0] for _ in range(self.sockets)
        ]
        self.next_sender = itertools.cycle(self.senders).__next__
        try:
            now = time.perf_counter()
            self.stop_at = now + self.pace.seconds
            self.drain_until = self.stop_at + self.pace.timeout * (self.pace.retries + 1)
            self.next_send = now
            if not self.interval:
                for _ in range(self.pace.concurrency):
                    self._send(now)
            self._tick()
            await self.done
        finally:
            for transport in transports:
                transport.close()
        self.tally.timeouts += len(self.pending)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.senders.append(cast(asyncio.DatagramTransport, transport).sendto)  # uvloop's is not a subclass

    def error_received(self, exc: Exception) -> None:
        self.tally.unreachable += 1  # ICMP port unreachable: nothing listens there

    def _tick(self) -> None:
        now = time.perf_counter()
        if now >= self.stop_at and (not self.pending or now >= self.drain_until):
            if self.done is not None and not self.done.done():
                self.done.set_result(None)
            return
        if self.interval and now < self.stop_at:
            self._due(now)
        if self.deadlines and self.deadlines[0][0] <= now:
            self._expire(now)
        asyncio.get_running_loop().call_later(_TICK_OPEN if self.interval else _TICK_CLOSED, self._tick)

    def _due(self, now: float) -> None:
        """Open loop: every request whose time has come."""
        while self.next_send <= now:
            self.tally.send_lag.append(now - self.next_send)
            self._send(now)
            self.next_send += self.interval

    def _send(self, now: float) -> None:
        rid, buf = self.mix.next()
        self.next_sender()(bytes(buf))  # a copy: uvloop may queue it, and the template is reused
        self.tally.sent += 1
        self.pending[rid] = (now, buf, 0)
        self.deadlines.append((now + self.pace.timeout, rid, 0))

    def _expire(self, now: float) -> None:
        deadlines, pending = self.deadlines, self.pending
        while deadlines and deadlines[0][0] <= now:
            _, rid, attempt = deadlines.popleft()
            p = pending.get(rid)
            if p is None or p[2] != attempt:
                continue
            if attempt < self.pace.retries:
                self._retransmit(rid, p, now)
                continue
            del pending[rid]
            self.partial.pop(rid, None)
            self.tally.timeouts += 1
            if not self.interval and now < self.stop_at:
                self._send(now)

    def _retransmit(self, rid: int, p: _Pending, now: float) -> None:
        attempt = p[2] + 1
        self.pending[rid] = (p[0], p[1], attempt)
        self.partial.pop(rid, None)
        patch_rid(p[1], rid)
        self.next_sender()(bytes(p[1]))
        self.tally.retransmits += 1
        self.deadlines.append((now + self.pace.timeout, rid, attempt))

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        tally = self.tally
        if len(data) < REPLY_FIELDS.size:
            tally.malformed += 1
            return
        rid, seq, length, rc = REPLY_FIELDS.unpack_from(data)
        p = self.pending.pop(rid, None)
        if p is None:
            tally.late += 1
            return
        if length > UDP_PART:
            whole = self._part(rid, p, seq, length, rc)
            if whole is None:
                return
            rc = whole
        now = time.perf_counter()
        tally.latencies.append(now - p[0])
        tally.answered += 1
        if rc == ResponseCode.SUCCESS:
            tally.success += 1
        else:
            tally.count_code(rc)
        if now < self.stop_at:
            tally.answered_in_window += 1
            if not self.interval:
                self._send(now)

    def _part(self, rid: int, p: _Pending, seq: int, length: int, rc: int) -> int | None:
        """One datagram of a reply in several: the reply's code once all parts came, else None."""
        seen, code = self.partial.pop(rid, (0, 0))
        seen += 1
        if seq == 0:
            code = rc
        if seen * UDP_PART >= length:
            return code
        self.partial[rid] = (seen, code)
        self.pending[rid] = p
        return None
