"""What the Handle load generator's UDP and TCP engines share: the loopback check, the
requests, the order they are drawn in, and the tally of what came back.

Every request is encoded once, up front, with ``protocol.wire.message``; sending one only patches
its 4-byte request id (envelope offset 8) into that template. The draw order is a
precomputed ring of indexes, so no random number is drawn per request: on a 2-core machine
the client's CPU is CPU the server under test does not get.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

from protocol.codes import ResponseCode
from protocol.wire.message import (
    DEFAULT_REQUEST_FLAGS,
    Envelope,
    Message,
    OpCode,
    OpFlag,
    ResolutionRequest,
    encode_message,
)

# hdl-qresolver 7.3.1 writes protocol 2.5 with the envelope's flag and suggestion bytes zero
# (tests/vectors/cnri-7.3.1/resolve-udp.json): Envelope(suggest=(0, 0)) encodes exactly that.
CNRI_731_VERSION = (2, 5)
_CNRI_731_SUGGEST = (0, 0)
SDK_SUGGEST = (2, 10)  # China's SDKs and CNRI 9.x suggest 2.10 (or 2.11): the node keeps their connections
EXPIRATION_AHEAD = 43200  # CNRI's client sets expiration to now + 12 hours

RID_OFFSET = 8
LENGTH_OFFSET = 16
RC_OFFSET = 24
# request id, sequence, message length, then (in part 0) the header's response code
REPLY_FIELDS = struct.Struct(">8xiiI4xi")
UDP_PART = 492  # CNRI places part n of a message at n * 492 bytes
_RID = struct.Struct(">i")
_RING_MIN = 1 << 16
_RING_MAX = 1 << 22


class LoadError(RuntimeError):
    """A load run that cannot start: a target off the machine, a bad option."""


def loopback_target(host: str, port: int) -> tuple[str, int]:
    """The (address, port) to send to; refuses any name or address that is not loopback."""
    if not 0 < port < 65536:
        raise LoadError(f"port {port} is outside 1..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise LoadError(f"cannot resolve {host!r}: {exc}") from None
    addresses = {str(info[4][0]) for info in infos}
    outside = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if outside:
        raise LoadError(f"{host!r} resolves to {', '.join(outside)}: this load generator only sends to loopback")
    return sorted(addresses)[0], port


def parse_target(text: str) -> tuple[str, int]:
    """``handle://127.0.0.1:2641``, ``127.0.0.1:2641`` or ``[::1]:2641`` → a loopback (address, port)."""
    rest = text.removeprefix("handle://").rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise LoadError(f"target {text!r} is not host:port")
    return loopback_target(host.strip("[]"), int(port))


def resolution_request(
    handle: str, *, keepalive: bool = False, expiration: int | None = None, suggest: tuple[int, int] = _CNRI_731_SUGGEST
) -> bytes:
    """A resolution request as CNRI 7.3.1's hdl-qresolver sends it, request id 0; with
    ``suggest`` SDK_SUGGEST, as a client of protocol 2.10 (China's SDKs, CNRI 9.x) writes it."""
    flags = DEFAULT_REQUEST_FLAGS | (OpFlag.KEEP_ALIVE if keepalive else OpFlag(0))
    msg = Message(
        op_code=OpCode.RESOLUTION,
        body=ResolutionRequest(handle),
        envelope=Envelope(version=CNRI_731_VERSION, suggest=suggest),
        flags=flags,
        expiration=int(time.time()) + EXPIRATION_AHEAD if expiration is None else expiration,
    )
    return encode_message(msg)


def handle_names(prefix: str, count: int, pattern: str = "{prefix}/{i}", start: int = 1) -> list[str]:
    if count < 1:
        raise LoadError(f"--count must be at least 1, got {count}")
    try:
        return [pattern.format(prefix=prefix, i=i) for i in range(start, start + count)]
    except (KeyError, IndexError, ValueError) as exc:
        raise LoadError(f"--pattern {pattern!r} can use only {{prefix}} and {{i}}: {exc!r}") from None


class RequestMix:
    """Request templates for a list of handles, drawn uniformly, or from the first ``hot``
    handles with probability ``hot_share``; each ``next`` carries a new request id."""

    def __init__(
        self,
        handles: list[str],
        *,
        hot: int = 0,
        hot_share: float = 1.0,
        keepalive: bool = False,
        seed: int | None = None,
        suggest: tuple[int, int] = _CNRI_731_SUGGEST,
    ) -> None:
        if not handles:
            raise LoadError("no handles to ask for")
        if not 0.0 <= hot_share <= 1.0:
            raise LoadError(f"--hot-share must be within 0..1, got {hot_share}")
        self.templates = [bytearray(resolution_request(h, keepalive=keepalive, suggest=suggest)) for h in handles]
        self.order = _draw_order(len(handles), min(hot, len(handles)), hot_share, random.Random(seed))
        self._mask = len(self.order) - 1
        self._pos = 0
        self.next_rid = random.Random(seed).randrange(1, 1 << 30)

    def next(self) -> tuple[int, bytearray]:
        """A fresh request id and the template with it patched in (valid until the next call)."""
        rid = self.next_rid
        self.next_rid = rid + 1 if rid < 0x7FFFFFFF else 1
        self._pos = (self._pos + 1) & self._mask
        buf = self.templates[self.order[self._pos]]
        _RID.pack_into(buf, RID_OFFSET, rid)
        return rid, buf


def patch_rid(buf: bytearray, rid: int) -> None:
    _RID.pack_into(buf, RID_OFFSET, rid)


def _draw_order(n: int, hot: int, hot_share: float, rng: random.Random) -> array[int]:
    """A ring of draws long enough (4 per handle, a power of two) that a uniform draw from
    ``n`` reaches nearly every handle before the ring repeats."""
    size = min(_RING_MAX, max(_RING_MIN, 1 << (4 * n - 1).bit_length()))
    if hot <= 0:
        return array("l", (rng.randrange(n) for _ in range(size)))
    return array("l", (rng.randrange(hot) if rng.random() < hot_share else rng.randrange(n) for _ in range(size)))


@dataclass(frozen=True, slots=True)
class Pace:
    """How requests are issued: closed loop with ``concurrency`` outstanding, or open loop
    at ``rate`` per second (0 = closed loop) for ``seconds``; ``timeout`` per attempt."""

    seconds: float
    concurrency: int = 32
    rate: float = 0.0
    timeout: float = 1.0
    retries: int = 0


@dataclass(slots=True)
class Tally:
    """What one engine run saw. ``answered`` counts complete replies of any response code."""

    sent: int = 0  # distinct requests (retransmits and resends not included)
    answered: int = 0
    answered_in_window: int = 0  # before the run's end; what the rate is computed from
    success: int = 0
    not_found: int = 0
    codes: Counter[int] = field(default_factory=Counter)  # the other response codes
    timeouts: int = 0
    retransmits: int = 0
    late: int = 0  # replies to requests already given up on, or to no request of ours
    malformed: int = 0
    connect_errors: int = 0  # TCP connections refused or failed before the request went out
    unreachable: int = 0  # UDP: ICMP errors (port unreachable); those requests also time out
    closed_early: int = 0  # TCP: the server closed before a whole reply
    reconnects: int = 0  # TCP keepalive: the server closed an idle kept-alive connection
    skipped: int = 0  # rate mode: no free slot when a request was due
    latencies: array[float] = field(default_factory=lambda: array("d"))
    send_lag: array[float] = field(default_factory=lambda: array("d"))

    def answer(self, rc: int, latency: float, in_window: bool) -> None:
        self.answered += 1
        self.answered_in_window += in_window
        self.latencies.append(latency)
        if rc == ResponseCode.SUCCESS:
            self.success += 1
        else:
            self.count_code(rc)

    def count_code(self, rc: int) -> None:
        """An answer that is not SUCCESS: not found, or one of the error codes."""
        if rc == ResponseCode.HANDLE_NOT_FOUND:
            self.not_found += 1
        else:
            self.codes[rc] += 1

    @property
    def errors(self) -> int:
        """Requests that got no usable answer or an error code (not-found is not an error)."""
        return sum(self.codes.values()) + self.timeouts + self.malformed + self.connect_errors + self.closed_early


def percentile(sorted_values: array[float] | list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values; 0 when there are none."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
