"""Which addresses delegation may send queries to.

The servers a query is delegated to are named by records: the HS_SITE values of prefix
handles (or of the handle an HS_SERV names), which enterprises and other nodes write.
Without a policy anyone who controls such a record makes the node connect wherever it
says on any anonymous lookup: its own loopback services (Redis, the metrics of other
processes), the private network behind it, the cloud metadata address 169.254.169.254.
So an address learned from a record is refused when it is loopback, private (RFC 1918,
RFC 6598 shared space, IPv6 ULA), link-local, unspecified, multicast or otherwise
reserved (IANA special-purpose registries), unless an operator-configured network
(``delegation_allow``) covers it. An IPv6 address that carries an IPv4 one (mapped,
NAT64 64:ff9b::/96, 6to4) is judged by the IPv4 address it reaches.

The operator's own ``upstream`` nodes are not checked (the operator chose them); the
servers their referrals name are, like any other address from a record.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REFUSED_TEXT = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "private"),  # RFC 6598: carrier-grade NAT, the provider's inside
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "reserved"),  # documentation (TEST-NET-1)
    ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("198.51.100.0/24", "reserved"),  # TEST-NET-2
    ("203.0.113.0/24", "reserved"),  # TEST-NET-3
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # including 255.255.255.255
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "reserved"),  # IPv4-compatible, deprecated
    ("64:ff9b:1::/48", "private"),  # RFC 8215: local-use NAT64
    ("100::/64", "reserved"),  # discard-only
    ("2001:db8::/32", "reserved"),  # documentation
    ("fc00::/7", "private"),  # unique local (ULA)
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),  # site-local, deprecated
    ("ff00::/8", "multicast"),
)
REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple((ipaddress.ip_network(n), why) for n, why in _REFUSED_TEXT)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class TargetRefused(Exception):
    """A host is not one delegation may ask: its address, or one its name resolves to, is refused.

    ``message`` says why, for "HOST:PORT was not asked: <message>".
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # the cause, for the log


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to (mapped, NAT64, 6to4), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """The networks refused by default that the operator allows (``delegation_allow``)."""

    allow: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_text(cls, networks: Iterable[str]) -> TargetPolicy:
        return cls(tuple(ipaddress.ip_network(n) for n in networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why delegation may not send to ``address`` ("loopback", "private", ...), or None."""
        if any(address in network for network in self.allow):
            return None
        inner = embedded_ipv4(address)
        if inner is not None:
            return self.refusal(inner)
        for network, why in REFUSED:
            if address in network:
                return why
        return None

    async def address(self, host: str) -> str:
        """The address to connect to for ``host``, checked; TargetRefused when there is none.

        A name is resolved here, once, and every address it resolves to is checked: the
        caller connects to the address returned, never to the name again (a second lookup
        could answer differently: DNS rebinding).
        """
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            self._check(literal)
            return str(literal)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused("it does not resolve", f"{host} does not resolve: {exc}") from None
        found = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
        if not found:
            raise TargetRefused("it does not resolve")
        for each in found:
            self._check(each, f"it resolves to {each}, ")
        return str(found[0])

    def _check(self, address: IPAddress, shown: str = "") -> None:
        why = self.refusal(address)
        if why is not None:
            raise TargetRefused(f"{shown}a {why} address, which this node does not delegate to")
