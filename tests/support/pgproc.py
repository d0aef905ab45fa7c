"""PostgreSQL for the tests: a database of their own on the server already running, or a
server of their own (initdb on a free port) for tests that stop it or replicate it."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.poll import wait_until

# The server on our machines (trust authentication); IDNODE_TEST_POSTGRES points elsewhere.
SERVER = os.environ.get("IDNODE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BIN = Path(os.environ.get("IDNODE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _psql(url: str, sql: str) -> None:
    query(url, sql)


def query(url: str, sql: str) -> str:
    """What psql prints for ``sql`` (unaligned, tuples only), stripped."""
    done = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, capture_output=True)
    return done.stdout.decode().strip()


def database_url(server: str, name: str) -> str:
    return server.rsplit("/", 1)[0] + "/" + name


@contextlib.contextmanager
def temp_database(server: str = SERVER) -> Iterator[str]:
    """A new, empty database on ``server``; dropped afterwards, whoever is still connected."""
    name = f"idnode_t_{uuid.uuid4().hex[:12]}"
    _psql(server, f"CREATE DATABASE {name}")
    try:
        yield database_url(server, name)
    finally:
        _psql(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _postgres_user() -> int | None:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    return pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else None


@dataclass
class PgServer:
    """A PostgreSQL server of the tests' own, in ``directory``, on a free loopback port."""

    directory: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        uid = _postgres_user()
        gid = None if uid is None else pwd.getpwuid(uid).pw_gid
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            check=check,
            capture_output=True,
            text=True,
            user=uid,
            group=gid,
            extra_groups=None if uid is None else [],
        )

    def _own(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in [self.directory.parent, self.directory]:
                if path.exists():
                    os.chown(path, user.pw_uid, user.pw_gid)

    @classmethod
    def existing(cls, directory: Path) -> PgServer:
        """The server ``init`` made in ``directory`` before, on the port it was given then."""
        ports = [ln for ln in (directory / "postgresql.conf").read_text().splitlines() if ln.startswith("port =")]
        return cls(directory, int(ports[-1].split("=")[1]))

    def init(self) -> PgServer:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self.directory.parent.chmod(0o755)
        self._own()
        self._run("initdb", "-D", str(self.directory), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self.port = self.port or free_port()
        with open(self.directory / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.directory}'\n"
                "fsync = on\nwal_level = replica\nmax_wal_senders = 4\nshared_buffers = 32MB\n"
            )
        with open(self.directory / "pg_hba.conf", "a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        return self

    def configure(self, **settings: str) -> None:
        """Append ``name = value`` lines to postgresql.conf (values written as given)."""
        with open(self.directory / "postgresql.conf", "a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> PgServer:
        self._run("pg_ctl", "-D", str(self.directory), "-l", str(self.directory / "log"), "-w", "-t", "30", "start")
        return self

    def reload(self) -> None:
        """Make the server read its configuration files (pg_hba.conf) again."""
        self._run("pg_ctl", "-D", str(self.directory), "reload")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.directory), "-m", mode, "-w", "-t", "30", "stop", check=False)

    def replica(self, directory: Path) -> PgServer:
        """A streaming replica of this server (pg_basebackup), not yet started."""
        replica = PgServer(directory, free_port())
        directory.parent.mkdir(parents=True, exist_ok=True)
        replica._own()
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-D", str(directory),
                  "-R", "-X", "stream", "--no-sync")  # fmt: skip
        with open(directory / "postgresql.conf", "a") as conf:
            conf.write(f"port = {replica.port}\nunix_socket_directories = '{directory}'\nhot_standby = on\n")
        return replica

    def ready(self) -> bool:
        return self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), check=False).returncode == 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(self.ready, what=f"PostgreSQL on port {self.port} to be ready", timeout=timeout, interval=0.1)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def own_server(**settings: str) -> Iterator[PgServer]:
    """A started PgServer in a new directory the postgres user can reach (with extra
    postgresql.conf ``settings``), removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="idnode-pg-"))
    parent.chmod(0o755)
    server = PgServer(parent / "primary").init()
    server.configure(**settings)
    try:
        yield server.start()
    finally:
        server.remove()
        shutil.rmtree(parent, ignore_errors=True)
