"""A real idnode server process for tests, and a small blocking HTTP client for it."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.basic_auth import basic_credentials
from tests.support.poll import wait_until

ADMIN_SECRET = "test-admin-secret-0123456789"
NODE_PREFIX = "88.118"
ADMIN_USER = "300:0.NA/88.118"
START_TIMEOUT = 20.0

METRICS_LAG = 0.7  # resolver.server.METRICS_FLUSH_SECONDS, and a margin

Auth = tuple[str, str] | None


def metric_value(text: str, name: str, labels: Mapping[str, str]) -> float:
    """Add up the samples of ``name`` in a Prometheus text exposition that carry ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def child_pids(parent: int) -> set[int]:
    """The processes whose parent is ``parent``: a node's workers."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended while we looked
        if fields[1] == str(parent):
            found.add(int(stat.parent.name))
    return found


basic = basic_credentials


ADMIN: Auth = (ADMIN_USER, ADMIN_SECRET)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> int:
        return int(self.json["responseCode"])


@dataclass
class Node:
    """One idnode process, started with ``serve`` on a free loopback port."""

    data_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    admin_secret: str | None = ADMIN_SECRET
    proc: subprocess.Popen[str] | None = None
    url_host: str = "127.0.0.1"
    port: int = 0
    handle_port: int = 0  # the Handle protocol's TCP and UDP port (0: not serving it)
    tls: bool = False
    stderr_lines: list[str] = field(default_factory=list)
    module: str = "resolver.cli"  # what `python -m` runs; tests.flaky_node to make the store fail
    store: str | None = None  # --store URL (default: SQLite in data_dir)
    cwd: Path | None = None  # where the process runs (default: here, the checkout, which is then on sys.path)

    def start(self, listen: str = "127.0.0.1:0") -> Node:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
        if self.admin_secret is not None:
            env["IDNODE_ADMIN_SECRET"] = self.admin_secret
        env.update(self.env)
        cmd = [sys.executable, "-m", self.module, "serve", "--listen", listen, "--data-dir", str(self.data_dir)]
        if not any(a.startswith(("--handle-listen", "--no-handle")) for a in self.args):
            cmd += ["--handle-listen", "127.0.0.1:0"]  # tests run many nodes: never the shared 2641
        if self.store is not None:
            cmd += ["--store", self.store]
        self.stderr_lines = []
        # A session of its own, so that kill() takes the workers down with the parent.
        self.proc = subprocess.Popen(
            cmd + self.args, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=self.cwd
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"idnode exited during start-up:\n{''.join(self.stderr_lines)}")
            self.stderr_lines.append(line)
            if "idnode: listening on handle://" in line:
                self.handle_port = int(line.rsplit(":", 1)[1])
            elif "idnode: listening on " in line:
                address = line.rsplit("://", 1)[1].strip()
                self.tls = "https://" in line
                self.port = int(address.rsplit(":", 1)[1])
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        os.killpg(self.proc.pid, signal.SIGKILL)  # not left running after the test that gave up on it
        self.proc.wait(15)
        raise RuntimeError(f"idnode did not start in {START_TIMEOUT:g} s:\n{''.join(self.stderr_lines)}")

    def _drain(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stderr is not None
        for line in proc.stderr:
            self.stderr_lines.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """kill -9 the node, every process of it at once (as systemd or a crash would)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(15)

    def restart(self) -> Node:
        self.stop()
        return self.start()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: Auth = None,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        source: str | None = None,
    ) -> Reply:
        """One request on a connection of its own; ``source`` picks the loopback address it comes from."""
        where = None if source is None else (source, 0)
        if self.tls:
            import ssl

            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.url_host, self.port, timeout=30, context=ctx, source_address=where
            )
        else:
            conn = http.client.HTTPConnection(self.url_host, self.port, timeout=30, source_address=where)
        sent = dict(headers or {})
        if auth is not None:
            sent["Authorization"] = basic(*auth)
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if payload is not None:
            sent.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=payload, headers=sent)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def metric(self, name: str, until: Callable[[float], object] | None = None, **labels: str) -> float:
        """The sum of the series of ``name`` whose labels include ``labels``.

        With ``until``: polled on ``/metrics`` until ``until`` holds for it, to wait for a
        count to move. Without: read once every worker has handed over what it counted so
        far (``settled_metrics``), for a baseline or to show that a count did not move.
        """
        if until is not None:
            return wait_until(
                lambda: self.metric_now(name, **labels), until, what=f"{name}{labels or ''} to pass the check"
            )
        return metric_value(self.settled_metrics(), name, labels)

    def metric_now(self, name: str, **labels: str) -> float:
        """``metric`` as ``/metrics`` shows it now: a worker's last half second may be missing."""
        return metric_value(self.get("/metrics").body.decode(), name, labels)

    def settled_metrics(self) -> str:
        """``/metrics`` once every worker has handed over what it counted so far."""
        # A real wait: the workers hand their counts over every half second and nothing on
        # /metrics says that all of them have, so a baseline, or a count that must not have
        # moved, is only sure once that time has passed.
        time.sleep(METRICS_LAG)
        return self.get("/metrics").body.decode()

    def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)


def url_value(index: int, url: str) -> dict[str, Any]:
    return {"index": index, "type": "URL", "data": {"format": "string", "value": url}}


def record(*values: dict[str, Any]) -> dict[str, Any]:
    return {"values": list(values)}
