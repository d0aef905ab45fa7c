"""Every key asked once of every worker of a node: client sockets mapped to the worker that
serves them, and pipelined UDP and HTTP/1.1 drivers cheap enough for a million keys.

Each worker of a node keeps a cache of its own. The kernel hands a UDP datagram to the
worker whose SO_REUSEPORT socket the client's address and port hash to, and an HTTP
keep-alive connection stays with the worker that accepted it; so a client socket is one
worker's, and which one is learned by asking one key many times through it and seeing
whose CPU time grew (``owner``). A ``Lane`` is one such socket and the requests to send
through it, ``window`` in flight (HTTP: pipelined on the connection, which aiohttp answers
in order); ``drive`` runs lanes side by side from one thread and one selector and counts
every answer that is not a success (Handle response code 1, HTTP 200).
"""

from __future__ import annotations

import re
import selectors
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from bench.handle_load_base import REPLY_FIELDS, UDP_PART, LoadError, patch_rid
from bench.proc_cpu import cpu_seconds_each
from protocol.codes import ResponseCode

WINDOW = 32
STALL_S = 2.0  # no answer on a lane for this long: UDP resends what is in flight, HTTP gives up
STALLS = 5  # UDP resends in a row without an answer before the lane gives up
OWNER_SHARE = 0.8  # of the workers' CPU growth during a burst, for a socket to be that worker's
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class Lane:
    """One socket and the requests to send through it (indexes into the caller's requests)."""

    def __init__(self, sock: socket.socket, order: Sequence[int], window: int = WINDOW) -> None:
        self.sock, self.order, self.window = sock, order, window
        self.next = 0  # position in ``order`` of the next request to send
        self.in_flight = 0
        self.ok = 0
        self.failures: Counter[int] = Counter()  # response codes (UDP) or HTTP statuses, not successes
        self.stalls = 0
        self.last = time.monotonic()

    @property
    def finished(self) -> bool:
        return self.next >= len(self.order) and self.in_flight == 0

    def answered(self, success: bool, code: int) -> None:
        self.in_flight -= 1
        self.stalls = 0
        self.last = time.monotonic()
        if success:
            self.ok += 1
        else:
            self.failures[code] += 1

    def fill(self) -> None:
        """Send requests until ``window`` are in flight or none is left."""
        raise NotImplementedError

    def readable(self) -> None:
        """Read what came and count the answers."""
        raise NotImplementedError

    def stalled(self) -> None:
        raise LoadError(f"no answer for {STALL_S:.0f} s on {self.sock.getsockname()}")


class UdpLane(Lane):
    """Handle resolution requests (``templates``, bytes patched with each request's id) over a
    connected UDP socket; requests in flight are sent again after ``STALL_S`` without an answer."""

    def __init__(
        self, sock: socket.socket, templates: Sequence[bytearray], order: Sequence[int], window: int = WINDOW
    ) -> None:
        super().__init__(sock, order, window)
        self.templates = templates
        self.pending: dict[int, int] = {}  # request id (position in order + 1) -> template index
        self.late = 0

    def fill(self) -> None:
        order, templates, send = self.order, self.templates, self.sock.send
        while self.in_flight < self.window and self.next < len(order):
            i = order[self.next]
            self.next += 1
            patch_rid(templates[i], self.next)
            send(templates[i])
            self.pending[self.next] = i
            self.in_flight += 1

    def readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if len(data) < REPLY_FIELDS.size:
                raise LoadError(f"a reply of {len(data)} bytes is too short to be one")
            rid, _, length, rc = REPLY_FIELDS.unpack_from(data)
            if length > UDP_PART:
                raise LoadError("an answer in several datagrams: this driver reads one-datagram answers only")
            if self.pending.pop(rid, None) is None:
                self.late += 1  # the answer to a request sent again
                continue
            self.answered(rc == ResponseCode.SUCCESS, rc)

    def stalled(self) -> None:
        self.stalls += 1
        if self.stalls > STALLS:
            super().stalled()
        for rid, i in self.pending.items():
            patch_rid(self.templates[i], rid)
            self.sock.send(self.templates[i])


class HttpLane(Lane):
    """``GET {prefix}{name}`` for names in ``order``, pipelined on one keep-alive connection."""

    def __init__(
        self, sock: socket.socket, names: Sequence[str], order: Sequence[int], prefix: str, window: int = WINDOW
    ) -> None:
        super().__init__(sock, order, window)
        self.names, self.prefix = names, prefix
        self.buf = bytearray()

    def fill(self) -> None:
        count = min(self.window - self.in_flight, len(self.order) - self.next)
        if count <= 0:
            return
        names, order, prefix = self.names, self.order, self.prefix
        first = self.next
        batch = "".join(
            f"GET {prefix}{names[order[k]]} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" for k in range(first, first + count)
        )
        self.sock.sendall(batch.encode())
        self.next += count
        self.in_flight += count

    def readable(self) -> None:
        data = self.sock.recv(1 << 18)
        if not data:
            raise LoadError(f"the node closed connection {self.sock.getsockname()} with {self.in_flight} in flight")
        buf = self.buf
        buf += data
        start = 0
        while (head_end := buf.find(b"\r\n\r\n", start)) >= 0:
            length = _CONTENT_LENGTH.search(buf, start, head_end)
            if length is None:
                raise LoadError(
                    "a response without Content-Length: " + bytes(buf[start:head_end]).decode(errors="replace")
                )
            end = head_end + 4 + int(length.group(1))
            if end > len(buf):
                break
            status = int(buf[start + 9 : start + 12])
            self.answered(status == 200, status)
            start = end
        del buf[:start]


def drive(lanes: Sequence[Lane], label: str = "", every: float = 10.0) -> None:
    """Run ``lanes`` until each has all its answers; with a ``label``, say how far every ``every`` s."""
    selector = selectors.DefaultSelector()
    for lane in lanes:
        selector.register(lane.sock, selectors.EVENT_READ, lane)
        lane.fill()
    started = shown = time.monotonic()
    total = sum(len(lane.order) for lane in lanes)
    try:
        while not all(lane.finished for lane in lanes):
            for key, _ in selector.select(STALL_S / 4):
                lane = key.data
                lane.readable()
                lane.fill()
            now = time.monotonic()
            for lane in lanes:
                if not lane.finished and now - lane.last > STALL_S:
                    lane.last = now
                    lane.stalled()
            if label and now - shown >= every:
                shown = now
                done = sum(lane.ok + lane.failures.total() for lane in lanes)
                print(f"  {label}: {done:,}/{total:,} answers, {now - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        selector.close()


def owner(grew: Mapping[int, float], share: float = OWNER_SHARE) -> int | None:
    """The process whose CPU grew by at least ``share`` of what all of them grew; None if none did."""
    total = sum(grew.values())
    if total <= 0:
        return None
    pid = max(grew, key=lambda p: grew[p])
    return pid if grew[pid] >= share * total else None


def map_sockets(
    workers: Sequence[int],
    open_socket: Callable[[], socket.socket],
    burst: Callable[[socket.socket], Lane],
    count: int,
    limit: int,
) -> dict[int, list[socket.socket]]:
    """``count`` sockets (more, up to ``limit``, until every worker has one), each with the worker
    that served a ``burst`` through it; sockets whose worker was unclear are closed.

    TCP connections need the margin: the workers accept from one listening socket, and an
    idle node hands most new connections to the same worker (24 to reach the second, seen)."""
    mapped: dict[int, list[socket.socket]] = {pid: [] for pid in workers}
    opened = 0
    while opened < count or (not all(mapped.values()) and opened < limit):
        sock = open_socket()
        opened += 1
        before = cpu_seconds_each(workers)
        drive([burst(sock)])
        after = cpu_seconds_each(workers)
        pid = owner({p: after[p] - before[p] for p in workers})
        if pid is None:
            sock.close()
        else:
            mapped[pid].append(sock)
    if not all(mapped.values()):
        shares = {pid: len(socks) for pid, socks in mapped.items()}
        raise LoadError(f"{opened} sockets reached only some workers: {shares}")
    return mapped
