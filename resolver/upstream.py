"""Talking to other nodes: which server of a site to ask, and asking it over HTTP.

A prefix's servers are named by the HS_SITE values of its prefix handle (REFERENCE §4).
``targets`` orders them the way a Handle client does: within a site, the server the
handle hashes to first (MD5 of the upper-cased handle part the site hashes by, last four
bytes as a signed big-endian int, absolute value, modulo the server count), then the
others; primary sites before mirrors. Only HTTP(S) interfaces are usable until the binary
protocol arrives.

``NodeClient`` is the one HTTP client to other nodes, for resolution and for publishing.
Every answer is hostile until checked: size-capped, parsed strictly, and a resolution
answer is accepted only for the handle that was asked (bailiwick). Failures raise
``HopFailed`` with a message naming the peer; the engine decides about failover.
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

log = logging.getLogger("resolver.upstream")

VIA_HEADER = "Idnode-Via"  # node ids a query has passed through, comma-separated
MAX_ANSWER_BYTES = 1024 * 1024
USER_AGENT = "idnode"


@dataclass(frozen=True, slots=True)
class Target:
    """One server interface to send queries to."""

    url: str  # http://HOST:PORT, no trailing slash
    peer: str  # HOST:PORT, the metrics label

    @classmethod
    def from_url(cls, url: str) -> Target:
        return cls(url, url.partition("://")[2])


class HopFailed(Exception):
    """One request to one server failed; ``result`` is the delegation metric's label."""

    def __init__(self, message: str, result: str = "error", code: ResponseCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.result = result
        self.code = code


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


def targets(sites: Sequence[vd.Site], handle: Handle) -> tuple[Target, ...]:
    """Where to ask for ``handle``, in the order to try them."""
    ordered: list[Target] = []
    for site in sites:
        first = hash_index(site, handle, len(site.servers))
        for server in site.servers[first:] + site.servers[:first]:
            target = _server_target(server)
            if target is not None and target not in ordered:
                ordered.append(target)
    return tuple(ordered)


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

    def __init__(self, node_id: str, hop_timeout: float = 2.0) -> None:
        self.node_id = node_id
        self.hop_timeout = hop_timeout
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
        started = time.perf_counter()
        timeout = self.hop_timeout
        try:
            async with self._client().request(
                method,
                target.url + path,
                headers=headers,
                data=None if body is None else json.dumps(body, separators=(",", ":")).encode(),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                raw = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise HopFailed(f"{target.peer} answered more than {MAX_ANSWER_BYTES} bytes")
                status = response.status
        except TimeoutError:
            raise HopFailed(f"{target.peer} did not answer within {timeout:.3g} s", "timeout") from None
        except aiohttp.ClientError as exc:
            raise HopFailed(f"{target.peer}: {exc.__class__.__name__}: {exc}") from None
        except OSError as exc:
            raise HopFailed(f"{target.peer}: {exc.strerror or exc}") from None
        finally:
            metrics.UPSTREAM_DURATION.labels(target.peer).observe(time.perf_counter() - started)
        try:
            answer = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: nested too deep
            raise HopFailed(f"{target.peer} answered HTTP {status} without a usable JSON body") from None
        if not isinstance(answer, dict) or type(answer.get("responseCode")) is not int:
            raise HopFailed(f"{target.peer} answered HTTP {status} without a responseCode")
        return status, answer

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
