"""The node's data directory and its private files, whichever store the node runs on.

What lives there is the node's alone: the SQLite store when it has one, the Handle server key,
the SNMS token key. So the directory is kept private to the node's user, every key is written
whole or not at all with mode 0600, writes are refused before the file system runs out of
room, and one lock says whether a process has the store open. None of it runs SQL: the SQLite
backend (``registry.sqlite``) uses it as the keys and the operator commands do.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

# The name its one warning always carried (it lived with the SQLite writer): log filters know it.
log = logging.getLogger("registry.sqlite")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def prepare_directory(directory: Path) -> None:
    """Create the data directory private to the node's user, or make an existing one so.

    It holds secret hashes and values that are not public; SQLite gives the -wal and -shm
    files the mode of the database file, which ``registry.sqlite.writer.create_private``
    makes 0600.
    """
    directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        directory.chmod(PRIVATE_DIR)
        log.warning("data directory %s was open to other users (%o); made it %o", directory, mode, PRIVATE_DIR)


def write_private(path: Path, data: bytes) -> None:
    """``data`` in ``path``, readable by this user only, whole or not at all: a fsynced temporary
    file beside it (``.tmp``), renamed over it. OSError if it cannot be, with nothing left behind."""
    temporary = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)  # a folder made for it is private too
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):  # e.g. the parent is a file: there is no temporary to remove
            temporary.unlink(missing_ok=True)
        raise


def make_private_once(
    path: Path, make: Callable[[], bytes], error: type[Exception], setting: str, what: str = ""
) -> bool:
    """Write ``make()`` to ``path`` as ``write_private`` does unless the file exists (a key made at
    first start); True when made now. A failure raises ``error`` naming ``setting``."""
    if path.exists():
        return False
    try:
        write_private(path, make())
    except OSError as exc:
        raise error(f"setting '{setting}': cannot write {what}{path}: {exc.strerror or exc}") from None
    return True


class StoreInUse(Exception):
    """Another process holds the store in a way that excludes this one (a node serves it, a restore runs)."""


def hold(path: Path, *, exclusive: bool) -> int:
    """Take the in-use lock of the store at ``path``, without waiting; the descriptor holds it until closed.

    Every process that opens the store (each worker, an import, a backup) holds it shared for
    as long as it has the store open; ``idnode restore`` holds it exclusively, so it cannot
    replace the file (nor the keys beside it) under a running node, nor a node start on a
    half-restored one. It is a file of its own, beside the store (``idnode.lock`` for
    ``idnode.sqlite3``): SQLite's writers' per-commit lock (``.write-lock``) is held only during
    a commit and says nothing about whether a node is running.
    """
    fd = os.open(path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = "a process has the store open (a node serving it?)" if exclusive else "a restore is running"
        raise StoreInUse(f"{path} is in use: {holder}") from None
    except OSError:
        os.close(fd)
        raise
    return fd


def space_problem(directory: Path, min_free_bytes: int) -> str | None:
    """Why writes in ``directory`` would fail (read-only, too little free space), or None.

    The text leaves the path out: it reaches clients (a write's 503, /healthz).
    """
    try:
        fs = os.statvfs(directory)
    except OSError as exc:
        return f"cannot examine the data directory: {exc.strerror}"
    if fs.f_flag & os.ST_RDONLY:
        return "the data directory is on a read-only file system"
    free = fs.f_bavail * fs.f_frsize
    if free < min_free_bytes:
        return (
            f"the data directory has {free // 1024} KiB free, "
            f"under min_free_bytes ({min_free_bytes // 1024} KiB): the disk is full or nearly"
        )
    return None
