"""Issue 22: cached Handle TCP, a connection per request and kept connections, against CNRI.

China's SDKs keep one TCP connection for every request and never set KEEP_ALIVE; CNRI's
clients open a connection per request. Both shapes, idnode against CNRI 7.3.1 in one run,
inside a private network namespace (``bench.cnri.require_netns``)::

    unshare -n sh -c 'ip link set lo up; timeout 3600 .venv/bin/python -m bench.tcp_kept \\
        --dist /work/cnri/7.3.1'

Series, driven in turn round after round (bench.handle_load, closed loop), over the same
10,000 hot records of 100,000 (as bench.handle_vs_cnri), warmed first:

* ``cnri-tcp`` / ``idnode-tcp``: a connection per request, requests as CNRI 7.3.1's
  hdl-qresolver writes them (no suggested version: the node closes after the answer);
* ``idnode-tcp-2.10``: a connection per request from a client of protocol 2.10 (CNRI 9.x):
  the node keeps the connection until the client closes it, and pays the wake-up;
* ``cnri-tcp-kept``: 100 requests a connection with KEEP_ALIVE set (CNRI 7.3.1's server
  closes after every answer all the same: the driver reconnects);
* ``idnode-tcp-kept``: 100 requests a connection without KEEP_ALIVE, written as the SDKs
  write them (suggesting 2.10);
* ``cnri-udp`` / ``idnode-udp``: for reference.

Reported: answers/s and the server's CPU µs per answer (its process tree, from /proc), and
idnode's answers per server CPU second over CNRI's for each shape (issue 22's target: the
connection-per-request ratio stays >= 1.2). Writes bench/results/tcp_kept.md.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import cnri
from bench.handle_load_base import SDK_SUGGEST, RequestMix, resolution_request
from bench.handle_vs_cnri import (
    HOT,
    NODE_PREFIX,
    PREFIX,
    Series,
    _free_port,
    _pid,
    cnri_layout,
    cnri_record,
    idnode_cmd,
    in_work,
    series_rows,
)
from bench.load_store import load
from bench.resolve_baseline import ADMIN_SECRET, RESULTS, Target, machine, revision
from tests.support.poll import wait_until

PAIRS = (
    ("udp", "udp", "UDP"),
    ("tcp", "tcp", "TCP, a connection per request"),
    ("tcp-2.10", "tcp", "TCP, a connection per request, the client of 2.10 closing first"),
    ("tcp-kept", "tcp-kept", "TCP, 100 requests a connection"),
)


def series(lay: cnri.Layout, cnri_pid: int, idnode: Target, hot: list[str], floor: tuple[int, int]) -> list[Series]:
    def mix(seed: int, keepalive: bool = False, sdk: bool = False) -> RequestMix:
        return RequestMix(hot, seed=seed, keepalive=keepalive, suggest=SDK_SUGGEST if sdk else (0, 0))

    node, label = idnode.handle_port, "idnode --workers 2"
    return [
        Series("cnri-udp", "CNRI 7.3.1, UDP", lay.port, cnri_pid, mix(1), "udp"),
        Series("idnode-udp", f"{label}, UDP", node, _pid(idnode), mix(1), "udp"),
        Series("cnri-tcp", "CNRI 7.3.1, TCP, a connection per request", lay.port, cnri_pid, mix(2), "tcp"),
        Series("idnode-tcp", f"{label}, TCP, a connection per request", node, _pid(idnode), mix(2), "tcp"),
        Series(
            "floor-tcp",
            "the floor: two Python processes that accept, read and send one fixed answer (bench.tcp_floor)",
            floor[0],
            floor[1],
            mix(2),
            "tcp",
        ),
        Series(
            "idnode-tcp-2.10",
            f"{label}, TCP, a connection per request from a 2.10 client (kept until it closes)",
            node,
            _pid(idnode),
            mix(2, sdk=True),
            "tcp",
        ),
        Series(
            "cnri-tcp-kept",
            "CNRI 7.3.1, TCP, 100 requests a connection, KEEP_ALIVE set",
            lay.port,
            cnri_pid,
            mix(3, keepalive=True),
            "tcp",
            kept=True,
        ),
        Series(
            "idnode-tcp-kept",
            f"{label}, TCP, 100 requests a connection, no KEEP_ALIVE, 2.10 (as the SDKs)",
            node,
            _pid(idnode),
            mix(3, sdk=True),
            "tcp",
            kept=True,
        ),
    ]


def table(runs: list[Series]) -> str:
    by = {s.name: s for s in runs}
    rows = [*series_rows(runs), ""]
    for shape, cnri_shape, label in PAIRS:
        if f"idnode-{shape}" not in by or f"cnri-{cnri_shape}" not in by:
            continue
        ours, theirs = by[f"idnode-{shape}"], by[f"cnri-{cnri_shape}"]
        ratio = theirs.median("server_cpu_us_per_answer") / ours.median("server_cpu_us_per_answer")
        target = " (target >= 1.2)" if shape == "tcp" else ""
        rows.append(f"- {label}: idnode / CNRI, answers per server CPU second{target}: **{ratio:.2f}**")
    if "floor-tcp" in by and "idnode-tcp" in by and "cnri-tcp" in by:
        least, node, cnri_tcp = (
            by[n].median("server_cpu_us_per_answer") for n in ("floor-tcp", "idnode-tcp", "cnri-tcp")
        )
        rows.append(
            f"- TCP, a connection per request: the floor / CNRI, answers per server CPU second: "
            f"**{cnri_tcp / least:.2f}**; idnode's CPU per answer over the floor's: **{node / least:.2f}**"
        )
    return "\n".join(rows)


def start_floor(node_port: int, handle: str) -> tuple[int, subprocess.Popen[bytes]]:
    """bench.tcp_floor on a free port, answering with idnode's answer for ``handle``."""
    with socket.create_connection(("127.0.0.1", node_port), timeout=5) as sock:
        sock.sendall(resolution_request(handle))
        answer = b""
        while chunk := sock.recv(65_536):
            answer += chunk
    port = _free_port()
    cmd = [sys.executable, "-m", "bench.tcp_floor", "--port", str(port), "--answer", answer.hex()]
    proc = subprocess.Popen(cmd, start_new_session=True)
    listening = wait_until(
        lambda: socket.create_connection(("127.0.0.1", port), timeout=1), what="bench.tcp_floor", ignoring=(OSError,)
    )
    listening.close()
    return port, proc


def run(args: argparse.Namespace, work: Path) -> int:
    data = work / "idnode"
    if not (data / "idnode.sqlite3").exists():
        load(data, args.count, NODE_PREFIX, ADMIN_SECRET, cnri_record)
    lay = cnri_layout(args, work)
    hot = [f"{PREFIX}/{n}" for n in random.Random(12).sample(range(1, args.count + 1), min(HOT, args.count))]
    server = cnri.Server(lay)
    idnode = Target("idnode", "idnode --workers 2", idnode_cmd(data))
    floor: subprocess.Popen[bytes] | None = None
    try:
        idnode.start()
        floor_port, floor = start_floor(idnode.handle_port, hot[0])
        every = series(lay, server.proc.pid, idnode, hot, (floor_port, floor.pid))
        runs = [s for s in every if not args.series or s.name in args.series]
        for s in runs:  # CNRI's JIT, every worker's cache
            s.run(seconds=4.0, concurrency=args.concurrency, warmup=2.0)
        for n in range(1, args.rounds + 1):
            print(f"round {n}/{args.rounds}", file=sys.stderr, flush=True)
            for s in runs:
                concurrency = args.udp_concurrency if s.transport == "udp" else args.concurrency
                report = s.run(args.seconds, concurrency)
                s.runs.append(report)
                print(f"  {s.name:<16} {report.line()}", file=sys.stderr, flush=True)
    finally:
        if floor is not None:
            os.killpg(floor.pid, signal.SIGKILL)
            floor.wait()
        idnode.stop()
        server.stop()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = f"{when}; {machine()}; code {revision()}; CNRI {args.dist.name}; {args.count:,} records\n\n"
    summary = table(runs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tcp_kept.md").write_text(header + summary + "\n")
    print(header + summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tcp_kept", description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, required=True, help="an unpacked CNRI distribution (bin/, lib/)")
    parser.add_argument("--count", type=int, default=100_000, help="records in both stores (default 100000)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16, help="TCP clients in flight")
    parser.add_argument("--udp-concurrency", type=int, default=32)
    parser.add_argument("--work", type=Path, help="keep the stores here (default: a temporary directory)")
    parser.add_argument(
        "--series", type=lambda v: set(v.split(",")), default=set(), help="only these series, comma-separated"
    )
    return in_work(parser.parse_args(argv), run, "idnode-tcp-kept-")


if __name__ == "__main__":
    sys.exit(main())
