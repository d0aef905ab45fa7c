"""Delegation across a real hierarchy: a top-level node and secondary nodes, each its own process.

Register on node B, resolve through node A; the top-level node or B stopped; an upstream
that answers for the wrong handle; a loop between two nodes; publication retried when the
top-level node comes back, also after A was killed with -9.

Every node here is on loopback, which the delegation policy refuses by default: A and B
allow 127.0.0.0/8 (``delegation_allow``) explicitly. A node with the default policy
(``strict``) shows that servers on loopback named by records are never asked.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.nodeproc import ADMIN_SECRET, Auth, Node, Reply, record, url_value
from tests.support.poll import TIMEOUT, wait_until
from tests.support.redisproc import RedisServer

TOP_ADMIN: Auth = ("300:0.NA/88", ADMIN_SECRET)
A_ADMIN: Auth = ("300:0.NA/88.118", ADMIN_SECRET)
B_ADMIN: Auth = ("300:0.NA/88.200", ADMIN_SECRET)
UPSTREAM_REQUESTS = "idnode_upstream_request_duration_seconds_count"
LOOPBACK_ALLOWED = {"IDNODE_DELEGATION_ALLOW": "127.0.0.0/8"}  # the test nodes all live there


def site(port: int) -> dict[str, Any]:
    """An HS_SITE value for one HTTP server on loopback."""
    server = {"serverId": 1, "address": "127.0.0.1", "interfaces": [{"protocol": "HTTP", "port": port}]}
    return {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": [server]}}}


def admin_of(prefix: str) -> dict[str, Any]:
    ref = {"handle": f"0.NA/{prefix}", "index": 300, "permissions": "111111111111"}
    return {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": ref}}


def grant(top: Node, prefix: str) -> None:
    """The top-level admin lets identity 300:0.NA/<prefix> publish <prefix> and what is under it."""
    secret = {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": ADMIN_SECRET}}
    reply = top.put(f"/api/handles/0.NA/{prefix}?index=100&index=300", record(admin_of(prefix), secret), auth=TOP_ADMIN)
    assert reply.status in (200, 201), reply.body


def publication(node: Node, prefix: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = node.get("/api/prefixes").json["publication"].get(prefix, [{}])
    return rows[0]


def wait_published(node: Node, prefix: str, timeout: float = TIMEOUT) -> None:
    """Until ``node`` shows ``prefix`` as published to its top-level node."""
    wait_until(
        lambda: publication(node, prefix),
        lambda shown: shown.get("state") == "published",
        what=f"{prefix} to be published",
        timeout=timeout,
    )


def peer(node: Node) -> str:
    return f"127.0.0.1:{node.port}"


@dataclass
class Hierarchy:
    top: Node
    a: Node
    b: Node
    started: list[Node] = field(default_factory=list)

    def upstream_requests(self, node: Node, to: Node, until: Callable[[float], object] | None = None) -> float:
        """Requests ``node`` sent ``to`` the top-level node (its upstream), or to any server a record names
        (``until``: as in ``Node.metric``)."""
        return node.metric(UPSTREAM_REQUESTS, until, peer=peer(to) if to is self.top else "site")


def start_hierarchy(tmp: Path, *, a_env: dict[str, str] | None = None, a_workers: int = 1) -> Hierarchy:
    top = Node(tmp / "top", args=["--role", "top-level", "--node-prefix", "88", "--workers", "1"]).start()
    grant(top, "88.118")
    grant(top, "88.200")
    upstream = ["--upstream", f"http://127.0.0.1:{top.port}"]
    env = {"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET, **LOOPBACK_ALLOWED}
    # One worker each: a second one would fill its own cache with its own upstream queries.
    a = Node(tmp / "a", args=[*upstream, "--workers", str(a_workers)], env={**env, **(a_env or {})}).start()
    b = Node(tmp / "b", args=[*upstream, "--node-prefix", "88.200", "--workers", "1"], env=env).start()
    wait_published(a, "88.118")
    wait_published(b, "88.200")
    return Hierarchy(top, a, b, [top, a, b])


def stop_all(h: Hierarchy) -> None:
    for node in h.started:
        if node.proc is not None and node.proc.poll() is None:
            node.stop()


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hierarchy]:
    h = start_hierarchy(tmp_path_factory.mktemp("hierarchy"))
    # An enterprise prefix allocated on B, published by B to the top-level node.
    assert h.b.put("/api/handles/0.NA/88.200.1", record(admin_of("88.200")), auth=B_ADMIN).status == 201
    wait_published(h.b, "88.200.1")
    yield h
    stop_all(h)


@pytest.fixture
def own_hierarchy(tmp_path: Path) -> Iterator[Callable[..., Hierarchy]]:
    made: list[Hierarchy] = []

    def make(**kw: Any) -> Hierarchy:
        made.append(start_hierarchy(tmp_path, **kw))
        return made[-1]

    yield make
    for h in made:
        stop_all(h)


def register(node: Node, handle: str, url: str, auth: Auth, ttl: int = 86400) -> None:
    reply = node.put(f"/api/handles/{handle}", record({**url_value(1, url), "ttl": ttl}), auth=auth)
    assert reply.status == 201, reply.body


def first_url(reply: Reply) -> str:
    assert reply.status == 200, reply.body
    value: str = reply.json["values"][0]["data"]["value"]
    return value


# Publication -------------------------------------------------------------------------------


def test_a_secondary_node_publishes_its_prefix_site_at_the_top(hierarchy: Hierarchy) -> None:
    reply = hierarchy.top.get("/api/handles/0.NA/88.200")
    assert reply.status == 200, reply.body
    sites = [v for v in reply.json["values"] if v["type"] == "HS_SITE"]
    assert len(sites) == 1
    servers = sites[0]["data"]["value"]["servers"]
    assert [(s["address"], s["interfaces"][0]["port"]) for s in servers] == [("127.0.0.1", hierarchy.b.port)]
    # The grant is kept beside it: publishing wrote only the site value.
    assert any(v["type"] == "HS_ADMIN" for v in reply.json["values"])


def test_an_enterprise_prefix_is_published_and_withdrawn(hierarchy: Hierarchy) -> None:
    b, top = hierarchy.b, hierarchy.top
    assert b.put("/api/handles/0.NA/88.200.77", record(admin_of("88.200")), auth=B_ADMIN).status == 201

    def at_top() -> int:
        return top.get("/api/handles/0.NA/88.200.77").status

    wait_until(at_top, lambda status: status == 200, what="0.NA/88.200.77 on the top-level node")
    sites = [v for v in top.get("/api/handles/0.NA/88.200.77").json["values"] if v["type"] == "HS_SITE"]
    assert sites[0]["data"]["value"]["servers"][0]["interfaces"][0]["port"] == b.port
    assert b.delete("/api/handles/0.NA/88.200.77", auth=B_ADMIN).status == 200
    wait_until(at_top, lambda status: status == 404, what="0.NA/88.200.77 to be withdrawn")
    assert publication(b, "88.200.77")["state"] == "withdrawn"


def test_a_granted_identity_cannot_publish_outside_its_prefix(hierarchy: Hierarchy) -> None:
    reply = hierarchy.top.put("/api/handles/0.NA/88.200.66", record(site(1)), auth=A_ADMIN)
    assert reply.status == 403, reply.body
    assert reply.code == 401


# Resolution through the hierarchy ------------------------------------------------------------


def test_cold_then_warm_resolution_through_another_node(hierarchy: Hierarchy) -> None:
    h = hierarchy
    register(h.b, "88.200.1/COLD-WARM", "https://example.com/cold-warm", B_ADMIN)
    to_top, to_b = h.upstream_requests(h.a, h.top), h.upstream_requests(h.a, h.b)

    reply = h.a.get("/api/handles/88.200.1/cold-warm")
    assert first_url(reply) == "https://example.com/cold-warm"
    assert reply.json["handle"] == "88.200.1/cold-warm"  # answered as if it were local
    # Cold: one referral (0.NA/88.200.1 at the top) and one query (at B).
    assert h.upstream_requests(h.a, h.top, until=lambda n: n > to_top) - to_top == 1
    assert h.upstream_requests(h.a, h.b, until=lambda n: n > to_b) - to_b == 1

    hits = h.a.metric("idnode_cache_hits_total", tier="local")
    for _ in range(20):
        assert first_url(h.a.get("/api/handles/88.200.1/cold-warm")) == "https://example.com/cold-warm"
    # Warm: no upstream traffic at all; every answer from A's cache.
    assert h.upstream_requests(h.a, h.top) - to_top == 1
    assert h.upstream_requests(h.a, h.b) - to_b == 1
    assert h.a.metric("idnode_cache_hits_total", until=lambda n: n - hits >= 20, tier="local") - hits == 20


def test_a_second_handle_under_a_known_prefix_uses_the_cached_referral(hierarchy: Hierarchy) -> None:
    h = hierarchy
    register(h.b, "88.200.1/REF-1", "https://example.com/ref-1", B_ADMIN)
    register(h.b, "88.200.1/REF-2", "https://example.com/ref-2", B_ADMIN)
    assert first_url(h.a.get("/api/handles/88.200.1/REF-1")) == "https://example.com/ref-1"
    to_top, hits = h.upstream_requests(h.a, h.top), h.a.metric("idnode_referral_cache_hits_total")
    assert first_url(h.a.get("/api/handles/88.200.1/REF-2")) == "https://example.com/ref-2"
    assert h.upstream_requests(h.a, h.top) == to_top
    assert h.a.metric("idnode_referral_cache_hits_total", until=lambda n: n > hits) > hits


def test_concurrent_misses_for_a_remote_handle_make_one_upstream_query(hierarchy: Hierarchy) -> None:
    h = hierarchy
    register(h.b, "88.200.1/CROWD", "https://example.com/crowd", B_ADMIN)
    h.a.get("/api/handles/88.200.1/WARM-THE-REFERRAL")
    to_b = h.upstream_requests(h.a, h.b)
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda _: h.a.get("/api/handles/88.200.1/CROWD"), range(20)))
    assert {first_url(r) for r in replies} == {"https://example.com/crowd"}
    assert h.upstream_requests(h.a, h.b, until=lambda n: n > to_b) - to_b == 1


def test_remote_answers_are_shared_through_redis(own_hierarchy: Callable[..., Hierarchy], tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        h = own_hierarchy(a_env={"IDNODE_REDIS": redis.url}, a_workers=2)
        assert h.b.put("/api/handles/0.NA/88.200.1", record(admin_of("88.200")), auth=B_ADMIN).status == 201
        wait_published(h.b, "88.200.1")
        register(h.b, "88.200.1/SHARED", "https://example.com/shared", B_ADMIN)
        # New connections, spread over A's two workers: one asks B, the other finds it in Redis.
        replies = [h.a.get("/api/handles/88.200.1/SHARED") for _ in range(30)]
        assert {first_url(r) for r in replies} == {"https://example.com/shared"}
        assert h.upstream_requests(h.a, h.b, until=lambda n: n >= 1) == 1
        assert h.a.metric("idnode_cache_hits_total", until=lambda n: n >= 1, tier="redis") >= 1
    finally:
        redis.stop()


def test_not_found_remotely_is_not_found_here(hierarchy: Hierarchy) -> None:
    reply = hierarchy.a.get("/api/handles/88.200.1/NO-SUCH-THING")
    assert reply.status == 404 and reply.code == 100, reply.body
    before = hierarchy.a.metric("idnode_delegations_total", result="not_found")
    assert hierarchy.a.get("/api/handles/88.200.1/NO-SUCH-THING").status == 404  # cached negative answer
    assert hierarchy.a.metric("idnode_delegations_total", result="not_found") == before


def test_an_unregistered_prefix_is_not_found(hierarchy: Hierarchy) -> None:
    reply = hierarchy.a.get("/api/handles/99.1/X")
    assert reply.status == 404 and reply.code == 100, reply.body


def test_a_prefix_handle_of_another_node_resolves_through_the_top(hierarchy: Hierarchy) -> None:
    reply = hierarchy.a.get("/api/handles/0.NA/88.200.1")
    assert reply.status == 200, reply.body
    assert any(v["type"] == "HS_SITE" for v in reply.json["values"])


def test_the_top_level_node_refers_instead_of_recursing(hierarchy: Hierarchy) -> None:
    register(hierarchy.b, "88.200.1/AT-TOP", "https://example.com/at-top", B_ADMIN)
    reply = hierarchy.top.get("/api/handles/88.200.1/AT-TOP")
    assert reply.status == 400 and reply.code == 301, reply.body
    assert f"127.0.0.1:{hierarchy.b.port}" in reply.json["message"]


def test_authenticated_and_filtered_reads_resolve_remotely_too(hierarchy: Hierarchy) -> None:
    register(hierarchy.b, "88.200.1/FILTERED", "https://example.com/filtered", B_ADMIN)
    reply = hierarchy.a.get("/api/handles/88.200.1/FILTERED?type=URL", auth=A_ADMIN)
    assert first_url(reply) == "https://example.com/filtered"


def test_a_downward_delegation_to_an_enterprise_server(hierarchy: Hierarchy, tmp_path: Path) -> None:
    """An HS_SITE on an enterprise prefix sends its handles to the enterprise's own server."""
    h = hierarchy
    enterprise = Node(tmp_path / "e", args=["--node-prefix", "88.118.42", "--no-recursion", "--workers", "1"]).start()
    try:
        register(enterprise, "88.118.42/X", "https://example.com/enterprise", ("300:0.NA/88.118.42", ADMIN_SECRET))
        values = record(site(enterprise.port), admin_of("88.118"))
        assert h.a.put("/api/handles/0.NA/88.118.42", values, auth=A_ADMIN).status == 201
        assert first_url(h.a.get("/api/handles/88.118.42/X")) == "https://example.com/enterprise"
        # A published the enterprise's site for 88.118.42, so B finds the server through the top.
        wait_published(h.a, "88.118.42")
        assert first_url(h.b.get("/api/handles/88.118.42/X")) == "https://example.com/enterprise"
        top_copy = h.top.get("/api/handles/0.NA/88.118.42").json["values"]
        assert top_copy[0]["data"]["value"]["servers"][0]["interfaces"][0]["port"] == enterprise.port
    finally:
        enterprise.stop()


def test_without_recursion_others_handles_are_refused(tmp_path: Path) -> None:
    node = Node(tmp_path / "n", args=["--no-recursion", "--workers", "1"]).start()
    try:
        reply = node.get("/api/handles/88.200.1/X")
        assert reply.status == 400 and reply.code == 301, reply.body
    finally:
        node.stop()


# Safety ------------------------------------------------------------------------------------


class FakeServer(BaseHTTPRequestHandler):
    """A bare HTTP server standing in for a node, quiet, answering what a test decides."""

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(handler: type[FakeServer]) -> Iterator[int]:
    """Run ``handler`` on a free loopback port (yielded) for the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class Hijacker(FakeServer):
    """A server designated for 88.300 that answers every query with another handle's record."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Hijacker.asked.append(self.path)
        value = {**url_value(1, "https://evil.example/"), "timestamp": "2026-01-01T00:00:00Z"}
        self.reply(200, json.dumps({"responseCode": 1, "handle": "88.118/HIJACK", "values": [value]}).encode())


def test_an_answer_for_a_handle_outside_the_designation_is_refused_and_not_cached(hierarchy: Hierarchy) -> None:
    h = hierarchy
    with serving(Hijacker) as port:
        assert h.top.put("/api/handles/0.NA/88.300", record(site(port)), auth=TOP_ADMIN).status == 201
        Hijacker.asked.clear()
        before = h.a.metric("idnode_delegations_total", result="bailiwick")
        for _ in range(2):
            reply = h.a.get("/api/handles/88.300/X")
            assert reply.status == 502 and reply.code == 2, reply.body
            assert "88.118/HIJACK" in reply.json["message"]
        assert len(Hijacker.asked) == 2  # nothing was cached: the second query went out again
        bailiwick = h.a.metric("idnode_delegations_total", until=lambda n: n - before >= 2, result="bailiwick")
        assert bailiwick - before == 2
        hijacked = h.a.get("/api/handles/88.118/HIJACK")
        assert hijacked.status == 404, hijacked.body


def dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_failover_to_the_next_server_through_an_hs_serv_service_handle(hierarchy: Hierarchy, tmp_path: Path) -> None:
    """0.NA/88.400 names a service handle (HS_SERV) whose site has a dead server and a live one."""
    h = hierarchy
    enterprise = Node(tmp_path / "e", args=["--node-prefix", "88.400", "--no-recursion", "--workers", "1"]).start()
    try:
        names = [f"88.400/ITEM-{n}" for n in range(8)]
        for name in names:
            register(enterprise, name, f"https://example.com/{name}", ("300:0.NA/88.400", ADMIN_SECRET))
        servers = [
            {"serverId": n, "address": "127.0.0.1", "interfaces": [{"protocol": "HTTP", "port": port}]}
            for n, port in enumerate((dead_port(), enterprise.port), start=1)
        ]
        service = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": servers}}}
        assert h.top.put("/api/handles/0.NA/88.400.SERVICE", record(service), auth=TOP_ADMIN).status == 201
        serv = {"index": 1, "type": "HS_SERV", "data": "0.NA/88.400.SERVICE"}
        assert h.top.put("/api/handles/0.NA/88.400", record(serv), auth=TOP_ADMIN).status == 201
        errors = h.a.metric("idnode_delegations_total", result="unreachable")
        for name in names:  # the handle hash sends about half of them to the dead server first
            assert first_url(h.a.get(f"/api/handles/{name}")) == f"https://example.com/{name}"
        assert h.a.metric("idnode_delegations_total", until=lambda n: n > errors, result="unreachable") > errors
    finally:
        enterprise.stop()


class Silent(FakeServer):
    """A server that accepts queries and never answers them."""

    def do_GET(self) -> None:
        time.sleep(6)  # the silence is what the test is about: longer than the node's 2 s per hop


def test_a_server_that_does_not_answer_times_out_clearly(hierarchy: Hierarchy) -> None:
    with serving(Silent) as port:
        assert hierarchy.top.put("/api/handles/0.NA/88.600", record(site(port)), auth=TOP_ADMIN).status == 201
        started = time.monotonic()
        reply = hierarchy.a.get("/api/handles/88.600/X")
        # 502 like a closed port, not 504: the status must not tell that something listens.
        assert reply.status == 502 and reply.code == 2, reply.body
        assert "did not answer within 2 s" in reply.json["message"]
        assert time.monotonic() - started < 4  # the per-hop timeout (2 s), not the silent server, ended it


class Hostile(FakeServer):
    """A server designated for 88.700 whose answers are each wrong in their own way."""

    def do_GET(self) -> None:
        kind = self.path.rsplit("/", 1)[1]
        handle = f"88.700/{kind}"
        bodies = {
            "NESTED": b"[" * 100_000 + b"]" * 100_000,
            "GARBAGE": b"\xff\xfe not json",
            "HUGE": b'{"responseCode": 1, "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}',
            "NOCODE": json.dumps({"handle": handle, "values": []}).encode(),
            "BADVALUES": json.dumps({"responseCode": 1, "handle": handle, "values": [{"index": -1}]}).encode(),
            "BOOLCODE": json.dumps({"responseCode": True, "handle": handle, "values": []}).encode(),
        }
        if kind == "REDIRECT":
            self.reply(302, b"", {"Location": "http://127.0.0.1:1/"})
        else:
            self.reply(200, bodies[kind])


@pytest.fixture(scope="module")
def hostile(hierarchy: Hierarchy) -> Iterator[int]:
    with serving(Hostile) as port:
        assert hierarchy.top.put("/api/handles/0.NA/88.700", record(site(port)), auth=TOP_ADMIN).status == 201
        yield port


@pytest.mark.parametrize("kind", ["NESTED", "GARBAGE", "HUGE", "NOCODE", "BADVALUES", "BOOLCODE", "REDIRECT"])
def test_a_hostile_answer_is_a_clear_error(hierarchy: Hierarchy, hostile: int, kind: str) -> None:
    reply = hierarchy.a.get(f"/api/handles/88.700/{kind}")
    assert reply.status == 502 and reply.code == 2, reply.body
    assert f"127.0.0.1:{hostile}" in reply.json["message"]
    assert hierarchy.a.get("/healthz").status == 200


def test_a_site_without_a_query_interface_is_a_clear_error_not_a_missing_prefix(hierarchy: Hierarchy) -> None:
    admin_only = {"protocol": "TCP", "port": 2641, "query": False, "admin": True}
    server = {"serverId": 1, "address": "127.0.0.1", "interfaces": [admin_only]}
    binary_only = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": [server]}}}
    assert hierarchy.top.put("/api/handles/0.NA/88.800", record(binary_only), auth=TOP_ADMIN).status == 201
    reply = hierarchy.a.get("/api/handles/88.800/X")
    assert reply.status == 502 and reply.code == 2, reply.body
    assert "no server of prefix 88.800 has a query interface" in reply.json["message"]


def test_a_referral_loop_between_two_nodes_is_cut(hierarchy: Hierarchy) -> None:
    h = hierarchy
    # A sends 88.118.9 down to B; the top-level node (overriding what A published) sends it to A.
    assert h.a.put("/api/handles/0.NA/88.118.9", record(site(h.b.port)), auth=A_ADMIN).status == 201
    wait_published(h.a, "88.118.9")
    assert h.top.put("/api/handles/0.NA/88.118.9", record(site(h.a.port)), auth=TOP_ADMIN).status == 200
    started = time.monotonic()
    for node in (h.a, h.b):
        reply = node.get("/api/handles/88.118.9/LOOP")
        assert reply.status == 508 and reply.code == 6, reply.body
        assert "loop" in reply.json["message"]
    assert time.monotonic() - started < 5  # cut at once, not by a timeout
    assert h.a.metric("idnode_delegations_total", until=lambda n: n >= 1, result="loop") >= 1


def test_a_query_that_already_passed_through_too_many_nodes_is_refused(hierarchy: Hierarchy) -> None:
    via = ",".join(f"node-{n}" for n in range(8))
    reply = hierarchy.a.get("/api/handles/88.200.1/DEEP", headers={"Idnode-Via": via})
    assert reply.status == 508 and reply.code == 6, reply.body


# Failures ----------------------------------------------------------------------------------


def test_with_the_top_level_node_down_known_prefixes_still_resolve(own_hierarchy: Callable[..., Hierarchy]) -> None:
    h = own_hierarchy()
    assert h.b.put("/api/handles/0.NA/88.200.1", record(admin_of("88.200")), auth=B_ADMIN).status == 201
    wait_published(h.b, "88.200.1")
    register(h.b, "88.200.1/BEFORE", "https://example.com/before", B_ADMIN)
    register(h.b, "88.200.1/AFTER", "https://example.com/after", B_ADMIN)
    assert first_url(h.a.get("/api/handles/88.200.1/BEFORE")) == "https://example.com/before"
    h.top.stop()
    # Never resolved before, but its prefix's referral is known: straight to B.
    assert first_url(h.a.get("/api/handles/88.200.1/AFTER")) == "https://example.com/after"
    # A prefix A has no referral for now fails clearly, naming the top-level node.
    reply = h.a.get("/api/handles/88.200.2/X")
    assert reply.status == 502 and reply.code == 2, reply.body
    assert "top-level" in reply.json["message"]


def test_with_the_holder_down_answers_are_served_stale_then_fail_clearly(
    own_hierarchy: Callable[..., Hierarchy],
) -> None:
    h = own_hierarchy(a_env={"IDNODE_CACHE_MAX_TTL": "1", "IDNODE_STALE_WINDOW": "4"})
    assert h.b.put("/api/handles/0.NA/88.200.1", record(admin_of("88.200")), auth=B_ADMIN).status == 201
    wait_published(h.b, "88.200.1")
    register(h.b, "88.200.1/STALE", "https://example.com/stale", B_ADMIN)
    fetched = time.monotonic()
    assert first_url(h.a.get("/api/handles/88.200.1/STALE")) == "https://example.com/stale"
    h.b.stop()
    time.sleep(1.3)  # the answer's TTL (capped at 1 s) is over
    reply = h.a.get("/api/handles/88.200.1/STALE")
    assert first_url(reply) == "https://example.com/stale"
    assert "110" in reply.headers.get("warning", "")
    assert reply.json["values"][0]["ttl"] == 30
    time.sleep(max(0.0, fetched + 1 + 4 + 0.5 - time.monotonic()))  # past the stale window
    reply = h.a.get("/api/handles/88.200.1/STALE")
    assert reply.status == 502 and reply.code == 2, reply.body
    assert f"127.0.0.1:{h.b.port}" in reply.json["message"]


def test_publication_is_retried_until_the_top_level_node_is_back_even_across_kill_9(
    own_hierarchy: Callable[..., Hierarchy],
) -> None:
    h = own_hierarchy()
    top_port = h.top.port
    h.top.stop()
    assert h.a.put("/api/handles/0.NA/88.118.5", record(admin_of("88.118")), auth=A_ADMIN).status == 201
    wait_until(
        lambda: publication(h.a, "88.118.5"),
        lambda shown: shown.get("state") == "failed",
        what="the publication to fail",
    )
    shown = publication(h.a, "88.118.5")
    assert shown["attempts"] >= 1 and "127.0.0.1" in shown["error"]
    h.a.kill()  # the outbox is in the store: the publication survives
    h.top.start(f"127.0.0.1:{top_port}")
    h.a.start()
    wait_published(h.a, "88.118.5")
    reply = h.top.get("/api/handles/0.NA/88.118.5")
    assert reply.status == 200, reply.body
    assert reply.json["values"][0]["data"]["value"]["servers"][0]["interfaces"][0]["port"] == h.a.port


# Delegation targets: no internal port scanner ------------------------------------------------

STRICT_ADMIN: Auth = ("300:0.NA/88.250", ADMIN_SECRET)


@pytest.fixture(scope="module")
def strict(hierarchy: Hierarchy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node for 88.250 with the default delegation policy; its upstream (trusted) is the top-level node."""
    grant(hierarchy.top, "88.250")
    args = ["--upstream", f"http://127.0.0.1:{hierarchy.top.port}", "--node-prefix", "88.250", "--workers", "1"]
    node = Node(tmp_path_factory.mktemp("strict"), args=args, env={"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET}).start()
    yield node
    node.stop()


@contextmanager
def listening() -> Iterator[tuple[int, Callable[[], bool]]]:
    """A loopback port something listens on (yielded) and a check: did anyone connect to it?

    Nothing accepts: a connection would wait in the backlog, where the check finds it.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)

        def connected() -> bool:
            sock.setblocking(False)
            try:
                sock.accept()[0].close()
            except BlockingIOError:
                return False
            return True

        yield sock.getsockname()[1], connected


def test_by_default_an_enterprise_site_on_loopback_is_never_asked_open_port_or_closed(strict: Node) -> None:
    """An enterprise writes HS_SITE -> 127.0.0.1:PORT; anonymous lookups must not probe PORT."""
    with listening() as (port, connected):
        values = record(site(port), admin_of("88.250"))
        assert strict.put("/api/handles/0.NA/88.250.5", values, auth=STRICT_ADMIN).status == 201
        open_port = strict.get("/api/handles/88.250.5/X")
        assert not connected()
    closed_port = strict.get("/api/handles/88.250.5/X")  # the same port, nothing listening now
    assert open_port.status == 502 and open_port.code == 2, open_port.body
    assert (closed_port.status, closed_port.body) == (open_port.status, open_port.body)
    assert "loopback address, which this node does not delegate to" in open_port.json["message"]
    assert strict.get("/healthz").status == 200


def test_by_default_a_referral_from_the_trusted_upstream_to_loopback_is_not_followed(
    hierarchy: Hierarchy, strict: Node
) -> None:
    """Trusting the upstream (asked on loopback here) does not extend to the servers its records name."""
    with listening() as (port, connected):
        assert hierarchy.top.put("/api/handles/0.NA/88.901", record(site(port)), auth=TOP_ADMIN).status == 201
        asked = strict.metric(UPSTREAM_REQUESTS, peer=peer(hierarchy.top))
        reply = strict.get("/api/handles/88.901/X")
        assert reply.status == 502 and reply.code == 2, reply.body
        assert "loopback" in reply.json["message"]
        assert not connected()
    from_top = strict.metric(UPSTREAM_REQUESTS, until=lambda n: n > asked, peer=peer(hierarchy.top))
    assert from_top > asked  # the referral came from it
    assert strict.metric("idnode_delegations_total", until=lambda n: n >= 1, result="refused") >= 1


def test_the_peer_label_stays_bounded_whatever_servers_records_name(hierarchy: Hierarchy) -> None:
    h = hierarchy
    ports = {dead_port() for _ in range(20)}
    servers = [
        {"serverId": n, "address": "127.0.0.1", "interfaces": [{"protocol": "HTTP", "port": port}]}
        for n, port in enumerate(ports, start=1)
    ]
    many = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": servers}}}
    assert h.top.put("/api/handles/0.NA/88.902", record(many), auth=TOP_ADMIN).status == 201
    before = h.a.metric(UPSTREAM_REQUESTS, peer="site")
    reply = h.a.get("/api/handles/88.902/X")
    assert reply.status == 502 and reply.code == 2, reply.body
    tried = h.a.metric(UPSTREAM_REQUESTS, until=lambda n: n - before >= len(ports), peer="site")
    exposition = h.a.get("/metrics").body.decode()
    assert tried - before == len(ports)  # every server was tried
    labels = set(re.findall(r'^idnode_upstream_request_duration_seconds_count\{peer="([^"]*)"', exposition, re.M))
    assert labels == {peer(h.top), "site"}


class Accepting:
    """A loopback TCP server that is not HTTP: each connection gets ``banner`` (or a reset) and is closed."""

    def __init__(self, banner: bytes | None) -> None:
        self.banner = banner
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            if self.banner is None:  # RST instead of FIN
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            else:
                conn.sendall(self.banner)
            conn.close()


@pytest.mark.parametrize(("prefix", "banner"), [("88.903", b"SSH-2.0-OpenSSH_9.6\r\n"), ("88.904", None)])
def test_with_loopback_allowed_every_connection_failure_reads_the_same(
    hierarchy: Hierarchy, prefix: str, banner: bytes | None
) -> None:
    """A (delegation_allow 127.0.0.0/8) asks a port where a non-HTTP service listens, then the closed port."""
    h = hierarchy
    server = Accepting(banner)
    assert h.top.put(f"/api/handles/0.NA/{prefix}", record(site(server.port)), auth=TOP_ADMIN).status == 201
    open_port = h.a.get(f"/api/handles/{prefix}/X")
    assert server.accepted >= 1  # allowed: it was asked
    server.sock.close()
    closed_port = h.a.get(f"/api/handles/{prefix}/X")
    assert open_port.status == 502 and open_port.code == 2, open_port.body
    assert (closed_port.status, closed_port.body) == (open_port.status, open_port.body)
    assert f"127.0.0.1:{server.port} could not be reached" in open_port.json["message"]
