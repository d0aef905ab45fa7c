"""Start-up refusals (one line naming the setting, no traceback) and private files.

The read-only and full data directories are real: a tmpfs mounted read-only, or filled.
Mounting needs root; without it those cases are skipped (chmod would not stop root).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nodeproc import ADMIN, ADMIN_SECRET, Node, record, url_value
from tests.support.pgproc import SERVER, database_url, free_port, own_server, query


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    base["IDNODE_ADMIN_SECRET"] = ADMIN_SECRET
    return subprocess.run(
        [sys.executable, "-m", "resolver.cli", "serve", "--listen", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**base, **(env or {})},
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one line of a refused start-up, checked to name ``words`` and carry no traceback."""
    assert result.returncode != 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith("idnode: error: ")
    for word in words:
        assert word in lines[0]
    return lines[0]


@contextlib.contextmanager
def tmpfs(where: Path, size: str, *options: str) -> Iterator[Path]:
    where.mkdir()
    opts = ",".join((f"size={size}", *options))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_an_unknown_idnode_variable_is_refused_with_the_closest_setting(tmp_path: Path) -> None:
    line = refused(serve("--data-dir", str(tmp_path), env={"IDNODE_STORE_READER": "2"}), "IDNODE_STORE_READER")
    assert "did you mean IDNODE_STORE_READERS?" in line
    assert serve("--data-dir", str(tmp_path), env={"IDNODE_ZZZ": "1"}).returncode == 2


def test_a_short_admin_secret_is_refused(tmp_path: Path) -> None:
    line = refused(serve("--data-dir", str(tmp_path), env={"IDNODE_ADMIN_SECRET": "x"}), "IDNODE_ADMIN_SECRET")
    assert "16 characters" in line
    assert not (tmp_path / "idnode.sqlite3").exists()


def test_a_port_in_use_names_the_listen_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            result = serve("--data-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}", "--workers", workers)
            refused(result, "'listen'", f"127.0.0.1:{port}", "in use")


def test_a_read_only_data_directory_names_the_path(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", "ro") as ro:
        refused(serve("--data-dir", str(ro)), "'data_dir'", str(ro), "read-only")
        refused(serve("--data-dir", str(ro / "data")), "'data_dir'", str(ro / "data"), "Read-only")


def test_a_full_disk_at_start_names_the_path(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "2m") as full:
        with open(full / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
        refused(serve("--data-dir", str(full)), "'data_dir'", str(full), "full")
        # Even with no margin asked for, SQLite's failure is one clear line, not a traceback.
        refused(serve("--data-dir", str(full / "d"), "--min-free-bytes", "0"), "'data_dir'", str(full / "d"))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_data_directory_and_database_are_private(tmp_path: Path) -> None:
    os.umask(0o022)  # the usual umask, under which files would be world-readable
    data = tmp_path / "new"
    node = Node(data).start()
    try:
        assert node.put("/api/handles/88.118/priv", record(url_value(1, "https://p.example/")), auth=ADMIN).status
        assert mode(data) == 0o700
        for name in ("idnode.sqlite3", "idnode.sqlite3-wal", "idnode.sqlite3-shm", "idnode.write-lock"):
            assert mode(data / name) == 0o600, name
    finally:
        node.stop()
    # An existing data directory open to others is closed at start, and the log says so.
    data.chmod(0o755)
    (data / "idnode.sqlite3").chmod(0o644)
    node.start()
    try:
        assert mode(data) == 0o700 and mode(data / "idnode.sqlite3") == 0o600
        assert any("made it 700" in line for line in node.stderr_lines)
    finally:
        node.stop()


def test_an_unreachable_database_names_the_store_setting(tmp_path: Path) -> None:
    url = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/idnode"
    line = refused(serve("--store", url), "'store'", "refused")
    assert "s3cret" not in line


def test_a_database_that_never_answers_is_refused_in_bounded_time(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) and says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        refused(serve("--store", f"postgresql://postgres@127.0.0.1:{port}/idnode"), "'store'", "timed out")
        assert time.monotonic() - started < 20


def test_a_missing_database_or_role_names_the_store_setting(tmp_path: Path) -> None:
    refused(serve("--store", database_url(SERVER, "idnode_no_such_db")), "'store'", "does not exist")
    nobody = SERVER.replace("postgres@", "idnode_no_such_role@")
    refused(serve("--store", nobody), "'store'", "idnode_no_such_role", "does not exist")


def test_a_wrong_password_names_the_store_setting() -> None:
    with own_server() as pg:
        query(pg.url, "ALTER USER postgres PASSWORD 'right-password'")
        (pg.directory / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        pg.reload()
        good = pg.url.replace("postgres@", "postgres:right-password@")
        wrong = pg.url.replace("postgres@", "postgres:wrong-password@")
        line = refused(serve("--store", wrong), "'store'", "password authentication failed")
        assert "wrong-password" not in line
        node = Node(Path(pg.directory.parent / "node"), store=good).start()  # the right one works
        node.stop()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:s3cret@127.0.0.1:port/db",
        "postgresql://postgres:s3cret@[::1/db",
        "postgresql://postgres:s3cret@127.0.0.1:5432/test?sslmode=bogus",
        "mysql://postgres@127.0.0.1:5432/test",
    ],
)
def test_a_malformed_store_url_names_the_setting(url: str) -> None:
    line = refused(serve("--store", url), "'store'")
    assert "s3cret" not in line
