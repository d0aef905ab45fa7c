"""Talking to other nodes: which server of a site to ask, and asking it over HTTP.

A prefix's servers are named by the HS_SITE values of its prefix handle (REFERENCE §4).
``targets`` orders them the way a Handle client does: within a site, the server the
handle hashes to first (MD5 of the upper-cased handle part the site hashes by, last four
bytes as a signed big-endian int, absolute value, modulo the server count), then the
others; primary sites before mirrors. That order (``in_order``) holds for any transport;
``http_targets`` keeps the servers' HTTP(S) interfaces, the only usable ones until the
binary protocol arrives.

``NodeClient`` is the one HTTP client to other nodes, for resolution and for publishing.
Every answer is hostile until checked: size-capped, parsed strictly, and a resolution
answer is accepted only for the handle that was asked (bailiwick). Failures raise
``HopFailed`` with a message naming the peer; the engine decides about failover.

A server named by a record is asked only at an address ``resolver.target_policy`` allows.
Every failure to get an HTTP answer from a server (refused, reset, timed out before or
after connecting, TLS, not HTTP at all) is one message (``unreachable``): a client who
wrote the record must not learn from the answer whether a port is open; the cause goes to
the log. Metrics name the operator's upstreams and nothing else (``Target.label``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from protocol import valuedata as vd
from protocol.codes import ResponseCode
from protocol.errors import HandleError
from protocol.identifiers import Handle, ascii_upper, parse_handle
from protocol.jsonfmt import values_from_answer
from protocol.records import HS_SITE, HandleRecord, HandleValue
from resolver import metrics
from resolver.delegation.target_policy import TargetPolicy, TargetRefused

log = logging.getLogger("resolver.upstream")

VIA_HEADER = "Idnode-Via"  # node ids a query has passed through, comma-separated
MAX_ANSWER_BYTES = 1024 * 1024
USER_AGENT = "idnode"


SITE_LABEL = "site"  # the metrics label of every server not configured by the operator


@dataclass(frozen=True, slots=True)
class Target:
    """One server interface to send queries to."""

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


def unreachable(peer: str, timeout: float) -> str:
    """The one message for every way of not getting an HTTP answer from ``peer``."""
    return f"{peer} could not be reached or did not answer within {timeout:.3g} s"


class HopFailed(Exception):
    """One request to one server failed; ``result`` is the delegation metric's label.

    ``message`` may reach the client; ``detail`` (the message, or the cause it hides) is for
    the log only.
    """

    def __init__(self, message: str, result: str = "error", code: ResponseCode | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.result = result
        self.code = code
        self.detail = detail or message


# Sites -----------------------------------------------------------------------------------


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
    """The server of ``servers`` a multi-server site keeps ``handle`` on (REFERENCE §4)."""
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


def _server_target(server: vd.Server) -> Target | None:
    for interface in server.interfaces:
        if interface.query and interface.protocol in ("HTTP", "HTTPS"):
            host = f"[{server.address}]" if ":" in server.address else server.address
            peer = f"{host}:{interface.port}"
            return Target(f"{interface.protocol.lower()}://{peer}", peer)
    return None


def in_order(sites: Sequence[vd.Site], handle: Handle) -> tuple[vd.Server, ...]:
    """The servers of ``sites`` to ask for ``handle``, in the order to try them, whatever their transport."""
    ordered: list[vd.Server] = []
    for site in sites:
        first = hash_index(site, handle, len(site.servers))
        ordered += site.servers[first:] + site.servers[:first]
    return tuple(ordered)


def http_targets(servers: Iterable[vd.Server]) -> tuple[Target, ...]:
    """The HTTP(S) query interface of each of ``servers`` that has one, in their order, once each."""
    ordered: list[Target] = []
    for server in servers:
        target = _server_target(server)
        if target is not None and target not in ordered:
            ordered.append(target)
    return tuple(ordered)


def targets(sites: Sequence[vd.Site], handle: Handle) -> tuple[Target, ...]:
    """Where to ask for ``handle`` over HTTP(S), in the order to try them."""
    return http_targets(in_order(sites, handle))


def site_value(index: int, host: str, port: int, protocol: str, ttl: int) -> dict[str, Any]:
    """This node's HS_SITE, in the JSON a PUT carries: one server with one query interface."""
    server = {
        "serverId": 1,
        "address": host,
        "publicKey": {"format": "base64", "value": ""},
        "interfaces": [{"query": True, "admin": True, "protocol": protocol, "port": port}],
    }
    site = {"version": 1, "protocolVersion": "2.10", "serialNumber": 1, "servers": [server]}
    return {"index": index, "type": HS_SITE, "data": {"format": "site", "value": site}, "ttl": ttl}


def serves(sites: Iterable[vd.Site], host: str, port: int) -> bool:
    """True when one of ``sites`` names the server at ``host``:``port``."""
    return any(
        server.address == host and any(i.port == port for i in server.interfaces)
        for site in sites
        for server in site.servers
    )


# The client ------------------------------------------------------------------------------


class NodeClient:
    """HTTP to other nodes, with connections kept alive; one per process."""

    def __init__(self, node_id: str, hop_timeout: float = 2.0, policy: TargetPolicy | None = None) -> None:
        self.node_id = node_id
        self.hop_timeout = hop_timeout
        self.policy = policy or TargetPolicy()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": USER_AGENT}, raise_for_status=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(
        self,
        method: str,
        target: Target,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request; the status and the JSON object answered, or HopFailed."""
        url, name = await self._destination(target)
        if name is not None:  # asked at the address the name was checked at
            headers = {**(headers or {}), "Host": target.peer}
        started = time.perf_counter()
        timeout = self.hop_timeout
        try:
            async with self._client().request(
                method,
                url + path,
                headers=headers,
                data=None if body is None else json.dumps(body, separators=(",", ":")).encode(),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
                server_hostname=name if url.startswith("https:") else None,
            ) as response:
                raw = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise HopFailed(f"{target.peer} answered more than {MAX_ANSWER_BYTES} bytes")
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            cause = f"{target.peer}: {exc.__class__.__name__}" + (f": {exc}" if str(exc) else "")
            raise HopFailed(unreachable(target.peer, timeout), "unreachable", detail=cause) from None
        finally:
            metrics.UPSTREAM_DURATION.labels(target.label).observe(time.perf_counter() - started)
        try:
            answer = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: nested too deep
            raise HopFailed(f"{target.peer} answered HTTP {status} without a usable JSON body") from None
        if not isinstance(answer, dict) or type(answer.get("responseCode")) is not int:
            raise HopFailed(f"{target.peer} answered HTTP {status} without a responseCode")
        return status, answer

    async def _destination(self, target: Target) -> tuple[str, str | None]:
        """scheme://HOST:PORT to ask ``target`` at, and its host name when HOST is the checked address.

        A trusted target is asked as configured. Any other is asked at an address the
        policy allows: a host name is resolved and checked once, then its address is used
        (with the name in Host, and for TLS in SNI and the certificate check).
        """
        if target.trusted:
            return target.url, None
        try:
            address = await self.policy.address(target.host)
        except TargetRefused as exc:
            message = f"{target.peer} was not asked: {exc.message}"
            raise HopFailed(message, "refused", detail=f"{message} ({exc.detail})" if exc.detail else "") from None
        if address == target.host:
            return target.url, None
        scheme, port = target.url.partition("://")[0], target.peer.rpartition(":")[2]
        shown = f"[{address}]" if ":" in address else address
        return f"{scheme}://{shown}:{port}", target.host

    async def resolve(
        self, target: Target, handle: Handle, via: Sequence[str], *, case_sensitive: bool = False
    ) -> HandleRecord | None:
        """Ask ``target`` for ``handle``: its record, None when it does not exist, or HopFailed."""
        path = "/api/handles/" + quote(handle.text, safe="/")
        headers = {VIA_HEADER: ",".join([*via, self.node_id])}
        status, answer = await self._request("GET", target, path, headers=headers)
        code = answer["responseCode"]
        if code not in (ResponseCode.SUCCESS, ResponseCode.HANDLE_NOT_FOUND):
            message = answer.get("message")
            shown = f": {message}" if isinstance(message, str) else ""
            result = "loop" if code == ResponseCode.RECURSION_COUNT_TOO_HIGH else "error"
            known = ResponseCode(code) if code in ResponseCode._value2member_map_ else None
            raise HopFailed(f"{target.peer} answered {code} (HTTP {status}){shown}", result, known)
        answered = answer.get("handle")
        try:
            same = isinstance(answered, str) and parse_handle(answered, case_sensitive=case_sensitive).key == handle.key
        except HandleError:
            same = False
        if not same:
            raise HopFailed(f"{target.peer} answered for {answered!r}, not for {handle.text}", "bailiwick")
        if code == ResponseCode.HANDLE_NOT_FOUND:
            return None
        try:
            values: list[HandleValue] = values_from_answer(answer.get("values"))
        except HandleError as exc:
            raise HopFailed(f"{target.peer} answered a malformed record for {handle.text}: {exc.message}") from None
        return HandleRecord(handle.text, tuple(values))

    async def write(
        self,
        method: str,
        target: Target,
        handle_text: str,
        authorization: str,
        *,
        query: str = "",
        body: Any = None,
    ) -> tuple[int, int]:
        """An authenticated PUT or DELETE of a handle; the HTTP status and response code."""
        path = "/api/handles/" + quote(handle_text, safe="/") + query
        headers = {"Authorization": authorization}
        if body is not None:
            headers["Content-Type"] = "application/json"
        status, answer = await self._request(method, target, path, headers=headers, body=body)
        code: int = answer["responseCode"]
        if code != ResponseCode.SUCCESS and not (method == "DELETE" and code == ResponseCode.HANDLE_NOT_FOUND):
            message = answer.get("message")
            shown = f": {message}" if isinstance(message, str) else ""
            raise HopFailed(f"{target.peer} refused {method} {handle_text}: {code} (HTTP {status}){shown}")
        return status, code
