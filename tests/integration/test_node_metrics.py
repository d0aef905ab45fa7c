"""The metrics the alerts of deploy/prometheus watch move when their event happens, on a real node.

A store that fails, a Redis that dies and comes back, a top-level node that is away while a
prefix waits to be published: each seen on ``/metrics`` as an operator's Prometheus sees it.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.test_hierarchy import LOOPBACK_ALLOWED, admin_of, grant, wait_published
from tests.support.nodeproc import ADMIN, ADMIN_SECRET, Node, record, url_value
from tests.support.poll import wait_until
from tests.support.redisproc import RedisServer

A_ADMIN = ("300:0.NA/88.118", ADMIN_SECRET)


def test_store_failures_count_whether_answered_stale_or_with_an_error(tmp_path: Path, nodes: list[Node]) -> None:
    node = Node(
        tmp_path / "data",
        module="tests.support.flaky_node",
        args=["--workers", "1"],
        env={"IDNODE_CACHE_MIN_TTL": "0", "IDNODE_STALE_WINDOW": "30"},
    ).start()
    nodes.append(node)
    path = "/api/handles/88.118/metrics-stale"
    assert node.put(path, record({**url_value(1, "https://s.example/"), "ttl": 1}), auth=ADMIN).status == 201
    assert node.get(path).status == 200
    assert node.metric("idnode_store_errors_total") == 0
    (node.data_dir / "FAIL").touch()
    time.sleep(1.2)  # expired, inside the stale window
    assert "stale" in node.get(path).headers.get("warning", "").lower()
    assert node.get("/api/handles/88.118/metrics-never-cached").status == 503
    (node.data_dir / "FAIL").unlink()
    (node.data_dir / "FAIL_WRITES").touch()
    assert node.put(path, record(url_value(1, "https://t.example/")), auth=ADMIN).status == 503
    assert node.metric("idnode_store_errors_total", until=lambda n: n >= 3) == 3
    assert node.metric("idnode_cache_served_stale_total", until=lambda n: n >= 1) == 1


def test_the_redis_breaker_gauge_opens_and_closes_with_redis(tmp_path: Path, nodes: list[Node]) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        # One worker: a breaker is per worker, and one that got no request would rightly stay open.
        node = Node(tmp_path / "data", args=["--workers", "1", "--redis", redis.url]).start()
        nodes.append(node)
        misses = (f"/api/handles/88.118/nothing-{i}" for i in range(10_000))  # each one asks Redis
        assert node.get(next(misses)).status == 404
        assert node.metric("idnode_redis_breaker_open") == 0
        redis.kill()
        for _ in range(5):
            assert node.get(next(misses)).status == 404  # Redis down is a miss, never an error
        assert node.metric("idnode_redis_breaker_open", until=lambda n: n >= 1) == 1
        redis.start()  # the same port, empty

        def breakers_open_after_a_miss() -> float:
            node.get(next(misses))  # after the cool-down one of these probes Redis, and finds it back
            return node.metric_now("idnode_redis_breaker_open")

        wait_until(breakers_open_after_a_miss, lambda n: n == 0, what="the Redis breaker to close", interval=0.2)
        assert node.metric("idnode_redis_breaker_open") == 0
    finally:
        redis.stop()


def test_the_publication_backlog_grows_while_the_top_level_node_is_away(tmp_path: Path, nodes: list[Node]) -> None:
    top = Node(tmp_path / "top", args=["--role", "top-level", "--node-prefix", "88", "--workers", "1"]).start()
    nodes.append(top)
    grant(top, "88.118")
    env = {"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET, **LOOPBACK_ALLOWED}
    a = Node(tmp_path / "a", args=["--upstream", f"http://127.0.0.1:{top.port}", "--workers", "2"], env=env).start()
    nodes.append(a)
    wait_published(a, "88.118")
    assert a.metric("idnode_publication_backlog", until=lambda v: v == 0) == 0
    port = top.port
    top.stop()
    assert a.put("/api/handles/0.NA/88.118.7", record(admin_of("88.118")), auth=A_ADMIN).status == 201
    assert a.metric("idnode_publication_backlog", until=lambda v: v == 1) == 1
    assert a.metric("idnode_publications_total", until=lambda n: n >= 1, result="failed") >= 1
    top.start(listen=f"127.0.0.1:{port}")
    wait_published(a, "88.118.7", timeout=30)
    assert a.metric("idnode_publication_backlog", until=lambda v: v == 0) == 0


def test_the_cache_gauges_count_what_the_workers_hold(tmp_path: Path, nodes: list[Node]) -> None:
    node = Node(tmp_path / "data", args=["--workers", "2"]).start()
    nodes.append(node)
    assert node.metric("idnode_cache_entries", until=lambda n: n == 0, form="hot") == 0
    for i in range(20):
        path = f"/api/handles/88.118/gauge-{i}"
        assert node.put(path, record(url_value(1, f"https://g{i}.example/")), auth=ADMIN).status == 201
        assert node.get(path).status == 200
    # Each resolution cached by the worker that answered it (and the prefix handle the writes read).
    assert node.metric("idnode_cache_entries", until=lambda n: n >= 20, form="hot") >= 20
    assert node.metric("idnode_cache_entries", form="packed") == 0  # packed after ~30 s unused
    assert node.metric("idnode_cache_bytes", until=lambda n: n > 20 * 500) > 20 * 500
