"""Per-connection limits of the HTTP front-end, enforced where the bytes arrive.

aiohttp closes a connection left idle between requests, but nothing bounds a request that
arrives slowly: a client sending its header one byte a second, or its body a few bytes at
a time, keeps its connection (and the worker's memory for it) as long as it likes, and
hundreds of them are cheap to hold. So this module subclasses aiohttp's protocol and
server classes to add, per connection:

- a header deadline: the request line and headers must be complete ``header_timeout``
  seconds after the connection opens, or after the first byte of each later request (the
  wait between requests is the keep-alive idle timeout's business);
- a body deadline: the body must be complete ``body_timeout`` seconds after its header;
  the handler reading it then gets ``BodyTimeout`` (a 408), and the connection closes;
- a cap of ``max_connections`` open connections per worker, and of
  ``max_connections_per_address`` of them from one client address (so that one address
  cannot hold every slot): one more is answered 503 and closed at once, before anything is
  parsed.

It also answers a request the HTTP parser rejects (bad bytes in the URL, a duplicate
Content-Length, a header line that is not one, over-long lines, too many headers) with a
400 in the node's JSON form and one debug line, where aiohttp logs a traceback at ERROR
for each: anyone could flood the log. A client leaving mid-request (its body cut short) is
a debug line too, not an ERROR traceback. Every connection closed for one of these reasons
is counted in ``idnode_http_connections_closed_total{reason}``.

The hooks use attributes of aiohttp's ``RequestHandler`` and ``Server`` that are not
public API (``_request_count``, ``_messages``, ``_waiter``, ``_request_in_progress``,
``_kwargs``; checked against aiohttp 3.14); tests/integration/test_http_edge.py
exercises each through a real node, so an aiohttp upgrade that moves them fails there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from protocol.codes import ResponseCode
from resolver.config import Config
from resolver.metrics import connection_closed

log = logging.getLogger("resolver.http")

QUOTED_BYTES = re.compile(r"(bytearray\()?b'[^']*'\)?\.?")  # how aiohttp quotes what it read


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    per_address: int

    @classmethod
    def of(cls, config: Config) -> ConnectionLimits:
        return cls(config.header_timeout, config.body_timeout, config.max_connections, config.connections_per_address)


class BodyTimeout(asyncio.TimeoutError):
    """The request body did not arrive within ``body_timeout``; raised by ``request.read()``.

    A TimeoutError, so that aiohttp, draining an unread body after the response, takes
    it as the end of the connection instead of logging it as unexpected.
    """


def raw_answer(status: int, reason: str, code: ResponseCode, message: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for where no request exists."""
    body = json.dumps({"responseCode": int(code), "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


TOO_MANY_CONNECTIONS = raw_answer(
    503, "Service Unavailable", ResponseCode.SERVER_TOO_BUSY, "too many open connections to this server; retry later"
)
TOO_MANY_FROM_ADDRESS = raw_answer(
    503,
    "Service Unavailable",
    ResponseCode.SERVER_TOO_BUSY,
    "too many open connections from this address (max_connections_per_address); close some or retry later",
)
CONNECT_REFUSED = raw_answer(
    405, "Method Not Allowed", ResponseCode.OPERATION_NOT_SUPPORTED, "CONNECT is not supported: this is no proxy"
)
HEADER_TIMEOUT = raw_answer(
    408, "Request Timeout", ResponseCode.PROTOCOL_ERROR, "the request header did not arrive in time"
)


class GuardedHandler(RequestHandler):
    """aiohttp's HTTP/1 protocol with the deadlines, the cap and quiet 400s."""

    __slots__ = (
        "_address",
        "_body",
        "_deadline",
        "_guard",
        "_refused",
        "_started",
        "_timer",
        "_timer_at",
        "_waiting_for",
    )

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager  # aiohttp forgets its manager when the connection is lost
        # One timer per connection, not per request (a timer made and cancelled for every
        # request cost 2 µs): arming only moves the deadline; a timer that fires before it
        # sets itself again for it, and one that fires with nothing armed goes.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0
        self._waiting_for = ""  # "header" or "body" while a deadline is armed
        self._body: StreamReader | None = None
        self._started = False  # some bytes of the awaited header arrived
        self._refused = False
        self._address = ""  # the client's address, counted in the guard's ``per_address``

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.open >= guard.limits.max_connections:
            self._refuse(transport, "limit", TOO_MANY_CONNECTIONS)
            return
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""  # none over a Unix socket
        if address:
            held = guard.per_address.get(address, 0)
            if held >= guard.limits.per_address:
                self._refuse(transport, "address_limit", TOO_MANY_FROM_ADDRESS)
                return
            guard.per_address[address] = held + 1
            self._address = address
        guard.open += 1
        super().connection_made(transport)
        self._arm("header", guard.limits.header_timeout)

    def _refuse(self, transport: asyncio.BaseTransport, reason: str, answer: bytes) -> None:
        self._refused = True
        connection_closed(reason)
        cast(asyncio.Transport, transport).write(answer)
        transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._guard.open -= 1
        if self._address:
            self._guard.release(self._address)
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        parsed = self._request_count
        RequestHandler.data_received(self, data)  # not super(): this runs for every request
        if self._request_count != parsed:  # a header (or a parse error) is complete
            if self._waiting_for:
                self._disarm()
            messages = self._messages
            if not messages:
                return
            message, payload = messages[-1]
            if payload is EMPTY_PAYLOAD:  # a GET: nothing more to wait for
                return
            if (
                isinstance(message, RawRequestMessage)
                and message.method == hdrs.METH_CONNECT  # its "body" is a tunnel
                and len(messages) == 1
                and not self._request_in_progress
            ):
                self._refuse_connect()
            else:
                self._watch_body(payload)
        elif self._waiting_for == "body":
            if self._body is not None and self._body.is_eof():
                self._disarm()
        elif self._waiting_for == "header":
            self._started = self._started or bool(data)
        elif data and self._idle():  # the first bytes of the next request
            self._started = True
            self._arm("header", self._guard.limits.header_timeout)

    def _refuse_connect(self) -> None:
        """CONNECT names a host, not a path: aiohttp would route it nowhere and answer a
        plain-text 404 of its own. This is no proxy: say so, in JSON, and close."""
        if self.transport is not None:
            self.transport.write(CONNECT_REFUSED)
        self.force_close()

    def _idle(self) -> bool:
        """Waiting for a request: none in progress, none parsed and queued."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._messages

    def _watch_body(self, payload: StreamReader) -> None:
        """Arm the body deadline for the last request parsed (only it can be incomplete)."""
        if not payload.is_eof():
            self._arm("body", self._guard.limits.body_timeout)
            self._body = payload

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._waiting_for = what
        self._deadline = deadline = self._loop.time() + seconds
        if self._timer is not None and self._timer_at > deadline:  # would fire too late
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._set_timer(deadline)

    def _set_timer(self, when: float) -> None:
        self._timer = self._loop.call_at(when, self._expired)
        self._timer_at = when

    def _disarm(self) -> None:
        self._waiting_for = ""
        self._body = None
        self._started = False

    def _expired(self) -> None:
        self._timer = None
        what, body, started = self._waiting_for, self._body, self._started
        if not what:
            return
        if self._loop.time() < self._deadline:  # armed again since this timer was set
            self._set_timer(self._deadline)
            return
        self._disarm()
        if what == "body" and body is not None and not body.is_eof():
            connection_closed("body_timeout")
            log.debug("request body from %s did not arrive in time", self.peername)
            body.set_exception(BodyTimeout("the request body did not arrive in time"))
        elif what == "header" and self.transport is not None and not self._request_in_progress and not self._messages:
            connection_closed("header_timeout")
            log.debug("request header from %s did not arrive in time", self.peername)
            if started:
                self.transport.write(HEADER_TIMEOUT)
            self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, ConnectionError):
            # The client went away mid-request (a body cut short): no one to answer and
            # nothing wrong here, though aiohttp would log it as an error with a traceback.
            log.debug("client %s went away mid-request: %s", request.remote, exc)
            if request.writer.output_size > 0:
                raise ConnectionError("the client went away") from exc
            gone = web.Response(status=400)
            gone.force_close()
            return gone
        if not isinstance(exc, HttpProcessingError) or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        connection_closed("malformed")
        reason = malformed_reason(exc, self.max_headers)
        log.debug("malformed request from %s: %s", request.remote, reason)
        body = {"responseCode": int(ResponseCode.PROTOCOL_ERROR), "message": f"malformed HTTP request: {reason}"}
        response = web.Response(status=exc.code or 400, text=json.dumps(body), content_type="application/json")
        response.force_close()
        return response


def malformed_reason(exc: HttpProcessingError, max_headers: int) -> str:
    """What the parser found, in one line and without echoing the request back.

    aiohttp's messages are a summary, then a blank line and the offending bytes quoted;
    the summary is kept up to its first quote.
    """
    if isinstance(exc, LineTooLong):
        return f"the request line or a header line is longer than {exc.args[1]} bytes"
    summary = " ".join(line.strip() for line in exc.message.split("\n\n")[0].splitlines())
    summary = QUOTED_BYTES.sub("", summary).strip().rstrip(":.").strip()
    if summary.startswith("Too many headers"):
        return f"more than {max_headers} header lines"
    if not any(c.isalpha() for c in summary):
        return "invalid request target"
    return summary[:200]


class GuardedServer(web.Server):
    """aiohttp's connection factory, making ``GuardedHandler``s that share one count."""

    def __init__(self, plain: web.Server, limits: ConnectionLimits) -> None:
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
        self.limits = limits
        self.open = 0  # connections of this worker, refused ones not counted
        self.per_address: dict[str, int] = {}  # the same by client address; none held: no entry

    def release(self, address: str) -> None:
        held = self.per_address.pop(address) - 1
        if held:
            self.per_address[address] = held

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` serving through ``GuardedServer``."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self._limits)
