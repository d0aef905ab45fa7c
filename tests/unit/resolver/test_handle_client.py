"""The Handle protocol client against real UDP and TCP servers on loopback, in-process."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from protocol import valuedata as vd
from protocol.codes import ResponseCode
from protocol.identifiers import parse_handle
from protocol.records import HandleRecord, HandleValue
from protocol.wire.message import (
    ChallengeResponse,
    ErrorResponse,
    Message,
    OpCode,
    ResolutionRequest,
    ResolutionResponse,
    encode_envelope,
    encode_message,
)
from resolver.delegation.handle_client import HandleClient
from resolver.delegation.hop import HopFailed
from resolver.delegation.sites import HandleTarget, Target, handle_target, server_targets
from resolver.delegation.target_policy import TargetPolicy
from tests.support.handle_server import SILENT, HandleServer, as_datagrams, reply

HANDLE = "88.300/DOC-1"
URL = HandleValue(1, "URL", b"https://example.com/doc-1", timestamp=1_700_000_000)
EMAIL = HandleValue(2, "EMAIL", b"ops@example.com")
LOOPBACK = TargetPolicy.from_text(["127.0.0.0/8"])
HOP = 1.0


@pytest.fixture
async def server() -> AsyncIterator[HandleServer]:
    running = await HandleServer({HANDLE: (URL, EMAIL)}).start()
    yield running
    await running.stop()


def both(server: HandleServer) -> HandleTarget:
    return HandleTarget("127.0.0.1", server.udp_port, server.tcp_port)


async def ask(target: HandleTarget, handle: str = "88.300/doc-1", *, via: tuple[str, ...] = ()) -> HandleRecord | None:
    client = HandleClient(HOP, LOOPBACK)
    return await client.resolve(target, parse_handle(handle), via)


async def failure(target: HandleTarget, handle: str = "88.300/doc-1") -> HopFailed:
    with pytest.raises(HopFailed) as failed:
        await ask(target, handle)
    return failed.value


# Answers ------------------------------------------------------------------------------------


async def test_a_handle_is_resolved_over_udp_alone(server: HandleServer) -> None:
    record = await ask(both(server))
    assert record is not None
    assert record.handle == "88.300/doc-1"  # as asked, like a local answer
    assert record.values == (URL, EMAIL)
    assert (len(server.seen_udp), len(server.seen_tcp)) == (1, 0)
    request = server.seen_udp[0]
    assert request.op_code == OpCode.RESOLUTION
    assert request.body == ResolutionRequest("88.300/doc-1")
    assert request.version == (2, 10)
    assert request.envelope.request_id > 0


async def test_the_recursion_count_says_how_many_nodes_the_query_passed_through(server: HandleServer) -> None:
    await ask(both(server), via=("top", "a"))
    assert server.seen_udp[0].recursion_count == 3  # top, a, and this node


async def test_request_ids_are_random(server: HandleServer) -> None:
    for _ in range(3):
        await ask(both(server))
    assert len({m.request_id for m in server.seen_udp}) == 3


async def test_not_found_is_none(server: HandleServer) -> None:
    assert await ask(both(server), "88.300/missing") is None


async def test_a_server_with_only_tcp_is_asked_over_tcp(server: HandleServer) -> None:
    record = await ask(HandleTarget("127.0.0.1", None, server.tcp_port))
    assert record is not None and record.values == (URL, EMAIL)
    assert (len(server.seen_udp), len(server.seen_tcp)) == (0, 1)


async def test_a_multi_datagram_answer_is_reassembled_in_any_order(server: HandleServer) -> None:
    big = tuple(HandleValue(n, "DESC", bytes([64 + n]) * 700) for n in range(1, 6))
    server.records["88.300/BIG"] = big
    parts: list[int] = []

    def backwards(request: Message, answer: Message) -> list[bytes]:
        datagrams = as_datagrams(answer)
        parts.append(len(datagrams))
        return datagrams[::-1]

    server.udp = backwards
    record = await ask(both(server), "88.300/big")
    assert record is not None and record.values == big
    assert parts[0] > 5 and len(server.seen_tcp) == 0


# Falling back to TCP ------------------------------------------------------------------------


async def test_silent_udp_then_tcp_answers_within_the_hop(server: HandleServer) -> None:
    server.udp = SILENT
    started = time.monotonic()
    record = await ask(both(server))
    assert record is not None and record.values == (URL, EMAIL)
    assert time.monotonic() - started < HOP
    assert len(server.seen_udp) == 2  # sent again once, like CNRI's retries
    assert len(server.seen_tcp) == 1


async def test_rc_error_over_udp_is_asked_again_over_tcp(server: HandleServer) -> None:
    server.udp = lambda request, answer: as_datagrams(reply(request, ResponseCode.ERROR, ErrorResponse("busy")))
    record = await ask(both(server))
    assert record is not None and len(server.seen_tcp) == 1


async def test_an_answer_with_another_request_id_is_ignored(server: HandleServer) -> None:
    def wrong_id(request: Message, answer: Message) -> list[bytes]:
        other = replace(answer, envelope=replace(answer.envelope, request_id=answer.request_id ^ 1))
        return as_datagrams(other)

    server.udp = wrong_id
    record = await ask(both(server))
    assert record is not None and len(server.seen_tcp) == 1  # UDP gave nothing it could take

    def wrong_then_right(request: Message, answer: Message) -> list[bytes]:
        return wrong_id(request, answer) + as_datagrams(answer)

    server.udp, server.seen_tcp = wrong_then_right, []
    assert await ask(both(server)) is not None
    assert server.seen_tcp == []


async def test_an_answer_from_another_port_is_ignored(server: HandleServer) -> None:
    server.udp_from_elsewhere = True
    record = await ask(both(server))
    assert record is not None and len(server.seen_tcp) == 1


async def test_garbage_over_udp_falls_back_to_tcp_and_garbage_over_tcp_fails(server: HandleServer) -> None:
    def garbage(request: Message, answer: Message) -> list[bytes]:
        env = replace(answer.envelope, length=30)
        return [encode_envelope(env) + b"\xff" * 30]

    server.udp = garbage
    assert await ask(both(server)) is not None
    assert len(server.seen_tcp) == 1
    server.tcp = garbage
    failed = await failure(both(server))
    assert failed.result == "unreachable"
    assert "not a Handle message" in failed.detail and "TCP" in failed.detail


async def test_an_oversize_answer_is_refused_before_it_is_read(server: HandleServer) -> None:
    def oversize(request: Message, answer: Message) -> list[bytes]:
        return [encode_envelope(replace(answer.envelope, length=1 << 20)) + b"\0" * 1024]

    server.tcp = oversize
    failed = await failure(HandleTarget("127.0.0.1", None, server.tcp_port))
    assert "outside 0..262144" in failed.detail


async def test_a_tcp_answer_with_another_request_id_is_refused(server: HandleServer) -> None:
    server.tcp = lambda request, answer: [
        encode_message(replace(answer, envelope=replace(answer.envelope, request_id=answer.request_id + 1)))
    ]
    failed = await failure(HandleTarget("127.0.0.1", None, server.tcp_port))
    assert "answered request" in failed.detail


async def test_a_silent_server_fails_within_the_hop_timeout(server: HandleServer) -> None:
    server.udp = server.tcp = SILENT  # TCP accepts and never answers
    started = time.monotonic()
    failed = await failure(both(server))
    assert HOP <= time.monotonic() - started < HOP + 0.5
    assert failed.result == "unreachable"
    assert failed.message == f"127.0.0.1:{server.udp_port} could not be reached or did not answer within 1 s"


async def test_nothing_listening_fails_at_once() -> None:
    # Both ports stay held, so no other process can be given them while the test runs (a closed
    # port once went to a server that answered). A TCP socket bound and not listening refuses
    # connections; a UDP socket connected elsewhere takes no datagram from us, so the kernel
    # answers with ICMP port unreachable.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        udp.connect(("127.0.0.1", 9))
        tcp.bind(("127.0.0.1", 0))
        started = time.monotonic()
        failed = await failure(HandleTarget("127.0.0.1", udp.getsockname()[1], tcp.getsockname()[1]))
        assert time.monotonic() - started < HOP / 2  # ICMP port unreachable, then a refused connection
    assert failed.result == "unreachable"
    assert "UDP: ConnectionRefusedError" in failed.detail and "TCP:" in failed.detail


# Hostile answers ------------------------------------------------------------------------------


async def test_an_answer_for_another_handle_is_refused(server: HandleServer) -> None:
    server.udp = lambda request, answer: as_datagrams(replace(answer, body=ResolutionResponse("88.300/other", (URL,))))
    failed = await failure(both(server))
    assert failed.result == "bailiwick"
    assert "'88.300/other', not for 88.300/doc-1" in failed.message


async def test_an_answer_in_other_case_is_the_same_handle(server: HandleServer) -> None:
    server.udp = lambda request, answer: as_datagrams(replace(answer, body=ResolutionResponse("88.300/DOC-1", (URL,))))
    record = await ask(both(server))
    assert record is not None and record.handle == "88.300/doc-1"


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ((URL, URL), "more than once"),
        ((HandleValue(0, "URL", b"x"),), "outside 1.."),
        ((HandleValue(1, "UR\nL", b"x"),), "unusable type"),
    ],
)
async def test_a_malformed_record_is_refused(
    server: HandleServer, values: tuple[HandleValue, ...], problem: str
) -> None:
    server.udp = lambda request, answer: as_datagrams(replace(answer, body=ResolutionResponse(HANDLE, values)))
    failed = await failure(both(server))
    assert problem in failed.message and failed.result == "error"


@pytest.mark.parametrize(
    ("code", "result"),
    [
        (ResponseCode.SERVER_NOT_RESPONSIBLE, "error"),
        (ResponseCode.AUTHENTICATION_NEEDED, "error"),
        (ResponseCode.RECURSION_COUNT_TOO_HIGH, "loop"),
        (ResponseCode.SERVER_TOO_BUSY, "error"),
    ],
)
async def test_other_response_codes_fail_the_hop(server: HandleServer, code: ResponseCode, result: str) -> None:
    body = ChallengeResponse(b"n" * 16) if code == ResponseCode.AUTHENTICATION_NEEDED else ErrorResponse("no")
    server.udp = lambda request, answer: as_datagrams(reply(request, code, body))
    failed = await failure(both(server))
    assert (failed.code, failed.result) == (code, result)
    assert f"answered {int(code)} ({code.name})" in failed.message


async def test_a_refused_address_is_never_asked(server: HandleServer) -> None:
    client = HandleClient(HOP)  # the default policy: loopback refused
    with pytest.raises(HopFailed) as refused:
        await client.resolve(both(server), parse_handle("88.300/doc-1"), ())
    assert refused.value.result == "refused"
    assert server.seen_udp == [] and server.seen_tcp == []


# Choosing the interface -----------------------------------------------------------------------


def test_http_is_preferred_and_udp_tcp_used_when_a_server_has_nothing_else() -> None:
    http = vd.Server(1, "192.0.2.1", b"", (vd.Interface("TCP", 2641), vd.Interface("HTTP", 8000)))
    hdl = vd.Server(2, "192.0.2.2", b"", (vd.Interface("UDP", 2641), vd.Interface("TCP", 2642)))
    admin_only = vd.Server(3, "192.0.2.3", b"", (vd.Interface("TCP", 2641, query=False, admin=True),))
    assert server_targets([http, hdl, admin_only, hdl]) == (
        Target("http://192.0.2.1:8000", "192.0.2.1:8000"),
        HandleTarget("192.0.2.2", 2641, 2642),
    )
    assert handle_target(admin_only) is None
    v6 = HandleTarget("2001:db8::1", None, 2641)
    assert (v6.peer, v6.label) == ("[2001:db8::1]:2641", "site")
