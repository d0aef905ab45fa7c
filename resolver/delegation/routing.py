"""Delegation routing: who holds a handle, decided without I/O.

``Routing`` is a small state machine in the manner of dnspython's ``_Resolution``. It says
what it needs next, the referral of a prefix (``NeedReferral``) or of the service handle
an HS_SERV value names (``NeedService``), is told the answer (``referred``), and ends in
a decision: read this node's store (``LOCAL``), ask these servers (a ``Route``), or the
prefix is registered nowhere (``UNREGISTERED``: not found); or it raises what the node
refuses (``NotResponsible``, ``RecursionLoop``). It fetches nothing itself: the engine
drives it and fetches prefix handles ``0.NA/<zone>`` through its cache tiers. Given only
the referrals a worker already holds, it decides the common case (a handle held here)
with no coroutine at all.

The rules (the Handle System's service model, RFC 3651 §4.1, with its HS_SITE and HS_SERV
of §3.2.2 and §3.2.4, applied to a hierarchy of nodes):

* under the node prefix, the nearest prefix handle decides: none, one without HS_SITE, or
  one naming this node, and the handle is held here; any other site holds it (delegated
  down), and only a node with recursion asks that site;
* elsewhere, with recursion allowed and an upstream to ask, prefix handles are looked at
  nearest first, at most ``MAX_WALK`` levels, until one exists: its HS_SITE (or the HS_SITE
  of the prefix handle its HS_SERV names, one level: no chains, no loops) designates the
  servers, one without sites leaves the prefix to the top-level node, and none at all
  means the prefix is not registered. Every prefix handle is held by the top-level node.

A ``Route`` names servers, not transports: each server in the order to try it (the handle's
hash within a site, primary sites before mirrors) with all its interfaces, so that the
engine picks, per server, an interface of a transport it speaks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from protocol import valuedata as vd
from protocol.errors import HandleError, NotResponsible, RecursionLoop
from protocol.identifiers import NA_PREFIX, Handle, is_at_or_under, parse_handle
from protocol.records import HS_SERV, HandleRecord
from resolver.delegation.sites import http_targets, in_order, serves, sites_of

log = logging.getLogger("resolver.routing")

MAX_WALK = 16  # prefix levels looked at, nearest first, when looking for a referral
MAX_REFERRALS = 65_536  # decoded referrals kept per worker


class Referral(NamedTuple):
    """Who serves one prefix, as its prefix handle says."""

    exists: bool  # False: no prefix handle
    sites: tuple[vd.Site, ...] = ()
    services: tuple[Handle, ...] = ()  # without sites: the prefix handles its HS_SERV values name


NO_PREFIX = Referral(False)


def referral_of(record: HandleRecord | None) -> Referral:
    """The referral a prefix handle's record (None: it does not exist) makes."""
    if record is None:
        return NO_PREFIX
    sites = tuple(sites_of(record))
    return Referral(True, sites) if sites else Referral(True, (), tuple(_services(record)))


def _services(record: HandleRecord) -> Iterator[Handle]:
    for value in record.values:
        if not value.type_matches(HS_SERV):
            continue
        try:
            service = parse_handle(value.data.decode("utf-8"))
        except (UnicodeDecodeError, HandleError):
            continue
        if service.is_prefix_handle:
            yield service
        else:
            log.warning("%s: HS_SERV names %s, not a prefix handle; ignored", record.handle, service.text)


# Decisions --------------------------------------------------------------------------------


class NeedReferral(NamedTuple):
    """Fetch the prefix handle 0.NA/<zone> and feed back its referral."""

    zone: str


class NeedService(NamedTuple):
    """Fetch the service handle that an HS_SERV of prefix ``of`` names and feed back its referral."""

    handle: Handle  # a prefix handle
    of: str

    @property
    def zone(self) -> str:
        return self.handle.zone


class Route(NamedTuple):
    """Ask these servers for the handle, in this order."""

    zone: str  # the prefix whose referral designated them; 0.NA for a prefix handle
    servers: tuple[vd.Server, ...] = ()  # in the order to try them, each with all its interfaces
    upstream: bool = False  # ask the node's configured top-level node(s) instead


class Settled(Enum):
    LOCAL = "local"  # read this node's store
    UNREGISTERED = "unregistered"  # no prefix handle anywhere on the way up: not found


LOCAL = Settled.LOCAL
UNREGISTERED = Settled.UNREGISTERED

Decision = Route | Settled
Step = NeedReferral | NeedService | Decision


# The state machine ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThisNode:
    """What routing needs to know of the node it runs on."""

    prefix: str  # the node prefix
    recursion: bool = False  # resolves handles held elsewhere for its clients
    upstream: bool = False  # has top-level node(s) to ask
    advertised: tuple[str, int] | None = None  # HOST, PORT other nodes reach it at, once it listens

    def is_self(self, sites: Sequence[vd.Site]) -> bool:
        return self.advertised is not None and serves(sites, *self.advertised)


def held_here(handle: Handle, node_prefix: str) -> bool:
    """True when no prefix handle can send ``handle`` elsewhere (no referral to look at)."""
    if handle.is_prefix_handle:
        return is_at_or_under(handle.zone, node_prefix)
    return handle.zone == node_prefix


class Routing:
    """Where one handle is held: ``next`` says what to do, ``referred`` answers what it asked.

    ``known(zone)`` is the referral already held for ``zone`` (None: fetch it); it is asked
    at most once per zone, and ``hits`` counts the referrals it gave. ``next`` walks again
    from the nearest prefix on every call, so it may be called as often as wanted: only
    the answers it was fed move it on.
    """

    def __init__(self, handle: Handle, node: ThisNode, known: Callable[[str], Referral | None]) -> None:
        self.handle = handle
        self.node = node
        self._known = known
        self._seen: dict[str, Referral | None] = {}  # None: not known, to be fed
        self.hits = 0
        self._down = is_at_or_under(handle.zone, node.prefix)
        segments = handle.zone.split(".")
        levels = len(segments) - len(node.prefix.split(".")) if self._down else len(segments)
        self._zones = [".".join(segments[:n]) for n in range(len(segments), len(segments) - min(levels, MAX_WALK), -1)]

    def next(self) -> Step:
        """A referral to fetch, or the decision; raises what this node refuses to resolve."""
        first = self._first()
        if first is not None:
            return first
        for zone in self._zones:
            referral = self._referral(zone)
            if referral is None:
                return NeedReferral(zone)
            if referral.exists:
                return self._served(zone, referral)
        return LOCAL if self._down else UNREGISTERED

    def referred(self, zone: str, referral: Referral) -> None:
        """The referral for ``zone``, which ``next`` asked for."""
        self._seen[zone] = referral

    def _first(self) -> Decision | None:
        """The decision that needs no referral, if there is one."""
        handle, node = self.handle, self.node
        if self._down:
            return LOCAL if held_here(handle, node.prefix) else None
        if not node.recursion or not node.upstream:
            why = "recursion is off" if not node.recursion else "it has no upstream to ask"
            raise NotResponsible(
                f"this node serves prefix {node.prefix} and {why}; {handle.text} is not under it", handle=handle.text
            )
        if handle.is_prefix_handle:
            return Route(NA_PREFIX, upstream=True)  # the top-level node holds every prefix handle
        return None

    def _referral(self, zone: str) -> Referral | None:
        """The referral for ``zone`` if known or fed (None: not yet)."""
        if zone not in self._seen:
            referral = self._seen[zone] = self._known(zone)
            if referral is not None:
                self.hits += 1
        return self._seen[zone]

    def _served(self, zone: str, referral: Referral) -> Step:
        """The decision for the prefix handle of ``zone``, once the one its HS_SERV names is known."""
        if referral.sites or not referral.services:
            return self._decide(zone, referral.sites)
        for service in referral.services:
            named = self._referral(service.zone)
            if named is None:
                return NeedService(service, zone)
            if named.exists:
                return self._decide(zone, named.sites)
        return self._decide(zone, ())

    def _decide(self, zone: str, sites: tuple[vd.Site, ...]) -> Decision:
        handle, node = self.handle, self.node
        if self._down:
            if not sites or node.is_self(sites):
                return LOCAL
            if not node.recursion:
                raise NotResponsible(f"prefix {zone} is delegated to {_peers(sites, handle)}", handle=handle.text)
            return Route(zone, in_order(sites, handle))
        if not sites:
            return Route(zone, upstream=True)  # held by the node that holds the prefix handle
        if node.is_self(sites):
            raise RecursionLoop(
                f"the referral for prefix {zone} names this node, which does not serve it", handle=handle.text
            )
        return Route(zone, in_order(sites, handle))


def _peers(sites: Sequence[vd.Site], handle: Handle) -> str:
    return ", ".join(t.url for t in http_targets(in_order(sites, handle))) or "servers without an HTTP interface"


# Referrals held -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    referral: Referral
    expires: float  # monotonic
    stale_until: float
    slot: int  # of the prefix handle's generation word
    gen: int

    def usable(self, words: memoryview, now: float, until: float) -> bool:
        return self.gen == words[self.slot] and now < until


class Referrals:
    """This worker's decoded referrals, each usable until its prefix handle expires or is written.

    ``words`` are the node's generation words (``resolver.cache.local``): a write to a prefix
    handle bumps its word, which retires the referral in every worker at once.
    """

    def __init__(self, words: memoryview, limit: int = MAX_REFERRALS) -> None:
        self._words = words
        self._limit = limit
        self._held: dict[str, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    def fresh(self, zone: str, now: float) -> Referral | None:
        """The referral for ``zone`` if it has not expired (monotonic ``now``)."""
        held = self._held.get(zone)
        return held.referral if held is not None and held.usable(self._words, now, held.expires) else None

    def stale(self, zone: str, now: float) -> Referral | None:
        """The referral for ``zone``, expired or not, while inside its stale window."""
        held = self._held.get(zone)
        return held.referral if held is not None and held.usable(self._words, now, held.stale_until) else None

    def keep(self, zone: str, referral: Referral, *, expires: float, stale_until: float, slot: int, gen: int) -> None:
        if zone not in self._held and len(self._held) >= self._limit:
            del self._held[next(iter(self._held))]  # the oldest
        self._held[zone] = _Held(referral, expires, stale_until, slot, gen)
