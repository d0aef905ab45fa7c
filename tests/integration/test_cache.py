"""The cache tiers, end to end: real node processes, real redis-server processes.

Invalidation across workers and across nodes sharing a Redis, coalescing, prefetch,
serve-stale with the store failing, Redis killed, paused and restarted under load, and
graceful shutdown with requests in flight.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodeproc import ADMIN, ADMIN_SECRET, ADMIN_USER, Node, Reply, basic, record, url_value
from tests.support.poll import wait_until
from tests.support.redisproc import RedisServer, make_cluster


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def ttl_value(index: int, url: str, ttl: int) -> dict[str, Any]:
    return {**url_value(index, url), "ttl": ttl}


def first_url(reply: Reply) -> str:
    assert reply.status == 200, reply.body
    value: str = reply.json["values"][0]["data"]["value"]
    return value


def spread_gets(node: Node, path: str, n: int) -> list[Reply]:
    """``n`` GETs on new connections, so the kernel spreads them over the workers."""
    return [node.get(path) for _ in range(n)]


def test_a_write_is_seen_at_once_by_every_worker(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "2"]
    node = fresh_node.start()
    path = "/api/handles/88.118/cache-workers"
    assert node.put(path, record(url_value(1, "https://old.example/")), auth=ADMIN).status == 201
    assert {first_url(r) for r in spread_gets(node, path, 20)} == {"https://old.example/"}  # both workers cache it
    assert node.metric("idnode_cache_hits_total", until=lambda n: n >= 10, tier="local") >= 10
    assert node.put(path, record(url_value(1, "https://new.example/")), auth=ADMIN).status == 200
    assert {first_url(r) for r in spread_gets(node, path, 20)} == {"https://new.example/"}
    assert node.request("DELETE", path, auth=ADMIN).status == 200
    assert {r.status for r in spread_gets(node, path, 20)} == {404}


def test_a_write_on_one_node_reaches_another_through_redis(
    tmp_path: Path, redis_server: RedisServer, nodes: list[Node]
) -> None:
    # Two nodes on one store and one Redis: like two machines in front of one PostgreSQL.
    data = tmp_path / "data"
    a = Node(data, args=["--workers", "1", "--redis", redis_server.url]).start()
    nodes.append(a)
    b = Node(data, args=["--workers", "2", "--redis", redis_server.url]).start()
    nodes.append(b)
    path = "/api/handles/88.118/cache-nodes"
    assert a.put(path, record(url_value(1, "https://old.example/")), auth=ADMIN).status == 201
    assert {first_url(r) for r in spread_gets(b, path, 10)} == {"https://old.example/"}
    assert a.put(path, record(url_value(1, "https://new.example/")), auth=ADMIN).status == 200
    written = time.monotonic()
    wait_until(
        lambda: {first_url(r) for r in spread_gets(b, path, 4)},
        lambda urls: urls == {"https://new.example/"},
        what="node B to answer the new URL",
        timeout=2,
        interval=0,  # what is measured is how soon: ask again at once
    )
    seen = time.monotonic() - written
    assert seen < 0.1, f"node B saw the write after {seen} s"
    assert b.metric("idnode_cache_invalidations_total", until=lambda n: n >= 1, source="peer") >= 1


def test_concurrent_misses_make_one_store_read(fresh_node: Node) -> None:
    fresh_node.module = "tests.support.flaky_node"
    fresh_node.args = ["--workers", "1"]
    node = fresh_node.start()
    path = "/api/handles/88.118/cache-coalesce"
    assert node.put(path, record(url_value(1, "https://c.example/")), auth=ADMIN).status == 201
    reads, coalesced = node.metric("idnode_store_reads_total"), node.metric("idnode_cache_coalesced_total")
    (fresh_node.data_dir / "SLOW").touch()  # the read takes 0.5 s: every request comes while it runs
    start = threading.Barrier(40)

    def one(_: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
        conn.connect()
        start.wait()
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status

    with ThreadPoolExecutor(40) as pool:
        assert set(pool.map(one, range(40))) == {200}
    assert node.metric("idnode_store_reads_total", until=lambda n: n > reads) - reads == 1
    assert node.metric("idnode_cache_coalesced_total", until=lambda n: n - coalesced >= 39) - coalesced == 39


def test_not_found_is_cached_and_undone_by_a_create(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "1"]
    node = fresh_node.start()
    path = "/api/handles/88.118/cache-negative"
    assert node.get(path).status == 404
    reads = node.metric("idnode_store_reads_total")
    assert [node.get(path).status for _ in range(5)] == [404] * 5
    assert node.metric("idnode_store_reads_total") == reads  # answered from the cache
    assert node.put(path, record(url_value(1, "https://n.example/")), auth=ADMIN).status == 201
    assert node.get(path).status == 200


def test_every_form_of_a_read_shares_one_cached_entry(fresh_node: Node) -> None:
    """Spellings, the proxy form, filtered and authenticated reads: one store read in all."""
    fresh_node.args = ["--workers", "1"]
    node = fresh_node.start()
    path = "/api/handles/88.118/Cache-Forms"
    values = [url_value(1, "https://f.example/"), {"index": 2, "type": "EMAIL", "data": "f@example.com"}]
    assert node.put(path, record(*values), auth=ADMIN).status == 201
    assert node.get(path).status == 200  # the one read of the store
    reads = node.metric("idnode_store_reads_total")
    lower = node.get("/api/handles/88.118/cache-forms")
    assert lower.status == 200 and lower.json["handle"] == "88.118/cache-forms"  # as spelled
    assert node.get(path).json["handle"] == "88.118/Cache-Forms"
    filtered = node.get(path + "?type=EMAIL")
    assert [v["index"] for v in filtered.json["values"]] == [2]
    assert node.get(path + "?type=EMAIL").body == filtered.body
    assert node.get(path + "?index=7").json["responseCode"] == 200
    redirect = node.get("/88.118/CACHE-FORMS")
    assert (redirect.status, redirect.headers["location"]) == (302, "https://f.example/")
    assert node.get("/88.118/cache-forms?noredirect").json["values"][0]["index"] == 1
    authed = node.get(path + "?index=1", auth=ADMIN)
    assert [v["index"] for v in authed.json["values"]] == [1]
    assert node.metric("idnode_store_reads_total") == reads
    assert node.put(path, record(url_value(1, "https://g.example/")), auth=ADMIN).status == 200
    assert node.get("/88.118/cache-forms").headers["location"] == "https://g.example/"  # the write is seen
    assert node.get(path + "?type=EMAIL").json["responseCode"] == 200  # values not found: gone


def test_an_entry_read_near_its_expiry_is_refreshed_in_the_background(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "1"]
    fresh_node.env = {"IDNODE_CACHE_MIN_TTL": "0"}
    node = fresh_node.start()
    path = "/api/handles/88.118/cache-prefetch"
    assert node.put(path, record(ttl_value(1, "https://p.example/", 4)), auth=ADMIN).status == 201
    started = time.monotonic()
    assert node.get(path).status == 200  # a miss: cached for 4 s
    misses, prefetches = node.metric("idnode_cache_misses_total"), node.metric("idnode_cache_prefetches_total")
    time.sleep(max(0.0, 3.75 - (time.monotonic() - started)))  # the TTL itself runs into its last 10%
    assert node.get(path).status == 200  # in the last 10%: served, and refreshed behind
    time.sleep(max(0.0, 4.6 - (time.monotonic() - started)))  # and past its end
    assert node.get(path).status == 200  # past the first expiry: the refreshed entry
    assert node.metric("idnode_cache_prefetches_total", until=lambda n: n > prefetches) - prefetches == 1
    assert node.metric("idnode_cache_misses_total") == misses


def test_stale_answers_are_served_while_the_store_fails(fresh_node: Node) -> None:
    fresh_node.module = "tests.support.flaky_node"
    # One worker: with two, the kernel may hand every connection of the warm-up to one of
    # them, and the other, holding nothing stale, rightly answers 503.
    fresh_node.args = ["--workers", "1"]
    fresh_node.env = {"IDNODE_CACHE_MIN_TTL": "0", "IDNODE_STALE_WINDOW": "4"}
    node = fresh_node.start()
    path = "/api/handles/88.118/cache-stale"
    assert node.put(path, record(ttl_value(1, "https://s.example/", 1)), auth=ADMIN).status == 201
    assert {first_url(r) for r in spread_gets(node, path, 10)} == {"https://s.example/"}
    (fresh_node.data_dir / "FAIL").touch()
    time.sleep(1.3)  # expired, inside the stale window
    replies = spread_gets(node, path, 10)
    assert {first_url(r) for r in replies} == {"https://s.example/"}
    assert {r.json["values"][0]["ttl"] for r in replies} == {30}
    assert all("stale" in r.headers.get("warning", "").lower() for r in replies)
    assert node.metric("idnode_cache_served_stale_total", until=lambda n: n >= 10) >= 10
    for form in (path + "?type=URL", "/88.118/cache-stale?noredirect"):  # one stale answer for every form
        reply = node.get(form)
        assert (reply.status, reply.json["values"][0]["ttl"]) == (200, 30), reply.body
        assert "stale" in reply.headers.get("warning", "").lower()
    never_cached = node.get("/api/handles/88.118/cache-stale-never")
    assert (never_cached.status, never_cached.code) == (503, 3)
    assert "store" in never_cached.json["message"]
    time.sleep(4)  # past the window: a clear failure, not an old answer
    late = node.get(path)
    assert (late.status, late.code) == (503, 3)
    (fresh_node.data_dir / "FAIL").unlink()
    assert first_url(node.get(path)) == "https://s.example/"


def load(node: Node, paths: list[str], seconds: float, failures: list[str], counts: list[int]) -> None:
    """GET the paths in turn on one keep-alive connection; record anything but a 200."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        path = paths[i % len(paths)]
        i += 1
        try:
            conn.request("GET", path)
            reply = conn.getresponse()
            body = reply.read()
            if reply.status != 200:
                failures.append(f"{path}: {reply.status} {body[:200]!r}")
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{path}: {exc!r}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    counts.append(i)
    conn.close()


def test_redis_killed_paused_and_restarted_under_load_fails_no_resolution(
    tmp_path: Path, redis_server: RedisServer, nodes: list[Node]
) -> None:
    # A small local tier, so that Redis is asked all the time.
    node = Node(
        tmp_path / "data",
        args=["--workers", "2", "--redis", redis_server.url, "--cache-entries", "20"],
    ).start()
    nodes.append(node)
    handles = [f"88.118/cache-redis-{i}" for i in range(200)]
    paths = ["/api/handles/" + h for h in handles]
    batch = [{"op": "create", "handle": h, "values": [url_value(1, "https://r.example/")]} for h in handles]
    reply = node.request("POST", "/api/batch", {"operations": batch}, auth=ADMIN)
    assert reply.status == 200, reply.body
    failures: list[str] = []
    counts: list[int] = []
    threads = [threading.Thread(target=load, args=(node, paths, 9.0, failures, counts)) for _ in range(4)]
    for t in threads:
        t.start()
    # Real time in each state of Redis: the load must meet it dead, back, hung, for seconds each.
    time.sleep(1.5)
    redis_server.kill()
    time.sleep(2.0)
    redis_server.start()  # same port, empty
    time.sleep(1.5)
    redis_server.pause()  # a hung Redis: every call would time out
    time.sleep(2.0)
    redis_server.resume()
    for t in threads:
        t.join(30)
    assert failures == []
    assert sum(counts) > 400
    assert node.metric("idnode_redis_errors_total", until=lambda n: n > 0) > 0
    hits_after = node.metric("idnode_cache_hits_total", tier="redis")
    for path in paths[:100]:
        assert node.get(path).status == 200
    hits = node.metric("idnode_cache_hits_total", until=lambda n: n > hits_after, tier="redis")
    assert hits > hits_after  # reconnected by itself


def test_sigterm_finishes_requests_in_flight(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "2"]
    node = fresh_node.start()
    assert node.proc is not None
    sent = threading.Barrier(7)
    results: list[tuple[int, int]] = []

    def register(worker: int) -> None:
        ops = [
            {"op": "create", "handle": f"88.118/shutdown-{worker}-{i}", "values": [url_value(1, "https://x.example/")]}
            for i in range(2000)
        ]
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=60)
        body = json.dumps({"operations": ops}).encode()
        headers = {"Authorization": basic(ADMIN_USER, ADMIN_SECRET), "Content-Type": "application/json"}
        conn.request("POST", "/api/batch", body=body, headers=headers)
        sent.wait()
        reply = conn.getresponse()
        outcome = json.loads(reply.read())
        results.append((reply.status, sum(1 for r in outcome["results"] if r["responseCode"] == 1)))
        conn.close()

    threads = [threading.Thread(target=register, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    sent.wait()  # every request is on the wire
    time.sleep(0.05)  # and read by the node: nothing outside it shows that, so a moment's grace
    node.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(60)
    assert node.proc.wait(30) == 0
    assert sorted(results) == [(200, 2000)] * 6
    node.start()
    for w in range(6):
        assert node.get(f"/api/handles/88.118/shutdown-{w}-1999").status == 200


def test_a_redis_cluster_serves_as_the_shared_tier(tmp_path: Path, nodes: list[Node]) -> None:
    cluster = make_cluster(tmp_path / "cluster")
    try:
        url = "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in cluster[:2])
        node = Node(tmp_path / "data", args=["--workers", "2", "--redis", url, "--cache-entries", "1"]).start()
        nodes.append(node)
        handles = [f"88.118/cache-cluster-{i}" for i in range(60)]
        batch = [{"op": "create", "handle": h, "values": [url_value(1, f"https://k.example/{h}")]} for h in handles]
        assert node.request("POST", "/api/batch", {"operations": batch}, auth=ADMIN).status == 200
        for _ in range(2):
            for h in handles:
                assert first_url(node.get("/api/handles/" + h)) == f"https://k.example/{h}"
        redis_hits = node.metric("idnode_cache_hits_total", until=lambda n: n >= 50, tier="redis")
        assert redis_hits >= 50  # the keys spread over all nodes
        # A change deletes the entry wherever its slot lives.
        new = [url_value(1, "https://changed.example/")]
        changed = [{"op": "replace", "handle": h, "values": new} for h in handles]
        assert node.request("POST", "/api/batch", {"operations": changed}, auth=ADMIN).status == 200
        for h in handles:
            assert first_url(node.get("/api/handles/" + h)) == "https://changed.example/"
        assert node.metric("idnode_redis_errors_total") == 0
    finally:
        for server in cluster:
            server.stop()
