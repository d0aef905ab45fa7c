"""A loopback relay that records the Handle protocol bytes passing through it.

CNRI's client tools and server are the reference for idnode's wire codec, so we capture
what they really send: the relay listens on one port for TCP and UDP, forwards each
datagram and each connection to the target, and appends every datagram and every TCP
read to a log with a timestamp, a transport, a direction and a flow id (one per UDP
client address, one per TCP connection).

`messages()` turns the log into protocol messages: a UDP datagram is one message (or one
packet of a multi-packet message, which the envelope's sequence number tells), while a
TCP stream is cut at the message lengths in the 20-byte envelopes.

Run it standalone (inside the same network namespace as both ends)::

    python -m tests.vectors.capture --listen 2641 --target 127.0.0.1:2642 --out log.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass

ENVELOPE_LEN = 20


@dataclass(frozen=True)
class Record:
    t: float
    transport: str  # "udp" | "tcp"
    direction: str  # "request" (client to server) | "response"
    flow: int
    data: bytes

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["data"] = self.data.hex()
        return d


class Relay:
    """TCP+UDP relay from host:listen_port to target; `records` is append-only."""

    def __init__(self, listen_port: int, target: tuple[str, int], host: str = "127.0.0.1"):
        self.target = target
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._flows = 0
        self._stop = threading.Event()
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind((host, listen_port))
        self._udp.settimeout(0.2)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind((host, listen_port))
        self._tcp.listen(64)
        self._tcp.settimeout(0.2)
        self._upstreams: dict[tuple[str, int], tuple[socket.socket, int]] = {}
        self._threads = [
            threading.Thread(target=self._udp_loop, daemon=True),
            threading.Thread(target=self._accept_loop, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _record(self, transport: str, direction: str, flow: int, data: bytes) -> None:
        with self._lock:
            self.records.append(Record(time.time(), transport, direction, flow, data))

    def _new_flow(self) -> int:
        with self._lock:
            self._flows += 1
            return self._flows

    def take(self) -> list[Record]:
        """Return and forget what has been recorded so far."""
        with self._lock:
            out, self.records = self.records, []
        return out

    def _udp_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self._udp.recvfrom(65535)
            except TimeoutError:
                continue
            if client not in self._upstreams:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.connect(self.target)
                flow = self._new_flow()
                self._upstreams[client] = (up, flow)
                args = (up, client, flow)
                threading.Thread(target=self._udp_back, args=args, daemon=True).start()
            up, flow = self._upstreams[client]
            self._record("udp", "request", flow, data)
            up.send(data)

    def _udp_back(self, up: socket.socket, client: tuple[str, int], flow: int) -> None:
        up.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = up.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self._record("udp", "response", flow, data)
            self._udp.sendto(data, client)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            try:
                up = socket.create_connection(self.target)
            except OSError:
                conn.close()
                continue
            flow = self._new_flow()
            for src, dst, direction in ((conn, up, "request"), (up, conn, "response")):
                args = (src, dst, direction, flow)
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str, flow: int) -> None:
        try:
            while data := src.recv(65535):
                self._record("tcp", direction, flow, data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        self._udp.close()
        self._tcp.close()


def split_stream(stream: bytes) -> list[bytes]:
    """Cut a TCP byte stream at envelope boundaries (message length at offset 16)."""
    out = []
    while len(stream) >= ENVELOPE_LEN:
        (length,) = struct.unpack_from(">I", stream, 16)
        out.append(stream[: ENVELOPE_LEN + length])
        stream = stream[ENVELOPE_LEN + length :]
    if stream:
        out.append(stream)  # a truncated tail, kept so nothing is hidden
    return out


def _stream_messages(chunks: list[Record]) -> list[tuple[float, bytes]]:
    """Messages of one TCP direction, each stamped with the time of its first byte."""
    starts: list[tuple[int, float]] = []
    pos = 0
    for r in chunks:
        starts.append((pos, r.t))
        pos += len(r.data)
    out, offset = [], 0
    for msg in split_stream(b"".join(r.data for r in chunks)):
        t = max(t for p, t in starts if p <= offset)
        out.append((t, msg))
        offset += len(msg)
    return out


def messages(records: list[Record]) -> list[dict[str, object]]:
    """Records as vector exchanges, in the order their first byte was seen."""
    out: list[tuple[float, dict[str, object]]] = []
    streams: dict[tuple[int, str], list[Record]] = {}
    for r in records:
        if r.transport == "udp":
            out.append((r.t, _exchange(r.transport, r.direction, r.flow, r.data)))
        else:
            streams.setdefault((r.flow, r.direction), []).append(r)
    for (flow, direction), chunks in streams.items():
        for t, msg in _stream_messages(chunks):
            out.append((t, _exchange("tcp", direction, flow, msg)))
    out.sort(key=lambda p: p[0])
    for t, e in out:
        e["t_ms"] = round(1000 * (t - out[0][0]), 3)
    return [e for _, e in out]


def _exchange(transport: str, direction: str, flow: int, data: bytes) -> dict[str, object]:
    out: dict[str, object] = {"transport": transport, "direction": direction, "flow": flow}
    out.update(describe(data))
    out["hex"] = data.hex()
    return out


def describe(data: bytes) -> dict[str, object]:
    """Envelope and header fields, for people reading a vector; {} for a continuation.

    A UDP datagram with sequence number > 0 carries the rest of a message, not a header.
    """
    if len(data) < ENVELOPE_LEN:
        return {}
    major, minor, _, session, rid, seq, length = struct.unpack_from(">BBHIIII", data)
    out: dict[str, object] = {"version": f"{major}.{minor}", "session_id": session, "request_id": rid}
    out.update(sequence=seq, message_length=length)
    if seq == 0 and len(data) >= ENVELOPE_LEN + 24:
        opcode, rc, opflag = struct.unpack_from(">III", data, ENVELOPE_LEN)
        out.update(opcode=opcode, response_code=rc, opflag=f"{opflag:08x}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="record Handle protocol bytes between two ends")
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--target", required=True, help="host:port")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    host, port = a.target.rsplit(":", 1)
    relay = Relay(a.listen, (host, int(port)))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        relay.close()
        with open(a.out, "w") as f:
            json.dump([r.to_json() for r in relay.records], f, indent=1)


if __name__ == "__main__":
    main()
