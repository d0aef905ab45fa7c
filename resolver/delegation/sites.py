"""Where a prefix is served: the servers its HS_SITE values name, in the order to ask them.

A prefix's servers are named by the HS_SITE values of its prefix handle. ``in_order`` orders
them the way a Handle client does: within a site, the server the handle hashes to first (MD5
of the upper-cased handle part the site hashes by, last four bytes as a signed big-endian int,
absolute value, modulo the server count), then the others; primary sites before mirrors.
That order holds for any transport; ``server_targets`` then picks, per server, how to ask it:
its HTTP(S) interface when it has one (``Target``: another idnode), else its Handle protocol
interfaces (``HandleTarget``: CNRI's servers, the real top-level nodes).

``Unanswered`` moves servers that lately could not be reached or did not answer to the end of
that order for a while: a primary site that hangs would otherwise cost every resolution one
hop timeout before its mirror site is asked.

Pure: no I/O, so that ``resolver.delegation.routing`` can decide with it alone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from protocol import valuedata as vd
from protocol.errors import HandleError
from protocol.identifiers import Handle, ascii_upper
from protocol.records import HS_SITE, HandleRecord

log = logging.getLogger("resolver.upstream")

SITE_LABEL = "site"  # the metrics label of every server not configured by the operator
HTTP_PROTOCOLS = ("HTTP", "HTTPS")


@dataclass(frozen=True, slots=True)
class Target:
    """One server's HTTP(S) interface to send queries to."""

    transport: ClassVar[str] = "http"
    url: str  # http://HOST:PORT, no trailing slash
    peer: str  # HOST:PORT, as messages name it
    trusted: bool = False  # an upstream the operator configured, not a server a record names

    @classmethod
    def from_url(cls, url: str) -> Target:
        """A configured upstream: trusted, and its own metrics label."""
        return cls(url, url.partition("://")[2], trusted=True)

    @property
    def label(self) -> str:
        """The ``peer`` metrics label: records choose the other servers, so they share one."""
        return self.peer if self.trusted else SITE_LABEL

    @property
    def host(self) -> str:
        """HOST of a server named by a record (whose ``peer`` always has a port)."""
        return self.peer.rpartition(":")[0].strip("[]")


@dataclass(frozen=True, slots=True)
class HandleTarget:
    """One server's Handle query interfaces: at least one of the two ports is set."""

    transport: ClassVar[str] = "handle"
    address: str  # an IP address, as HS_SITE carries it
    udp_port: int | None = None
    tcp_port: int | None = None

    @property
    def peer(self) -> str:
        """HOST:PORT as messages name the server (its UDP port, or TCP when it has none)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.udp_port if self.udp_port is not None else self.tcp_port}"

    @property
    def label(self) -> str:
        """The ``peer`` metrics label: a server named by a record, like every other."""
        return SITE_LABEL


AnyTarget = Target | HandleTarget


def sites_of(record: HandleRecord) -> list[vd.Site]:
    """The sites a prefix handle names, primaries first; malformed HS_SITE values are skipped."""
    sites = []
    for value in record.values:
        if value.type_matches(HS_SITE + "."):
            try:
                sites.append(vd.decode_site(value.data))
            except HandleError:
                log.warning("%s: HS_SITE value %d is malformed; ignored", record.handle, value.index)
    return sorted(sites, key=lambda s: not s.is_primary)


def hash_index(site: vd.Site, handle: Handle, servers: int) -> int:
    """The server of ``servers`` a multi-server site keeps ``handle`` on."""
    if servers <= 1:
        return 0
    if site.hash_option == vd.HASH_OPTIONS["BY_PREFIX"]:
        part = handle.zone if handle.is_prefix_handle else handle.prefix
    elif site.hash_option == vd.HASH_OPTIONS["BY_SUFFIX"]:
        part = handle.suffix
    else:
        part = handle.text
    digest = hashlib.md5(ascii_upper(part).encode("utf-8"), usedforsecurity=False).digest()
    return abs(int.from_bytes(digest[-4:], "big", signed=True)) % servers


def in_order(sites: Sequence[vd.Site], handle: Handle) -> tuple[vd.Server, ...]:
    """The servers of ``sites`` to ask for ``handle``, in the order to try them, whatever their transport."""
    ordered: list[vd.Server] = []
    for site in sites:
        first = hash_index(site, handle, len(site.servers))
        ordered += site.servers[first:] + site.servers[:first]
    return tuple(ordered)


def http_target(server: vd.Server) -> Target | None:
    """``server``'s HTTP(S) query interface, or None when it has none."""
    for interface in server.interfaces:
        if interface.query and interface.protocol in HTTP_PROTOCOLS:
            host = f"[{server.address}]" if ":" in server.address else server.address
            peer = f"{host}:{interface.port}"
            return Target(f"{interface.protocol.lower()}://{peer}", peer)
    return None


def handle_target(server: vd.Server) -> HandleTarget | None:
    """``server``'s UDP and TCP query interfaces, or None when it has neither."""
    ports: dict[str, int] = {}
    for interface in server.interfaces:
        if interface.query and interface.protocol in ("UDP", "TCP"):
            ports.setdefault(interface.protocol, interface.port)
    if not ports:
        return None
    return HandleTarget(server.address, ports.get("UDP"), ports.get("TCP"))


def http_targets(servers: Iterable[vd.Server]) -> tuple[Target, ...]:
    """The HTTP(S) query interface of each of ``servers`` that has one, in their order, once each."""
    ordered: list[Target] = []
    for server in servers:
        target = http_target(server)
        if target is not None and target not in ordered:
            ordered.append(target)
    return tuple(ordered)


def targets(sites: Sequence[vd.Site], handle: Handle) -> tuple[Target, ...]:
    """Where to ask for ``handle`` over HTTP(S), in the order to try them."""
    return http_targets(in_order(sites, handle))


def server_targets(servers: Iterable[vd.Server]) -> tuple[AnyTarget, ...]:
    """How to ask each of ``servers``, in their order, once each: HTTP(S) when it has it, else UDP/TCP."""
    ordered: list[AnyTarget] = []
    for server in servers:
        target: AnyTarget | None = http_target(server) or handle_target(server)
        if target is not None and target not in ordered:
            ordered.append(target)
    return tuple(ordered)


UNANSWERED_SECONDS = 10.0  # a server that did not answer is asked after the others for this long
MAX_UNANSWERED = 1024  # servers remembered per worker


class Unanswered:
    """Servers (by ``peer``) that lately did not answer: asked after the others, not skipped.

    Still asked when every other server fails too, and in its place again once it answers or
    ``seconds`` pass. Times are monotonic seconds, given by the caller.
    """

    def __init__(self, seconds: float = UNANSWERED_SECONDS, limit: int = MAX_UNANSWERED) -> None:
        self.seconds = seconds
        self.limit = limit
        self._until: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def failed(self, peer: str, now: float) -> None:
        if peer not in self._until and len(self._until) >= self.limit:
            del self._until[next(iter(self._until))]  # the oldest
        self._until[peer] = now + self.seconds

    def answered(self, peer: str) -> None:
        if self._until:
            self._until.pop(peer, None)

    def ordered(self, targets: tuple[AnyTarget, ...], now: float) -> tuple[AnyTarget, ...]:
        """``targets`` with those that did not answer lately moved to the end, each group in its order."""
        if not self._until:
            return targets
        late = tuple(t for t in targets if self._until.get(t.peer, 0.0) > now)
        return tuple(t for t in targets if t not in late) + late if late else targets


def site_value(
    index: int,
    host: str,
    port: int,
    protocol: str,
    ttl: int,
    *,
    handle_port: int | None = None,
    primary: bool = True,
) -> dict[str, Any]:
    """One site's HS_SITE, in the JSON a PUT carries: one server at ``host`` with its query interfaces.

    HTTP(S) on ``port`` first (idnode's delegation asks it), then the Handle protocol's TCP and UDP
    on ``handle_port`` when the node listens for it (what a CNRI resolver, Handle protocol only,
    asks). A ``primary`` site takes administration; a mirror (``primary=False``) serves queries
    only, as its interfaces say, and clients try it after the primary sites.
    """
    interfaces = [{"query": True, "admin": primary, "protocol": protocol, "port": port}]
    if handle_port is not None:
        interfaces.append({"query": True, "admin": primary, "protocol": "TCP", "port": handle_port})
        interfaces.append({"query": True, "admin": False, "protocol": "UDP", "port": handle_port})
    server = {
        "serverId": 1,
        "address": host,
        "publicKey": {"format": "base64", "value": ""},
        "interfaces": interfaces,
    }
    site = {
        "version": 1,
        "protocolVersion": "2.10",
        "serialNumber": 1,
        "primaryMask": {"isPrimary": primary, "isMultiPrimary": False},
        "servers": [server],
    }
    return {"index": index, "type": HS_SITE, "data": {"format": "site", "value": site}, "ttl": ttl}


def serves(sites: Iterable[vd.Site], host: str, port: int) -> bool:
    """True when one of ``sites`` names the node whose HTTP(S) listener is ``host``:``port``.

    Only HTTP(S) interfaces count: a site lists Handle protocol ports too, and another node's
    HTTP port may be the number of this one's Handle port."""
    return any(
        server.address == host and any(i.port == port and i.protocol in HTTP_PROTOCOLS for i in server.interfaces)
        for site in sites
        for server in site.servers
    )
