"""HTTP front-end: handle.net v9's REST API, the proxy redirect, health and metrics.

This module only moves bytes: it parses the request, calls the resolution engine or the
registration service, and renders the answer. Every error becomes a status and a JSON
body in one place, ``_edge``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from protocol.codes import ResponseCode, http_status
from protocol.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    HandleError,
    InvalidValue,
    ProtocolViolation,
    ValuesNotFound,
)
from protocol.jsonfmt import value_to_json, values_from_body
from protocol.records import MAX_INDEX, URL, HandleValue
from registry.auth import Authenticator
from registry.permissions import Caller
from registry.service import RegistrationService
from resolver import metrics
from resolver.config import Config
from resolver.engine import ResolutionEngine

log = logging.getLogger(__name__)

FRONTEND = "http"
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86400",
}


def _render(request: web.Request, body: dict[str, Any], status: int) -> web.Response:
    if "pretty" in request.query:
        text = json.dumps(body, ensure_ascii=False, indent=2)
    else:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    response = web.Response(body=text.encode(), status=status, content_type="application/json")
    response["code"] = body.get("responseCode", ResponseCode.SUCCESS)
    return response


def _error(
    request: web.Request, code: ResponseCode, message: str, handle: str | None, status: int | None = None
) -> web.Response:
    body: dict[str, Any] = {"responseCode": int(code)}
    if handle is not None:
        body["handle"] = handle
    body["message"] = message
    response = _render(request, body, status or http_status(code))
    if code == ResponseCode.AUTHENTICATION_NEEDED:
        response.headers["WWW-Authenticate"] = 'Basic realm="idnode"'
    return response


def _http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    handle = request.match_info.get("handle")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = _error(
            request,
            ResponseCode.OPERATION_NOT_SUPPORTED,
            f"method {request.method} is not supported here; allowed: {allowed}",
            handle,
            405,
        )
        response.headers["Allow"] = allowed
        return response
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return _error(
            request,
            ResponseCode.PROTOCOL_ERROR,
            f"request body is larger than the limit of {request.app[CONFIG].max_body_bytes} bytes",
            handle,
            413,
        )
    if exc.status == 404:
        return _error(request, ResponseCode.PROTOCOL_ERROR, f"no such resource {request.path}", None, 404)
    return _error(request, ResponseCode.PROTOCOL_ERROR, exc.reason, handle, exc.status)


@web.middleware
async def _edge(request: web.Request, handler: Any) -> web.StreamResponse:
    started = time.perf_counter()
    route = request.match_info.route
    op = route.name or "unknown"
    try:
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
            response["code"] = ResponseCode.SUCCESS
        else:
            response = await handler(request)
    except HandleError as exc:
        response = _error(request, exc.code, exc.message, exc.handle or request.match_info.get("handle"))
    except web.HTTPException as exc:
        response = _http_exception(request, exc)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        response = _error(request, ResponseCode.ERROR, "unexpected server error", request.match_info.get("handle"))
    response.headers.update(_CORS)
    metrics.observe(FRONTEND, op, int(response.get("code", 0)), response.status, time.perf_counter() - started)
    return response


# Query parameters ------------------------------------------------------------------------

_TRUE = ("", "true", "1", "yes")
_FALSE = ("false", "0", "no")


def _flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ProtocolViolation(f"query parameter {name} must be true or false, not {raw!r}")


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_INDEX:
        raise ProtocolViolation(f"query parameter {name} must be a non-negative integer, not {raw!r}")
    return int(raw)


def _indexes(request: web.Request, *, various_ok: bool) -> tuple[set[int], bool]:
    """The repeatable ``index=`` parameter: a set of indexes, and whether ``various`` was given."""
    found: set[int] = set()
    various = False
    for raw in request.query.getall("index", []):
        if raw == "various" and various_ok:
            various = True
        elif raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_INDEX:
            found.add(int(raw))
        else:
            raise ProtocolViolation(f"query parameter index must be an integer from 1 to {MAX_INDEX}, not {raw!r}")
    return found, various


def _select(request: web.Request, values: list[HandleValue]) -> tuple[list[HandleValue], bool]:
    """Apply ``index=`` / ``type=`` (either matches); True when a filter was given."""
    indexes, _ = _indexes(request, various_ok=False)
    types = request.query.getall("type", [])
    if not indexes and not types:
        return values, False
    chosen = [v for v in values if v.index in indexes or any(v.type_matches(t) for t in types)]
    return chosen, True


CONFIG = web.AppKey("config", Config)


def _require_identity(caller: Caller, handle: str) -> None:
    # Every write needs credentials, so refuse anonymous ones before reading a body.
    if caller.identity is None:
        raise AuthenticationNeeded(f"changing {handle} requires authentication")


class HttpFrontend:
    """Routes and handlers; holds the shared core it calls."""

    def __init__(
        self, config: Config, engine: ResolutionEngine, service: RegistrationService, authenticator: Authenticator
    ) -> None:
        self.config = config
        self.engine = engine
        self.service = service
        self.authenticator = authenticator

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_edge], client_max_size=self.config.max_body_bytes)
        app[CONFIG] = self.config
        r = app.router
        r.add_get("/api/handles", self.list_handles, name="list")
        r.add_get("/api/handles/{handle:.+}", self.get_handle, name="resolve")
        r.add_put("/api/handles/{handle:.+}", self.put_handle, name="put")
        r.add_delete("/api/handles/{handle:.+}", self.delete_handle, name="delete")
        r.add_get("/api/prefixes", self.prefixes, name="prefixes")
        r.add_get("/healthz", self.healthz, name="healthz")
        r.add_get("/metrics", self.metrics, name="metrics")
        r.add_get("/api/{tail:.*}", self.no_such_resource, name="unknown")
        r.add_get("/{handle:.+}", self.proxy, name="proxy")
        return app

    # Authentication --------------------------------------------------------------------

    async def _caller(self, request: web.Request) -> Caller:
        address = request.remote or ""
        header = request.headers.get("Authorization")
        if header is None:
            return Caller(None, address)
        if not (request.secure or self.config.loopback_only or self.config.allow_insecure_auth):
            raise AuthenticationFailed("authentication over plain HTTP is refused; use HTTPS")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "basic":
            raise AuthenticationFailed(f"authorization scheme {scheme!r} is not supported; use Basic")
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise AuthenticationFailed("malformed Basic credentials") from None
        user, colon, secret = decoded.partition(":")
        if not colon:
            raise AuthenticationFailed("Basic credentials carry no ':' between identity and secret")
        identity = await self.authenticator.authenticate(unquote(user), secret.encode())
        return Caller(identity, address)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidValue(f"request body is not valid JSON: {exc}") from None

    # Handlers --------------------------------------------------------------------------

    async def get_handle(self, request: web.Request) -> web.Response:
        handle = self.service.parse(request.match_info["handle"])
        caller = await self._caller(request)
        record = await self.engine.resolve(handle)
        visible = await self.service.visible_values(caller, handle, record)
        if _flag(request, "publicOnly", False):
            visible = [v for v in visible if v.public_read]
        chosen, filtered = _select(request, visible)
        code = ResponseCode.VALUES_NOT_FOUND if filtered and not chosen else ResponseCode.SUCCESS
        body = {"responseCode": int(code), "handle": handle.text, "values": [value_to_json(v) for v in chosen]}
        return _render(request, body, 200)

    async def put_handle(self, request: web.Request) -> web.Response:
        text = request.match_info["handle"]
        mint = _flag(request, "mintNewSuffix", False)
        handle = self.service.parse(text + "x" if mint else text)
        self.service.check_target(handle)
        caller = await self._caller(request)
        _require_identity(caller, handle.text)
        incoming = values_from_body(await self._body(request))
        if mint:
            minted = await self.service.mint(caller, text, incoming)
            return _render(request, {"responseCode": 1, "handle": minted.text}, 201)
        indexes, various = _indexes(request, various_ok=True)
        selected = {v.value.index for v in incoming} if various else indexes or None
        created = await self.service.put(
            caller, handle, incoming, overwrite=_flag(request, "overwrite", True), indexes=selected
        )
        return _render(request, {"responseCode": 1, "handle": handle.text}, 201 if created else 200)

    async def delete_handle(self, request: web.Request) -> web.Response:
        handle = self.service.parse(request.match_info["handle"])
        indexes, _ = _indexes(request, various_ok=False)
        caller = await self._caller(request)
        _require_identity(caller, handle.text)
        force = _flag(request, "force", False)
        await self.service.delete(caller, handle, indexes or None, force=force)
        return _render(request, {"responseCode": 1, "handle": handle.text}, 200)

    async def list_handles(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix")
        if not prefix:
            raise ProtocolViolation("query parameter prefix is required")
        page, page_size = _int_param(request, "page"), _int_param(request, "pageSize")
        caller = await self._caller(request)
        prefix, total, handles = await self.service.list_handles(caller, prefix, page, page_size)
        body: dict[str, Any] = {"responseCode": 1, "prefix": prefix, "totalCount": str(total)}
        if page is not None:
            body["page"] = page
        if page_size is not None:
            body["pageSize"] = page_size
        body["handles"] = handles
        return _render(request, body, 200)

    async def prefixes(self, request: web.Request) -> web.Response:
        found = await self.service.homed_prefixes()
        return _render(request, {"responseCode": 1, "prefixes": found}, 200)

    async def healthz(self, request: web.Request) -> web.Response:
        return _render(request, {"responseCode": 1, "status": "ok"}, 200)

    async def metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
        response["code"] = ResponseCode.SUCCESS
        return response

    async def no_such_resource(self, request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def proxy(self, request: web.Request) -> web.Response:
        """hdl.handle.net style: redirect to the first URL value, or show the record."""
        handle = self.service.parse(request.match_info["handle"])
        record = await self.engine.resolve(handle)
        visible = await self.service.visible_values(Caller(None, request.remote or ""), handle, record)
        chosen, filtered = _select(request, visible)
        if filtered and not chosen:
            raise ValuesNotFound(f"no value of {handle.text} matches the filter", handle=handle.text)
        if "noredirect" not in request.query:
            target = next((v for v in chosen if v.type_matches(URL + ".")), None)
            location = None if target is None else target.data.decode("utf-8", "replace")
            if location and location.isprintable():
                response = web.Response(status=302, headers={"Location": location})
                response["code"] = ResponseCode.SUCCESS
                return response
        body = {"responseCode": 1, "handle": handle.text, "values": [value_to_json(v) for v in chosen]}
        return _render(request, body, 200)
