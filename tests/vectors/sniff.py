"""Record the Handle protocol bytes to and from one loopback port, without standing in the way.

The capture relay (``tests.vectors.capture``) sees only what is sent to it; a server whose
answers name its own address (idnode's HS_SITE, synthesised from its listener) sends a
client's second hop past the relay. This reads every frame on ``lo`` with a packet socket
(root, in the private network namespace the tools already run in) and gives the same
``Record`` stream the relay does: UDP datagrams whole, TCP payloads in sequence order with
retransmissions dropped, one flow id per client address and port.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from tests.vectors.capture import Record

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # lo shows each frame twice: once going out, once coming in
ETH_HEADER = 14


class Sniffer:
    """Frames on ``lo`` to or from ``port`` (TCP and UDP), as capture Records; ``take`` as Relay's."""

    def __init__(self, port: int, iface: str = "lo") -> None:
        self.port = port
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._flows: dict[tuple[str, int], int] = {}
        self._next_seq: dict[tuple[int, str], int] = {}
        self._pending: dict[tuple[int, str], dict[int, bytes]] = {}
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind((iface, 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def take(self) -> list[Record]:
        with self._lock:
            out, self.records = self.records, []
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self._sock.recvfrom(262144)
            except TimeoutError:
                continue
            if addr[2] != PACKET_OUTGOING:
                self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        ip = frame[ETH_HEADER:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            return
        ihl, proto = (ip[0] & 0x0F) * 4, ip[9]
        total = struct.unpack_from(">H", ip, 2)[0]
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        seg = ip[ihl:total]
        if len(seg) < 8:
            return
        sport, dport = struct.unpack_from(">HH", seg)
        if self.port not in (sport, dport):
            return
        direction = "request" if dport == self.port else "response"
        client = (src, sport) if direction == "request" else (dst, dport)
        if proto == socket.IPPROTO_UDP:
            self._add("udp", direction, self._flow(client), seg[8:])
        elif proto == socket.IPPROTO_TCP:
            self._tcp(seg, direction, client)

    def _flow(self, client: tuple[str, int]) -> int:
        if client not in self._flows:
            self._flows[client] = len(self._flows) + 1
        return self._flows[client]

    def _tcp(self, seg: bytes, direction: str, client: tuple[str, int]) -> None:
        seq = struct.unpack_from(">I", seg, 4)[0]
        offset, flags = (seg[12] >> 4) * 4, seg[13]
        key_client = client
        if flags & 0x02:  # SYN: a new connection from this client port is a new flow
            if direction == "request":
                self._flows.pop(key_client, None)
            flow = self._flow(key_client)
            self._next_seq[(flow, direction)] = (seq + 1) & 0xFFFFFFFF
            self._pending[(flow, direction)] = {}
            return
        flow = self._flow(key_client)
        payload = seg[offset:]
        key = (flow, direction)
        if not payload or key not in self._next_seq:
            return
        self._pending[key][seq] = payload
        self._drain(key)

    def _drain(self, key: tuple[int, str]) -> None:
        pending, want = self._pending[key], self._next_seq[key]
        while True:
            usable = [s for s in pending if _before_or_at(s, want) and _after(s + len(pending[s]), want)]
            for s in [s for s in pending if not _after(s + len(pending[s]), want)]:
                del pending[s]  # wholly retransmitted
            if not usable:
                break
            s = usable[0]
            data = pending.pop(s)[(want - s) & 0xFFFFFFFF :]
            self._add("tcp", key[1], key[0], data)
            want = (want + len(data)) & 0xFFFFFFFF
        self._next_seq[key] = want

    def _add(self, transport: str, direction: str, flow: int, data: bytes) -> None:
        with self._lock:
            self.records.append(Record(time.time(), transport, direction, flow, data))


def _after(a: int, b: int) -> bool:
    """a > b in 32-bit sequence space."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def _before_or_at(a: int, b: int) -> bool:
    return a == b or _after(b, a)
