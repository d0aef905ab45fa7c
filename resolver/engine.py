"""The resolution engine: the one place that decides how a handle is answered.

A lookup is answered from this worker's cache when it can be; otherwise the engine admits
it (this node resolves others' handles only with recursion, and cuts delegation loops) and
hands it to the cache tiers (``resolver.cache.tiers``: Redis, then the source, with
coalescing, prefetch and serve-stale). The source is the engine's decision: this node's
store for a handle held here, else the delegator (``resolver.delegation.delegator``), which
asks the servers holding it.

The engine returns records (``Entry``: the record, whether it is stale, the public values);
what a front-end sends is made by that front-end, which may keep its encoding beside the
entry (``remember``) so that a cached answer is a dict lookup and a memo read. Writes reach
the engine through the store's write listener (``changed``): the handle's generation word is
bumped for every worker of the node before the writer is answered, and Redis is told, for
the other nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from protocol.errors import HandleNotFound
from protocol.identifiers import Handle, ascii_upper, parse_handle
from protocol.records import HandleRecord
from registry.store import Store
from resolver.cache.generations import Generations
from resolver.cache.local import Entry
from resolver.cache.redis_tier import RedisTier
from resolver.cache.tiers import CachePolicy, CacheTiers, Fetched
from resolver.delegation.delegator import DelegationPolicy, Delegator
from resolver.delegation.sites import Target


class ResolutionEngine:
    """Lookups for every front-end: this worker's cache, Redis, the store or other servers."""

    def __init__(
        self,
        store: Store,
        *,
        node_prefix: str,
        case_sensitive: bool = False,
        policy: CachePolicy | None = None,
        generations: Generations | None = None,
        redis: RedisTier | None = None,
        delegation: DelegationPolicy | None = None,
        node_id: str = "",
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._node_prefix = node_prefix
        self._case_sensitive = case_sensitive
        self._tiers = CacheTiers(
            store, policy or CachePolicy(), generations or Generations(), redis, monotonic=monotonic, wall=wall
        )
        self._tiers.source = self._source
        self._delegator = Delegator(
            delegation or DelegationPolicy(),
            self._tiers,
            node_prefix=node_prefix,
            node_id=node_id or "idnode",
            case_sensitive=case_sensitive,
            monotonic=monotonic,
            wall=wall,
        )
        # The hot path's calls, bound once: front-ends call them on every request.
        self.fresh: Callable[[str], Entry | None] = self._tiers.fresh
        self.cold_answer: Callable[[str, bytes], bytes | None] = self._tiers.cold_answer
        self.remember: Callable[[Entry, Any, Any, int], None] = self._tiers.remember
        self.remember_rendered: Callable[[Entry, str, bytes], None] = self._tiers.remember_rendered
        self.remember_answer: Callable[[Entry, bytes, bytes, float], None] = self._tiers.remember_answer

    @property
    def node_prefix(self) -> str:
        return self._node_prefix

    @property
    def max_depth(self) -> int:
        """Nodes one query may pass through (the Handle protocol's recursion count is checked against it)."""
        return self._delegator.policy.max_depth

    @property
    def upstreams(self) -> tuple[Target, ...]:
        return self._delegator.policy.upstreams

    @property
    def advertised(self) -> tuple[str, int] | None:
        """HOST, PORT other nodes reach this one at; None until it listens."""
        return self._delegator.advertised

    @advertised.setter
    def advertised(self, address: tuple[str, int] | None) -> None:
        self._delegator.advertised = address

    # Answers ----------------------------------------------------------------------------

    def key_of(self, spelling: str) -> str:
        """The cache key of a handle as a request spelled it, without validating it.

        A handle's key differs from its spelling only in the case of ASCII letters, which
        no validity rule looks at; so a spelling whose key is cached is a valid handle.
        (A case-sensitive node's prefix handles spelled in lower case miss here and are
        found by ``lookup``.)
        """
        if not self._case_sensitive:
            return ascii_upper(spelling)
        prefix, slash, suffix = spelling.partition("/")
        return ascii_upper(prefix) + slash + suffix

    def parse(self, spelling: str) -> Handle:
        """``spelling`` validated and normalised as this node compares handles (InvalidHandle if it is none)."""
        return parse_handle(spelling, case_sensitive=self._case_sensitive)

    async def lookup(self, handle: Handle, via: Sequence[str] = ()) -> Entry:
        """What is known of ``handle``, through every cache tier: every front-end's read.

        ``via``: the nodes the query passed through before this one (another node asking).
        A stale answer (the store failed; RFC 8767) comes back as an entry marked ``stale``
        whose values carry the stale reply TTL.
        """
        entry = self._tiers.fresh(handle.key)
        if entry is not None:
            return entry
        self._delegator.admit(handle, via)
        return await self._tiers.load(handle, via)

    async def resolve(self, handle: Handle, via: Sequence[str] = ()) -> HandleRecord:
        """The whole record for ``handle`` (for callers that see more than the public view)."""
        entry = await self.lookup(handle, via)
        if entry.record is None:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        return entry.record

    async def _source(self, handle: Handle, via: Sequence[str], stale: Fetched | None) -> HandleRecord | None:
        """What a miss reads: this node's store for a handle held here, else the servers holding it."""
        if self._delegator.holds(handle):
            return await self._tiers.read_store(handle.key, stale)
        return await self._delegator.resolve(handle, via, stale)

    # Invalidation -----------------------------------------------------------------------

    async def changed(self, keys: list[str]) -> None:
        """The store committed writes to ``keys``: no worker may serve what it cached for them."""
        await self._tiers.changed(keys)

    def changed_elsewhere(self, keys: Sequence[str]) -> None:
        """Another node announced writes to ``keys``."""
        self._tiers.changed_elsewhere(keys)

    def forget_all(self) -> None:
        """Drop this worker's cached answers (Redis came back after missing announcements)."""
        self._tiers.forget_all()

    # Lifetime ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background work: packing cold cache entries."""
        self._tiers.start()

    async def close(self) -> None:
        await self._tiers.close()
        await self._delegator.close()
