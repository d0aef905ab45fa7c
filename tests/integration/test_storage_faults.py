"""The store when the disk fills, and the WAL under overlapping long reads.

The full disk is real: a small tmpfs (mounting needs root; skipped otherwise) filled with
a file, so SQLite itself gets "database or disk is full".
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path

from protocol.records import HandleRecord, HandleValue
from registry.sqlite.store import SqliteStore
from tests.integration.test_startup import tmpfs
from tests.support.nodeproc import ADMIN, Node, Reply, record, url_value
from tests.support.poll import wait_until


def fill(directory: Path) -> Path:
    """Take every free byte of the file system under ``directory``."""
    filler = directory / "filler"
    with open(filler, "ab", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)
    return filler


def big(index: int) -> dict[str, object]:
    return url_value(index, "https://f.example/" + "x" * 20_000)


def health(node: Node) -> Reply:
    return node.get("/healthz")


def test_healthz_fails_while_the_disk_is_full_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "8m") as fs:
        node = Node(fs / "data", args=["--workers", "1", "--min-free-bytes", "0"]).start()
        try:
            acknowledged: list[str] = []
            for n in range(5):
                assert node.put(f"/api/handles/88.118/full-{n}", record(big(1)), auth=ADMIN).status == 201
                acknowledged.append(f"full-{n}")
            assert health(node).status == 200
            filler = fill(fs)
            refusal = None
            for n in range(5, 400):
                reply = node.put(f"/api/handles/88.118/full-{n}", record(big(1)), auth=ADMIN)
                if reply.status == 201:
                    acknowledged.append(f"full-{n}")
                    continue
                refusal = reply
                break
            assert refusal is not None, "the disk never filled"
            assert (refusal.status, refusal.code) == (503, 3), refusal.body
            assert "full" in refusal.json["message"]
            sick = health(node)
            assert (sick.status, sick.code) == (503, 3) and "full" in sick.json["message"]
            time.sleep(1.1)  # real time: the next probe write comes a second after the last
            assert health(node).status == 503  # the probe write fails too: it stays failing
            # Reads go on while writes fail.
            assert node.get(f"/api/handles/88.118/{acknowledged[0]}").status == 200
            filler.unlink()
            # The probe write succeeds (probes are a second apart): no client write needed.
            wait_until(lambda: health(node).status, lambda status: status == 200, what="/healthz to pass again")
            assert node.put("/api/handles/88.118/full-after", record(big(1)), auth=ADMIN).status == 201
            acknowledged.append("full-after")
            logged = "".join(node.stderr_lines)
            assert "Traceback" not in logged and logged.count(" fail: ") == 1, logged
            node.kill()  # kill -9: what was acknowledged is on disk
            node.start()
            for name in acknowledged:
                assert node.get(f"/api/handles/88.118/{name}").status == 200, name
        finally:
            if node.proc is not None and node.proc.poll() is None:
                node.stop()


def test_writes_stop_below_min_free_bytes_on_every_worker(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "16m") as fs:
        node = Node(fs / "data", args=["--workers", "2", "--min-free-bytes", str(4 * 1024 * 1024)]).start()
        try:
            assert node.put("/api/handles/88.118/margin-0", record(big(1)), auth=ADMIN).status == 201
            filler = fill(fs)
            with open(filler, "r+b") as fh:  # give back 1 MiB: under the margin, not empty
                fh.truncate(filler.stat().st_size - 1024 * 1024)
            for n in range(10):  # new connections: both workers answer
                reply = node.put(f"/api/handles/88.118/margin-{n + 1}", record(big(1)), auth=ADMIN)
                assert (reply.status, reply.code) == (503, 3) and "min_free_bytes" in reply.json["message"]
                assert health(node).status == 503
                assert node.get("/api/handles/88.118/margin-0").status == 200
            filler.unlink()
            assert health(node).status == 200
            assert node.put("/api/handles/88.118/margin-ok", record(big(1)), auth=ADMIN).status == 201
        finally:
            node.stop()


# --- WAL growth --------------------------------------------------------------------------


def rec(n: int) -> HandleRecord:
    return HandleRecord(f"88.118/wal-{n}", (HandleValue(1, "URL", b"https://w.example/" + b"y" * 2000),))


class LongReaders:
    """Readers that each hold a snapshot for ``hold`` seconds, overlapping, so that at every
    moment some reader keeps an older snapshot of the WAL."""

    def __init__(self, path: Path, count: int = 3, hold: float = 0.3) -> None:
        self.path, self.count, self.hold = path, count, hold
        self.stop = threading.Event()
        self.reads = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def __enter__(self) -> LongReaders:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _run(self, i: int) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        time.sleep(i * self.hold / self.count)  # staggered, so that the readers overlap
        while not self.stop.is_set():
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM handles").fetchone()
            time.sleep(self.hold)  # the snapshot held: what the WAL must live with
            conn.execute("COMMIT")
            self.reads += 1
        conn.close()


async def peak_wal(tmp_path: Path, wal_max_bytes: int, seconds: float) -> tuple[int, int]:
    """Write for ``seconds`` under long readers; the largest WAL seen, and the writes made."""
    path = tmp_path / "idnode.sqlite3"
    store = SqliteStore(path, wal_max_bytes=wal_max_bytes)
    await store.open()
    wal = path.with_name(path.name + "-wal")
    peak = written = 0
    try:
        with LongReaders(path) as readers:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await asyncio.gather(*(store.create(f"88.118/wal-{written + i}", rec(written + i)) for i in range(10)))
                written += 10
                peak = max(peak, wal.stat().st_size if wal.exists() else 0)
                await asyncio.sleep(0.01)  # the writers' pace, not a wait
        assert readers.reads > 10
        assert await store.count_handles("88.118") == written  # every acknowledged write is there
    finally:
        await store.close()
    return peak, written


CAP = 1024 * 1024


async def test_the_wal_stays_under_its_cap_while_long_readers_overlap(tmp_path: Path) -> None:
    peak, written = await peak_wal(tmp_path, CAP, 6.0)
    print(f"\nWAL cap {CAP // 1024} KiB: peak {peak // 1024} KiB over {written} writes under overlapping readers")
    # The margin: what is written between two looks at the WAL (0.1 s) and while the longest
    # read finishes (0.3 s), when new writes wait.
    assert peak < 2 * CAP


async def test_without_a_cap_overlapping_readers_grow_the_wal(tmp_path: Path) -> None:
    """The control: the readers above do keep PASSIVE checkpoints from emptying the WAL."""
    peak, written = await peak_wal(tmp_path, 0, 6.0)
    print(f"\nno WAL cap: peak {peak // 1024} KiB over {written} writes")
    assert peak > 8 * CAP
