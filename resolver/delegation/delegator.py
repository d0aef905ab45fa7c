"""Asking other servers for what this node does not hold: the delegator.

Who holds a handle is decided by ``resolver.delegation.routing``, a state machine without
I/O; the delegator drives it (``_route``), fetching the prefix handles ``0.NA/<zone>`` it asks
for through the engine's cache tiers, so referrals get the same coalescing and serve-stale
as any record, and keeps them decoded per worker besides. A handle under the node prefix
whose referrals this worker already holds is decided synchronously (``holds``).

A route names servers; each is asked over HTTP(S) when it has such an interface (another
idnode), else over the Handle protocol, UDP then TCP (CNRI's servers, the real top-level
nodes): ``resolver.delegation.sites`` picks the interface and each target names its
transport. Both transports hold answers to one rule (``resolver.delegation.hop``). Queries
carry the nodes they passed through (``Idnode-Via``; the Handle protocol's recursion count)
so that loops and over-deep chains are cut. A designated server is asked only at an
address ``DelegationPolicy.destinations`` allows; one it refuses counts as a failed server,
like one that cannot be reached, and the next is tried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol.codes import ResponseCode
from protocol.errors import HandleError, RecursionLoop, UpstreamFailed, UpstreamTimeout
from protocol.identifiers import NA_PREFIX, Handle, check_responsible, is_at_or_under, prefix_handle
from protocol.records import HandleRecord
from resolver import metrics
from resolver.cache.tiers import CachePolicy, CacheTiers, Fetched, LookupFailed
from resolver.config import DEFAULTS, Config
from resolver.delegation.handle_client import HandleClient
from resolver.delegation.hop import HopFailed
from resolver.delegation.http_client import HttpClient
from resolver.delegation.routing import (
    LOCAL,
    Decision,
    NeedReferral,
    NeedService,
    Referral,
    Referrals,
    Route,
    Routing,
    ThisNode,
    held_here,
    referral_of,
)
from resolver.delegation.sites import AnyTarget, HandleTarget, Target, Unanswered, server_targets
from resolver.delegation.target_policy import TargetPolicy

log = logging.getLogger("resolver.engine")


@dataclass(frozen=True, slots=True)
class DelegationPolicy:
    """How this node asks other servers; every default is ``Config``'s."""

    recursion: bool = False  # resolve handles held elsewhere for clients
    upstreams: tuple[Target, ...] = ()  # the top-level node(s)
    hop_timeout: float = DEFAULTS.upstream_timeout
    total_timeout: float = DEFAULTS.resolve_timeout
    max_depth: int = DEFAULTS.max_delegation_depth  # nodes one query may pass through
    destinations: TargetPolicy = field(default_factory=TargetPolicy)  # where servers named by records may be
    source_address: str | None = None  # where queries leave from; None: the kernel's choice

    @classmethod
    def of(cls, config: Config) -> DelegationPolicy:
        return cls(
            recursion=bool(config.recursion),
            upstreams=tuple(Target.from_url(u) for u in config.upstream),
            hop_timeout=config.upstream_timeout,
            total_timeout=config.resolve_timeout,
            max_depth=config.max_delegation_depth,
            destinations=TargetPolicy.from_text(config.delegation_allow),
            source_address=config.source_address,
        )


class Transport(Protocol):
    """A client of one transport: asks one server for one handle."""

    async def resolve(
        self, target: Any, handle: Handle, via: Sequence[str], *, case_sensitive: bool = False
    ) -> HandleRecord | None: ...

    async def close(self) -> None: ...


class Delegator:
    """Routing, referrals and the clients: everything about handles held elsewhere."""

    def __init__(
        self,
        policy: DelegationPolicy,
        tiers: CacheTiers,
        *,
        node_prefix: str,
        node_id: str,
        case_sensitive: bool = False,
        monotonic: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self.policy = policy
        self._tiers = tiers
        self._cache: CachePolicy = tiers.policy
        self._node_prefix = node_prefix
        self.node_id = node_id
        self._case_sensitive = case_sensitive
        self._monotonic = monotonic
        self._wall = wall
        self._transports: dict[str, Transport] = {
            Target.transport: HttpClient(node_id, policy.hop_timeout, policy.destinations, policy.source_address),
            HandleTarget.transport: HandleClient(policy.hop_timeout, policy.destinations, policy.source_address),
        }
        self.advertised: tuple[str, int] | None = None  # set once the node listens
        self._referrals = Referrals(tiers.words)
        self._unanswered = Unanswered()  # servers asked last for a while: a hung primary site, say
        self._here: ThisNode | None = None
        self._events = metrics.RECORDER.events

    def admit(self, handle: Handle, via: Sequence[str]) -> None:
        """Refuse at once what this node will not look up: others' handles without recursion, loops."""
        if not self.policy.recursion:
            check_responsible(handle.zone, self._node_prefix, handle.text, handle=handle.text)
        if via:
            if self.node_id in via:
                raise RecursionLoop(
                    f"delegation loop: the query for {handle.text} came back to this node through {', '.join(via)}",
                    handle=handle.text,
                )
            if len(via) >= self.policy.max_depth:
                raise RecursionLoop(
                    f"the query for {handle.text} passed through {len(via)} nodes; the limit is "
                    f"{self.policy.max_depth}",
                    handle=handle.text,
                )

    def holds(self, handle: Handle) -> bool:
        """True when ``handle`` is known to be held here without asking anyone.

        Either no prefix handle can send it elsewhere, or the referrals this worker holds
        already say so: the routing run on those alone, so the common case (a handle under
        one of this node's own enterprise prefixes) pays for no coroutine and no timer.
        False means "find out" (``resolve``, which raises what the routing refuses).
        """
        if held_here(handle, self._node_prefix):
            return True
        routing = self._routing(handle)
        try:
            if routing.next() is not LOCAL:
                return False
        except HandleError:
            return False
        self._events["referral_hits"] += routing.hits
        return True

    def _routing(self, handle: Handle) -> Routing:
        here = self._here
        if here is None or here.advertised != self.advertised:  # made again once the node listens
            p = self.policy
            here = self._here = ThisNode(self._node_prefix, p.recursion, bool(p.upstreams), self.advertised)
        return Routing(handle, here, self._known_referral)

    def _known_referral(self, zone: str) -> Referral | None:
        return self._referrals.fresh(zone, self._monotonic())

    async def resolve(self, handle: Handle, via: Sequence[str], stale: Fetched | None) -> HandleRecord | None:
        """The record of a handle that may be held elsewhere: from the store or the node holding it."""
        budget = self.policy.total_timeout
        routing = self._routing(handle)
        try:
            if is_at_or_under(handle.zone, self._node_prefix):
                # Only this node's prefix handles are read (each store read has its own
                # timeout): the common case, a handle held here, pays for no other timer.
                decision = await self._route(routing, via)
                if not isinstance(decision, Route):  # LOCAL: nothing under the node prefix is unregistered
                    return await self._tiers.read_store(handle.key, stale)
                async with asyncio.timeout(budget):
                    return await self._ask(handle, decision, via)
            async with asyncio.timeout(budget):
                decision = await self._route(routing, via)
                if not isinstance(decision, Route):  # UNREGISTERED: nothing elsewhere is held here
                    return None
                return await self._ask(handle, decision, via)
        except LookupFailed as failed:  # a referral could not be had: this answer's stale copy, if any
            raise LookupFailed(failed.cause, stale) from None
        except (UpstreamFailed, RecursionLoop) as exc:
            raise LookupFailed(exc, stale) from None
        except TimeoutError:
            cause = UpstreamTimeout(f"resolving {handle.text} took longer than {budget:g} s", handle=handle.text)
            raise LookupFailed(cause, stale) from None

    async def _route(self, routing: Routing, via: Sequence[str]) -> Decision:
        """Drive ``routing`` to its decision, fetching the referrals it asks for."""
        try:
            while True:
                step = routing.next()
                if not isinstance(step, NeedReferral | NeedService):
                    return step
                routing.referred(step.zone, await self._referral(step.zone, via))
        finally:
            metrics.count("referral_hits", routing.hits)

    async def _referral(self, zone: str, via: Sequence[str]) -> Referral:
        """Who serves ``zone``, which this worker holds no fresh referral for: its prefix handle, fetched."""
        now = self._monotonic()
        handle = prefix_handle(zone)
        try:
            fetched = await self._tiers.fetch(handle, via=via)
        except LookupFailed as failed:
            held = self._referrals.stale(zone, now)
            if held is not None:
                log.warning("cannot refresh the referral for %s (%s); using the expired one", zone, failed.cause)
                return held
            if failed.stale is None:
                raise
            fetched = failed.stale
        referral = referral_of(fetched.record)
        left = fetched.expires_at - self._wall()
        now = self._monotonic()
        expires, stale_until = now + min(fetched.ttl, left), now + left + self._cache.stale_window
        slot = self._tiers.generations.slot(handle.key)
        self._referrals.keep(zone, referral, expires=expires, stale_until=stale_until, slot=slot, gen=fetched.gen)
        return referral

    def _targets(self, route: Route) -> tuple[AnyTarget, ...]:
        """How to reach ``route``'s servers: each by HTTP(S) when it has it, else by the Handle protocol."""
        return self.policy.upstreams if route.upstream else server_targets(route.servers)

    async def _ask(self, handle: Handle, route: Route, via: Sequence[str]) -> HandleRecord | None:
        """Ask the servers ``route`` designates, in turn, until one answers; those that did not
        answer lately last (``Unanswered``), so that a hung server costs one timeout, not one per query."""
        targets = self._unanswered.ordered(self._targets(route), self._monotonic())
        if not targets:
            raise UpstreamFailed(
                f"no server of prefix {route.zone} has a query interface this node speaks (HTTP, HTTPS, UDP or "
                f"TCP); {handle.text} cannot be resolved from here",
                handle=handle.text,
            )
        failures: list[str] = []
        loop = False
        for target in targets:
            transport = self._transports[target.transport]
            try:
                record = await transport.resolve(target, handle, via, case_sensitive=self._case_sensitive)
            except HopFailed as exc:
                metrics.DELEGATIONS.labels(exc.result).inc()
                if exc.result == "unreachable":
                    self._unanswered.failed(target.peer, self._monotonic())
                if handle.is_prefix_handle and exc.code == ResponseCode.SERVER_NOT_RESPONSIBLE:
                    return None  # the top-level node knows nothing of this prefix
                log.info("delegation of %s: %s", handle.text, exc.detail)
                failures.append(exc.message)
                loop = loop or exc.result == "loop"
                continue
            metrics.DELEGATIONS.labels("answered" if record is not None else "not_found").inc()
            self._unanswered.answered(target.peer)
            return record
        shown = "; ".join(failures)
        if loop:
            raise RecursionLoop(f"delegation loop while resolving {handle.text}: {shown}", handle=handle.text)
        where = "the top-level node" if route.zone == NA_PREFIX else f"the servers of prefix {route.zone}"
        # Always 502, also when every server timed out: a 504 would tell a server that
        # accepted the connection and kept silent from a closed port (see hop.unreachable).
        raise UpstreamFailed(f"{where} did not answer for {handle.text}: {shown}", handle=handle.text)

    async def close(self) -> None:
        for transport in self._transports.values():
            await transport.close()
