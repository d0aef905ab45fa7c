"""Handle TCP connections as China's SDKs and CNRI's clients use them, against real nodes.

The SDKs keep one connection for every request and never set KEEP_ALIVE; CNRI's clients send
one request a connection and close it once they have read the answer. Both are served; an
idle connection is closed, and a client that sends without reading is read no further and,
past the idle timeout, cut off.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.handle_load_base import resolution_request
from protocol.codes import ResponseCode
from protocol.wire.message import OpFlag, decode_message
from tests.support.handleclient import Connection, read_message, resolution, tcp
from tests.support.nodeproc import ADMIN, Node, record, url_value
from tests.support.poll import wait_until

IDLE = 1.0  # the short node's idle timeout, seconds
BIG = "x" * 16_000  # a value making each answer about 16 KB


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node of one worker that closes connections idle for ``IDLE`` seconds."""
    env = {"IDNODE_HANDLE_IDLE_TIMEOUT": str(IDLE)}
    node = Node(tmp_path_factory.mktemp("short") / "data", args=["--workers", "1"], env=env).start()
    node.put("/api/handles/88.118/CONN-BIG", record({"index": 1, "type": "DESC", "data": BIG}), auth=ADMIN)
    yield node
    node.stop()


def test_requests_on_one_connection_without_keep_alive_are_answered_in_order(node: Node) -> None:
    assert node.put("/api/handles/88.118/CONN-1", record(url_value(1, "https://c.example/1")), auth=ADMIN).status == 201
    asked = [("88.118/CONN-1" if n % 3 else f"88.118/CONN-NONE-{n}", 5000 + n) for n in range(30)]
    with Connection(node.handle_port) as conn:
        for handle, rid in asked:  # one at a time, each answer read before the next request
            request = resolution(handle, rid=rid)
            assert not decode_message(request).flags & OpFlag.KEEP_ALIVE
            answer = conn.ask(request)
            found = ResponseCode.SUCCESS if handle == "88.118/CONN-1" else ResponseCode.HANDLE_NOT_FOUND
            assert (answer.request_id, answer.response_code) == (rid, found)
        conn.sock.sendall(b"".join(resolution(handle, rid=rid + 100) for handle, rid in asked))  # all at once
        answers = [decode_message(read_message(conn.sock)) for _ in asked]
    assert [a.request_id for a in answers] == [rid + 100 for _, rid in asked]


def test_a_connection_per_request_still_works_and_the_client_closes_it(short: Node) -> None:
    for _ in range(20):  # as hdl-qresolver: connect, ask, read, close
        (answer,) = tcp(short.handle_port, resolution("88.118/CONN-BIG"))
        assert answer.response_code == ResponseCode.SUCCESS
    with Connection(short.handle_port) as conn:
        assert conn.ask(resolution("88.118/CONN-BIG")).response_code == ResponseCode.SUCCESS
        assert not conn.closed_by_peer(within=0.3)  # the node waits for the client, which closes first
    with socket.create_connection(("127.0.0.1", short.handle_port), timeout=5) as sock:
        sock.sendall(resolution("88.118/CONN-NONE", rid=77))
        sock.shutdown(socket.SHUT_WR)  # done sending: the request is still answered, then the node closes
        assert decode_message(read_message(sock)).request_id == 77
        assert sock.recv(1) == b""


def test_a_client_before_protocol_2_8_is_closed_after_its_request_as_cnri_7_closes_it(short: Node) -> None:
    """hdl-qresolver 7.3.1 suggests no version and sends one request a connection: the node
    answers and closes first, as CNRI's 7.x server does (its close would cost the node a
    wake-up); with KEEP_ALIVE, or when it sent more, the connection is kept."""
    for handle in ("88.118/CONN-BIG", "88.118/CONN-NONE"):  # answered from the cache, and from the store
        with Connection(short.handle_port) as conn:
            assert conn.ask(resolution_request(handle)).request_id == 0
            assert conn.closed_by_peer(within=2)
    with Connection(short.handle_port) as conn:
        for _ in range(3):
            assert conn.ask(resolution_request("88.118/CONN-BIG", keepalive=True)).response_code == ResponseCode.SUCCESS
        assert not conn.closed_by_peer(within=0.3)
    with Connection(short.handle_port) as conn:  # two at once: both answered, then closed
        conn.sock.sendall(resolution_request("88.118/CONN-NONE") * 2)
        assert [decode_message(read_message(conn.sock)).request_id for _ in range(2)] == [0, 0]
        assert conn.closed_by_peer(within=2)


def test_a_connection_idle_after_its_answers_is_closed(short: Node) -> None:
    with Connection(short.handle_port) as conn:
        for _ in range(3):
            assert conn.ask(resolution("88.118/CONN-NONE")).response_code == ResponseCode.HANDLE_NOT_FOUND
        answered = time.monotonic()
        assert conn.closed_by_peer(within=IDLE + 4)
        assert time.monotonic() - answered > IDLE / 2


def test_a_client_that_sends_without_reading_meets_backpressure_and_is_cut_off(short: Node) -> None:
    request = resolution("88.118/CONN-BIG")  # ~70 bytes asking for ~16 KB
    with socket.create_connection(("127.0.0.1", short.handle_port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        sock.setblocking(False)
        sent, stalled_since = 0, None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sent < 8 << 20:
            try:
                sent += sock.send(request * 64)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.5:
                    break
                time.sleep(0.01)
        # Unbounded, the node would read all 8 MiB (over 100,000 requests) and queue their answers.
        assert stalled_since is not None and sent < 8 << 20, f"sent {sent} bytes and the node read them all"
        dropped = "idnode_handle_dropped_total"  # the client still holds the connection, reading nothing
        assert short.metric(dropped, until=lambda n: n >= 1, transport="tcp", reason="stalled") >= 1
    assert tcp(short.handle_port, resolution("88.118/CONN-BIG"))[0].response_code == ResponseCode.SUCCESS


def test_per_address_and_node_caps_count_kept_connections(tmp_path: Path) -> None:
    args = ["--workers", "1", "--max-connections-per-address", "3"]
    node = Node(tmp_path / "data", args=args).start()
    try:
        kept = [Connection(node.handle_port) for _ in range(3)]
        for conn in kept:
            assert conn.ask(resolution("88.118/CONN-NONE")).response_code == ResponseCode.HANDLE_NOT_FOUND
        with Connection(node.handle_port) as fourth:
            assert fourth.closed_by_peer(within=3)  # refused: the three kept ones hold 127.0.0.1's share
        with Connection(node.handle_port, source="127.0.0.2") as other:
            assert other.ask(resolution("88.118/CONN-NONE")).response_code == ResponseCode.HANDLE_NOT_FOUND
        kept.pop().close()
        answer = wait_until(
            lambda: tcp(node.handle_port, resolution("88.118/CONN-NONE"))[0],
            what="127.0.0.1's freed slot to serve again",
            ignoring=(OSError,),
        )
        assert answer.response_code == ResponseCode.HANDLE_NOT_FOUND
        for conn in kept:
            conn.close()
    finally:
        node.stop()


def test_a_connection_kept_after_one_cached_answer_idles_out_and_holds_its_slot(tmp_path: Path) -> None:
    """The listener answers a cached request itself and keeps the connection of a client that
    keeps it (protocol 2.8 and later) without a transport: that connection still meets the idle
    timeout and counts against its address's share, and its next request is answered."""
    args = ["--workers", "1", "--max-connections-per-address", "2"]
    node = Node(tmp_path / "data", args=args, env={"IDNODE_HANDLE_IDLE_TIMEOUT": str(IDLE)}).start()
    try:
        kept_record = record(url_value(1, "https://k.example/"))
        assert node.put("/api/handles/88.118/KEPT", kept_record, auth=ADMIN).status == 201
        assert tcp(node.handle_port, resolution("88.118/KEPT"))[0].response_code == ResponseCode.SUCCESS  # cached now
        idle_before = node.metric("idnode_handle_dropped_total", transport="tcp", reason="idle")
        with Connection(node.handle_port) as lone:
            assert lone.ask(resolution("88.118/KEPT", rid=1)).response_code == ResponseCode.SUCCESS
            answered = time.monotonic()
            assert lone.closed_by_peer(within=IDLE + 4)
            assert time.monotonic() - answered > IDLE / 2
        dropped = "idnode_handle_dropped_total"
        assert node.metric(dropped, until=lambda n: n > idle_before, transport="tcp", reason="idle") > idle_before
        kept = [Connection(node.handle_port) for _ in range(2)]
        for n, conn in enumerate(kept):
            assert conn.ask(resolution("88.118/KEPT", rid=10 + n)).response_code == ResponseCode.SUCCESS
        refused = node.metric(dropped, transport="tcp", reason="address_limit")
        with Connection(node.handle_port) as third:  # answered, then closed: 127.0.0.1's share is held
            assert third.ask(resolution("88.118/KEPT", rid=20)).response_code == ResponseCode.SUCCESS
            assert third.closed_by_peer(within=1)
        assert node.metric(dropped, until=lambda n: n > refused, transport="tcp", reason="address_limit") > refused
        for n, conn in enumerate(kept):  # the kept ones go on: their next requests are answered in order
            conn.sock.sendall(resolution("88.118/KEPT", rid=30 + n) + resolution("88.118/NONE", rid=40 + n))
            answers = [decode_message(read_message(conn.sock)) for _ in range(2)]
            assert [(a.request_id, a.response_code) for a in answers] == [
                (30 + n, ResponseCode.SUCCESS),
                (40 + n, ResponseCode.HANDLE_NOT_FOUND),
            ]
            conn.close()
    finally:
        node.stop()
