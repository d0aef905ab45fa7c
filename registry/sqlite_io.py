"""The threads behind the SQLite store: one writer with group commit, and a checkpointer.

Writes are queued to a single writer thread. It takes whatever is queued, runs each job in
its own savepoint (a refused one rolls back alone), commits once and only then resolves
the callers' futures, so an acknowledged write is on disk (synchronous=FULL) and survives
``kill -9``. Concurrent writers share one fsync. Worker processes of one node share the
file; their writers take turns through a file lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol.errors import StoreUnavailable
from registry.sqlite_schema import migrate

log = logging.getLogger("registry.sqlite")

MAX_GROUP = 512  # jobs folded into one commit at most
CHECKPOINT_INTERVAL_SECONDS = 0.5

Work = Callable[[sqlite3.Connection], Any]


def connect(path: Path, *, readonly: bool, synchronous: str = "FULL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA mmap_size = 268435456")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        # Commits never checkpoint: that would stall the writer (and, holding the write lock,
        # every other worker) while pages go to disk. The checkpointer thread does it.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


class Writer(threading.Thread):
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
            conn = connect(self.path, readonly=False, synchronous=self.synchronous)
            migrate(conn)
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
            while len(group) < MAX_GROUP:
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
        # Worker processes of one node share the file. SQLite's own busy handler makes a
        # waiting writer sleep for growing intervals; a blocking flock wakes it as soon as
        # the other process commits.
        with open(self.path.with_suffix(".write-lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._commit_locked(conn, group)

    def _commit_locked(self, conn: sqlite3.Connection, group: list[tuple[Work, asyncio.Future[Any]]]) -> None:
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


class Checkpointer(threading.Thread):
    """Moves committed pages from the WAL into the database file, beside the writers.

    A PASSIVE checkpoint takes no write lock, so registration goes on while it runs.
    """

    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL_SECONDS) -> None:
        super().__init__(name="idnode-sqlite-checkpointer", daemon=True)
        self.path = path
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = connect(self.path, readonly=False)
        try:
            while not self.stopping.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    log.warning("WAL checkpoint failed; will try again", exc_info=True)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
