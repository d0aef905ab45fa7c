"""The Handle protocol front-end, end to end: a real node, real UDP and TCP sockets.

Resolution answers the same records as the REST API (one cache entry for both), with the
protocol's codes; bad bytes get a clean error or are dropped, never a crash or a hang; the
abuse bounds (amplification, per-source rate, half-open connections) hold and are counted.
"""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import replace

from protocol import valuedata as vd
from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire.message import (
    ENVELOPE_SIZE,
    Envelope,
    ErrorResponse,
    GenericRequest,
    GetSiteInfoResponse,
    Message,
    OpCode,
    ResolutionResponse,
    decode_message,
    encode_message,
)
from tests.support.handleclient import read_message, resolution, tcp, udp, udp_raw
from tests.support.nodeproc import ADMIN, Node, record, url_value

EMAIL = {"index": 2, "type": "EMAIL", "data": "plant@example.com"}
HIDDEN = {"index": 3, "type": "NOTE", "data": "admins only", "permissions": "1100"}


def values_of(message: Message) -> list[HandleValue]:
    assert isinstance(message.body, ResolutionResponse), message.body
    return list(message.body.values)


def test_resolution_over_udp_and_tcp_answers_what_the_rest_api_does(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "2"]
    node = fresh_node.start()
    path = "/api/handles/88.118/Proto-1"
    assert node.put(path, record(url_value(1, "https://p.example/1"), EMAIL, HIDDEN), auth=ADMIN).status == 201
    rest = node.get(path).json["values"]

    def over_udp(request: bytes) -> Message:
        return udp(node.handle_port, request)

    def over_tcp(request: bytes) -> Message:
        return tcp(node.handle_port, request)[0]

    for ask in (over_udp, over_tcp):
        answer = ask(resolution("88.118/proto-1"))
        assert answer.response_code == ResponseCode.SUCCESS
        shown = values_of(answer)
        assert [v.index for v in shown] == [v["index"] for v in rest] == [1, 2]  # never the admin-only value
        assert shown[0].data == b"https://p.example/1" and getattr(answer.body, "handle", None) == "88.118/proto-1"
        again = ask(resolution("88.118/proto-1", rid=4242))  # from the memoised bytes, with this request's id
        assert again.request_id == 4242 and values_of(again) == shown
        only_email = ask(resolution("88.118/Proto-1", types=("EMAIL",)))
        assert [v.index for v in values_of(only_email)] == [2]
        by_index = ask(resolution("88.118/Proto-1", indexes=(1,)))
        assert [v.index for v in values_of(by_index)] == [1]
        assert ask(resolution("88.118/Proto-1", types=("NONE",))).response_code == ResponseCode.VALUES_NOT_FOUND
        missing = ask(resolution("88.118/no-such"))
        assert missing.response_code == ResponseCode.HANDLE_NOT_FOUND and isinstance(missing.body, ErrorResponse)
        elsewhere = ask(resolution("99.1/x"))
        assert elsewhere.response_code == ResponseCode.SERVER_NOT_RESPONSIBLE
    assert node.metric("idnode_requests_total", until=lambda n: n >= 4, frontend="udp", op="resolve", code="1") >= 4
    assert node.metric("idnode_requests_total", until=lambda n: n >= 1, frontend="tcp", op="resolve", code="100") >= 1


def test_a_write_is_seen_over_the_protocol_at_once_by_every_worker(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "2"]
    node = fresh_node.start()
    path = "/api/handles/88.118/proto-write"
    assert node.put(path, record(url_value(1, "https://old.example/")), auth=ADMIN).status == 201
    # New sockets each time: the kernel spreads them over both workers, which both cache it.
    assert {values_of(udp(node.handle_port, resolution("88.118/proto-write")))[0].data for _ in range(20)} == {
        b"https://old.example/"
    }
    assert node.put(path, record(url_value(1, "https://new.example/")), auth=ADMIN).status == 200
    assert {values_of(udp(node.handle_port, resolution("88.118/proto-write")))[0].data for _ in range(20)} == {
        b"https://new.example/"
    }
    assert node.get(path).json["values"][0]["data"]["value"] == "https://new.example/"


def test_a_request_in_several_datagrams_is_put_together_and_answered(node: Node) -> None:
    assert node.put(
        "/api/handles/88.118/proto-parts", record(url_value(1, "https://parts.example/")), auth=ADMIN
    ).status in (
        200,
        201,
    )
    types = (*(f"TYPE-{n:04d}" for n in range(60)), "URL")  # a request of ~900 bytes
    request = resolution("88.118/proto-parts", types=types)
    assert len(request) > 512
    answer = udp(node.handle_port, request, split=True)
    assert answer.response_code == ResponseCode.SUCCESS and values_of(answer)[0].data == b"https://parts.example/"


def test_an_answer_too_large_for_one_datagram_sends_the_client_to_tcp(node: Node) -> None:
    big = [url_value(n, f"https://big.example/{'x' * 150}/{n}") for n in range(1, 6)]
    assert node.put("/api/handles/88.118/proto-big", record(*big), auth=ADMIN).status in (200, 201)
    request = resolution("88.118/proto-big")
    for _ in range(2):  # the long way, then from the memo
        raw = udp_raw(node.handle_port, request)
        assert raw is not None and len(raw) <= 512
        refused = decode_message(raw)
        assert refused.response_code == ResponseCode.ERROR and "TCP" in refused.body.message  # type: ignore[attr-defined]
    whole = tcp(node.handle_port, request)[0]
    assert whole.response_code == ResponseCode.SUCCESS and len(values_of(whole)) == 5
    assert node.metric("idnode_handle_dropped_total", until=lambda n: n >= 2, transport="udp", reason="too_large") >= 2


def test_site_info_names_this_nodes_handle_port(node: Node) -> None:
    request = encode_message(Message(OpCode.GET_SITE_INFO, GenericRequest(""), envelope=Envelope(request_id=7)))
    for answer in (udp(node.handle_port, request), tcp(node.handle_port, request)[0]):
        assert answer.response_code == ResponseCode.SUCCESS and isinstance(answer.body, GetSiteInfoResponse)
        (server,) = answer.body.site.servers
        assert server.address == "127.0.0.1"
        assert {(i.protocol, i.port) for i in server.interfaces} == {
            ("TCP", node.handle_port),
            ("UDP", node.handle_port),
        }


def test_bad_bytes_get_a_protocol_error_or_nothing_and_the_node_goes_on(node: Node) -> None:
    good = resolution("88.118/whatever")
    for bad in (
        good[:30],  # cut inside the header
        good[:-6],  # the envelope's length says more than came
        good[:20] + b"\xff" * (len(good) - 20),  # a header of nonsense
        bytes(20) + b"\x00\x00\x00\x01",
    ):
        raw = udp_raw(node.handle_port, bad)
        if raw is not None:
            assert decode_message(raw).response_code == ResponseCode.PROTOCOL_ERROR
    with socket.create_connection(("127.0.0.1", node.handle_port), timeout=5) as sock:
        sock.sendall(good[:20] + b"\xff" * (len(good) - 20))
        answer = decode_message(read_message(sock))
        assert (
            answer.response_code == ResponseCode.PROTOCOL_ERROR and answer.request_id == decode_message(good).request_id
        )
        sock.sendall(good)  # the connection still serves
        assert decode_message(read_message(sock)).response_code == ResponseCode.HANDLE_NOT_FOUND
    with socket.create_connection(("127.0.0.1", node.handle_port), timeout=5) as sock:
        oversize = bytearray(good[:ENVELOPE_SIZE])
        oversize[16:20] = (300 * 1024).to_bytes(4, "big")
        sock.sendall(bytes(oversize))
        assert decode_message(read_message(sock)).response_code == ResponseCode.PROTOCOL_ERROR
        assert sock.recv(1) == b""  # and closed
    assert udp(node.handle_port, resolution("88.118/whatever")).response_code == ResponseCode.HANDLE_NOT_FOUND
    assert node.get("/healthz").status == 200


def test_requests_cut_anywhere_or_sent_together_are_each_answered_in_order(node: Node) -> None:
    # No KEEP_ALIVE: a request answered before the next byte comes does not close the connection.
    stream = b"".join(resolution("88.118/whatever", rid=rid) for rid in range(1, 7))
    one = len(resolution("88.118/whatever", rid=1))
    cuts = [0, 1, 19, 20, 21, one - 1, one + 30, 3 * one, 3 * one + 2, len(stream)]  # then 3 at once
    with socket.create_connection(("127.0.0.1", node.handle_port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start, end in itertools.pairwise(cuts):
            sock.sendall(stream[start:end])
            time.sleep(0.02)  # each piece its own read
        answers = [decode_message(read_message(sock)) for _ in range(6)]
    assert [a.request_id for a in answers] == [1, 2, 3, 4, 5, 6]
    assert {a.response_code for a in answers} == {ResponseCode.HANDLE_NOT_FOUND}


def test_half_open_and_idle_connections_are_cut_off(fresh_node: Node) -> None:
    fresh_node.env = {"IDNODE_HANDLE_MESSAGE_TIMEOUT": "0.5", "IDNODE_HANDLE_IDLE_TIMEOUT": "1"}
    node = fresh_node.start()
    with socket.create_connection(("127.0.0.1", node.handle_port), timeout=5) as half:
        half.sendall(resolution("88.118/x")[:30])  # and never the rest
        started = time.monotonic()
        assert half.recv(1) == b""
        assert time.monotonic() - started < 3
    with socket.create_connection(("127.0.0.1", node.handle_port), timeout=5) as idle:
        started = time.monotonic()
        assert idle.recv(1) == b""
        assert 0.5 < time.monotonic() - started < 4
    assert node.metric("idnode_handle_dropped_total", until=lambda n: n >= 1, transport="tcp", reason="timeout") >= 1
    assert node.metric("idnode_handle_dropped_total", until=lambda n: n >= 1, transport="tcp", reason="idle") >= 1


def test_a_udp_source_over_its_rate_is_dropped_and_counted(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "1"]
    fresh_node.env = {"IDNODE_HANDLE_UDP_RATE": "5", "IDNODE_HANDLE_UDP_EXEMPT": ""}  # loopback counts too
    node = fresh_node.start()
    request = resolution("88.118/rated")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        for _ in range(40):
            sock.sendto(request, ("127.0.0.1", node.handle_port))
        answered = 0
        try:
            while True:
                sock.recvfrom(4096)
                answered += 1
        except TimeoutError:
            pass
    assert 5 <= answered <= 15  # the burst (two seconds' worth), not all 40
    dropped = "idnode_handle_dropped_total"
    assert node.metric(dropped, until=lambda n: n >= 25, transport="udp", reason="rate_limited") >= 25


def test_no_handle_turns_the_protocol_off_and_a_taken_port_is_named(fresh_node: Node) -> None:
    fresh_node.args = ["--no-handle"]
    node = fresh_node.start()
    assert node.handle_port == 0 and node.get("/healthz").status == 200
    node.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        fresh_node.args = ["--handle-listen", f"127.0.0.1:{port}"]
        try:
            fresh_node.start()
        except RuntimeError as exc:
            assert "handle_listen" in str(exc) and str(port) in str(exc)
        else:
            raise AssertionError("started on a taken port")


def test_a_query_that_passed_through_too_many_servers_is_cut(node: Node) -> None:
    request = decode_message(resolution("88.118/anything"))
    looped = encode_message(replace(request, recursion_count=8))  # max_delegation_depth
    assert udp(node.handle_port, looped).response_code == ResponseCode.RECURSION_COUNT_TOO_HIGH
    fine = encode_message(replace(request, recursion_count=3))
    assert udp(node.handle_port, fine).response_code == ResponseCode.HANDLE_NOT_FOUND


def test_a_prefix_handle_served_here_names_this_node_as_its_site(node: Node) -> None:
    """CNRI's resolver looks for a prefix's servers only in HS_SITE / HS_SERV of its prefix handle."""
    grant = {"handle": "0.NA/88.118", "index": 300, "permissions": "111111111111"}
    admin = {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": grant}}
    assert node.put("/api/handles/0.NA/88.118.77", record(admin), auth=ADMIN).status in (200, 201)

    def over_udp(request: bytes) -> Message:
        return udp(node.handle_port, request)

    def over_tcp(request: bytes) -> Message:
        return tcp(node.handle_port, request)[0]

    for ask in (over_udp, over_tcp):
        for types in ((), ("HS_SITE", "HS_SERV", "HS_ADMIN")):
            answer = ask(resolution("0.NA/88.118.77", types=types))
            sites = [v for v in values_of(answer) if v.type == "HS_SITE"]
            assert len(sites) == 1 and sites[0].index == 1
            (server,) = vd.decode_site(sites[0].data).servers
            assert (server.address, {i.port for i in server.interfaces}) == ("127.0.0.1", {node.handle_port})
    assert node.put("/api/handles/88.118/not-a-prefix", record(admin), auth=ADMIN).status in (200, 201)
    plain = values_of(udp(node.handle_port, resolution("88.118/not-a-prefix")))  # not a prefix handle: untouched
    assert all(v.type != "HS_SITE" for v in plain)
