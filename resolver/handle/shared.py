"""Pending challenges and sessions of the Handle protocol, shared by every worker of a node.

A CNRI client answers a challenge on a new TCP connection (and sets a session up over
UDP), and the kernel hands each connection or datagram to any worker sharing the socket:
the worker that checks an answer is often not the one that sent the challenge. So both
live in anonymous shared mappings made before the workers fork, as
``resolver.cache.local.Generations`` and ``registry.identity.ratelimit`` keep theirs.

Each table is a fixed number of fixed-size slots: memory is bounded whatever clients do,
and an entry past its expiry is free space. An entry is found by its id from the slot
``id & mask`` on, over a few slots (a short linear probe); when those are all live, a new
entry replaces the one that expires first. Ids are random, so an attacker can neither
guess a pending id nor aim entries at one slot.

Workers write without a lock. A slot starts with a keyed MAC over the rest of the entry
(the key is made before the fork, so it is the node's own): a reader that meets a slot
another worker is writing, or two writes that interleaved, sees a MAC that does not match
and takes the slot for empty. The cost of such a race is one lost entry (the client is
told its challenge or session expired and starts again), never a wrong one.

Taking an entry (``pop``) is the exception: read-then-clear let two workers that received
copies of one challenge answer both take it and run the challenged request twice. ``pop``
holds a POSIX record lock on the slot's byte of a file made before the fork: record locks
exclude other processes and the kernel drops them if a worker dies holding one.

Challenges are the other exception. Anyone may ask for one, so an entry that replaced the
soonest-expiring one let an anonymous flood evict the challenge a legitimate client was about
to answer (issue #21, finding 4). A challenge is stored with its owner, the source address,
and placed by ``claim``: only into a free or expired slot or over its own id, and only while
its owner holds fewer than its quota of live entries. Counting and placing hold one lock
byte past the slots' so that workers cannot both take an owner's last place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import ipaddress
import mmap
import os
import secrets
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from protocol.wire.base import Reader, WireError, pack_blob
from registry.identity.ratelimit import FailureLimiter

PROBE = 8  # slots looked at per id
_MAC_BYTES = 16
_HEAD = struct.Struct(">IdIQ")  # id, expiry (CLOCK_MONOTONIC, the same in every process), payload length, owner
_HEAD_BYTES = _MAC_BYTES + _HEAD.size
T = TypeVar("T")
MAX_ID = 0x7FFFFFFF  # session ids are a Java int on the wire; CNRI's are positive


class SlotTable:
    """Entries of at most ``slot_bytes`` (header included) by 31-bit id, in shared memory."""

    def __init__(self, slots: int, slot_bytes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if slots & (slots - 1) or slots < PROBE:
            raise ValueError(f"slots must be a power of two of at least {PROBE}")
        if slot_bytes <= _HEAD_BYTES:
            raise ValueError(f"a slot must have room past its {_HEAD_BYTES}-byte header")
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.capacity = slot_bytes - _HEAD_BYTES
        self._mask = slots - 1
        self._map = mmap.mmap(-1, slots * slot_bytes)  # MAP_SHARED | MAP_ANONYMOUS: inherited by fork()
        self._key = os.urandom(32)
        self._clock = clock
        self._locks = tempfile.TemporaryFile()  # noqa: SIM115 (lives as the table does) a byte per slot, one to place

    @contextlib.contextmanager
    def _taking(self, slot: int) -> Iterator[None]:
        """Hold ``slot`` against every other worker taking from it (a few microseconds)."""
        fcntl.lockf(self._locks, fcntl.LOCK_EX, 1, slot)
        try:
            yield
        finally:
            fcntl.lockf(self._locks, fcntl.LOCK_UN, 1, slot)

    def _mac(self, entry: bytes | memoryview) -> bytes:
        return hashlib.blake2b(entry, key=self._key, digest_size=_MAC_BYTES).digest()

    def _read(self, slot: int) -> tuple[int, float, bytes] | None:
        """The entry in ``slot`` if it is whole and live."""
        base = slot * self.slot_bytes
        entry_id, expiry, length, _ = _HEAD.unpack_from(self._map, base + _MAC_BYTES)
        if length > self.capacity or expiry <= self._clock():
            return None
        body = self._map[base + _MAC_BYTES : base + _HEAD_BYTES + length]
        if not hmac.compare_digest(self._map[base : base + _MAC_BYTES], self._mac(body)):
            return None  # torn, interleaved or never written
        return entry_id, expiry, body[_HEAD.size :]

    def _probe(self, entry_id: int) -> range:
        start = entry_id & self._mask
        return range(start, start + PROBE)

    def get(self, entry_id: int) -> bytes | None:
        """The live entry stored under ``entry_id``, or None."""
        for n in self._probe(entry_id):
            found = self._read(n & self._mask)
            if found is not None and found[0] == entry_id:
                return found[2]
        return None

    def put(self, entry_id: int, payload: bytes, ttl: float) -> None:
        """Store ``payload`` under ``entry_id`` for ``ttl`` seconds, replacing an entry of that id."""
        self._check_size(payload)
        slot, soonest = -1, float("inf")
        for n in self._probe(entry_id):
            found = self._read(n & self._mask)
            if found is None or found[0] == entry_id:
                slot = n & self._mask
                break
            if found[1] < soonest:
                slot, soonest = n & self._mask, found[1]
        self._write(slot, entry_id, payload, ttl, 0)

    def claim(self, entry_id: int, payload: bytes, ttl: float, owner: int, quota: int) -> bool:
        """Store ``payload`` as ``put`` does, for ``owner``, evicting no live entry of another id.

        False, storing nothing, when ``owner`` holds ``quota`` live entries already or every
        slot ``entry_id`` may take holds another live entry."""
        self._check_size(payload)
        with self._taking(self.slots):  # the placing lock: one count-and-place at a time
            if self.held_by(owner) >= quota:
                return False
            for n in self._probe(entry_id):
                found = self._read(n & self._mask)
                if found is None or found[0] == entry_id:
                    self._write(n & self._mask, entry_id, payload, ttl, owner)
                    return True
        return False

    def held_by(self, owner: int) -> int:
        """How many live entries ``owner`` holds (headers only: a torn one may miscount, briefly)."""
        now, held = self._clock(), 0
        for base in range(_MAC_BYTES, len(self._map), self.slot_bytes):
            _, expiry, _, holder = _HEAD.unpack_from(self._map, base)
            held += holder == owner and expiry > now
        return held

    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self.capacity:
            raise ValueError(f"an entry holds at most {self.capacity} bytes, not {len(payload)}")

    def _write(self, slot: int, entry_id: int, payload: bytes, ttl: float, owner: int) -> None:
        body = _HEAD.pack(entry_id, self._clock() + ttl, len(payload), owner) + payload
        base = slot * self.slot_bytes
        self._map[base + _MAC_BYTES : base + _HEAD_BYTES + len(payload)] = body
        self._map[base : base + _MAC_BYTES] = self._mac(body)

    def pop(self, entry_id: int) -> bytes | None:
        """Take the entry away: the next ``get`` of any worker finds nothing."""
        for n in self._probe(entry_id):
            slot = n & self._mask
            with self._taking(slot):  # read and clear as one step: one taker only
                found = self._read(slot)
                if found is not None and found[0] == entry_id:
                    base = slot * self.slot_bytes
                    self._map[base : base + _HEAD_BYTES] = bytes(_HEAD_BYTES)
                    return found[2]
        return None

    def in_use(self, entry_id: int) -> bool:
        return self.get(entry_id) is not None


def new_id(*tables: SlotTable) -> int:
    """A random positive 31-bit id that no live entry of ``tables`` holds."""
    while True:
        entry_id = secrets.randbelow(MAX_ID) + 1
        if not any(t.in_use(entry_id) for t in tables):
            return entry_id


# What the tables hold ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """A challenge sent and not yet answered: the nonce, the digest of the challenged
    request as sent in the challenge (kind byte and digest), and that request's bytes."""

    nonce: bytes
    digest_kind: int
    digest: bytes
    request: bytes

    def encode(self) -> bytes:
        return bytes([self.digest_kind]) + pack_blob(self.nonce) + pack_blob(self.digest) + self.request

    @classmethod
    def decode(cls, data: bytes) -> Challenge:
        r = Reader(data, 1)
        nonce, digest = r.blob("nonce", 1024), r.blob("digest", 1024)
        return cls(nonce, data[0], digest, data[r.pos :])


@dataclass(frozen=True, slots=True)
class Session:
    """A session set up by SESSION_SETUP: who it names and the key agreed with the client."""

    identity_handle: str
    identity_index: int
    key_algorithm: int
    key: bytes
    created: float  # on the tables' clock: the counters of the session's MACs count from here

    def encode(self) -> bytes:
        head = pack_blob(self.identity_handle.encode()) + struct.pack(">ii", self.identity_index, self.key_algorithm)
        return head + pack_blob(self.key) + struct.pack(">d", self.created)

    @classmethod
    def decode(cls, data: bytes) -> Session:
        r = Reader(data)
        handle = r.text("identity handle")
        index, algorithm = r.i32("identity index"), r.i32("key algorithm")
        key = r.blob("session key", 1024)
        return cls(handle, index, algorithm, key, struct.unpack(">d", r.take(8, "creation time"))[0])

    def counter(self, now: float) -> int:
        """A MAC counter no earlier message of the session had: tenths of milliseconds since the
        session began (CNRI's client refuses a counter it has seen; workers share no counter)."""
        return min(int((now - self.created) * 10_000) + 1, MAX_ID)


CHALLENGE_TTL = 60.0  # seconds; CNRI purges unanswered challenges after 30 to 60
MAX_SESSION_TTL = 86400.0  # what CNRI's clients ask for; a longer request is cut to this
CHALLENGES_PER_SOURCE = (8, 2)  # challenges one source may have pending: small, large (a tool waits for each)
SETUPS_PER_SOURCE = (4, 2.0)  # session setups one address may ask for in so many seconds (a batch tool asks once)
SETUPS_PER_NODE = (50, 1.0)  # and the whole node: at most ~0.25 s of CPU a second in 4096-bit groups


class HandleShared:
    """Pending challenges and sessions of one node, made before its workers fork.

    Challenges hold the challenged request, so they come in two sizes: many small slots for
    the usual request, a few large ones for a request up to the protocol's 256 KiB. Anyone may
    ask for a challenge, so each source may hold ``quotas`` of them (small, large) and never
    takes the place of another's: a flood fills its own quota and is refused past it.
    """

    def __init__(
        self,
        *,
        small: tuple[int, int] = (1024, 8192),
        large: tuple[int, int] = (16, 262_144 + 2048),
        sessions: tuple[int, int] = (4096, 512),
        quotas: tuple[int, int] = CHALLENGES_PER_SOURCE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.quotas = quotas
        self._owner_key = os.urandom(32)
        self.small = SlotTable(*small, clock=clock)
        self.large = SlotTable(*large, clock=clock)
        self.sessions = SlotTable(*sessions, clock=clock)
        # Session setups cost CPU before anyone is authenticated: counted node-wide, not per worker.
        self.setups_per_source = FailureLimiter(*SETUPS_PER_SOURCE, clock=clock)
        self.setups_per_node = FailureLimiter(*SETUPS_PER_NODE, clock=clock)

    @property
    def max_request(self) -> int:
        """The largest request a challenge can hold (with its nonce and digest)."""
        return self.large.capacity - 128

    def now(self) -> float:
        return self._clock()

    def new_session_id(self) -> int:
        return new_id(self.small, self.large, self.sessions)

    def put_challenge(self, session_id: int, challenge: Challenge, source: str, ttl: float = CHALLENGE_TTL) -> bool:
        """Keep ``challenge`` for ``source``; False, keeping nothing, when the source has its quota
        pending or the challenge's slots are all taken by others' (see ``SlotTable.claim``)."""
        payload = challenge.encode()
        self.pop_challenge(session_id)  # at most one pending per session, as in CNRI
        small = len(payload) <= self.small.capacity
        table, quota = (self.small, self.quotas[0]) if small else (self.large, self.quotas[1])
        return table.claim(session_id, payload, ttl, self.owner(source), quota)

    def owner(self, source: str) -> int:
        """The owner tag of a source address: an IPv6 source by its /64, which one host commonly
        holds whole; never 0, the tag of entries no source owns."""
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            key = source
        else:
            if isinstance(address, ipaddress.IPv6Address):
                mapped = address.ipv4_mapped
                key = str(mapped) if mapped else str(ipaddress.IPv6Network((address, 64), strict=False))
            else:
                key = str(address)
        tag = hashlib.blake2b(key.encode(), key=self._owner_key, digest_size=8).digest()
        return int.from_bytes(tag, "big") or 1

    def peek_challenge(self, session_id: int) -> Challenge | None:
        payload = self.small.get(session_id) or self.large.get(session_id)
        return None if payload is None else _decoded(Challenge.decode, payload)

    def pop_challenge(self, session_id: int) -> Challenge | None:
        """Take the challenge pending on ``session_id``: it can be answered once."""
        payload = self.small.pop(session_id) or self.large.pop(session_id)
        return None if payload is None else _decoded(Challenge.decode, payload)

    def put_session(self, session_id: int, session: Session, ttl: float) -> None:
        self.sessions.put(session_id, session.encode(), min(max(ttl, 1.0), MAX_SESSION_TTL))

    def session(self, session_id: int) -> Session | None:
        payload = self.sessions.get(session_id) if session_id > 0 else None
        return None if payload is None else _decoded(Session.decode, payload)

    def end_session(self, session_id: int) -> bool:
        return self.sessions.pop(session_id) is not None


def _decoded(decode: Callable[[bytes], T], payload: bytes) -> T | None:
    try:
        return decode(payload)
    except WireError:  # only what this node wrote passes the MAC; kept from crashing all the same
        return None
