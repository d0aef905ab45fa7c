"""What every HTTP route shares: rendering, the error edge, query parameters, credentials, bodies.

``edged`` is the one error edge of every HTTP route, REST's and SNMS's: it times each request
for the metrics, sorts what went wrong (a refusal, aiohttp's own, a bug) and adds CORS. How a
failure is worded is the API's: ``Refusals``, handle.net's here and SNMS's beside its routes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import unquote

import msgpack
from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError
from aiohttp.web_urldispatcher import Resource, _InfoDict
from yarl import URL

from protocol.codes import ResponseCode, http_status
from protocol.errors import (
    AuthenticationFailed,
    AuthenticationNeeded,
    HandleError,
    InvalidValue,
    MirrorReadOnly,
    ProtocolViolation,
)
from protocol.records import MAX_INDEX, HandleRecord, HandleValue
from registry.identity.auth import Authenticator
from registry.identity.caller import Caller
from resolver.config import Config
from resolver.http.connections import BodyTimeout
from resolver.metrics import error_answered, observe

log = logging.getLogger("resolver.http")

FRONTEND = "http"
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack")
# What a request body may be declared as. Nothing a browser's cross-site form can send
# (text/plain, multipart/form-data, application/x-www-form-urlencoded) nor an undeclared body:
# with Basic credentials cached, such a form would otherwise write (issue #21, finding 5).
BODY_TYPES = ("application/json", *MSGPACK_TYPES)
CONFIG = web.AppKey("config", Config)
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86400",
}


def dumps(request: web.Request, body: dict[str, Any]) -> bytes:
    """``body`` as JSON, indented when the request asks for ``pretty``."""
    if "pretty" in request.query:
        return json.dumps(body, ensure_ascii=False, indent=2).encode()
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def render(request: web.Request, body: dict[str, Any], status: int) -> web.Response:
    response = web.Response(body=dumps(request, body), status=status, content_type="application/json")
    response["code"] = body.get("responseCode", ResponseCode.SUCCESS)
    return response


def error_response(
    request: web.Request, code: ResponseCode, message: str, handle: str | None, status: int | None = None
) -> web.Response:
    body: dict[str, Any] = {"responseCode": int(code)}
    if handle is not None:
        body["handle"] = handle
    body["message"] = message
    response = render(request, body, status or http_status(code))
    if code == ResponseCode.AUTHENTICATION_NEEDED:
        response.headers["WWW-Authenticate"] = 'Basic realm="idnode"'
    return response


def http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    handle = request.match_info.get("handle")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = error_response(
            request,
            ResponseCode.OPERATION_NOT_SUPPORTED,
            f"method {request.method} is not supported here; allowed: {allowed}",
            handle,
            405,
        )
        response.headers["Allow"] = allowed
        return response
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return error_response(
            request,
            ResponseCode.PROTOCOL_ERROR,
            f"request body is larger than the limit of {body_limit(request)} bytes",
            handle,
            413,
        )
    if exc.status == 404:
        return error_response(request, ResponseCode.PROTOCOL_ERROR, f"no such resource {request.path}", None, 404)
    return error_response(request, ResponseCode.PROTOCOL_ERROR, exc.reason, handle, exc.status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Routes a mirror site serves whatever their method: logins, which read (a POST for the secret's
# sake), and what no route took (answered 404 or 405 as anywhere).
READING_ROUTES = frozenset({"snms_login", "snms_login_v1", "unknown"})


class Refusals(Protocol):
    """How an API words each kind of failure; ``edged`` decides which kind it is.

    Each method is a plain call inside the edge's ``except``: no coroutine layer is added.
    """

    def refused(self, request: web.Request, exc: HandleError) -> web.Response:
        """The answer to a request the node refuses (a Retry-After, when the refusal has one, is the edge's)."""
        ...

    def http_error(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        """The answer to aiohttp's refusal: no such route, a method not allowed, a body too large."""
        ...

    def unexpected(self, request: web.Request) -> web.Response:
        """The answer to a bug, which the edge has logged."""
        ...


class HandleNetRefusals:
    """handle.net's form: ``{"responseCode", "handle", "message"}`` under the code's HTTP status."""

    def refused(self, request: web.Request, exc: HandleError) -> web.Response:
        handle = exc.handle or request.match_info.get("handle")
        return error_response(request, exc.code, exc.message, handle, exc.http_status)

    def http_error(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        return http_exception(request, exc)

    def unexpected(self, request: web.Request) -> web.Response:
        return error_response(request, ResponseCode.ERROR, "unexpected server error", request.match_info.get("handle"))


HANDLE_NET = HandleNetRefusals()


def edged(op: str, handler: Handler, refusals: Refusals = HANDLE_NET) -> Handler:
    """``handler`` with the edge every route shares: errors become ``refusals``' answers, CORS, metrics;
    on a mirror site, every request that may write is refused here (``MirrorReadOnly``).

    A wrapper per route rather than an aiohttp middleware: aiohttp runs a middleware
    through two more coroutine layers per request, which measured 15% of the throughput
    of a cached resolution (bench/RESULTS.md).
    """

    may_write = op not in READING_ROUTES

    async def edge(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            if may_write and request.method not in READ_METHODS:
                refusal = request.app[CONFIG].mirror_refusal
                if refusal is not None:  # a mirror site: refused before any credential or body is read
                    raise MirrorReadOnly(refusal)
            response = await handler(request)
        except HandleError as exc:
            error_answered(exc)
            response = refusals.refused(request, exc)
            if exc.retry_after is not None:  # whatever the form, the client learns when to retry
                response.headers["Retry-After"] = str(exc.retry_after)
        except web.HTTPException as exc:
            response = refusals.http_error(request, exc)
        except ConnectionError:
            raise  # the client went away mid-request: nobody to answer
        except Exception:
            log.exception("unexpected error serving %s %s", request.method, request.path)
            response = refusals.unexpected(request)
        response.headers.update(CORS)
        observe(FRONTEND, op, int(response.get("code", 0)), response.status, time.perf_counter() - started)
        return response

    return edge


class OtherForms(Resource):
    """The request target ``*`` (``OPTIONS * HTTP/1.1``), which is not a path: aiohttp's
    parser lets it through and its router would answer a plain-text 404 of its own; this
    resource sends it to ``_unrouted`` instead. (CONNECT's ``host:port`` reaches no resource
    at all: resolver.http.connections answers it.)"""

    def __init__(self) -> None:
        super().__init__(name=None)

    @property
    def canonical(self) -> str:
        return "/"  # the router looks it up under "/", where every such target ends its search

    def add_prefix(self, prefix: str) -> None:
        raise NotImplementedError("a target that is not a path takes no prefix")

    def _match(self, path: str) -> dict[str, str] | None:
        return None if path.startswith("/") else {}

    def raw_match(self, path: str) -> bool:
        return not path.startswith("/")

    def get_info(self) -> _InfoDict:
        return {"path": "*"}

    def url_for(self) -> URL:  # type: ignore[override]
        return URL.build(path="*", encoded=True)


class Routes:
    """Registers routes with the edge around each, and answers what no route matches."""

    def __init__(self, router: web.UrlDispatcher) -> None:
        self.router = router

    def get(self, path: str, handler: Handler, name: str) -> None:
        self.router.add_get(path, edged(name, handler), name=name)

    def put(self, path: str, handler: Handler, name: str) -> None:
        self.router.add_put(path, edged(name, handler), name=name)

    def post(self, path: str, handler: Handler, name: str) -> None:
        self.router.add_post(path, edged(name, handler), name=name)

    def delete(self, path: str, handler: Handler, name: str) -> None:
        self.router.add_delete(path, edged(name, handler), name=name)

    def finish(self) -> None:
        """Last: any method on any path no route took; 404, 405 or a CORS preflight."""
        self._rest = self.router.add_route("*", "/{tail:.*}", edged("unknown", self._unrouted), name="unrouted")
        self._star = OtherForms()
        self.router.register_resource(self._star)
        self._star.add_route("*", edged("unknown", self._unrouted))

    async def _unrouted(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            response = web.Response(status=204)
            response["code"] = ResponseCode.SUCCESS
            return response
        allowed: set[str] = set()
        for resource in self.router.resources():
            if resource is not self._rest.resource and resource is not self._star:
                match, methods = await resource.resolve(request)
                if match is None:
                    allowed |= methods
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()


# Query parameters ------------------------------------------------------------------------

TRUE_WORDS = ("", "true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
SHOWN_CHARS = 100


def _shown(raw: str) -> str:
    """A parameter's value for a message: quoted, and cut short (it may be 8 KiB long)."""
    return repr(raw) if len(raw) <= SHOWN_CHARS else f"{raw[:SHOWN_CHARS]!r}... ({len(raw)} characters)"


def flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() in TRUE_WORDS:
        return True
    if raw.lower() in FALSE_WORDS:
        return False
    raise ProtocolViolation(f"query parameter {name} must be true or false, not {_shown(raw)}")


def _count(raw: str, high: int) -> int | None:
    """``raw`` as an integer from 0 to ``high``, or None. Checked by length first: ``int()``
    refuses strings over 4,300 digits with a ValueError (CPython's conversion limit)."""
    if raw.isascii() and raw.isdigit() and len(raw) <= len(str(high)) and int(raw) <= high:
        return int(raw)
    return None


CURSOR_PAGE_SIZE = 1000  # handles per keyset page when pageSize is not given
MAX_CURSOR_PAGE_SIZE = 100_000


def encode_cursor(key: str) -> str:
    """The opaque ``nextCursor`` for a listing that ended at ``key``."""
    return base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> str | None:
    """The key a ``cursor=`` continues after (None: from the start); ProtocolViolation if it is not one of ours."""
    if not cursor:
        return None
    try:
        if len(cursor) > 4 * MAX_CURSOR_KEY_BYTES // 3 + 4:
            raise ValueError("too long")
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise ProtocolViolation(f"query parameter cursor is not a cursor this node gave: {_shown(cursor)}") from None


MAX_CURSOR_KEY_BYTES = 4096


def int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    value = _count(raw, MAX_INDEX)
    if value is None:
        raise ProtocolViolation(f"query parameter {name} must be a non-negative integer, not {_shown(raw)}")
    return value


def indexes_param(request: web.Request, *, various_ok: bool) -> tuple[set[int], bool]:
    """The repeatable ``index=`` parameter: a set of indexes, and whether ``various`` was given."""
    found: set[int] = set()
    various = False
    for raw in request.query.getall("index", []):
        if raw == "various" and various_ok:
            various = True
        elif index := _count(raw, MAX_INDEX):  # neither None nor 0
            found.add(index)
        else:
            raise ProtocolViolation(
                f"query parameter index must be an integer from 1 to {MAX_INDEX}, not {_shown(raw)}"
            )
    return found, various


def select_values(request: web.Request, values: list[HandleValue]) -> tuple[list[HandleValue], bool]:
    """Apply ``index=`` / ``type=`` (either matches); True when a filter was given."""
    indexes, _ = indexes_param(request, various_ok=False)
    types = request.query.getall("type", [])
    if not indexes and not types:
        return values, False
    chosen = [v for v in values if v.index in indexes or any(v.type_matches(t) for t in types)]
    return chosen, True


def require_identity(caller: Caller, handle: str) -> None:
    # Every write needs credentials, so refuse anonymous ones before reading a body.
    if caller.identity is None:
        raise AuthenticationNeeded(f"changing {handle} requires authentication")


class BodyTooSlow(ProtocolViolation):
    http_status = 408


class CompressedBody(ProtocolViolation):
    http_status = 415


class UnsupportedBodyType(ProtocolViolation):
    http_status = 415


def check_body_type(request: web.Request) -> None:
    """Refuse a body not declared as one of ``BODY_TYPES`` (parameters such as charset are fine)."""
    declared = request.headers.get(hdrs.CONTENT_TYPE)
    if declared is None and not request.body_exists:
        return
    if declared is not None and request.content_type in BODY_TYPES:
        return
    shown = "none" if declared is None else declared[:60]
    raise UnsupportedBodyType(
        f"request body must be declared Content-Type: application/json or application/msgpack (was {shown})"
    )


# A \\uD800-\\uDBFF escape not followed by a \\uDC00-\\uDFFF one, or the reverse. Python's
# decoder turns them into str that no UTF-8 encoder takes: a handle in a batch carrying one
# failed deep in the store's audit log (500). Valid pairs (emoji escaped by ensure_ascii) pass.
LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


# Routes whose bodies may be as large as max_batch_bytes: REST's batch, SNMS's (resolver.snms.routes).
BATCH_ROUTES = frozenset({"batch", "snms_batch_create", "snms_batch_update", "snms_batch_delete"})


def body_limit(request: web.Request) -> int:
    config = request.app[CONFIG]
    return config.max_batch_bytes if request.match_info.route.name in BATCH_ROUTES else config.max_body_bytes


async def read_body(request: web.Request) -> Any:
    """The request body as JSON (or msgpack, by Content-Type), within the route's size limit."""
    check_body_type(request)
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if encoding not in ("identity", ""):
        raise CompressedBody(f"request bodies are not accepted compressed (Content-Encoding: {encoding[:40]})")
    try:
        raw = await request.read()
    except BodyTimeout:
        raise BodyTooSlow(f"the request body did not arrive within {request.app[CONFIG].body_timeout:g} s") from None
    except RequestPayloadError as exc:  # a body cut short or framed wrongly
        raise ProtocolViolation(f"request body could not be read: {exc}") from None
    if len(raw) > body_limit(request):
        raise web.HTTPRequestEntityTooLarge(max_size=body_limit(request), actual_size=len(raw))
    if request.content_type in MSGPACK_TYPES:
        try:
            return msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise InvalidValue(f"request body is not valid msgpack: {exc}") from None
    try:
        # Decoded here, strictly: json.loads(bytes) decodes with "surrogatepass" and lets
        # UTF-8-encoded surrogates through as str that no encoder takes later.
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidValue(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidValue("request body is nested too deeply") from None
    if b"\\u" in raw and LONE_SURROGATE.search(raw):
        raise InvalidValue("request body is not valid JSON: a \\u escape is half a surrogate pair (not text)")
    return body


async def caller_of(request: web.Request, authenticator: Authenticator, read_with: Sequence[str] = ()) -> Caller:
    """Who sent the request: anonymous, or the identity its Basic credentials prove.

    ``read_with``: the keys the request's write will plan against, read with the identity's
    record (``Caller.read_ahead``)."""
    config = request.app[CONFIG]
    address = request.remote or ""
    header = request.headers.get("Authorization")
    if header is None:
        return Caller(None, address)
    if not (request.secure or config.loopback_only or config.allow_insecure_auth):
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
    read: dict[str, HandleRecord | None] = {}
    identity = await authenticator.authenticate(unquote(user), secret.encode(), address, read_with=read_with, into=read)
    return Caller(identity, address, read_ahead=read or None, read_at=time.monotonic())
