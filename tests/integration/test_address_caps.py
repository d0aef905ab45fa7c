"""One client address cannot hold every connection slot of a worker, on HTTP or Handle TCP.

The node is one worker with ``--max-connections-per-address 8``: 127.0.0.1 holds eight idle
connections, its ninth is refused at once while 127.0.0.2 is still served, and once the
eight are let go (some closed, some reset) 127.0.0.1 has all its slots back.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocol.codes import ResponseCode
from tests.integration.test_http_edge import closed_by_server, open_sockets, read_reply
from tests.support.handleclient import resolution, tcp
from tests.support.nodeproc import Node, child_pids
from tests.support.poll import wait_until

CAP = 8
NODE_PREFIX = "0.NA/88.118"  # a handle every node holds


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    # Held connections stay idle through the test: the header deadline must not cut them.
    args = ["--workers", "1", "--max-connections-per-address", str(CAP), "--header-timeout", "120"]
    node = Node(tmp_path / "data", args=args).start()
    yield node
    node.stop()


def worker_of(node: Node) -> int:
    assert node.proc is not None
    (worker,) = child_pids(node.proc.pid) or {node.proc.pid}  # one worker: the node's own process serves
    return worker


def hold(port: int, n: int, worker: int, baseline: int) -> list[socket.socket]:
    """``n`` idle connections from 127.0.0.1, once the worker has accepted them all."""
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    wait_until(lambda: open_sockets(worker), lambda s: s >= baseline + n, what=f"the worker to accept {n} connections")
    return held


def let_go(held: list[socket.socket], worker: int, baseline: int) -> None:
    """Close half of ``held``, reset the other half, and wait for the worker to drop them all."""
    for i, sock in enumerate(held):
        if i % 2:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
        sock.close()
    wait_until(lambda: open_sockets(worker), lambda s: s <= baseline, what="the worker to close what was let go")


def cut_off(sock: socket.socket) -> bool:
    """The node closed or reset ``sock`` within 3 s (unrefused, it would wait out the 60 s idle timeout)."""
    sock.settimeout(3)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True  # what the node does: refused with a reset
    except TimeoutError:
        return False


def one_address_cannot_take_every_slot(
    node: Node, port: int, refused: Callable[[socket.socket], None], served: Callable[[str | None], None]
) -> None:
    """127.0.0.1 holds ``CAP`` idle connections: its next is ``refused``, 127.0.0.2 is ``served``;
    once they are let go, 127.0.0.1 has every slot back (``CAP - 1`` held and one ``served``)."""
    worker = worker_of(node)
    baseline = open_sockets(worker)
    held = hold(port, CAP, worker, baseline)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            refused(extra)
        served("127.0.0.2")
    finally:
        let_go(held, worker, baseline)
    again = hold(port, CAP - 1, worker, baseline)
    try:
        served(None)
    finally:
        let_go(again, worker, baseline)


def test_http_the_connection_over_the_address_cap_is_refused_and_others_are_served(node: Node) -> None:
    def refused(extra: socket.socket) -> None:
        status, headers, body = read_reply(extra, timeout=5)
        assert status == 503 and headers["connection"] == "close", (status, body)
        answer = json.loads(body)
        assert answer["responseCode"] == ResponseCode.SERVER_TOO_BUSY
        assert "max_connections_per_address" in answer["message"]
        assert closed_by_server(extra, 2.0) is not None

    def served(source: str | None) -> None:
        assert node.get(f"/api/handles/{NODE_PREFIX}", source=source).status == 200

    one_address_cannot_take_every_slot(node, node.port, refused, served)
    assert node.metric("idnode_http_connections_closed_total", until=lambda n: n >= 1, reason="address_limit") == 1


def test_handle_tcp_the_connection_over_the_address_cap_is_refused_and_others_are_served(node: Node) -> None:
    def refused(extra: socket.socket) -> None:
        assert cut_off(extra)

    def served(source: str | None) -> None:
        (answer,) = tcp(node.handle_port, resolution(NODE_PREFIX), source=source)
        assert answer.response_code == ResponseCode.SUCCESS

    one_address_cannot_take_every_slot(node, node.handle_port, refused, served)
    dropped_total = "idnode_handle_dropped_total"
    assert node.metric(dropped_total, until=lambda n: n >= 1, transport="tcp", reason="address_limit") == 1
