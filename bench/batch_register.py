"""Issue 3: registration throughput through POST /api/batch, msgpack and JSON.

Starts a real node on a fresh SQLite store, pre-encodes every request body (2,000
realistic 4-value records each, all distinct handles under 20 enterprise prefixes), then
sends them over ``--connections`` keep-alive connections and reports identifiers per
second over the whole run, batch latency, and the CPU the server used::

    timeout 900 python -m bench.batch_register --count 1000000 --format msgpack
    timeout 900 python -m bench.batch_register --count 1000000 --format json
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from bench.resolve_baseline import ADMIN_SECRET, Target, machine, revision, serve_command
from tests.support.nodeproc import basic

BATCH = 2000
ENTERPRISES = 20
TOTAL_IDENTIFIERS_PLANNED = 1_500_000_000


def operations(start: int, count: int) -> list[dict[str, Any]]:
    ops = []
    for i in range(start, start + count):
        enterprise = i % ENTERPRISES + 1
        handle = f"88.118.{enterprise}/JXDY{2106000 + enterprise:07d}-{i:09d}"
        ops.append({
            "op": "create",
            "handle": handle,
            "values": [
                {"index": 1, "type": "URL", "data": f"https://trace.e{enterprise}.example.cn/p/{i}"},
                {"index": 2, "type": "productName", "data": "Bearing housing 轴承座"},
                {"index": 3, "type": "batchNo", "data": f"B2026-{i // 100000:04d}"},
                {"index": 4, "type": "productionDate", "data": "2026-11-27"},
            ],
        })  # fmt: skip
    return ops


def bodies(count: int, fmt: str) -> list[bytes]:
    return bodies_from(0, count, fmt)


def bodies_from(start: int, count: int, fmt: str) -> list[bytes]:
    """Request bodies creating identifiers ``start`` .. ``start + count - 1``, BATCH a body."""
    encode = msgpack.packb if fmt == "msgpack" else (lambda o: json.dumps(o, ensure_ascii=False).encode())
    return [
        encode({"atomic": False, "operations": operations(start + n, min(BATCH, count - n))})
        for n in range(0, count, BATCH)
    ]


def send_all(port: int, payloads: list[bytes], fmt: str, connections: int) -> tuple[float, list[float], int]:
    """Send every body to POST /api/batch; return wall seconds, per-batch latencies and failed item count."""
    headers = {
        "Authorization": basic("300:0.NA/88.118", ADMIN_SECRET),
        "Content-Type": "application/msgpack" if fmt == "msgpack" else "application/json",
        "Accept": "application/msgpack" if fmt == "msgpack" else "application/json",
    }

    def failed(status: int, raw: bytes) -> int:
        answer = msgpack.unpackb(raw) if fmt == "msgpack" else json.loads(raw)
        return sum(1 for r in answer["results"] if r["responseCode"] != 1) + (status != 200)

    return post_all(port, "/api/batch", payloads, headers, connections, failed)


def post_all(
    port: int,
    path: str,
    payloads: list[bytes],
    headers: dict[str, str],
    connections: int,
    failed: Callable[[int, bytes], int],
) -> tuple[float, list[float], int]:
    """POST every body to ``path`` over ``connections`` keep-alive connections, in order, each taking the
    next; return wall seconds, per-request latencies and the failures ``failed(status, body)`` counts."""
    lock = threading.Lock()
    todo = list(reversed(payloads))
    latencies: list[float] = []
    failures = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not todo:
                    break
                body = todo.pop()
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            elapsed = time.perf_counter() - started
            bad = failed(resp.status, raw)
            with lock:
                latencies.append(elapsed)
                failures[0] += bad
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, failures[0]


def run_once(
    payloads: list[bytes], args: argparse.Namespace, store: str | None
) -> tuple[float, float, int, list[float]]:
    """One node on a fresh store (SQLite in a temporary directory, or the PostgreSQL URL given):
    wall seconds, server CPU seconds, client CPU, batch latencies, failed items, store bytes."""
    with tempfile.TemporaryDirectory(prefix="idnode-batch-") as work:
        data = Path(work) / "data"
        cmd = serve_command("--data-dir", str(data))
        cmd += ["--workers", str(args.workers)] + (["--store", store] if store else [])
        server = Target("server", "idnode serve", cmd).start()
        try:
            cpu_before = server.cpu_seconds()
            wall, latencies, failed = send_all(server.port, payloads, args.format, args.connections)
            cpu = server.cpu_seconds() - cpu_before
        finally:
            server.stop()
    return wall, cpu, failed, latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("msgpack", "json"), default="msgpack")
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="idnode serve --workers")
    parser.add_argument(
        "--compare-postgres",
        metavar="SERVER_URL",
        help="also run on PostgreSQL (a fresh database on this server each round), alternating with SQLite",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each store with --compare-postgres")
    args = parser.parse_args(argv)
    print(f"encoding {args.count:,} identifiers as {args.format} ...", file=sys.stderr)
    payloads = bodies(args.count, args.format)
    if args.compare_postgres:
        return compare(payloads, args)
    size = sum(len(p) for p in payloads)
    client_before = time.process_time()
    wall, cpu, failed, latencies = run_once(payloads, args, None)
    client_cpu = time.process_time() - client_before
    rate = args.count / wall
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"| {args.format} | {args.count:,} | {wall:.1f} | **{rate:,.0f}** | {statistics.median(latencies) * 1000:.0f} "
        f"| {p99 * 1000:.0f} | {cpu / wall:.2f} | {client_cpu / wall:.2f} | {size / args.count:.0f} "
        f"| {TOTAL_IDENTIFIERS_PLANNED / rate / 3600:.1f} h | {failed} |"
    )
    print(
        f"machine: {machine()}; revision {revision()}; workers {args.workers}; connections {args.connections}",
        file=sys.stderr,
    )
    return 0 if failed == 0 else 1


def compare(payloads: list[bytes], args: argparse.Namespace) -> int:
    """SQLite and PostgreSQL in turn (the order alternating by round); the ratio of the medians."""
    from tests.support.pgproc import temp_database

    rates: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    failed = 0
    for n in range(args.rounds):
        for kind in ("sqlite", "postgresql") if n % 2 == 0 else ("postgresql", "sqlite"):
            if kind == "sqlite":
                wall, cpu, bad, latencies = run_once(payloads, args, None)
            else:
                with temp_database(args.compare_postgres) as url:
                    wall, cpu, bad, latencies = run_once(payloads, args, url)
            failed += bad
            rates[kind].append(args.count / wall)
            print(
                f"round {n + 1} {kind:<10} {args.count / wall:>9,.0f} identifiers/s, p50 batch "
                f"{statistics.median(latencies) * 1000:.0f} ms, node CPU {cpu / wall:.2f} cores, {bad} failed",
                flush=True,
            )
    sqlite, pg = (statistics.median(rates[k]) for k in ("sqlite", "postgresql"))
    print(f"postgresql / sqlite: {pg:,.0f} / {sqlite:,.0f} identifiers/s = {pg / sqlite:.2f}")
    print(f"machine: {machine()}; revision {revision()}; workers {args.workers}; connections {args.connections}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
