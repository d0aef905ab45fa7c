"""Delegation over the Handle binary protocol: a prefix served only by UDP/TCP, as CNRI servers are.

The top-level node (idnode, over HTTP) holds 0.NA/88.300, whose HS_SITE names one server
with a UDP and a TCP interface and no HTTP one: a Handle server run by this test on
loopback (``tests.handle_server``). Node A, with recursion, resolves 88.300 handles there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from protocol.records import HandleValue
from protocol.wire.message import Message, ResolutionResponse
from tests.integration.test_hierarchy import (
    LOOPBACK_ALLOWED,
    TOP_ADMIN,
    UPSTREAM_REQUESTS,
    first_url,
    grant,
    wait_published,
)
from tests.support.handle_server import SILENT, HandleServer, as_datagrams, proper_udp, running_in_thread
from tests.support.nodeproc import ADMIN_SECRET, Node, record

DOC = HandleValue(1, "URL", b"https://example.com/handle-protocol")
SLOW = HandleValue(1, "URL", b"https://example.com/over-tcp")


def handle_site(udp_port: int, tcp_port: int) -> dict[str, Any]:
    """An HS_SITE value for one server with Handle interfaces only, on loopback."""
    interfaces = [{"protocol": "UDP", "port": udp_port}, {"protocol": "TCP", "port": tcp_port}]
    server = {"serverId": 1, "address": "127.0.0.1", "interfaces": interfaces}
    return {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": [server]}}}


@dataclass
class Setup:
    top: Node
    a: Node
    handle_server: HandleServer

    def to_top(self, until: Callable[[float], object] | None = None) -> float:
        return self.a.metric(UPSTREAM_REQUESTS, until, peer=f"127.0.0.1:{self.top.port}")

    def to_site(self, until: Callable[[float], object] | None = None) -> float:
        return self.a.metric(UPSTREAM_REQUESTS, until, peer="site")

    def heard(self) -> tuple[int, int]:
        return len(self.handle_server.seen_udp), len(self.handle_server.seen_tcp)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("handle-hierarchy")
    records: dict[str, tuple[HandleValue, ...]] = {"88.300/DOC-1": (DOC,), "88.300/OVER-TCP": (SLOW,)}
    with running_in_thread(HandleServer(records)) as server:
        top = Node(tmp / "top", args=["--role", "top-level", "--node-prefix", "88", "--workers", "1"]).start()
        a = None
        try:
            grant(top, "88.118")
            site = handle_site(server.udp_port, server.tcp_port)
            assert top.put("/api/handles/0.NA/88.300", record(site), auth=TOP_ADMIN).status == 201
            env = {"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET, **LOOPBACK_ALLOWED}
            upstream = ["--upstream", f"http://127.0.0.1:{top.port}", "--workers", "1"]
            a = Node(tmp / "a", args=upstream, env=env).start()
            wait_published(a, "88.118")  # its traffic to the top is over
            yield Setup(top, a, server)
        finally:
            for node in (a, top):
                if node is not None:
                    node.stop()


def test_a_handle_is_resolved_over_the_handle_protocol_cold_then_warm(setup: Setup) -> None:
    a = setup.a
    to_top, to_site, heard = setup.to_top(), setup.to_site(), setup.heard()
    answered = a.metric("idnode_delegations_total", result="answered")

    reply = a.get("/api/handles/88.300/doc-1")
    assert first_url(reply) == "https://example.com/handle-protocol"
    assert reply.json["handle"] == "88.300/doc-1"
    # Cold: the referral at the top over HTTP, one UDP query at the Handle server.
    assert setup.to_top(until=lambda n: n > to_top) - to_top == 1
    assert setup.to_site(until=lambda n: n > to_site) - to_site == 1
    assert setup.heard() == (heard[0] + 1, heard[1])
    delegated = a.metric("idnode_delegations_total", until=lambda n: n - answered >= 2, result="answered")
    assert delegated - answered == 2  # the referral, the handle

    for _ in range(20):
        assert first_url(a.get("/api/handles/88.300/doc-1")) == "https://example.com/handle-protocol"
    # Warm: nothing sent anywhere.
    assert setup.to_top() - to_top == 1
    assert setup.to_site() - to_site == 1
    assert setup.heard() == (heard[0] + 1, heard[1])


def test_a_server_silent_over_udp_is_asked_over_tcp(setup: Setup) -> None:
    setup.handle_server.udp = SILENT
    try:
        heard = setup.heard()
        assert first_url(setup.a.get("/api/handles/88.300/over-tcp")) == "https://example.com/over-tcp"
        udp, tcp = setup.heard()
        assert udp > heard[0] and tcp == heard[1] + 1
    finally:
        setup.handle_server.udp = proper_udp


def test_a_handle_the_server_does_not_hold_is_not_found(setup: Setup) -> None:
    reply = setup.a.get("/api/handles/88.300/missing")
    assert reply.status == 404 and reply.code == 100, reply.body


def test_a_server_that_answers_for_another_handle_is_refused(setup: Setup) -> None:
    server = setup.handle_server
    server.records["88.300/TRICK"] = (DOC,)

    def other_handle(request: Message, answer: Message) -> list[bytes]:
        return as_datagrams(replace(answer, body=ResolutionResponse("88.300/DOC-1", (DOC,))))

    server.udp = other_handle
    try:
        reply = setup.a.get("/api/handles/88.300/trick")
    finally:
        server.udp = proper_udp
    assert reply.status == 502 and reply.code == 2, reply.body
    assert "not for 88.300/trick" in reply.json["message"]
