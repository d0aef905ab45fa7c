"""``idnode backup`` of a serving SQLite node under write load, and ``idnode restore`` of it.

The load records when each write was sent and when the node acknowledged it. Every write
acknowledged before the backup command started must be in the restored node; every write
sent after the backup command ended must not be (the backup is one snapshot, not a copy
that kept reading). Writes in between may land on either side.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from registry.datadir import hold
from registry.sqlite.backup import Snapshot, copy_store, verify
from registry.sqlite.schema import migrate
from registry.sqlite.store import SqliteStore
from registry.sqlite.writer import STORE_FILE, connect
from tests.integration.test_storage_faults import rec
from tests.support.nodeproc import ADMIN, Node, record, url_value
from tests.support.pgproc import temp_database
from tests.support.poll import wait_until
from tests.support.snmsclient import Snms

PREFILLED = 200_000  # ~50 MB of store: a backup of several steps
ENTERPRISE, ENTERPRISE_SECRET = "88.118.5", "enterprise-secret-0123456789"
OK, FAILED, BAD_SETTINGS, WOULD_OVERWRITE, IN_USE, DAMAGED = 0, 1, 2, 3, 4, 5


def idnode(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "resolver.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def prefilled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with PREFILLED records, imported once; tests copy it."""
    where = tmp_path_factory.mktemp("prefilled")
    source = where / "records.jsonl"
    with open(source, "w") as out:
        for i in range(PREFILLED):
            value = url_value(1, f"https://pre.example/{i}/" + "x" * 100)
            out.write(json.dumps({"handle": f"88.118/PRE{i:06d}", "values": [value]}) + "\n")
    done = idnode("import", source, "--data-dir", where / "data")
    assert done.returncode == 0, done.stderr
    return where / "data"


@pytest.fixture
def serving(prefilled: Path, tmp_path: Path) -> Iterator[Node]:
    """A node on a copy of the prefilled store, with an SNMS enterprise whose tokens it signs."""
    shutil.copytree(prefilled, tmp_path / "data")
    node = Node(tmp_path / "data").start()
    seckey = {"index": 300, "type": "HS_SECKEY", "data": ENTERPRISE_SECRET}
    assert node.put(f"/api/handles/0.NA/{ENTERPRISE}", record(seckey), auth=ADMIN).status == 201
    assert (
        node.put(f"/api/handles/{ENTERPRISE}/KEYED", record(url_value(1, "https://k.example/")), auth=ADMIN).status
        == 201
    )
    yield node
    if node.proc is not None and node.proc.poll() is None:
        node.stop()


@dataclass
class Load:
    """Two writers, single PUTs and /api/batch, noting when each write was sent and acknowledged."""

    node: Node
    sent_acked: dict[str, tuple[float, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        self.threads = [threading.Thread(target=self._run, args=(kind,), daemon=True) for kind in ("s", "b")]
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def wait_for(self, count: int) -> None:
        wait_until(
            lambda: len(self.sent_acked) >= count or self.failures,
            what=f"{count} acknowledged writes",
            timeout=60,
        )
        assert not self.failures, self.failures

    def _run(self, kind: str) -> None:
        for n in itertools.count():
            if self.stopping.is_set():
                return
            handles = (
                [f"88.118/LOAD-{kind}{n:06d}"] if kind == "s" else [f"88.118/LOAD-b{n:05d}-{i}" for i in range(20)]
            )
            sent = time.monotonic()
            try:
                ok = self._write(handles)
            except OSError:  # the node was killed
                return
            if ok:
                acked = time.monotonic()
                self.sent_acked.update((h, (sent, acked)) for h in handles)

    def _write(self, handles: list[str]) -> bool:
        if len(handles) == 1:
            reply = self.node.put(
                f"/api/handles/{handles[0]}", record(url_value(1, "https://load.example/")), auth=ADMIN
            )
            ok = reply.status == 201
        else:
            ops = [{"op": "create", "handle": h, "values": [url_value(1, "https://load.example/")]} for h in handles]
            reply = self.node.request("POST", "/api/batch", {"atomic": True, "operations": ops}, auth=ADMIN)
            ok = reply.status == 200 and all(r["responseCode"] == 1 for r in reply.json["results"])
        if not ok:
            self.failures.append(f"{reply.status} {reply.body[:200]!r}")
        return ok

    def acked_before(self, moment: float) -> set[str]:
        return {h for h, (_, acked) in self.sent_acked.items() if acked < moment}

    def sent_after(self, moment: float) -> set[str]:
        return {h for h, (sent, _) in self.sent_acked.items() if sent > moment}


def listed(node: Node, prefix: str) -> set[str]:
    found: set[str] = set()
    cursor = ""
    while True:
        page = node.get(f"/api/handles?prefix={prefix}&pageSize=10000&cursor={cursor}", auth=ADMIN).json
        found.update(page["handles"])
        if "nextCursor" not in page:
            return found
        cursor = page["nextCursor"]


def backup_under_load(node: Node, dest: Path, *, kill_during: bool = False) -> tuple[Load, float, float]:
    """Back ``node`` up to ``dest`` while it takes writes; (the load, when the backup started, when it ended)."""
    load = Load(node).start()
    load.wait_for(500)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "resolver.cli", "backup", str(dest), "--data-dir", str(node.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if kill_during:
        copy = dest.with_name(f".{dest.name}.partial-{proc.pid}") / STORE_FILE  # where the backup copies to
        wait_until(lambda: copy.exists() or proc.poll() is not None, what="the backup to begin its copy")
        node.kill()
    out, err = proc.communicate(timeout=120)
    ended = time.monotonic()
    assert proc.returncode == OK, err
    assert "handles" in out
    if not kill_during:
        load.wait_for(len(load.sent_acked) + 500)  # and writes go on after it
    load.stop()
    if not kill_during:
        assert not load.failures, load.failures
    return load, started, ended


def restored_node(backup: Path, data_dir: Path, key_from: Path) -> Node:
    done = idnode("restore", backup, "--data-dir", data_dir)
    assert done.returncode == OK, done.stderr
    assert not (backup / "secret-key").exists(), "the key sealing the secrets is never in a backup"
    assert "secret_key_file" in done.stderr  # the operator is told to give the key
    shutil.copy(key_from / "secret-key", data_dir / "secret-key")  # kept apart, given back
    return Node(data_dir).start()


def test_a_backup_under_write_load_holds_every_write_acknowledged_before_it(serving: Node, tmp_path: Path) -> None:
    snms = Snms(serving)
    assert snms.login(ENTERPRISE, ENTERPRISE_SECRET).json["status"] == 1
    load, started, ended = backup_under_load(serving, tmp_path / "backup")
    before, after = load.acked_before(started), load.sent_after(ended)
    assert len(before) >= 500 and len(after) >= 500
    serving.stop()

    node = restored_node(tmp_path / "backup", tmp_path / "restored", serving.data_dir)
    try:
        missing = [h for h in sorted(before) if node.get(f"/api/handles/{h}").status != 200]
        assert not missing, f"{len(missing)} acknowledged writes missing, e.g. {missing[:5]}"
        handles = listed(node, "88.118")
        assert not handles & after, "the backup holds writes sent after it ended"
        # Counts and records come from one snapshot: the count the node keeps is what is listed.
        count = int(node.get("/api/handles?prefix=88.118&pageSize=0", auth=ADMIN).json["totalCount"])
        assert count == len(handles) >= PREFILLED + len(before)
        # The node's keys came back with the store: a token the original node issued is honoured.
        assert Snms(node, snms.token).detail(f"{ENTERPRISE}/KEYED").json["status"] == 1
    finally:
        node.stop()
    for name in ("idnode.sqlite3", "handle-server-key.pem", "snms-token-key"):
        assert (tmp_path / "backup" / name).stat().st_mode & 0o077 == 0, name
        assert (tmp_path / "restored" / name).stat().st_mode & 0o077 == 0, name
    assert (tmp_path / "restored" / "handle-server-key.pem").read_bytes() == (
        serving.data_dir / "handle-server-key.pem"
    ).read_bytes()


def test_a_node_killed_during_its_backup_leaves_a_restorable_one(serving: Node, tmp_path: Path) -> None:
    load, started, _ = backup_under_load(serving, tmp_path / "backup", kill_during=True)
    before = load.acked_before(started)
    node = restored_node(tmp_path / "backup", tmp_path / "restored", serving.data_dir)
    try:
        missing = [h for h in sorted(before) if node.get(f"/api/handles/{h}").status != 200]
        assert not missing and len(before) >= 500
    finally:
        node.stop()


def test_restore_refuses_a_running_node_and_an_existing_store(serving: Node, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    assert idnode("backup", backup, "--data-dir", serving.data_dir).returncode == OK
    assert idnode("backup", backup, "--data-dir", serving.data_dir).returncode == WOULD_OVERWRITE
    later = serving.put("/api/handles/88.118/AFTER", record(url_value(1, "https://a.example/")), auth=ADMIN)
    assert later.status == 201

    running = idnode("restore", backup, "--data-dir", serving.data_dir, "--force")
    assert running.returncode == IN_USE and "in use" in running.stderr
    assert serving.get("/api/handles/88.118/AFTER").status == 200  # the store was left alone
    serving.stop()

    assert idnode("restore", backup, "--data-dir", serving.data_dir).returncode == WOULD_OVERWRITE
    restoring = hold(serving.data_dir / "idnode.sqlite3", exclusive=True)  # as a restore holds it
    try:
        with pytest.raises(RuntimeError, match="in use: a restore is running"):
            serving.start()  # no node starts on a store being restored
    finally:
        os.close(restoring)
    assert idnode("restore", backup, "--data-dir", serving.data_dir, "--force").returncode == OK
    assert not (serving.data_dir / "idnode.sqlite3-wal").exists()
    serving.start()
    assert serving.get("/api/handles/88.118/AFTER").status == 404  # the store is the backup's again
    assert serving.get("/api/handles/88.118/PRE000007").status == 200


def _corrupt_a_page(db: Path) -> None:
    """Overwrite one page in the middle of the file; the SQLite header stays valid."""
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    middle = (len(data) // page // 2) * page
    data[middle : middle + page] = b"\xff" * page
    db.write_bytes(bytes(data))


def test_a_damaged_backup_is_refused_and_nothing_is_restored(serving: Node, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    assert idnode("backup", backup, "--data-dir", serving.data_dir).returncode == OK
    serving.stop()

    damaged = tmp_path / "damaged"
    shutil.copytree(backup, damaged)
    _corrupt_a_page(damaged / "idnode.sqlite3")
    refused = idnode("restore", damaged, "--data-dir", tmp_path / "new")
    assert refused.returncode == DAMAGED and "checksum" in refused.stderr
    # The same damage with a manifest that matches it: SQLite's integrity check finds it.
    manifest = json.loads((damaged / "backup.json").read_text())
    manifest["files"]["idnode.sqlite3"]["sha256"] = hashlib.sha256(
        (damaged / "idnode.sqlite3").read_bytes()
    ).hexdigest()
    (damaged / "backup.json").write_text(json.dumps(manifest))
    refused = idnode("restore", damaged, "--data-dir", tmp_path / "new")
    assert refused.returncode == DAMAGED and "integrity check" in refused.stderr, refused.stderr
    assert not (tmp_path / "new" / "idnode.sqlite3").exists()
    # A truncated one; and the good one still restores.
    shutil.copytree(backup, tmp_path / "cut")
    with open(tmp_path / "cut" / "idnode.sqlite3", "r+b") as fh:
        fh.truncate(4096 * 3)
    assert idnode("restore", tmp_path / "cut", "--data-dir", tmp_path / "new").returncode == DAMAGED
    assert idnode("restore", backup, "--data-dir", tmp_path / "new").returncode == OK


def test_a_postgresql_store_is_sent_to_its_own_tools(tmp_path: Path) -> None:
    refused = idnode("backup", tmp_path / "b", "--store", "postgresql://postgres@127.0.0.1:5432/test")
    assert refused.returncode == BAD_SETTINGS and "deploy/POSTGRESQL.md" in refused.stderr
    assert not (tmp_path / "b").exists()


def test_a_copy_is_one_snapshot_and_ends_while_another_connection_commits(tmp_path: Path) -> None:
    """The counts a copy reports and the rows it holds are of one moment, and commits do not hold it up."""
    source = tmp_path / "idnode.sqlite3"
    writer = connect(source, readonly=False, synchronous="OFF")  # commits as fast as they come
    migrate(writer)
    writer.execute("BEGIN")
    writer.executemany(
        "INSERT INTO handles (key, handle, record) VALUES (?, ?, randomblob(400))",
        ((f"88.118/p{i}", f"88.118/p{i}") for i in range(40_000)),
    )
    writer.execute("COMMIT")
    stopping, commits = threading.Event(), [0]

    def write() -> None:
        while not stopping.is_set():
            n = commits[0]
            writer.execute("INSERT INTO handles (key, handle, record) VALUES (?, ?, x'00')", (f"w/{n}", f"w/{n}"))
            commits[0] += 1

    threading.Thread(target=write, daemon=True).start()
    wait_until(lambda: commits[0] >= 100, what="100 commits", interval=0.001)
    copied: list[Snapshot] = []
    copier = threading.Thread(target=lambda: copied.append(copy_store(source, tmp_path / "copy.sqlite3")))
    before = commits[0]
    copier.start()
    copier.join(20)
    during = commits[0] - before
    stopping.set()
    copier.join()
    assert copied, "the copy did not finish in 20 s of commits"
    assert during > 10, f"only {during} commits while the copy ran"
    assert copied[0].handles == verify(tmp_path / "copy.sqlite3").handles >= 40_000


async def test_a_reader_as_long_as_a_backup_holds_writers_back_once_at_most(tmp_path: Path) -> None:
    """With the WAL over its cap, a TRUNCATE that the reader outlasts is not tried again at once."""
    path = tmp_path / "idnode.sqlite3"
    store = SqliteStore(path, wal_max_bytes=1024 * 1024)
    await store.open()
    reader = sqlite3.connect(path, isolation_level=None)
    slow = written = 0
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM handles").fetchone()  # held like a backup's snapshot
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            started = time.monotonic()
            await asyncio.gather(*(store.create(f"88.118/r{written + i}", rec(written + i)) for i in range(50)))
            written += 50
            slow += time.monotonic() - started > 1.0
        reader.execute("COMMIT")
        assert path.with_name(path.name + "-wal").stat().st_size > 2 * 1024 * 1024  # the cap was passed
        assert slow <= 1, f"{slow} stalls of writers in 8 s ({written} writes)"
    finally:
        reader.close()
        await store.close()


def test_the_documented_pg_dump_and_pg_restore_keep_every_acknowledged_write(tmp_path: Path) -> None:
    """deploy/POSTGRESQL.md's logical backup, taken under write load, restored into a new database."""
    with temp_database() as url, temp_database() as restored_url:
        node = Node(tmp_path / "data", store=url).start()
        try:
            load = Load(node).start()
            load.wait_for(500)
            started = time.monotonic()
            dump = subprocess.run(["pg_dump", "-Fc", "-f", str(tmp_path / "idnode.dump"), url], capture_output=True)
            load.wait_for(len(load.sent_acked) + 200)
            load.stop()
            assert dump.returncode == 0 and not load.failures, (dump.stderr, load.failures)
        finally:
            node.stop()
        restore = ["pg_restore", "--exit-on-error", "--single-transaction", "--no-owner", "-d", restored_url]
        done = subprocess.run([*restore, str(tmp_path / "idnode.dump")], capture_output=True)
        assert done.returncode == 0, done.stderr
        node = Node(tmp_path / "data", store=restored_url).start()
        try:
            before = load.acked_before(started)
            missing = [h for h in sorted(before) if node.get(f"/api/handles/{h}").status != 200]
            assert not missing and len(before) >= 500, missing[:5]
        finally:
            node.stop()
