"""bench/locustfile.py's Handle and SNMS users against a real node: what they report to Locust.

Each user's tasks run in a process of their own (``tests.support.locust_driver``: importing
Locust patches a process for gevent), against a node holding bench.load_store's records;
every request must fire Locust's request event, a success only when the node answered one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.wire.base import ENVELOPE_SIZE
from tests.conftest import LIMITS_OFF
from tests.support.nodeproc import ADMIN_SECRET, Node

pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="Locust is a bench extra")

RECORDS = 500
ROUNDS = 25
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node on a store of RECORDS bench.load_store records."""
    data = tmp_path_factory.mktemp("locust") / "data"
    env = {**os.environ, "IDNODE_ADMIN_SECRET": ADMIN_SECRET}
    load = [sys.executable, "-m", "bench.load_store", "--data-dir", str(data), "--count", str(RECORDS)]
    subprocess.run(load, env=env, cwd=REPO, check=True, capture_output=True, timeout=60)
    node = Node(data, env=LIMITS_OFF).start()
    yield node
    node.stop()


def drive(port: int, handle_port: int, *classes: str, count: int = RECORDS, secret: str = ADMIN_SECRET) -> Any:
    """What ``tests.support.locust_driver`` saw each user class's tasks report, ROUNDS calls a task."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDNODE_", "LOCUST_"))}
    env |= {"IDNODE_BENCH_COUNT": str(count), "IDNODE_ADMIN_SECRET": secret}
    env["IDNODE_BENCH_HANDLE_PORT"] = str(handle_port)
    cmd = [sys.executable, "-m", "tests.support.locust_driver", "--host", f"http://127.0.0.1:{port}"]
    done = subprocess.run(
        [*cmd, "--rounds", str(ROUNDS), *classes], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def failures(events: list[dict[str, Any]]) -> list[str]:
    return [e["failure"] for e in events if e["failure"] is not None]


def test_handle_and_snms_users_succeed_against_a_node(loaded: Node) -> None:
    seen = drive(loaded.port, loaded.handle_port, "HandleUdpUser", "HandleTcpUser", "SnmsUser")
    for name, transport in (("HandleUdpUser", "UDP"), ("HandleTcpUser", "TCP")):
        events = seen[name]["events"]
        assert len(events) == ROUNDS
        assert failures(events) == []
        assert {(e["type"], e["name"]) for e in events} == {(transport, "resolution [h]")}
        assert all(e["length"] > 100 and e["ms"] > 0 for e in events)  # a record's values came back
    assert seen["HandleTcpUser"]["connections"] == 1  # every request on the one kept connection
    snms = seen["SnmsUser"]["events"]
    assert failures(snms) == []
    logins = [("POST", "/identity/token"), ("POST", "/snms/api/v5/template")]
    assert [(e["type"], e["name"]) for e in snms[:2]] == logins
    reads = [e for e in snms if e["name"] == "/identityv2/data/detail?handle=[h]"]
    writes = [e for e in snms if e["name"] == "/identityv2/data"]
    assert len(reads) == len(writes) == ROUNDS
    assert len(snms) == 2 + 2 * ROUNDS


def test_unknown_handles_and_a_wrong_secret_are_failures(loaded: Node) -> None:
    # Nearly every index of a population of 10^9 is beyond the RECORDS stored.
    seen = drive(loaded.port, loaded.handle_port, "HandleUdpUser", "HandleTcpUser", "SnmsUser", count=10**9, secret="x")
    for name in ("HandleUdpUser", "HandleTcpUser"):
        events = seen[name]["events"]
        assert len(events) == ROUNDS
        assert len(failures(events)) > ROUNDS // 2
        assert set(failures(events)) == {"HANDLE_NOT_FOUND (100): handle [h] not found"}
        assert all(e["length"] == 0 for e in events if e["failure"])
    assert seen["HandleTcpUser"]["connections"] == 1  # an answer saying "not found" keeps the connection
    snms = seen["SnmsUser"]["events"]
    assert len(snms) == 2 + 2 * ROUNDS
    assert snms[0]["failure"] == "SNMS status -2: 用户名/密码错误！"
    assert all(e["failure"] and e["failure"].startswith("SNMS status -1: 未登录") for e in snms[1:])


class Mirror:
    """A Handle port that sends every request back: over UDP as it came (its own request id,
    but a request, not an answer), over TCP under another request id."""

    def __init__(self) -> None:
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        for target in (self._udp, self._accept):
            threading.Thread(target=target, daemon=True).start()

    def _udp(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                data, peer = self.udp.recvfrom(65536)
                self.udp.sendto(data, peer)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.tcp.accept()
                threading.Thread(target=self._tcp, args=(conn,), daemon=True).start()

    def _tcp(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            head = conn.recv(ENVELOPE_SIZE, socket.MSG_WAITALL)
            rest = conn.recv(int.from_bytes(head[16:20], "big"), socket.MSG_WAITALL)
            other = (int.from_bytes(head[8:12], "big") + 1).to_bytes(4, "big")
            conn.sendall(head[:8] + other + head[12:] + rest)
            conn.recv(1)  # until the client closes

    def close(self) -> None:
        self.tcp.close()
        self.udp.close()


def test_answers_that_are_not_the_answer_are_failures(loaded: Node) -> None:
    mirror = Mirror()
    try:
        seen = drive(loaded.port, mirror.port, "HandleUdpUser", "HandleTcpUser")
    finally:
        mirror.close()
    udp = seen["HandleUdpUser"]["events"]
    assert len(udp) == ROUNDS
    assert set(failures(udp)) == {"not a resolution response (op code 1, code 0)"}
    tcp = seen["HandleTcpUser"]["events"]
    assert len(tcp) == ROUNDS
    assert len(failures(tcp)) == ROUNDS
    assert all(f.startswith("TCP: answered request id ") for f in failures(tcp))
    assert seen["HandleTcpUser"]["connections"] == ROUNDS  # a stream out of step is dropped, a new one opened
