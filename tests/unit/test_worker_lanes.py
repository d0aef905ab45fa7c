"""bench.worker_lanes: whose socket a burst showed, and the pipelined drivers against a scripted peer."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from bench.handle_load_base import REPLY_FIELDS, RID_OFFSET, resolution_request
from bench.worker_lanes import HttpLane, UdpLane, owner
from protocol.codes import ResponseCode


def test_owner_is_the_worker_that_did_nearly_all_the_work() -> None:
    assert owner({101: 0.30, 102: 0.01}) == 101
    assert owner({101: 0.0, 102: 0.12, 103: 0.01}) == 102


def test_owner_is_unknown_when_the_work_was_split_or_absent() -> None:
    assert owner({101: 0.15, 102: 0.12}) is None
    assert owner({101: 0.0, 102: 0.0}) is None


@pytest.fixture
def stream_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    b.settimeout(2)
    yield a, b
    a.close()
    b.close()


def _response(status: int, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )


def test_http_lane_pipelines_a_window_and_reads_responses_cut_anywhere(
    stream_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = stream_pair
    lane = HttpLane(client, ["a/1", "b/2", "c/3"], [2, 0, 1], "/api/handles/", window=2)
    lane.fill()
    sent = server.recv(4096)
    get = "GET /api/handles/{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert sent == (get.format("c/3") + get.format("a/1")).encode()
    replies = _response(200, b'{"responseCode":1}') + _response(404, b'{"responseCode":100}')
    for piece in (replies[:30], replies[30:70], replies[70:]):
        server.sendall(piece)
        lane.readable()
    assert (lane.ok, dict(lane.failures), lane.in_flight) == (1, {404: 1}, 0)
    lane.fill()
    assert server.recv(4096).startswith(b"GET /api/handles/b/2 ")
    server.sendall(_response(200, b"{}"))
    lane.readable()
    assert lane.finished and lane.ok == 2


@pytest.fixture
def datagram_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.settimeout(2)
    yield a, b
    a.close()
    b.close()


def _reply(request: bytes, code: int) -> bytes:
    rid = int.from_bytes(request[RID_OFFSET : RID_OFFSET + 4], "big")
    return REPLY_FIELDS.pack(rid, 0, 40, code).ljust(60, b"\0")


def test_udp_lane_counts_answers_by_request_id_and_sends_again_when_stalled(
    datagram_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = datagram_pair
    templates = [bytearray(resolution_request(h)) for h in ("88.118/x", "88.118/y")]
    lane = UdpLane(client, templates, [1, 0, 1], window=2)
    lane.fill()
    first, second = server.recv(2048), server.recv(2048)
    assert b"88.118/y" in first and b"88.118/x" in second
    server.send(_reply(second, ResponseCode.HANDLE_NOT_FOUND))
    lane.readable()
    lane.stalled()  # the first request is sent again, under its own id
    again = server.recv(2048)
    assert again == first
    server.send(_reply(first, ResponseCode.SUCCESS))
    server.send(_reply(again, ResponseCode.SUCCESS))
    lane.readable()
    assert (lane.ok, dict(lane.failures), lane.late) == (1, {ResponseCode.HANDLE_NOT_FOUND: 1}, 1)
    lane.fill()
    server.send(_reply(server.recv(2048), ResponseCode.SUCCESS))
    lane.readable()
    assert lane.finished and lane.ok == 2
