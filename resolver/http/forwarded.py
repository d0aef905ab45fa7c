"""The client's address on HTTP: the TCP peer, or, behind a trusted reverse proxy, the client it names.

Behind a proxy every connection comes from the proxy, so whatever the node keys on the client
address (failed-login limits and the brake, SNMS logins, audit entries, the access log) would
name the proxy, and ten wrong secrets from anyone would lock everyone out. With
``trusted_proxies`` set, a request whose peer is one of them comes from the right-most
``X-Forwarded-For`` address that is not itself a trusted proxy: each proxy appends the address
it was connected from, so that is the nearest hop no client could write. Everything left of it
is the client's own word and is never read. From any other peer the header is ignored, and a
header that is not a list of IP addresses (where it is read) leaves the peer's address.

This is the one place the client address is worked out: the middleware hands handlers a request
whose ``remote`` is it, and the access log reads the same. PROXY protocol is not read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_log import AccessLogger

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

CLIENT_ADDRESS = web.RequestKey("client_address", str)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class TrustedProxies:
    """The proxies (addresses or CIDR networks, validated by ``resolver.config``) whose
    ``X-Forwarded-For`` is believed."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(text) for text in networks)

    def trusts(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        return any(address in network for network in self._networks)

    def client(self, peer: str, forwarded: Sequence[str]) -> str:
        """The client of a request from ``peer`` carrying the ``X-Forwarded-For`` values ``forwarded``."""
        hop = _address(peer)
        if hop is None or not self.trusts(hop):
            return peer
        hops = [part for value in forwarded for part in value.split(",")]
        for text in reversed(hops):
            hop = _address(text)
            if hop is None:
                return peer
            if not self.trusts(hop):
                return str(hop)
        return str(hop) if hops else peer  # every hop a trusted proxy: the first of them

    def client_of(self, request: web.BaseRequest) -> str:
        """The client address of ``request`` (its TCP peer if nothing trusted says otherwise)."""
        return self.client(request.remote or "", request.headers.getall(hdrs.X_FORWARDED_FOR, ()))

    def middleware(self) -> Middleware:
        """Hands each handler the request with ``remote`` set to its client address."""

        @web.middleware
        async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
            address = self.client_of(request)
            request[CLIENT_ADDRESS] = address  # shared with the clone: the access log reads it
            if address != request.remote:
                request = request.clone(remote=address)
            return await handler(request)

        return forwarded


class ClientAccessLogger(AccessLogger):
    """aiohttp's access log, naming the client address the middleware found rather than the proxy."""

    def _format_line(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        line = super()._format_line(request, response, time)
        address = request.get(CLIENT_ADDRESS) if request is not None else None
        if address is None:
            return line
        return [(key, address if key == "remote_address" else value) for key, value in line]
