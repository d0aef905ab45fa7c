"""Which server a PostgreSQL read goes to: the pure part of the replica routing (no I/O).

Reads go to the replicas in turn, except for keys this worker wrote within
``READ_YOUR_WRITES_SECONDS`` (a replica may not have replayed them yet), and except to a
replica that failed within ``REPLICA_RETRY_SECONDS``: a host that does not answer would
make each read wait for its connection timeout before falling back to the primary.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable

from registry.store import RECENT_WRITE_SECONDS

READ_YOUR_WRITES_SECONDS = RECENT_WRITE_SECONDS
RECENT_WRITES_MAX = 100_000
REPLICA_RETRY_SECONDS = 5.0


class ReadRouting:
    """The replica (by index) for each read of one worker, or None for the primary."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self._turn = itertools.count()
        self._down: dict[int, float] = {}  # replica -> until when it is skipped (monotonic)
        self._recent: OrderedDict[str, float] = OrderedDict()  # key -> when this worker wrote it

    def pick(self, keys: Iterable[str] = ()) -> int | None:
        """The replica for a read of ``keys``, or None: read the primary."""
        if not self.replicas or self.wrote_lately(keys):
            return None
        now = time.monotonic()
        for _ in range(self.replicas):
            n = next(self._turn) % self.replicas
            if self._down.get(n, 0.0) <= now:
                return n
        return None

    def failed(self, n: int) -> None:
        self._down[n] = time.monotonic() + REPLICA_RETRY_SECONDS

    def wrote_lately(self, keys: Iterable[str]) -> bool:
        if not self._recent:
            return False
        horizon = time.monotonic() - READ_YOUR_WRITES_SECONDS
        while self._recent and next(iter(self._recent.values())) < horizon:
            self._recent.popitem(last=False)
        return any(k in self._recent for k in keys)

    def wrote(self, keys: Iterable[str]) -> None:
        if not self.replicas:
            return
        now = time.monotonic()
        for key in keys:
            self._recent.pop(key, None)
            self._recent[key] = now
        while len(self._recent) > RECENT_WRITES_MAX:
            self._recent.popitem(last=False)
