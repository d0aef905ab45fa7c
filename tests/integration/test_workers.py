"""--workers N: one port, N processes, one set of metrics, dead workers replaced."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.nodeproc import ADMIN, Node, child_pids, record, url_value
from tests.support.poll import wait_until


def test_workers_share_the_port_and_the_metrics(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "2"]
    node = fresh_node.start()
    assert node.proc is not None
    assert len(child_pids(node.proc.pid)) == 2
    assert node.put("/api/handles/88.118/w", record(url_value(1, "https://w.example/")), auth=ADMIN).status == 201
    for _ in range(40):  # new connections each time: the kernel spreads them over both workers
        assert node.get("/api/handles/88.118/w").status == 200
    resolved = node.metric("idnode_requests_total", until=lambda n: n >= 40, code="1", frontend="http", op="resolve")
    assert resolved == 40
    assert node.stop() == 0
    assert "idnode: stopped" in "".join(node.stderr_lines)


def test_a_dead_worker_is_replaced(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "2"]
    node = fresh_node.start()
    assert node.proc is not None
    first = child_pids(node.proc.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    parent = node.proc.pid
    now = wait_until(
        lambda: child_pids(parent),
        lambda pids: len(pids) == 2 and victim not in pids,
        what=f"a replacement for worker {victim}",
    )
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
    wait_until(
        lambda: {pid for pid in workers if Path(f"/proc/{pid}").exists()},
        lambda alive: not alive,
        what="the workers to exit after their parent",
    )
    assert not any(Path(f"/proc/{pid}/stat").exists() for pid in workers)
