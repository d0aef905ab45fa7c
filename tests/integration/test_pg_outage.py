"""PostgreSQL going away under load, and coming back: a real node on a PostgreSQL server of
the test's own, stopped with ``pg_ctl stop -m immediate`` (a crash, as the node sees it)
while a client keeps resolving and writing.

What an operator expects: cached answers keep coming (stale ones past their TTL), the rest
fails at once with a 503 that says the store is unavailable, /healthz says so, and when the
database is back everything recovers by itself, with nothing acknowledged lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.nodeproc import ADMIN, Node, Reply, record, url_value
from tests.support.pgproc import PgServer, own_server, query
from tests.support.poll import wait_until

P = "/api/handles/88.118/"
CACHED = [f"pgo-cached-{n}" for n in range(5)]
FAST = 3.0  # seconds: a failure must come well before the client's 30 s timeout
RECOVERY = 20.0  # seconds the node may take to notice the database is back


@pytest.fixture
def server() -> Iterator[PgServer]:
    with own_server() as pg:
        yield pg


@pytest.fixture
def pg_node(tmp_path: Path, server: PgServer) -> Iterator[Node]:
    # One worker, so the answers read once are in the cache that serves the next reads; a
    # cache TTL of 1 s, so the outage outlives it and the stale answers are exercised.
    env = {"IDNODE_CACHE_MIN_TTL": "0", "IDNODE_CACHE_MAX_TTL": "1"}
    node = Node(tmp_path / "data", store=server.url, args=["--workers", "1"], env=env).start()
    yield node
    node.stop()


@dataclass
class Seen:
    kind: str  # "cached", "uncached" or "write"
    phase: str  # the phase when the request was sent and still when it was answered, else "mixed"
    reply: Reply
    seconds: float


@dataclass
class Load:
    """A client in a thread of its own: cached reads, uncached reads and writes, round after round."""

    node: Node
    phase: str = "up"
    seen: list[Seen] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            self._one("cached", "GET", P + CACHED[n % len(CACHED)])
            self._one("uncached", "GET", P + f"pgo-never-{n}")
            name = f"pgo-load-{n}"
            if self._one("write", "PUT", P + name, record(url_value(1, "https://l/"))).status == 201:
                self.acknowledged.append(name)
            time.sleep(0.02)  # a client's pace, not a wait

    def _one(self, kind: str, method: str, path: str, body: object = None) -> Reply:
        phase, started = self.phase, time.monotonic()
        reply = self.node.request(method, path, body, auth=ADMIN if method == "PUT" else None)
        seconds = time.monotonic() - started
        self.seen.append(Seen(kind, phase if phase == self.phase else "mixed", reply, seconds))
        return reply

    def of(self, kind: str, phase: str) -> list[Seen]:
        return [s for s in self.seen if s.kind == kind and s.phase == phase]


def stored_names(server: PgServer, prefix: str) -> set[str]:
    """The suffixes under 88.118 starting with ``prefix`` that the database holds (keys are upper case)."""
    rows = query(server.url, f"SELECT key FROM handles WHERE key LIKE '88.118/{prefix.upper()}%'")
    return {r.partition("/")[2].lower() for r in rows.splitlines()}


def wait_until_writable(node: Node, name: str) -> float:
    started = time.monotonic()
    wait_until(
        lambda: node.put(P + name, record(url_value(1, "https://r/")), auth=ADMIN).status,
        lambda status: status == 201,
        what="the node to write again after the database came back",
        timeout=RECOVERY,
        interval=0.2,
    )
    return time.monotonic() - started


def test_an_outage_under_load_is_served_from_cache_refused_fast_and_recovered(pg_node: Node, server: PgServer) -> None:
    for name in CACHED:
        assert pg_node.put(P + name, record(url_value(1, f"https://{name}/")), auth=ADMIN).status == 201
        assert pg_node.get(P + name).status == 200  # now cached
    load = Load(pg_node)
    client = threading.Thread(target=load.run, daemon=True)
    client.start()
    wait_until(lambda: load.of("write", "up"), what="the client's first round")

    load.phase = "stopping"
    server.stop("immediate")
    load.phase = "down"
    health = wait_until(lambda: pg_node.get("/healthz"), lambda reply: reply.status != 200, what="/healthz to fail")
    time.sleep(3.0)  # past the cache TTL: cached answers now come from stale entries
    load.phase = "starting"
    server.start()
    load.phase = "back"
    took = wait_until_writable(pg_node, "pgo-after")
    time.sleep(1.0)  # the load runs on the recovered node for a while, so that a relapse would show
    load.stopping.set()
    client.join(30)

    assert health.status == 503 and "store" in health.json["message"], health.body
    assert pg_node.get("/healthz").status == 200
    for s in load.seen:  # whatever the moment: never a 500, never a hang
        assert s.reply.status in (200, 201, 404, 503), (s.kind, s.phase, s.reply.body)
        assert s.seconds < FAST, (s.kind, s.phase, s.seconds)
    cached = load.of("cached", "down")
    assert cached and all(s.reply.status == 200 for s in cached)
    assert any("Warning" in s.reply.headers or "warning" in s.reply.headers for s in cached), "no stale answer"
    failed = load.of("uncached", "down") + load.of("write", "down")
    assert failed and all(s.reply.status == 503 for s in failed), [s.reply.body for s in failed]
    for s in failed:
        assert "store is unavailable" in s.reply.json["message"], s.reply.body
    # Back: every request after the first successful write succeeds.
    assert took < RECOVERY
    recovered = [s for s in load.of("write", "back") if s.reply.status == 201]
    assert recovered, "no write succeeded after the restart"
    after = load.seen[load.seen.index(recovered[0]) :]
    assert all(s.reply.status in (200, 201, 404) for s in after), [s.reply.body for s in after]
    assert set(load.acknowledged) <= stored_names(server, "pgo-load-")
    assert set(CACHED) <= stored_names(server, "pgo-cached-")


def test_connections_killed_by_the_server_are_replaced_at_once(pg_node: Node, server: PgServer) -> None:
    kill = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'idnode'"
    for n in range(3):
        assert pg_node.put(P + f"pgo-kill-{n}", record(url_value(1, "https://k/")), auth=ADMIN).status == 201
        assert int(query(server.url, kill)) >= 1
        # The very next requests find the pool's connections gone and must not fail for it.
        assert pg_node.get(P + f"pgo-kill-{n}").status == 200
        assert pg_node.put(P + f"pgo-kill-{n}b", record(url_value(1, "https://k/")), auth=ADMIN).status == 201
        assert pg_node.get("/healthz").status == 200


def test_connections_killed_mid_query_fail_cleanly_and_recover(pg_node: Node, server: PgServer) -> None:
    load = Load(pg_node)
    client = threading.Thread(target=load.run, daemon=True)
    client.start()
    kill = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'idnode'"
    for _ in range(15):
        query(server.url, kill)
        time.sleep(0.15)  # the pace of the kills, while the load runs
    load.phase = "calm"
    time.sleep(1.5)  # the load runs calm for a while, so that a lasting failure would show
    load.stopping.set()
    client.join(30)
    for s in load.seen:
        assert s.reply.status in (200, 201, 404, 503), (s.kind, s.reply.body)
        assert s.seconds < FAST
    calm = load.of("write", "calm") + load.of("uncached", "calm")
    assert calm and all(s.reply.status in (201, 404) for s in calm), [s.reply.body for s in calm]
    assert set(load.acknowledged) <= stored_names(server, "pgo-load-")
