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
from pathlib import Path
from typing import Any

import msgpack

from bench.resolve_baseline import ADMIN_SECRET, Target, machine, revision
from tests.nodeproc import basic

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
    encode = msgpack.packb if fmt == "msgpack" else (lambda o: json.dumps(o, ensure_ascii=False).encode())
    return [
        encode({"atomic": False, "operations": operations(n, min(BATCH, count - n))}) for n in range(0, count, BATCH)
    ]


def send_all(port: int, payloads: list[bytes], fmt: str, connections: int) -> tuple[float, list[float], int]:
    """Send every body; return wall seconds, per-batch latencies and failed item count."""
    headers = {
        "Authorization": basic("300:0.NA/88.118", ADMIN_SECRET),
        "Content-Type": "application/msgpack" if fmt == "msgpack" else "application/json",
        "Accept": "application/msgpack" if fmt == "msgpack" else "application/json",
    }
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
            conn.request("POST", "/api/batch", body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            elapsed = time.perf_counter() - started
            answer = msgpack.unpackb(raw) if fmt == "msgpack" else json.loads(raw)
            bad = sum(1 for r in answer["results"] if r["responseCode"] != 1)
            with lock:
                latencies.append(elapsed)
                failures[0] += bad + (resp.status != 200)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, failures[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("msgpack", "json"), default="msgpack")
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="idnode serve --workers")
    args = parser.parse_args(argv)
    print(f"encoding {args.count:,} identifiers as {args.format} ...", file=sys.stderr)
    payloads = bodies(args.count, args.format)
    size = sum(len(p) for p in payloads)
    with tempfile.TemporaryDirectory(prefix="idnode-batch-") as work:
        data = Path(work) / "data"
        cmd = [sys.executable, "-m", "resolver.cli", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)]
        server = Target("server", "idnode serve", [*cmd, "--workers", str(args.workers)]).start()
        try:
            cpu_before, client_before = server.cpu_seconds(), time.process_time()
            wall, latencies, failed = send_all(server.port, payloads, args.format, args.connections)
            cpu, client_cpu = server.cpu_seconds() - cpu_before, time.process_time() - client_before
        finally:
            server.stop()
        db_bytes = sum(p.stat().st_size for p in data.iterdir())
    rate = args.count / wall
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"| {args.format} | {args.count:,} | {wall:.1f} | **{rate:,.0f}** | {statistics.median(latencies) * 1000:.0f} "
        f"| {p99 * 1000:.0f} | {cpu / wall:.2f} | {client_cpu / wall:.2f} | {size / args.count:.0f} "
        f"| {db_bytes / args.count:.0f} "
        f"| {TOTAL_IDENTIFIERS_PLANNED / rate / 3600:.1f} h | {failed} |"
    )
    print(
        f"machine: {machine()}; revision {revision()}; workers {args.workers}; connections {args.connections}",
        file=sys.stderr,
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
