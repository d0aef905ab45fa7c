"""HTTP front-end: handle.net v9's REST API for handles, the proxy redirect, health and metrics.

This module only moves bytes: it parses the request, calls the resolution engine or the
registration service, and renders the answer (``resolver.http.render``; helpers and the error
edge are in ``resolver.http.common``; batch, templates, audit and statistics in
``resolver.http.registry_routes``; the web console's files in ``resolver.http.console_routes``;
SNMS's API, when the node serves it, is another set of routes the server adds).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any, Protocol

from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from protocol.codes import ResponseCode
from protocol.errors import HandleNotFound, ProtocolViolation, RecursionLoop, ValuesNotFound
from protocol.identifiers import Handle
from protocol.jsonfmt import value_to_json, values_from_body
from protocol.records import URL, HandleValue
from registry.identity.auth import Authenticator
from registry.identity.caller import Caller
from registry.service import RegistrationService
from resolver import metrics
from resolver.cache.local import Entry
from resolver.config import Config
from resolver.delegation.http_client import VIA_HEADER
from resolver.engine import ResolutionEngine
from resolver.http.common import (
    CONFIG,
    CORS,
    CURSOR_PAGE_SIZE,
    FRONTEND,
    MAX_CURSOR_PAGE_SIZE,
    Routes,
    caller_of,
    check_body_type,
    decode_cursor,
    dumps,
    edged,
    encode_cursor,
    flag,
    indexes_param,
    int_param,
    read_body,
    render,
    require_identity,
    select_values,
)
from resolver.http.console_routes import ConsoleRoutes
from resolver.http.forwarded import TrustedProxies
from resolver.http.registry_routes import RegistryRoutes
from resolver.http.render import status_of, unfiltered_body
from resolver.metrics import observe

MAX_VIA = 64


class Mounted(Protocol):
    """Another API served on the REST listener: it adds its own routes (with its own error edge)."""

    def add_to(self, router: web.UrlDispatcher) -> None: ...


def via_of(request: web.Request) -> tuple[str, ...]:
    """The nodes a query passed through before this one (``Idnode-Via``); loops are cut on it."""
    header = request.headers.get(VIA_HEADER)
    if not header:
        return ()
    via = tuple(part.strip() for part in header.split(",") if part.strip())
    if len(via) > MAX_VIA:
        raise RecursionLoop(f"the query passed through {len(via)} nodes")
    return via


AUTHORIZATION = hdrs.AUTHORIZATION
CACHED_HEADERS = CIMultiDictProxy(CIMultiDict({hdrs.CONTENT_TYPE: "application/json", **CORS}))
STALE_HEADERS = CIMultiDictProxy(CIMultiDict({**CACHED_HEADERS, "Warning": '110 - "Response is Stale"'}))


class HttpFrontend:
    """Routes and handlers; holds the shared core it calls."""

    def __init__(
        self,
        config: Config,
        engine: ResolutionEngine,
        service: RegistrationService,
        authenticator: Authenticator,
        *,
        mounted: Sequence[Mounted] = (),
        publications: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.config = config
        self.mounted = mounted  # other APIs on this listener (SNMS's), each adding its routes
        self.publications = publications  # how this node's prefixes stand at the upstreams
        self.engine = engine
        self._fresh = engine.fresh  # bound once: the hot path calls them on every request
        self._key_of = engine.key_of
        self._remember = engine.remember
        self.service = service
        self.authenticator = authenticator

    def app(self) -> web.Application:
        limit = max(self.config.max_body_bytes, self.config.max_batch_bytes)
        app = web.Application(client_max_size=limit)
        app[CONFIG] = self.config
        if self.config.trusted_proxies:  # else no middleware: the peer is the client, at no cost
            app.middlewares.append(TrustedProxies(self.config.trusted_proxies).middleware())
        r = Routes(app.router)
        # First: aiohttp tries the routes under one path prefix in the order they were added.
        self._resolve = edged("resolve", self.get_handle)
        app.router.add_get("/api/handles/{handle:.+}", self.resolve, name="resolve")
        r.get("/api/handles", self.list_handles, "list")
        r.put("/api/handles/{handle:.+}", self.put_handle, "put")
        r.delete("/api/handles/{handle:.+}", self.delete_handle, "delete")
        r.get("/api/prefixes", self.prefixes, "prefixes")
        r.get("/healthz", self.healthz, "healthz")
        r.get("/metrics", self.metrics, "metrics")
        RegistryRoutes(self.service, self.authenticator).add_to(r)
        for routes in self.mounted:
            routes.add_to(app.router)
        ConsoleRoutes().add_to(r)  # before the proxy route, which would take /console/ for a handle
        r.get("/api/{tail:.*}", self.no_such_resource, "unknown")
        r.get("/{handle:.+}", self.proxy, "proxy")
        r.finish()
        return app

    async def _caller(self, request: web.Request, writing: Handle | None = None) -> Caller:
        """The request's caller; ``writing``: the handle it writes, read in the login's trip."""
        read_with = self.service.write_keys(writing) if writing is not None else ()
        return await caller_of(request, self.authenticator, read_with)

    # Handlers --------------------------------------------------------------------------

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        """GET /api/handles/{h}: a cached answer at once, anything else by ``get_handle``.

        The hot path of the node, so it does the edge's work (CORS, metrics) itself rather
        than through ``edged``: the cached answer cannot raise.
        """
        if "?" not in request.raw_path and AUTHORIZATION not in request.headers:
            started = perf_counter()
            spelling = request.match_info["handle"]
            entry = self._fresh(self._key_of(spelling))
            if entry is not None:
                body = entry.rendered if entry.rendered_for == spelling else self._unfiltered(entry, spelling)
                # Headers copied from one prebuilt set: 1.7 µs less than setting them one by one.
                headers = STALE_HEADERS if entry.stale else CACHED_HEADERS
                if entry.found:
                    response = web.Response(body=body, headers=headers)
                    code = ResponseCode.SUCCESS
                else:
                    response = web.Response(body=body, status=404, headers=headers)
                    code = ResponseCode.HANDLE_NOT_FOUND
                observe(FRONTEND, "resolve", code, response.status, perf_counter() - started)
                return response
        return await self._resolve(request)

    async def get_handle(self, request: web.Request) -> web.Response:
        # A "?" in the raw path starts a query: one in a handle arrives as %3F.
        anonymous = AUTHORIZATION not in request.headers
        if anonymous and "?" not in request.raw_path:
            spelling = request.match_info["handle"]
            handle = self.engine.parse(spelling)
            entry = await self.engine.lookup(handle, via_of(request))  # resolve()'s fresh() missed: no second try
            headers = STALE_HEADERS if entry.stale else CACHED_HEADERS
            body = self._unfiltered(entry, spelling, handle.text)
            response = web.Response(body=body, status=status_of(entry), headers=headers)
            response["code"] = ResponseCode.SUCCESS if entry.found else ResponseCode.HANDLE_NOT_FOUND
            return response
        handle = self.service.parse(request.match_info["handle"])
        entry = await self.engine.lookup(handle, via_of(request))
        if entry.record is None:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        if anonymous:  # filtered: the rendered answer is memoised beside the record, by the query
            memo = entry.memo.get(request.raw_path) if entry.memo is not None else None
            if memo is None:
                memo = self._filtered(request, handle, list(entry.public))
                self._remember(entry, request.raw_path, memo, len(memo[0]))
            return self._memo_response(memo, entry.stale)
        caller = await self._caller(request)
        await self.service.charge_resolution(caller)  # an authenticated resolution counts against its quota
        visible = await self.service.visible_values(caller, handle, entry.record)
        if flag(request, "publicOnly", False):
            visible = [v for v in visible if v.public_read]
        body, code = self._filtered(request, handle, visible)
        return self._memo_response((body, code), entry.stale)

    def _unfiltered(self, entry: Entry, spelling: str, text: str | None = None) -> bytes:
        """The unfiltered REST answer of ``entry`` for ``spelling`` (whose handle's text is
        ``text``, if known), made once and kept beside the entry."""
        if entry.rendered_for != spelling:
            body = unfiltered_body(entry, self.engine.parse(spelling).text if text is None else text)
            self.engine.remember_rendered(entry, spelling, body)
        return entry.rendered

    @staticmethod
    def _filtered(request: web.Request, handle: Handle, visible: list[HandleValue]) -> tuple[bytes, ResponseCode]:
        """The REST answer with ``index=`` / ``type=`` applied (``publicOnly`` is the caller's)."""
        chosen, filtered = select_values(request, visible)
        code = ResponseCode.VALUES_NOT_FOUND if filtered and not chosen else ResponseCode.SUCCESS
        body = {"responseCode": int(code), "handle": handle.text, "values": [value_to_json(v) for v in chosen]}
        return dumps(request, body), code

    @staticmethod
    def _memo_response(memo: tuple[bytes, ResponseCode], stale: bool) -> web.Response:
        response = web.Response(body=memo[0], headers=STALE_HEADERS if stale else CACHED_HEADERS)
        response["code"] = memo[1]
        return response

    async def put_handle(self, request: web.Request) -> web.Response:
        text = request.match_info["handle"]
        mint = flag(request, "mintNewSuffix", False)
        handle = self.service.parse(text + "x" if mint else text)
        self.service.check_target(handle)
        caller = await self._caller(request, None if mint else handle)
        require_identity(caller, handle.text)
        incoming = values_from_body(await read_body(request), self.service.now())
        if mint:
            minted = await self.service.mint(caller, text, incoming)
            return render(request, {"responseCode": 1, "handle": minted.text}, 201)
        indexes, various = indexes_param(request, various_ok=True)
        selected = {v.value.index for v in incoming} if various else indexes or None
        created = await self.service.put(
            caller, handle, incoming, overwrite=flag(request, "overwrite", True), indexes=selected
        )
        return render(request, {"responseCode": 1, "handle": handle.text}, 201 if created else 200)

    async def delete_handle(self, request: web.Request) -> web.Response:
        check_body_type(request)  # a DELETE reads no body, but one a browser form could send is refused
        handle = self.service.parse(request.match_info["handle"])
        indexes, _ = indexes_param(request, various_ok=False)
        caller = await self._caller(request, handle)
        require_identity(caller, handle.text)
        force = flag(request, "force", False)
        await self.service.delete(caller, handle, indexes or None, force=force)
        return render(request, {"responseCode": 1, "handle": handle.text}, 200)

    async def list_handles(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix")
        if not prefix:
            raise ProtocolViolation("query parameter prefix is required")
        page, page_size = int_param(request, "page"), int_param(request, "pageSize")
        caller = await self._caller(request)
        if "cursor" in request.query:
            return await self._list_by_cursor(request, caller, prefix, page, page_size)
        prefix, total, handles = await self.service.list_handles(caller, prefix, page, page_size)
        body: dict[str, Any] = {"responseCode": 1, "prefix": prefix, "totalCount": str(total)}
        if page is not None:
            body["page"] = page
        if page_size is not None:
            body["pageSize"] = page_size
        body["handles"] = handles
        return render(request, body, 200)

    async def _list_by_cursor(
        self, request: web.Request, caller: Caller, prefix: str, page: int | None, page_size: int | None
    ) -> web.Response:
        """Keyset listing: ``cursor=`` (empty to start) in, ``nextCursor`` out while more may follow;
        each page costs the same however deep the walk is, unlike ``page``'s offset."""
        if page is not None:
            raise ProtocolViolation("query parameters cursor and page cannot be combined")
        size = CURSOR_PAGE_SIZE if page_size is None else page_size
        if size > MAX_CURSOR_PAGE_SIZE:
            raise ProtocolViolation(f"query parameter pageSize must be at most {MAX_CURSOR_PAGE_SIZE} with cursor")
        after = decode_cursor(request.query["cursor"])
        prefix, total, rows = await self.service.list_after(caller, prefix, after, size)
        body: dict[str, Any] = {"responseCode": 1, "prefix": prefix, "totalCount": str(total), "pageSize": size}
        body["handles"] = [h for _, h in rows]
        if rows and len(rows) == size:
            body["nextCursor"] = encode_cursor(rows[-1][0])
        return render(request, body, 200)

    async def prefixes(self, request: web.Request) -> web.Response:
        found = await self.service.homed_prefixes()
        body: dict[str, Any] = {"responseCode": 1, "role": self.config.role, "prefixes": found}
        if self.publications is not None:
            body["publication"] = await self.publications()
        return render(request, body, 200)

    async def healthz(self, request: web.Request) -> web.Response:
        # "ok" means the node can take writes too: a load balancer or operator watching this
        # must learn that the disk is full while cached resolutions still succeed.
        # A mirror site's "ok" means it serves resolution from its replica (it takes no writes).
        problem = await self.service.write_problem()
        if problem is not None:
            body = {"responseCode": int(ResponseCode.SERVER_TOO_BUSY), "status": "failing", "message": problem}
            return render(request, body, 503)
        body = {"responseCode": 1, "status": "ok"}
        if self.config.mirror_of is not None:
            body |= {"mirrorOf": self.config.mirror_of, "store": self.service.standby_status}
        return render(request, body, 200)

    async def metrics(self, request: web.Request) -> web.Response:
        metrics.RECORDER.flush()  # this worker's counts; the others flush twice a second
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # several workers: add up what each wrote
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            text = generate_latest(registry)
        else:
            text = generate_latest()
        response = web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})
        response["code"] = ResponseCode.SUCCESS
        return response

    async def no_such_resource(self, request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def proxy(self, request: web.Request) -> web.Response:
        """hdl.handle.net style: redirect to the first URL value, or show the record.

        Anonymous, so made from the public values of the cached entry and memoised beside
        it by the request's path and query, like a filtered read.
        """
        handle = self.service.parse(request.match_info["handle"])
        entry = await self.engine.lookup(handle)
        if entry.record is None:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        key = ("proxy", request.raw_path)
        memo = entry.memo.get(key) if entry.memo is not None else None
        if memo is None:
            memo = self._proxied(request, handle, list(entry.public))
            self._remember(entry, key, memo, len(memo[1]))
        kind, payload = memo
        if kind == "redirect":
            response = web.Response(status=302, headers={"Location": payload.decode()})
            response["code"] = ResponseCode.SUCCESS
            return response
        return self._memo_response((payload, ResponseCode.SUCCESS), entry.stale)

    def _proxied(self, request: web.Request, handle: Handle, public: list[HandleValue]) -> tuple[str, bytes]:
        chosen, filtered = select_values(request, public)
        if filtered and not chosen:
            raise ValuesNotFound(f"no value of {handle.text} matches the filter", handle=handle.text)
        if "noredirect" not in request.query:
            target = next((v for v in chosen if v.type_matches(URL + ".")), None)
            location = None if target is None else target.data.decode("utf-8", "replace")
            if location and location.isprintable():
                return "redirect", location.encode()
        body = {"responseCode": 1, "handle": handle.text, "values": [value_to_json(v) for v in chosen]}
        return "body", dumps(request, body)
