"""The embedded store: SQLite in WAL mode, one writer thread with group commit.

Writes are queued to a single writer thread. It takes whatever is queued, runs each
change in its own savepoint (a refused change rolls back alone), commits once and only
then resolves the callers' futures, so an acknowledged write is on disk (synchronous=FULL)
and survives ``kill -9``. Concurrent writers share one fsync.

Reads run on a small thread pool with one read-only connection per thread, so a read
that has to go to disk never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from protocol.errors import StoreUnavailable
from protocol.records import HandleRecord, decode_record, encode_record
from registry.store import Change, Store

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handles (
    key TEXT PRIMARY KEY,
    handle TEXT NOT NULL,
    record BLOB NOT NULL
) WITHOUT ROWID;
"""
_MAX_GROUP = 512  # writes folded into one commit at most

Work = Callable[[sqlite3.Connection], Any]


def _connect(path: Path, *, readonly: bool, synchronous: str = "FULL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA mmap_size = 268435456")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def _range(prefix: str) -> tuple[str, str]:
    # Keys under P are "P/..."; '0' is the code point right after '/'.
    return f"{prefix}/", f"{prefix}0"


class _Writer(threading.Thread):
    def __init__(self, path: Path, synchronous: str) -> None:
        super().__init__(name="idnode-sqlite-writer", daemon=True)
        self.path = path
        self.synchronous = synchronous
        self.jobs: queue.SimpleQueue[tuple[Work, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.failure: BaseException | None = None

    def submit(self, work: Work) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.jobs.put((work, future))
        return future

    def stop(self) -> None:
        self.jobs.put(None)

    def run(self) -> None:
        try:
            conn = _connect(self.path, readonly=False, synchronous=self.synchronous)
            conn.executescript(_SCHEMA)
        except BaseException as exc:  # reported by open()
            self.failure = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            self._loop(conn)
        finally:
            conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            group = [job]
            stopping = False
            while len(group) < _MAX_GROUP:
                try:
                    nxt = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                group.append(nxt)
            self._commit_group(conn, group)
            if stopping:
                return

    def _commit_group(self, conn: sqlite3.Connection, group: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for work, _ in group:
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, work(conn)))
                    conn.execute("RELEASE job")
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("store commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"the store could not commit: {exc}")
            outcomes = [(False, failure)] * len(group)
        for (_, future), (ok, result) in zip(group, outcomes, strict=True):
            future.get_loop().call_soon_threadsafe(_settle, future, ok, result)


def _settle(future: asyncio.Future[Any], ok: bool, result: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(result)
    else:
        future.set_exception(result)


class SqliteStore(Store):
    """SQLite-backed store for one node process."""

    def __init__(self, path: Path, *, readers: int = 4, synchronous: str = "FULL", threaded_reads: bool = True) -> None:
        self.path = path
        # threaded_reads=False reads on the event loop itself; kept only so the benchmark can
        # compare the two (bench/read_modes.py): a cold read would then stall every request.
        self._threaded_reads = threaded_reads
        self._writer = _Writer(path, synchronous)
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="idnode-sqlite-reader")
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer.start()
        await asyncio.get_running_loop().run_in_executor(None, self._writer.ready.wait)
        if self._writer.failure is not None:
            raise StoreUnavailable(f"cannot open store {self.path}: {self._writer.failure}")

    async def close(self) -> None:
        self._writer.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def run() -> Any:
            try:
                return fn(self._reader())
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store read failed: {exc}") from exc

        if not self._threaded_reads:
            return run()
        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def get(self, key: str) -> HandleRecord | None:
        def read(conn: sqlite3.Connection) -> HandleRecord | None:
            row = conn.execute("SELECT record FROM handles WHERE key = ?", (key,)).fetchone()
            return None if row is None else decode_record(row[0])

        result: HandleRecord | None = await self._read(read)
        return result

    async def apply(self, key: str, change: Change) -> HandleRecord | None:
        def work(conn: sqlite3.Connection) -> HandleRecord | None:
            row = conn.execute("SELECT record FROM handles WHERE key = ?", (key,)).fetchone()
            old = None if row is None else decode_record(row[0])
            new = change(old)
            if new is None:
                if old is not None:
                    conn.execute("DELETE FROM handles WHERE key = ?", (key,))
            elif new is not old:
                conn.execute(
                    "INSERT OR REPLACE INTO handles (key, handle, record) VALUES (?, ?, ?)",
                    (key, new.handle, encode_record(new)),
                )
            return new

        result: HandleRecord | None = await self._writer.submit(work)
        return result

    async def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        lo, hi = _range(prefix)

        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT handle FROM handles WHERE key >= ? AND key < ? ORDER BY key LIMIT ? OFFSET ?",
                (lo, hi, -1 if limit is None else limit, offset),
            )
            return [r[0] for r in rows]

        result: list[str] = await self._read(read)
        return result

    async def count_handles(self, prefix: str) -> int:
        lo, hi = _range(prefix)

        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM handles WHERE key >= ? AND key < ?", (lo, hi)).fetchone()[0])

        result: int = await self._read(read)
        return result
