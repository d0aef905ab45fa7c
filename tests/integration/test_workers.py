"""--workers N: one port, N processes, one set of metrics, dead workers replaced."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.nodeproc import ADMIN, Node, child_pids, record, url_value


def resolved_total(node: Node) -> float:
    return node.metric("idnode_requests_total", code="1", frontend="http", op="resolve")


def test_workers_share_the_port_and_the_metrics(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "2"]
    node = fresh_node.start()
    assert node.proc is not None
    assert len(child_pids(node.proc.pid)) == 2
    assert node.put("/api/handles/88.118/w", record(url_value(1, "https://w.example/")), auth=ADMIN).status == 201
    for _ in range(40):  # new connections each time: the kernel spreads them over both workers
        assert node.get("/api/handles/88.118/w").status == 200
    assert resolved_total(node) == 40
    assert node.stop() == 0
    assert "idnode: stopped" in "".join(node.stderr_lines)


def test_a_dead_worker_is_replaced(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "2"]
    node = fresh_node.start()
    assert node.proc is not None
    first = child_pids(node.proc.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = child_pids(node.proc.pid)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.1)
    assert len(now) == 2 and victim not in now
    for _ in range(20):
        assert node.get("/api/handles/0.NA/88.118").status == 200
    assert any("exited" in line for line in node.stderr_lines)


def test_workers_go_when_the_parent_is_killed(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "2"]
    node = fresh_node.start()
    assert node.proc is not None
    workers = child_pids(node.proc.pid)
    assert len(workers) == 2
    node.proc.send_signal(signal.SIGKILL)  # the parent alone
    node.proc.wait(15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}/stat").exists() for pid in workers)
