"""The threads behind the SQLite store: one writer with group commit, and a checkpointer.

Writes are queued to a single writer thread. It takes whatever is queued, runs each job in
its own savepoint (a refused one rolls back alone), commits once and only then resolves
the callers' futures, so an acknowledged write is on disk (synchronous=FULL) and survives
``kill -9``. Concurrent writers share one fsync. Worker processes of one node share the
file; their writers take turns through a file lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol.errors import StoreUnavailable
from registry.datadir import PRIVATE_FILE, space_problem
from registry.sqlite.schema import migrate

log = logging.getLogger("registry.sqlite")

MAX_GROUP = 512  # jobs folded into one commit at most
CHECKPOINT_INTERVAL_SECONDS = 0.5
# How long a checkpoint that empties the WAL waits for readers of older snapshots (and, while
# it waits, holds new writers back). Under the writers' own busy timeout (10 s), so that a
# reader longer than this makes the checkpoint give up and retry, not the writes fail.
TRUNCATE_WAIT_MS = 5000
# After a TRUNCATE that readers outlasted, the next one waits this long. A reader that holds
# one snapshot for minutes (a backup, an export) would otherwise have writers held back for
# 5 s out of every 5.1 (measured: 18,000 writes/s fell to 190/s), and gain nothing: the WAL
# cannot start over before that reader ends.
TRUNCATE_BACKOFF_SECONDS = 30.0
WAL_CHECK_SECONDS = 0.1
SQLITE_SUFFIXES = ("", "-wal", "-shm")
STORE_FILE = "idnode.sqlite3"  # the store's name in the data directory

Work = Callable[[sqlite3.Connection], Any]


def create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644 under the usual
    umask); tighten it and its -wal/-shm files if they exist already."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, PRIVATE_FILE))
    for suffix in SQLITE_SUFFIXES:
        file = path.with_name(path.name + suffix)
        try:
            if stat.S_IMODE(file.stat().st_mode) != PRIVATE_FILE:
                file.chmod(PRIVATE_FILE)
        except FileNotFoundError:
            continue


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
    def __init__(self, path: Path, synchronous: str, *, min_free_bytes: int = 0, wal_max_bytes: int = 0) -> None:
        super().__init__(name="idnode-sqlite-writer", daemon=True)
        self.path = path
        self.synchronous = synchronous
        self.min_free_bytes = min_free_bytes
        self.wal_max_bytes = wal_max_bytes
        self.jobs: queue.SimpleQueue[tuple[Work, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        # Why the last commit failed, until one succeeds again (what /healthz reports).
        self.write_failure: str | None = None

    def submit(self, work: Work) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.jobs.put((work, future))
        return future

    def stop(self) -> None:
        self.jobs.put(None)

    def run(self) -> None:
        try:
            conn = connect(self.path, readonly=False, synchronous=self.synchronous)
            if self.wal_max_bytes:
                # A WAL that grew past the cap is cut back to it when it next starts over.
                conn.execute(f"PRAGMA journal_size_limit = {int(self.wal_max_bytes)}")
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
        problem = space_problem(self.path.parent, self.min_free_bytes)
        if problem is not None:
            # Refused before SQLite runs out of room half-way through a commit, and while
            # there is still space for checkpoints to move the WAL into the database.
            self._failed(problem)
            failure = StoreUnavailable(f"the store refuses writes: {problem}")
            self._settle_all(group, [(False, failure)] * len(group))
            return
        lock = os.open(self.path.with_suffix(".write-lock"), os.O_CREAT | os.O_RDWR, PRIVATE_FILE)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._commit_locked(conn, group)
        finally:
            os.close(lock)

    def _failed(self, reason: str) -> None:
        if reason != self.write_failure:  # once per kind of failure: a full disk must not flood the log
            log.error("store writes in %s fail: %s", self.path.parent, reason)
        self.write_failure = reason

    def _succeeded(self) -> None:
        if self.write_failure is not None:
            log.warning("store writes in %s succeed again (they failed: %s)", self.path.parent, self.write_failure)
            self.write_failure = None

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
            self._succeeded()
        except sqlite3.Error as exc:
            self._failed(f"the store could not commit: {exc}")
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"the store could not commit: {exc}")
            outcomes = [(False, failure)] * len(group)
        self._settle_all(group, outcomes)

    @staticmethod
    def _settle_all(group: list[tuple[Work, asyncio.Future[Any]]], outcomes: list[tuple[bool, Any]]) -> None:
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

    A PASSIVE checkpoint takes no write lock, so registration goes on while it runs. It
    cannot make the WAL start over while a reader still uses an older snapshot, so under
    overlapping long reads the WAL would grow without end: once it is past ``wal_max_bytes``
    a TRUNCATE checkpoint waits (up to TRUNCATE_WAIT_MS, new writers held back meanwhile)
    for those readers to finish, then empties it.
    """

    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL_SECONDS, wal_max_bytes: int = 0) -> None:
        super().__init__(name="idnode-sqlite-checkpointer", daemon=True)
        self.path = path
        self.interval = interval
        self.wal_max_bytes = wal_max_bytes
        self.wal = path.with_name(path.name + "-wal")
        self.stopping = threading.Event()
        self.truncate_after = 0.0  # monotonic time before which no TRUNCATE is tried

    def run(self) -> None:
        conn = connect(self.path, readonly=False)
        conn.execute(f"PRAGMA busy_timeout = {TRUNCATE_WAIT_MS}")
        failed = ""
        last = time.monotonic()
        try:
            # The WAL's size is looked at more often than it is checkpointed (a stat is
            # cheap), so that it overshoots the cap by what is written in WAL_CHECK_SECONDS.
            while not self.stopping.wait(min(self.interval, WAL_CHECK_SECONDS)):
                try:
                    if time.monotonic() - last >= self.interval:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        last = time.monotonic()
                    if self._wal_over_cap() and time.monotonic() >= self.truncate_after:
                        self._truncate(conn)
                    failed = ""
                except sqlite3.Error as exc:
                    if str(exc) != failed:  # once while it lasts: a full disk must not flood the log
                        log.warning("WAL checkpoint failed (%s); will try again", exc)
                    failed = str(exc)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()

    def _wal_over_cap(self) -> bool:
        return bool(self.wal_max_bytes) and self._wal_size() > self.wal_max_bytes

    def _wal_size(self) -> int:
        try:
            return self.wal.stat().st_size
        except FileNotFoundError:
            return 0

    def _truncate(self, conn: sqlite3.Connection) -> None:
        size = self._wal_size()
        started = time.monotonic()
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        waited = time.monotonic() - started
        if busy:
            self.truncate_after = time.monotonic() + TRUNCATE_BACKOFF_SECONDS
            log.warning(
                "the WAL (%d KiB) is over wal_max_bytes; readers held it for %.1f s; will try again in %g s",
                size // 1024,
                waited,
                TRUNCATE_BACKOFF_SECONDS,
            )
        else:
            log.debug("the WAL was over wal_max_bytes (%d KiB): emptied after %.2f s", size // 1024, waited)
