"""Asking a server over the Handle binary protocol (RFC 3652): idnode as a Handle client.

CNRI's servers, and the real top-level nodes, name only UDP and TCP interfaces in their
HS_SITE values. ``resolver.delegation.sites.server_targets`` picks, per server a route
names, its HTTP(S) interface when it has one and otherwise its Handle interfaces;
``HandleClient`` asks those the way CNRI's ``HandleResolver`` does: UDP first, then TCP
when UDP gave nothing usable (silence, an incomplete multi-datagram answer, bytes that
are not a message, or RC_ERROR, which CNRI's client also treats as "try the next
protocol"). The whole hop, UDP and TCP together, is bounded by the same hop timeout as
an HTTP request; UDP may use ``UDP_SHARE`` of it when there is a TCP interface to fall
back to. The request is the one CNRI's resolver sends: protocol 2.10 suggesting 2.11,
CNRI's default flags (recursive, cache-certify, public only), a random request id.
As over HTTP, every way of getting no usable answer (silence, a refused port, bytes that
are not a Handle message) is the one ``unreachable`` message; the cause goes to the log.

Every answer is hostile until checked, as over HTTP: datagrams count only from the
address and port asked (a connected socket) and with the random request id sent; a
message is at most ``MAX_MESSAGE`` (256 KiB, the envelope's own limit) and decoded by
the strict codec (``protocol.wire.message``); a resolution answer is then held to the hop
rule (``resolver.delegation.hop``) that answers over HTTP are held to too, so the
delegator's failover, caching and serve-stale apply unchanged.

The protocol has no ``Idnode-Via``: the header's recursion count carries how many nodes
the query has passed through, this one included (``len(via) + 1``, what the Via header
would list). A server that counts like CNRI's refuses an over-deep chain with
RC_RECURSION_COUNT_TOO_HIGH (result ``loop``); a loop through Handle-protocol servers is
cut by that count only, not recognised by node id.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence

from protocol.codes import ResponseCode
from protocol.identifiers import Handle
from protocol.records import HandleRecord
from protocol.wire.message import (
    MAX_MESSAGE,
    PROTOCOL_VERSION,
    Envelope,
    ErrorResponse,
    Message,
    OpCode,
    Reassembler,
    ResolutionRequest,
    ResolutionResponse,
    WireError,
    decode_envelope,
    decode_message,
    encode_payload,
    split_datagrams,
)
from protocol.wire.stream import frame, read_message
from resolver import metrics
from resolver.config import DEFAULTS
from resolver.delegation.hop import MAX_SHOWN, HopFailed, accept, unreachable
from resolver.delegation.sites import HandleTarget
from resolver.delegation.target_policy import TargetPolicy, TargetRefused

log = logging.getLogger("resolver.handle_client")

REQUEST_VERSION = (2, 10)  # what CNRI 7.3 and the Chinese SDKs speak: every server reads it
UDP_SHARE = 0.5  # of the hop timeout, for UDP when TCP is there to fall back to
UDP_SENDS = 2  # the request is sent again once if nothing came back (CNRI: three times)


class _NoAnswer(Exception):
    """One transport gave nothing usable; the message is for the log."""


class HandleClient:
    """Resolution over the Handle protocol; holds no connection between queries."""

    def __init__(
        self,
        hop_timeout: float = DEFAULTS.upstream_timeout,
        policy: TargetPolicy | None = None,
        source_address: str | None = None,
    ) -> None:
        self.hop_timeout = hop_timeout
        self.policy = policy or TargetPolicy()
        self.local = None if source_address is None else (source_address, 0)  # where queries leave from

    async def close(self) -> None:
        """Nothing to close: no connection outlives a query."""

    async def resolve(
        self, target: HandleTarget, handle: Handle, via: Sequence[str], *, case_sensitive: bool = False
    ) -> HandleRecord | None:
        """Ask ``target`` for ``handle``: its record, None when it does not exist, or HopFailed."""
        address = await self._address(target)
        request_id = secrets.randbits(31) or 1
        request = _request(handle, len(via) + 1, request_id)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.hop_timeout):
                answer = await self._exchange(address, target, request, request_id)
        except TimeoutError:
            cause = f"{target.peer}: no usable answer over UDP or TCP within {self.hop_timeout:g} s"
            raise HopFailed(unreachable(target.peer, self.hop_timeout), "unreachable", detail=cause) from None
        finally:
            metrics.UPSTREAM_DURATION.labels(target.label).observe(time.perf_counter() - started)
        return _record(answer, target, handle, case_sensitive)

    async def _address(self, target: HandleTarget) -> str:
        try:
            return await self.policy.address(target.address)
        except TargetRefused as exc:
            message = f"{target.peer} was not asked: {exc.message}"
            raise HopFailed(message, "refused", detail=f"{message} ({exc.detail})" if exc.detail else "") from None

    async def _exchange(self, address: str, target: HandleTarget, request: bytes, request_id: int) -> Message:
        """The answer over UDP, else over TCP; HopFailed when neither gave one."""
        failures = []
        if target.udp_port is not None:
            window = self.hop_timeout * UDP_SHARE if target.tcp_port is not None else self.hop_timeout
            try:
                answer = await _ask_udp(address, target.udp_port, request, request_id, window, self.local)
                if answer.response_code != ResponseCode.ERROR or target.tcp_port is None:
                    return answer
                failures.append(f"UDP: RC_ERROR {_error_text(answer)!r}")
            except _NoAnswer as exc:
                failures.append(f"UDP: {exc}")
        if target.tcp_port is not None:
            try:
                return await _ask_tcp(address, target.tcp_port, request, request_id, self.local)
            except _NoAnswer as exc:
                failures.append(f"TCP: {exc}")
        cause = f"{target.peer}: " + "; ".join(failures)
        raise HopFailed(unreachable(target.peer, self.hop_timeout), "unreachable", detail=cause)


def _request(handle: Handle, recursion: int, request_id: int) -> bytes:
    """A resolution request for every value of ``handle``, without its envelope."""
    message = Message(
        op_code=OpCode.RESOLUTION,
        body=ResolutionRequest(handle.text),
        envelope=Envelope(request_id=request_id, version=REQUEST_VERSION, suggest=PROTOCOL_VERSION),
        recursion_count=min(recursion, 255),
    )
    return encode_payload(message)


def _envelope(request_id: int, length: int) -> Envelope:
    return Envelope(request_id=request_id, version=REQUEST_VERSION, suggest=PROTOCOL_VERSION, length=length)


# UDP ----------------------------------------------------------------------------------------


class _Datagrams(asyncio.DatagramProtocol):
    """Collects the datagrams of one exchange; the socket is connected, so only the peer's arrive."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1024)
        self.error: OSError | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not self.queue.full():
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable, on Linux
        self.error = exc if isinstance(exc, OSError) else OSError(str(exc))
        self.queue.put_nowait(b"")


async def _ask_udp(
    address: str, port: int, request: bytes, request_id: int, window: float, local: tuple[str, int] | None
) -> Message:
    loop = asyncio.get_running_loop()
    try:
        transport, datagrams = await loop.create_datagram_endpoint(
            _Datagrams, remote_addr=(address, port), local_addr=local
        )
    except OSError as exc:
        raise _NoAnswer(f"cannot send: {exc}") from None
    try:
        parts = split_datagrams(_envelope(request_id, len(request)), request)
        reassembler = Reassembler(max_pending=1, max_per_source=1, max_bytes=MAX_MESSAGE)
        for _ in range(UDP_SENDS):
            for part in parts:
                transport.sendto(part)
            try:
                async with asyncio.timeout(window / UDP_SENDS):
                    return await _udp_answer(datagrams, reassembler, request_id)
            except TimeoutError:
                continue
        raise _NoAnswer(f"no complete answer within {window:.3g} s")
    finally:
        transport.close()


async def _udp_answer(datagrams: _Datagrams, reassembler: Reassembler, request_id: int) -> Message:
    """The first complete message with ``request_id``; datagrams for other requests are dropped."""
    while True:
        datagram = await datagrams.queue.get()
        if datagrams.error is not None:
            raise _NoAnswer(f"{datagrams.error.__class__.__name__}: {datagrams.error}")
        try:
            if decode_envelope(datagram).request_id != request_id:
                continue
            whole = reassembler.add("peer", datagram, time.monotonic())
            if whole is not None:
                return decode_message(whole)
        except WireError as exc:
            if exc.request_id == request_id:
                raise _NoAnswer(f"not a Handle message: {exc.message}") from None


# TCP ----------------------------------------------------------------------------------------


async def _ask_tcp(address: str, port: int, request: bytes, request_id: int, local: tuple[str, int] | None) -> Message:
    try:
        reader, writer = await asyncio.open_connection(address, port, limit=2**16, local_addr=local)
    except OSError as exc:
        raise _NoAnswer(f"cannot connect: {exc.__class__.__name__}: {exc}") from None
    try:
        writer.write(frame(_envelope(request_id, len(request)), request))
        envelope, answer = await read_message(reader.readexactly)  # a length over MAX_MESSAGE is never read
        if envelope.request_id != request_id:
            raise _NoAnswer(f"answered request {envelope.request_id}, not {request_id}")
        return decode_message(answer)
    except asyncio.IncompleteReadError as exc:
        raise _NoAnswer(f"the connection closed after {len(exc.partial)} bytes of a message") from None
    except WireError as exc:
        raise _NoAnswer(f"not a Handle message: {exc.message}") from None
    except OSError as exc:
        raise _NoAnswer(f"{exc.__class__.__name__}: {exc}") from None
    finally:
        writer.close()


# The answer -----------------------------------------------------------------------------------


def _record(answer: Message, target: HandleTarget, handle: Handle, case_sensitive: bool) -> HandleRecord | None:
    """What ``answer`` says of ``handle``: its record, None (not found), or HopFailed."""
    peer = target.peer
    if answer.is_request or answer.op_code != OpCode.RESOLUTION:
        raise HopFailed(f"{peer} did not answer with a resolution response (op code {int(answer.op_code)})")
    body = answer.body
    found = isinstance(body, ResolutionResponse)  # the codec's only success body for RESOLUTION
    return accept(
        peer,
        handle,
        answer.response_code,
        body.handle if isinstance(body, ResolutionResponse) else None,
        lambda: body.values if isinstance(body, ResolutionResponse) else (),
        said=_error_text(answer),
        case_sensitive=case_sensitive,
        named_when_missing=found,
    )


def _error_text(answer: Message) -> str:
    body = answer.body
    return body.message[:MAX_SHOWN] if isinstance(body, ErrorResponse) else ""
