"""A consistent copy of a live SQLite store, its check, and putting one back in place.

The copy is SQLite's online backup, run inside one read transaction on the source. That
transaction fixes the snapshot: every write committed before it began is in the copy, none
after, and what the copy reports of itself (``Snapshot``) is read in the same one. Without it
SQLite restarts a stepwise backup whenever another connection commits between two steps, so
under a steady write load it may never finish (measured: a 10 MB store, 64 pages a step,
one writer committing in a loop: not done after 60 s; with the read transaction, 0.03 s).
In WAL mode a reader blocks no writer, so the node keeps registering meanwhile; the WAL
cannot start over until the copy ends, and grows by what is written during it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from registry.datadir import PRIVATE_FILE
from registry.sqlite.writer import SQLITE_SUFFIXES, connect

PAGES_PER_STEP = 1024  # 4 MiB of 4 KiB pages between progress reports
_TABLES_CHECKED = ("handles", "meta", "audit", "prefix_counts", "templates", "login_digests")


class BackupFailed(Exception):
    """The copy could not be made, or a file is not a sound idnode store; the message says why."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a copy holds, as read inside its own snapshot."""

    schema_version: int
    handles: int
    audit_rows: int


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _contents(conn: sqlite3.Connection) -> Snapshot:
    row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    if row is None:
        raise BackupFailed("no schema version: not an idnode store")
    handles = conn.execute("SELECT count(*) FROM handles").fetchone()[0]
    audit = conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    return Snapshot(int(row[0]), int(handles), int(audit))


def copy_store(source: Path, target: Path, progress: Callable[[int, int], None] | None = None) -> Snapshot:
    """Copy the store at ``source`` to the new file ``target`` (0600, fsynced), one snapshot of every table.

    The copy is a single file in rollback-journal mode: no -wal or -shm goes with it.
    """
    if not source.is_file():
        raise BackupFailed(f"no store at {source}")
    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    try:
        src = connect(source, readonly=True)
    except sqlite3.Error as exc:
        raise BackupFailed(f"cannot open {source}: {exc}") from None
    try:
        with contextlib.closing(sqlite3.connect(target, isolation_level=None)) as dst:
            src.execute("BEGIN")
            contents = _contents(src)  # the first read starts the snapshot
            src.backup(dst, pages=PAGES_PER_STEP, progress=_steps(progress))
            src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode = DELETE")
            _check(dst)
    except sqlite3.Error as exc:
        raise BackupFailed(f"copying {source}: {exc}") from None
    finally:
        src.close()
    fsync_path(target)
    return contents


def _steps(progress: Callable[[int, int], None] | None) -> Callable[[int, int, int], object] | None:
    if progress is None:
        return None
    return lambda _status, remaining, total: progress(total - remaining, total)


def _check(conn: sqlite3.Connection) -> None:
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        raise BackupFailed("integrity check failed: " + "; ".join(problems[:5]))
    found = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    missing = [t for t in _TABLES_CHECKED if t not in found]
    if missing:
        raise BackupFailed(f"not an idnode store: no table {', '.join(missing)}")


def verify(path: Path) -> Snapshot:
    """The contents of the store copy at ``path`` once SQLite's integrity check passes; BackupFailed if not.

    It is opened read-only and immutable: a check must not create a -wal or -shm beside it.
    """
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)) as conn:
            _check(conn)
            return _contents(conn)
    except sqlite3.Error as exc:
        raise BackupFailed(f"{path} is not a sound SQLite database: {exc}") from None


def install(staged: Path, store: Path) -> None:
    """Put the checked copy ``staged`` (in the store's directory) in place of ``store``.

    The old store's -wal and -shm go first: SQLite would otherwise replay the old WAL's
    pages onto the restored file. The rename is atomic; a crash before it leaves the old
    database (without what its WAL held) and the copy beside it, and running the restore
    again finishes the job.
    """
    for suffix in SQLITE_SUFFIXES[1:]:
        store.with_name(store.name + suffix).unlink(missing_ok=True)
    os.replace(staged, store)
    fsync_path(store.parent)


@contextlib.contextmanager
def staged_copy(source: Path, directory: Path) -> Iterator[Path]:
    """A private, fsynced copy of ``source`` in ``directory``, removed unless the caller moved it away."""
    target = directory / f".{source.name}.restoring-{os.getpid()}"
    try:
        with open(source, "rb") as src:
            fd = os.open(target, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, PRIVATE_FILE)
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        yield target
    finally:
        target.unlink(missing_ok=True)
