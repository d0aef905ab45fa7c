"""The Handle protocol front-end (RFC 3652): a complete request message in, its answer out.

This module knows nothing of sockets (``resolver.handle.transport`` moves the bytes); it
maps messages onto the same engine and registration service as the HTTP front-end.

Resolution is the hot path. A plain request (no index or type filter, no digest, no
signature, no encryption: what hdl-qresolver and the SDKs send) is answered by
``cached`` without decoding it: the handle is sliced out of the bytes, the engine's cache
entry found by its key, and the encoded answer, memoised beside the record under the
request's version and flags, is copied with the request's ids patched in. Everything
else is decoded and answered by ``respond``, which memoises what it can the same way.

What an anonymous resolution sees: the public values (``PUBLIC_ONLY`` or not: a value
without public read permission is never sent to an unauthenticated client; CNRI would
challenge instead, and no client of ours asks for one).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from protocol import valuedata as vd
from protocol.codes import ResponseCode
from protocol.errors import HandleError, RecursionLoop
from protocol.identifiers import Handle, check_responsible, is_at_or_under, parse_handle
from protocol.records import HS_SERV, HS_SITE, HandleValue
from protocol.wire.message import (
    ENVELOPE_SIZE,
    HEADER_SIZE,
    Envelope,
    ErrorResponse,
    GetSiteInfoResponse,
    Message,
    OpCode,
    OpFlag,
    ResolutionRequest,
    ResolutionResponse,
    WireError,
    decode_message,
    encode_message,
    encode_payload,
    response_to,
)
from protocol.wire.sign import SigningKey, bound_prefix, signed_credential
from registry.identity.caller import Identity
from resolver import metrics
from resolver.cache.local import Entry
from resolver.engine import ResolutionEngine
from resolver.handle.login import Link

log = logging.getLogger("resolver.handle")

# CNRI's server stamps answers valid for 12 hours; its client refuses an expired one.
ANSWER_LIFETIME = 12 * 3600
MEMO_REFRESH = 6 * 3600  # a memoised answer older than this is made again (its expiration moves on)

# Metric labels: one per op code the node answers, so the label set stays bounded.
OP_NAMES = {
    OpCode.RESOLUTION: "resolve",
    OpCode.GET_SITE_INFO: "site_info",
    OpCode.CREATE_HANDLE: "create",
    OpCode.DELETE_HANDLE: "delete",
    OpCode.ADD_VALUE: "add_value",
    OpCode.REMOVE_VALUE: "remove_value",
    OpCode.MODIFY_VALUE: "modify_value",
    OpCode.LIST_HANDLES: "list",
    OpCode.CHALLENGE_RESPONSE: "challenge_answer",
    OpCode.VERIFY_RESPONSE: "verify",
    OpCode.HOME_PREFIX: "home",
    OpCode.UNHOME_PREFIX: "unhome",
    OpCode.LIST_HOMED_PREFIXES: "list_prefixes",
    OpCode.SESSION_SETUP: "session_setup",
    OpCode.SESSION_TERMINATE: "session_end",
    OpCode.SESSION_EXCHANGE_KEY: "session_key",
    OpCode.LOGIN: "password_login",
    OpCode.LOGIN_ID_SYSTEM: "login",
}

# The envelope and header fields the fast path reads: the envelope's flags, the message
# length, and the op code, response code and op flags.
_FAST = struct.Struct(">2xB13xiiiI")
_U32 = struct.Struct(">I")
# Requests these flags are on go the long way: digests, signatures, encryption, "bypass caches".
_SLOW_FLAGS = OpFlag.AUTHORITATIVE | OpFlag.CERTIFY | OpFlag.ENCRYPT | OpFlag.RETURN_REQUEST_DIGEST
_SLOW_BITS = int(_SLOW_FLAGS)  # as an int: an IntFlag's & runs in Python
_RESOLUTION = int(OpCode.RESOLUTION)
_BODY_AT = ENVELOPE_SIZE + HEADER_SIZE
_NO_FILTER = bytes(8)  # no index, no type
_SERVICE_TYPES = frozenset({HS_SITE, "HS_SITE.6", HS_SERV, "HS_NA_DELEGATE"})

Admin = Callable[[Message, bytes, str, str, Link | None], Awaitable[Message]]
Charge = Callable[[Identity, str], Awaitable[None]]  # a logged-in resolution against its quota


def _variant(data: bytes, handle_end: int) -> bytes:
    """What an answer to this request depends on besides the record: version, flags, spelling."""
    return data[0:4] + data[28:32] + data[34:35] + data[_BODY_AT:handle_end]


class HandleFrontend:
    """Answers Handle messages with the node's engine, registration service and site."""

    def __init__(
        self,
        engine: ResolutionEngine,
        *,
        case_sensitive: bool,
        admin: Admin | None = None,
        charge: Charge | None = None,
        key: SigningKey | None = None,
    ) -> None:
        self.engine = engine
        self._fresh = engine.fresh
        self._cold_answer = engine.cold_answer
        self._key_of = engine.key_of
        self._case_sensitive = case_sensitive
        self._admin = admin
        self._charge = charge
        self._key = key  # signs answers to CERTIFY requests that carry no session MAC
        self.site: vd.Site | None = None  # this node's HS_SITE, set once it listens

    # The hot path -------------------------------------------------------------------------

    def cached(self, data: bytes) -> bytes | None:
        """The answer to a plain resolution request whose answer is cached, else None.

        Reads only fixed offsets of ``data`` (any bytes are safe: anything unexpected is
        left to ``respond``); the answer is the memoised one with this request's session
        and request ids. Only bytes that are exactly one message are answered: the TCP
        listener hands this each read before framing it.
        """
        if len(data) < _BODY_AT + 12:
            return None
        env_flags, length, op, code, op_flags = _FAST.unpack_from(data)
        if (
            op != _RESOLUTION
            or code != 0
            or env_flags & 0xE0  # compressed, encrypted, or one part of several
            or op_flags & _SLOW_BITS
            or length != len(data) - ENVELOPE_SIZE
        ):
            return None
        handle_end = _BODY_AT + 4 + _U32.unpack_from(data, _BODY_AT)[0]
        if handle_end + 12 > len(data) or data[handle_end : handle_end + 8] != _NO_FILTER:
            return None
        try:
            spelling = data[_BODY_AT + 4 : handle_end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        key, form = self._key_of(spelling), _variant(data, handle_end)
        answer = self._cold_answer(key, form)  # a packed entry's first hit: no entry made
        if answer is None:
            entry = self._fresh(key)
            if entry is None or entry.answers is None:
                return None
            memo = entry.answers.get(form)
            if memo is None or time.monotonic() > memo[1]:
                return None
            answer = memo[0]
        return answer[:4] + data[4:12] + answer[12:]

    # Everything else ----------------------------------------------------------------------

    async def respond(self, data: bytes, peer: str, transport: str, link: Link | None = None) -> bytes:
        """The answer to one complete message (envelope first) from ``peer``, on the TCP
        connection ``link`` (None over UDP); never raises."""
        started = time.perf_counter()
        op, code = "malformed", int(ResponseCode.PROTOCOL_ERROR)
        try:
            request = decode_message(data)
        except WireError as exc:
            answer = _error_for_garbage(exc)
        else:
            op = OP_NAMES.get(request.op_code, "other")
            reply = await self._answer(request, data, peer, transport, link)
            if isinstance(reply, bytes):  # encoded already (and memoised)
                answer = reply
                code = answer_code(reply)
            else:
                if request.flags & OpFlag.CERTIFY and not reply.credential and self._key is not None:
                    reply = self._signed(reply)
                code = reply.response_code
                answer = encode_message(reply)
        metrics.observe(transport, op, code, 0, time.perf_counter() - started)
        return answer

    def _signed(self, reply: Message) -> Message:
        """``reply`` with the server's signature, as CNRI's server certifies answers."""
        assert self._key is not None
        env = reply.envelope
        prefix = bound_prefix(env.version, env.suggest, env.session_id, env.request_id)
        header_and_body = encode_payload(reply)[:-4]  # without the credential's (empty) length
        return replace(reply, credential=signed_credential(self._key, header_and_body, prefix, env.version))

    async def _answer(
        self, request: Message, data: bytes, peer: str, transport: str, link: Link | None
    ) -> Message | bytes:
        try:
            if not request.is_request:
                return _error(request, ResponseCode.PROTOCOL_ERROR, "a response was sent where a request was expected")
            if request.op_code == OpCode.RESOLUTION:
                if link is not None and link.identity is not None and self._charge is not None:
                    await self._charge(link.identity, peer)  # the transport sent it past the cache
                return await self._resolve(request, data)
            if request.op_code == OpCode.GET_SITE_INFO:
                if self.site is None:
                    return _error(request, ResponseCode.SERVER_TOO_BUSY, "the node is starting")
                return response_to(request, GetSiteInfoResponse(self.site), expiration=_expiration())
            if self._admin is None:
                return _error(
                    request, ResponseCode.OPERATION_NOT_SUPPORTED, f"{request.op_code.name} is not served by this node"
                )
            return await self._admin(request, data, peer, transport, link)
        except HandleError as exc:
            metrics.error_answered(exc)
            return _error(request, exc.code, exc.message)
        except Exception:
            log.exception("unexpected error answering %s from %s over %s", request.op_code.name, peer, transport)
            return _error(request, ResponseCode.ERROR, "unexpected server error")

    async def _resolve(self, request: Message, data: bytes) -> Message | bytes:
        body = request.body
        assert isinstance(body, ResolutionRequest)
        handle = parse_handle(body.handle, case_sensitive=self._case_sensitive)
        if not request.flags & OpFlag.RECURSIVE:  # the client asks this node for what it holds, nothing more
            check_responsible(handle.zone, self.engine.node_prefix, handle.text, handle=handle.text)
        if request.recursion_count >= self.engine.max_depth:
            raise RecursionLoop(
                f"the query for {handle.text} passed through {request.recursion_count} servers; the limit is "
                f"{self.engine.max_depth}",
                handle=handle.text,
            )
        entry = await self.engine.lookup(handle, ())
        reply = self._resolution(request, body, entry, self._with_site(handle, entry.public))
        plain = not body.indexes and not body.types and not (request.flags & _SLOW_FLAGS)
        if not plain or request.envelope.compressed or request.envelope.encrypted or request.envelope.truncated:
            return reply
        # Memoised for ``cached``: the same request from anyone else is then answered from bytes.
        handle_end = _BODY_AT + 4 + _U32.unpack_from(data, _BODY_AT)[0]
        encoded = encode_message(reply)
        self.engine.remember_answer(entry, _variant(data, handle_end), encoded, time.monotonic() + MEMO_REFRESH)
        return encoded

    def _with_site(self, handle: Handle, values: tuple[HandleValue, ...]) -> tuple[HandleValue, ...]:
        """A prefix handle this node serves itself, shown with this node's HS_SITE.

        CNRI's resolver finds a prefix's servers only in the HS_SITE / HS_SERV values of its
        prefix handle (HandleResolver.getServiceInfoForNA, 7.3.1 line 698); without them it gives
        up with SERVICE_NOT_FOUND (line 804) before asking for any handle under the prefix.
        """
        if self.site is None or not handle.is_prefix_handle or any(v.type in _SERVICE_TYPES for v in values):
            return values
        if not is_at_or_under(handle.zone, self.engine.node_prefix):
            return values  # someone else's prefix, as the node that holds it answered
        taken = {v.index for v in values}
        index = next(i for i in range(1, len(taken) + 2) if i not in taken)
        return (*values, HandleValue(index, HS_SITE, vd.encode_site(self.site)))

    @staticmethod
    def _resolution(
        request: Message, body: ResolutionRequest, entry: Entry, public: tuple[HandleValue, ...]
    ) -> Message:
        if entry.record is None:
            return _error(request, ResponseCode.HANDLE_NOT_FOUND, f"handle {body.handle} not found")
        values = _selected(public, body.indexes, body.types)
        if not values:
            return _error(request, ResponseCode.VALUES_NOT_FOUND, f"no value of {body.handle} matches the request")
        return response_to(request, ResolutionResponse(body.handle, tuple(values)), expiration=_expiration())


def _selected(values: tuple[HandleValue, ...], indexes: tuple[int, ...], types: tuple[str, ...]) -> list[HandleValue]:
    """handle.net's filter: every value when neither is given, else those matching either."""
    if not indexes and not types:
        return list(values)
    return [v for v in values if v.index in indexes or any(v.type_matches(t) for t in types)]


def _expiration() -> int:
    return int(time.time()) + ANSWER_LIFETIME


def _error(request: Message, code: int, message: str) -> Message:
    return response_to(request, ErrorResponse(message), code, expiration=_expiration())


def _error_for_garbage(exc: WireError) -> bytes:
    """An answer to bytes that did not decode: with the request's ids when they could be read."""
    env = exc.envelope or Envelope()
    return error_answer(env.request_id, env.session_id, _safe_version(env), exc.op_code, exc.code, exc.message)


def error_answer(
    request_id: int, session_id: int, version: tuple[int, int], op: int | None, code: int, message: str
) -> bytes:
    """An error answer made from what could be read of a request (or of an answer it replaces)."""
    reply = Message(
        op_code=OpCode(op) if op in OP_NAMES else OpCode.RESERVED,
        body=ErrorResponse(message),
        response_code=int(code),
        envelope=Envelope(request_id=request_id, session_id=session_id, version=version),
        expiration=_expiration(),
    )
    return encode_message(reply)


def answer_code(answer: bytes) -> int:
    """The response code in an encoded answer's header."""
    return int.from_bytes(answer[ENVELOPE_SIZE + 4 : ENVELOPE_SIZE + 8], "big")


def _safe_version(env: Any) -> tuple[int, int]:
    version: tuple[int, int] = env.version
    return version if 0 <= version[0] <= 3 and 0 <= version[1] <= 255 else (2, 11)
