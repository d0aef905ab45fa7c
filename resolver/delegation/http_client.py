"""Asking other nodes over HTTP(S): resolution for the delegator, writes for the publisher.

``HttpClient`` is the one HTTP client to other nodes. Every answer is hostile until checked:
size-capped, parsed strictly, then held to the hop rule (``resolver.delegation.hop``) that
answers over the Handle protocol are held to too. Failures raise ``HopFailed`` with a message
naming the peer; the delegator decides about failover.

A server named by a record is asked only at an address ``resolver.delegation.target_policy``
allows. Every failure to get an HTTP answer from a server (refused, reset, timed out before
or after connecting, TLS, not HTTP at all) is one message (``unreachable``); the cause goes to
the log. Metrics name the operator's upstreams and nothing else (``Target.label``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from protocol.codes import ResponseCode
from protocol.identifiers import Handle
from protocol.jsonfmt import values_from_answer
from protocol.records import HandleRecord
from resolver import metrics
from resolver.config import DEFAULTS
from resolver.delegation.hop import HopFailed, accept, unreachable
from resolver.delegation.sites import Target
from resolver.delegation.target_policy import TargetPolicy, TargetRefused

VIA_HEADER = "Idnode-Via"  # node ids a query has passed through, comma-separated
MAX_ANSWER_BYTES = 1024 * 1024
USER_AGENT = "idnode"


class HttpClient:
    """HTTP to other nodes, with connections kept alive; one per process."""

    def __init__(
        self,
        node_id: str,
        hop_timeout: float = DEFAULTS.upstream_timeout,
        policy: TargetPolicy | None = None,
        source_address: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.hop_timeout = hop_timeout
        self.policy = policy or TargetPolicy()
        self.source_address = source_address  # where connections leave from; None: the kernel's choice
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            local = None if self.source_address is None else (self.source_address, 0)
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=64, keepalive_timeout=30, local_addr=local)
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
        said = answer.get("message")
        return accept(
            target.peer,
            handle,
            answer["responseCode"],
            answer.get("handle"),
            lambda: values_from_answer(answer.get("values")),
            said=said if isinstance(said, str) else "",
            how=f" (HTTP {status})",
            case_sensitive=case_sensitive,
        )

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
