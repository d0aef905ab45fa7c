"""A redis-server process of a test's own, on a free loopback port, to kill and restart."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.poll import wait_until

START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a valid free port too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port


def ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    directory: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    cluster: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        self.port = self.port or (free_cluster_port() if self.cluster else free_port())
        self.directory.mkdir(parents=True, exist_ok=True)
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        self.proc = subprocess.Popen(
            [binary, *args, "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        proc = self.proc
        wait_until(
            lambda: ping(self.port) or proc.poll() is not None,
            what=f"redis-server to answer PING on port {self.port}",
            timeout=START_TIMEOUT,
        )
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung or overloaded Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)


def make_cluster(directory: Path, size: int = 3) -> list[RedisServer]:
    """``size`` cluster-enabled servers joined into one Redis Cluster with every slot served."""
    servers = [RedisServer(directory / f"node{i}", cluster=True).start() for i in range(size)]
    cli = shutil.which("redis-cli")
    assert cli is not None, "redis-cli is not installed"
    addresses = [f"127.0.0.1:{s.port}" for s in servers]
    subprocess.run(
        [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=60,
    )

    def states() -> list[str]:
        infos = [
            subprocess.run([cli, "-p", str(s.port), "cluster", "info"], capture_output=True, text=True).stdout
            for s in servers
        ]
        return [line for info in infos for line in info.splitlines() if line.startswith("cluster_state:")]

    wait_until(
        states,
        lambda seen: len(seen) == size and all(s == "cluster_state:ok" for s in seen),
        what="every server of the Redis Cluster to say cluster_state:ok",
        timeout=START_TIMEOUT,
        interval=0.1,
    )
    return servers
