"""Reads from a real streaming replica (pg_basebackup, replaying 3 s behind on purpose), and
what a client must see despite the lag: its own writes at once, new records never a 404,
and a replica that stops changing nothing but where reads go."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.postgres.store import PostgresStore
from tests.support.nodeproc import ADMIN, Node, record, url_value
from tests.support.pgproc import PgServer, own_server, query
from tests.support.poll import wait_until

P = "/api/handles/88.118/"
DELAY = 3.0  # recovery_min_apply_delay of the replica


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PgServer, PgServer]]:
    with own_server() as primary:
        replica = primary.replica(primary.directory.parent / "replica")
        replica.configure(recovery_min_apply_delay=f"'{DELAY:g}s'")
        replica.start()
        replica.wait_ready()
        asyncio.run(create_schema(primary.url))
        wait_until(
            lambda: query(replica.url, "SELECT to_regclass('handles') IS NOT NULL") == "t",
            what="the replica to replay the schema",
            timeout=DELAY + 10,
            interval=0.2,
        )
        try:
            yield primary, replica
        finally:
            replica.remove()


async def create_schema(url: str) -> None:
    # Before any node starts: a replica without the tables fails reads, and is then skipped
    # for a while, which would hide what the tests look for.
    store = PostgresStore(url)
    await store.open()
    await store.close()


def start_node(data: Path, servers: tuple[PgServer, PgServer], workers: int) -> Node:
    primary, replica = servers
    args = ["--workers", str(workers), "--store-replica", replica.url]
    # Nodes sharing one database share the key its secrets are sealed with (secret_key_file).
    key = {"IDNODE_SECRET_KEY_FILE": str(primary.directory.parent / "secret-key")}
    return Node(data, store=primary.url, args=args, env=key).start()


def idnode_connections(server: PgServer) -> int:
    # Replica pools open connections only when a read needs one.
    return int(query(server.url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'idnode'"))


def on_replica(replica: PgServer, name: str) -> bool:
    if query(replica.url, "SELECT to_regclass('handles') IS NULL") == "t":
        return False
    return query(replica.url, f"SELECT count(*) FROM handles WHERE key = '88.118/{name.upper()}'") == "1"


def wait_replayed(replica: PgServer, name: str) -> None:
    wait_until(
        lambda: on_replica(replica, name),
        what=f"the replica to replay {name}",
        timeout=DELAY + 10,
        interval=0.2,
    )


def create(node: Node, name: str) -> None:
    assert node.put(P + name, record(url_value(1, f"https://{name}/")), auth=ADMIN).status == 201


def test_reads_go_to_the_replica_and_a_writer_reads_its_own_writes(
    tmp_path: Path, servers: tuple[PgServer, PgServer]
) -> None:
    replica = servers[1]
    names = [f"rep-old-{n}" for n in range(40)]
    writer = start_node(tmp_path / "writer", servers, workers=1)
    for name in names:
        create(writer, name)
    writer.stop()
    wait_replayed(replica, names[-1])
    node = start_node(tmp_path / "data", servers, workers=1)  # nothing cached, nothing written here
    try:
        before = idnode_connections(replica)
        for name in names:
            assert node.get(P + name).status == 200
        assert idnode_connections(replica) > before, "".join(node.stderr_lines)

        # Written and read back at once, while the replica cannot have it for 3 s more.
        create(node, "rep-mine")
        assert node.get(P + "rep-mine?type=URL").status == 200
        assert not on_replica(replica, "rep-mine")
    finally:
        node.stop()


def test_a_record_created_on_another_worker_is_never_a_404(tmp_path: Path, servers: tuple[PgServer, PgServer]) -> None:
    replica = servers[1]
    node = start_node(tmp_path / "data", servers, workers=2)
    try:
        for n in range(5):
            name = f"rep-other-{n}"
            create(node, name)
            # Each read on a connection of its own, so both workers answer some of them; the
            # one that did not write it must not take the lagging replica's word for it.
            statuses = [node.get(P + name).status for _ in range(8)]
            assert statuses == [200] * 8, (name, statuses)
            assert not on_replica(replica, name)
    finally:
        node.stop()


def test_a_stopped_replica_sends_reads_to_the_primary(tmp_path: Path, servers: tuple[PgServer, PgServer]) -> None:
    replica = servers[1]
    node = start_node(tmp_path / "data", servers, workers=1)
    try:
        create(node, "rep-stop")
        wait_replayed(replica, "rep-stop")
        replica.stop("immediate")
        for n in range(20):
            started = time.monotonic()
            assert node.get(P + f"rep-stop?type=URL&n={n}").status == 200
            assert node.get(P + f"rep-none-{n}").status == 404
            create(node, f"rep-while-down-{n}")
            assert time.monotonic() - started < 2.0
        assert node.get("/healthz").status == 200
    finally:
        node.stop()
        replica.start()
        replica.wait_ready()


def test_a_node_starts_while_its_replica_is_down(tmp_path: Path, servers: tuple[PgServer, PgServer]) -> None:
    replica = servers[1]
    replica.stop("fast")
    try:
        node = start_node(tmp_path / "data", servers, workers=1)
        try:
            create(node, "rep-start")
            assert node.get(P + "rep-start").status == 200
        finally:
            node.stop()
    finally:
        replica.start()
        replica.wait_ready()


def test_a_record_changed_on_another_worker_is_never_read_stale(
    tmp_path: Path, servers: tuple[PgServer, PgServer]
) -> None:
    replica = servers[1]
    node = start_node(tmp_path / "data", servers, workers=2)
    try:
        name = "rep-changed"
        create(node, name)
        wait_replayed(replica, name)
        time.sleep(0.5)
        for _ in range(8):  # cached by both workers
            assert node.get(P + name).status == 200
        for n in range(3):
            url = f"https://changed-{n}.example/"
            assert node.put(P + name, record(url_value(1, url)), auth=ADMIN).status == 200
            # The worker that did not write it drops its cached answer and reads again:
            # from a replica 3 s behind, that would be the old URL, cached for its TTL.
            seen = [node.get(P + name).json["values"][0]["data"]["value"] for _ in range(8)]
            assert seen == [url] * 8, seen
    finally:
        node.stop()
