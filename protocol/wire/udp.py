"""Handle messages over UDP: splitting one message into datagrams, and putting them back together.

Each datagram carries its own envelope with the request id, its part number (``sequence``)
and the length of the whole message; CNRI puts part n at n * 492 bytes
(MAX_UDP_DATA), whatever size the datagrams that reach it have, so every part but the last
must be exactly that size. The Reassembler is bounded in messages and bytes, forgets
messages older than ``max_age`` (CNRI waits 5 seconds for the rest of a request) and counts
what it dropped. It does no I/O and reads no clock: the caller passes the time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace

from protocol.wire.base import (
    ENVELOPE_SIZE,
    MAX_UDP_DATA,
    MAX_UDP_PACKET,
    Envelope,
    WireError,
    decode_envelope,
    encode_envelope,
)


def part_count(length: int, part_size: int = MAX_UDP_DATA) -> int:
    return max(1, -(-length // part_size))


def split_datagrams(
    envelope: Envelope, message: bytes, max_payload: int = MAX_UDP_PACKET, *, mark_truncated: bool = True
) -> list[bytes]:
    """The datagrams that carry ``message`` (header, body and credential, no envelope).

    ``max_payload`` is a datagram's size, envelope included. ``mark_truncated`` sets the
    envelope's truncated flag when there is more than one part, as CNRI's client does and
    as CNRI's server needs to gather a request; CNRI's server leaves the flag of the request
    on its answers (pass False and set it in ``envelope`` to match its bytes).
    """
    size = max_payload - ENVELOPE_SIZE
    if size <= 0:
        raise ValueError(f"a datagram of {max_payload} bytes has no room after the envelope")
    count = part_count(len(message), size)
    env = replace(envelope, length=len(message), truncated=envelope.truncated or (mark_truncated and count > 1))
    return [encode_envelope(replace(env, sequence=n)) + message[n * size : (n + 1) * size] for n in range(count)]


@dataclass(slots=True)
class _Pending:
    first_seen: float
    source: Hashable
    length: int
    parts: dict[int, bytes] = field(default_factory=dict)
    envelope: bytes = b""  # part 0's envelope bytes, kept for the reassembled message

    def size(self) -> int:
        return sum(len(p) for p in self.parts.values())


@dataclass(slots=True)
class ReassemblyStats:
    completed: int = 0
    expired: int = 0  # incomplete messages dropped for age
    evicted: int = 0  # incomplete messages dropped to stay within the bounds
    duplicates: int = 0  # parts that had arrived before


class Reassembler:
    """Gathers the datagrams of multi-datagram messages, keyed by (source, request id).

    ``add`` returns the complete message, envelope first (part 0's envelope), ready for
    decode_message; None while parts are missing; WireError for a datagram that cannot
    be a part of a Handle message.
    """

    def __init__(
        self,
        *,
        max_pending: int = 1024,
        max_per_source: int = 16,
        max_bytes: int = 16 * 1024 * 1024,
        max_age: float = 5.0,
    ) -> None:
        self.max_pending = max_pending
        self.max_per_source = max_per_source
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.stats = ReassemblyStats()
        self._pending: OrderedDict[tuple[Hashable, int], _Pending] = OrderedDict()  # oldest first
        self._per_source: dict[Hashable, int] = {}
        self._bytes = 0

    @property
    def dropped(self) -> int:
        return self.stats.expired + self.stats.evicted

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, source: Hashable, datagram: bytes, now: float) -> bytes | None:
        env = decode_envelope(datagram)
        data = datagram[ENVELOPE_SIZE:]
        _check_part(env, len(data))
        self.expire(now)
        if env.sequence == 0 and len(data) == env.length:
            return datagram  # the common case: one datagram, one message
        key = (source, env.request_id)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._start(key, source, env.length, now)
        elif pending.length != env.length:
            raise WireError(
                f"part {env.sequence} says the message is {env.length} bytes, earlier parts said {pending.length}",
                request_id=env.request_id,
                envelope=env,
            )
        return self._store(key, pending, env.sequence, datagram, data)

    def expire(self, now: float) -> None:
        """Forget messages whose first part came more than max_age ago."""
        while self._pending:
            key, oldest = next(iter(self._pending.items()))
            if now - oldest.first_seen <= self.max_age:
                return
            self._drop(key)
            self.stats.expired += 1

    def _start(self, key: tuple[Hashable, int], source: Hashable, length: int, now: float) -> _Pending:
        if self._per_source.get(source, 0) >= self.max_per_source:
            self._evict_oldest(lambda k: k[0] == source)
        while len(self._pending) >= self.max_pending:
            self._evict_oldest(lambda k: True)
        pending = _Pending(now, source, length)
        self._pending[key] = pending
        self._per_source[source] = self._per_source.get(source, 0) + 1
        return pending

    def _store(
        self, key: tuple[Hashable, int], pending: _Pending, sequence: int, datagram: bytes, data: bytes
    ) -> bytes | None:
        if sequence in pending.parts:
            self.stats.duplicates += 1
            return None
        while self._bytes + len(data) > self.max_bytes and len(self._pending) > 1:
            self._evict_oldest(lambda k: k != key)
        pending.parts[sequence] = data
        self._bytes += len(data)
        if sequence == 0:
            pending.envelope = datagram[:ENVELOPE_SIZE]
        if len(pending.parts) < part_count(pending.length):
            return None
        self._drop(key)
        self.stats.completed += 1
        return pending.envelope + b"".join(pending.parts[n] for n in range(len(pending.parts)))

    def _evict_oldest(self, matches: Callable[[tuple[Hashable, int]], bool]) -> None:
        for key in self._pending:
            if matches(key):
                self._drop(key)
                self.stats.evicted += 1
                return

    def _drop(self, key: tuple[Hashable, int]) -> None:
        pending = self._pending.pop(key)
        self._bytes -= pending.size()
        left = self._per_source[pending.source] - 1
        if left:
            self._per_source[pending.source] = left
        else:
            del self._per_source[pending.source]


def _check_part(env: Envelope, size: int) -> None:
    count = part_count(env.length)
    expected = MAX_UDP_DATA if env.sequence < count - 1 else env.length - MAX_UDP_DATA * (count - 1)
    if not 0 <= env.sequence < count:
        raise WireError(
            f"part {env.sequence} of a {env.length}-byte message, which has {count} parts",
            request_id=env.request_id,
            envelope=env,
        )
    if size != expected:
        raise WireError(
            f"part {env.sequence} of a {env.length}-byte message carries {size} bytes, not {expected}",
            request_id=env.request_id,
            envelope=env,
        )
