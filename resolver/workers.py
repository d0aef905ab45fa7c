"""Several serving processes on one port: a parent that bootstraps, forks and supervises.

The parent creates the store and the node's prefix handle once, opens the listening
socket (port 0 works too), then forks ``workers`` children that all accept from it, as
nginx and gunicorn do: a worker busy with a request is not in accept(), so new
connections go to the idle ones. (SO_REUSEPORT was measured first: the kernel hashes
connections to workers regardless of load, and 32 client connections split 11 to 21,
leaving one worker saturated and the other half idle.) A child
that dies is replaced; SIGTERM or SIGINT is passed on to every child, which finishes its
requests in flight, and the parent exits when they have. Metrics are aggregated across
children through prometheus_client's multiprocess mode (the caller sets
PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import uvloop

from resolver.config import Config
from resolver.listeners import Listeners

if TYPE_CHECKING:
    from resolver.server import NodeShared

log = logging.getLogger("idnode")

LISTEN_BACKLOG = 1024
PR_SET_PDEATHSIG = 1
# A worker that dies is replaced at once, so that the node is back to full strength within
# a fraction of a second (tests/integration/test_faults.py measures it); a replacement due
# within CRASH_LOOP_SECONDS of the previous one waits RESTART_BACKOFF_SECONDS first, so that
# workers failing at start-up do not make the parent fork in a tight loop.
RESTART_BACKOFF_SECONDS = 1.0
CRASH_LOOP_SECONDS = 5.0
START_TIMEOUT_SECONDS = 30.0


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when the parent goes, even by SIGKILL (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it went before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def _child(config: Config, listeners: Listeners, ready_fd: int, shared: NodeShared, parent: int, publish: bool) -> int:
    from resolver.server import serve

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent(parent)

    def ready() -> None:
        os.write(ready_fd, b".")
        os.close(ready_fd)

    try:
        uvloop.run(serve(config, listeners=listeners, on_ready=ready, shared=shared, publish=publish))
    except Exception:
        log.exception("worker %d failed", os.getpid())
        return 1
    return 0


def _spawn(config: Config, listeners: Listeners, ready_fd: int, shared: NodeShared, publish: bool) -> int:
    """Fork a worker serving ``listeners`` (those of its slot: see Listeners.for_worker)."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _child(config, listeners, ready_fd, shared, parent, publish)
        finally:
            os._exit(code)
    return pid


def _await_ready(read_fd: int, children: set[int]) -> bool:
    """Wait until every child listens (each writes one byte); False if one died first."""
    got = 0
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while got < len(children) and time.monotonic() < deadline:
        ready, _, _ = select.select([read_fd], [], [], 0.2)
        if ready:
            got += len(os.read(read_fd, len(children) - got))
        for pid in children:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                children.discard(pid)
                return False
    return got == len(children)


def run(config: Config, workers: int, listeners: Listeners) -> int:
    """Serve ``listeners`` with ``workers`` processes until told to stop; the exit status."""
    from prometheus_client import multiprocess

    from resolver.server import node_shared

    shared = node_shared(config)  # cache generations, failure counts, node id: inherited by every worker
    port = listeners.http.getsockname()[1]
    config = replace(config, listen=f"{config.host}:{port}" if ":" not in config.host else f"[{config.host}]:{port}")
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signum)

    children: set[int] = set()
    last_restart = -CRASH_LOOP_SECONDS
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    read_fd, write_fd = os.pipe()
    # One worker publishes the node's prefixes upstream; its replacement takes over if it dies.
    slots: dict[int, int] = {}  # worker pid -> its slot (its UDP socket); a replacement takes the slot over
    for slot in range(workers):
        pid = _spawn(config, listeners.for_worker(slot), write_fd, shared, slot == 0)
        slots[pid] = slot
        children.add(pid)
    publisher = next(iter(slots))
    failed = not _await_ready(read_fd, children)
    if failed:
        log.error("workers did not start; stopping")
        stop(signal.SIGTERM, None)
    else:
        from resolver.server import announce_listeners

        announce_listeners(config, listeners)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries os.wait
            continue
        children.discard(pid)
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        if not stopping:
            log.error("worker %d exited (status %d); starting another", pid, os.waitstatus_to_exitcode(status))
            if time.monotonic() - last_restart < CRASH_LOOP_SECONDS:
                time.sleep(RESTART_BACKOFF_SECONDS)
            last_restart = time.monotonic()
            if not stopping:
                slot = slots.pop(pid, 0)
                pid_new = _spawn(config, listeners.for_worker(slot), write_fd, shared, pid == publisher)
                slots[pid_new] = slot
                children.add(pid_new)
                if pid == publisher:
                    publisher = pid_new
    listeners.close()
    os.close(read_fd)
    os.close(write_fd)
    print("idnode: stopped", file=sys.stderr, flush=True)
    return 1 if failed else 0


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
