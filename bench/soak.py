"""Issue 10: a soak — a mixed load at ~70% of the cached maximum for ten minutes, memory sampled.

Loads a store (100,000 records by default), starts ``idnode serve --workers 2`` on a free
loopback port, measures its cached maximum with wrk over Zipf-distributed handles, then
for ``--seconds`` offers ``--fraction`` of that maximum in resolutions (wrk, per-connection
delay) while a writer thread adds single PUTs (``--write-share`` of the resolution rate)
and a 2,000-item batch every ``--batch-every`` seconds. Every ``--sample`` seconds it reads
the resident set of the parent and of every worker (/proc) and the node's request counters
(/metrics). Pass: no request failed, no worker was replaced, and the workers' total resident
memory grew less than 5% from the end of the warm-up (``--warmup`` seconds) to the end.
Writes bench/results/soak.json and the plot bench/results/soak.png::

    timeout 1200 python -m bench.soak
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import wrk
from bench.load_store import handle_for, load
from bench.resolve_baseline import ADMIN_SECRET, RESULTS, SEED, Target, machine, revision
from tests.support.nodeproc import metric_value

ADMIN = "Basic " + base64.b64encode(f"300%3A0.NA/88.118:{ADMIN_SECRET}".encode()).decode()
GROWTH_LIMIT = 0.05
CONNECTIONS = 100


def zipf_paths(path: Path, count: int, draws: int, exponent: float, rng: random.Random) -> Path:
    """Handles drawn with P(rank k) ~ 1/k^s over the store, the ranks shuffled over records."""
    weights = list(itertools.accumulate(1 / (k**exponent) for k in range(1, count + 1)))
    records = rng.sample(range(count), count)
    drawn = rng.choices(records, cum_weights=weights, k=draws)
    path.write_text("".join(f"/api/handles/{handle_for(i)}\n" for i in drawn))
    return path


def processes(parent: int) -> dict[int, int]:
    """Resident bytes of ``parent`` and of each of its children, by pid."""
    found: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        pid, ppid = int(fields["Pid"]), int(fields["PPid"])
        if (pid == parent or ppid == parent) and "VmRSS" in fields:
            found[pid] = int(fields["VmRSS"].split()[0]) * 1024
    return found


@dataclass
class Writer:
    """Single PUTs at a steady rate from a few keep-alive connections, and a 2,000-item batch
    now and then from one more, counting failures."""

    port: int
    rate: float
    batch_every: float
    threads: int = 4
    stop: threading.Event = field(default_factory=threading.Event)
    singles: int = 0
    batches: int = 0
    failures: list[str] = field(default_factory=list)
    _serial: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for _ in range(self.threads):
            threading.Thread(target=self._singles, daemon=True).start()
        threading.Thread(target=self._batches, daemon=True).start()

    def _send(self, conn: http.client.HTTPConnection, method: str, path: str, body: dict[str, Any]) -> bool:
        try:
            headers = {"Authorization": ADMIN, "Content-Type": "application/json"}
            conn.request(method, path, json.dumps(body).encode(), headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status in (200, 201) and (path != "/api/batch" or b'"responseCode":1,' in data):
                return True
            failure = f"{method} {path}: {resp.status} {data[:200]!r}"
        except OSError as exc:
            conn.close()  # reconnects on the next request
            failure = f"{method} {path}: {exc!r}"
        with self._lock:
            self.failures.append(failure)
        return False

    def _singles(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        interval = self.threads / self.rate
        due = time.monotonic()
        while not self.stop.is_set():
            n = next(self._serial)
            url = {"index": 1, "type": "URL", "data": f"https://soak.example/{n}"}
            if self._send(conn, "PUT", f"/api/handles/88.118/soak-{n % 5000}", {"values": [url]}):
                with self._lock:
                    self.singles += 1
            due += interval
            self.stop.wait(max(0.0, due - time.monotonic()))

    def _batches(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stop.wait(self.batch_every):
            n = next(self._serial)
            ops = [
                {"op": "replace", "handle": f"88.118/soak-batch-{i}", "values": [{"index": 1, "type": "URL",
                                                                                   "data": f"b{n}-{i}"}]}
                for i in range(2000)
            ]  # fmt: skip
            if self._send(conn, "POST", "/api/batch", {"operations": ops}):
                self.batches += 1


def calibrate(node: Target, paths: Path, target: float) -> float:
    """The rate to ask wrk for so that it sends ``target`` requests/s: its per-connection delay
    comes on top of each response time, so it undershoots what it is asked for."""
    rate = target
    for _ in range(3):
        got = wrk.run(node.url, paths, connections=CONNECTIONS, seconds=8, rate=rate).rps
        if abs(got - target) < 0.03 * target:
            break
        rate = min(rate * target / got, 3 * target)  # past that the node is simply saturated
    return rate


def requests_total(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        return metric_value(conn.getresponse().read().decode(), "idnode_requests_total", {})
    finally:
        conn.close()


def plot(samples: list[dict[str, Any]], out: Path, warmup: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [s["t"] for s in samples]
    fig, (mem, rate) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    pids = sorted({pid for s in samples for pid in s["rss"]})
    for pid in pids:
        mem.plot(times, [s["rss"].get(pid, float("nan")) / 2**20 for s in samples], label=f"pid {pid}")
    mem.axvline(warmup, color="grey", linestyle=":", label="end of warm-up")
    mem.set_ylabel("resident MiB")
    mem.legend(fontsize="small")
    rate.plot(times[1:], [s["rps"] for s in samples[1:]])
    rate.set_ylabel("requests/s (all)")
    rate.set_xlabel("seconds")
    fig.suptitle("idnode soak: resident memory and throughput")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = work / "data"
    load(data, args.count, admin_secret=ADMIN_SECRET)
    paths = zipf_paths(work / "zipf.txt", args.count, 200_000, args.zipf, random.Random(SEED))
    idnode = Path(sys.executable).with_name("idnode")
    serve = (
        [str(idnode), "serve", "--handle-listen", "127.0.0.1:0"]
        if idnode.exists()
        else [sys.executable, "-m", "resolver.cli", "serve", "--handle-listen", "127.0.0.1:0"]
    )
    node = Target("node", "idnode serve --workers 2", [*serve, "--listen", "127.0.0.1:0", "--data-dir", str(data),
                                                        "--workers", "2"]).start()  # fmt: skip
    assert node.proc is not None
    try:
        wrk.run(node.url, paths, seconds=10)  # warm the caches
        maximum = wrk.run(node.url, paths, seconds=15).rps
        total = args.fraction * maximum  # resolutions and single writes together
        writer = Writer(node.port, max(1.0, args.write_share * total), args.batch_every)
        writer.start()  # calibrated with the writes going on
        target = total - writer.rate
        rate = calibrate(node, paths, target)
        with writer._lock:  # count the soak's writes only
            writer.singles = writer.batches = 0
        print(f"cached maximum {maximum:,.0f} req/s; {target:,.0f} resolutions/s (wrk asked for {rate:,.0f}) "
              f"for {args.seconds} s")  # fmt: skip
        result: dict[str, wrk.WrkRun] = {}
        driver = threading.Thread(
            target=lambda: result.update(
                run=wrk.run(node.url, paths, connections=CONNECTIONS, seconds=args.seconds, rate=rate)
            )
        )
        started = time.monotonic()
        driver.start()
        samples: list[dict[str, Any]] = []
        while driver.is_alive():
            total = requests_total(node.port)
            now = time.monotonic() - started
            rps = (total - samples[-1]["requests"]) / (now - samples[-1]["t"]) if samples else 0.0
            samples.append({"t": now, "rss": processes(node.proc.pid), "requests": total, "rps": rps})
            driver.join(args.sample)
        writer.stop.set()
        run = result["run"]
    finally:
        node.stop()
    return summarise(args, samples, run, writer, maximum, node.proc.pid)


def summarise(
    args: argparse.Namespace, samples: list[dict[str, Any]], run: wrk.WrkRun, writer: Writer, maximum: float,
    parent: int,
) -> dict[str, Any]:  # fmt: skip
    def workers(sample: dict[str, Any]) -> int:
        return sum(rss for pid, rss in sample["rss"].items() if pid != parent)

    warm = next(s for s in samples if s["t"] >= args.warmup)
    last = samples[-1]
    worker_pids = {pid for s in samples for pid in s["rss"] if pid != parent}
    growth = workers(last) / workers(warm) - 1
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "code": revision(),
        "count": args.count,
        "seconds": args.seconds,
        "cached_max_rps": round(maximum),
        "target_rps": round(args.fraction * maximum),
        "resolved_rps": round(run.rps),
        "single_writes_per_s": round(writer.singles / args.seconds),
        "p50_ms": run.p50_ms,
        "p99_ms": run.p99_ms,
        "resolution_errors": run.errors + run.bad_status,
        "single_writes": writer.singles,
        "batches": writer.batches,
        "write_failures": writer.failures[:20],
        "worker_pids": sorted(worker_pids),
        "workers_rss_mib_after_warmup": round(workers(warm) / 2**20, 1),
        "workers_rss_mib_end": round(workers(last) / 2**20, 1),
        "growth_after_warmup": round(growth, 4),
        "passed": run.errors + run.bad_status == 0 and not writer.failures and len(worker_pids) == 2
        and growth < GROWTH_LIMIT,
        "samples": [{**s, "rss": {str(k): v for k, v in s["rss"].items()}} for s in samples],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=100_000, help="records in the store")
    parser.add_argument("--seconds", type=int, default=600, help="length of the soak")
    parser.add_argument("--warmup", type=float, default=120, help="seconds before memory is held to the limit")
    parser.add_argument("--fraction", type=float, default=0.7, help="offered load, as a fraction of the maximum")
    parser.add_argument("--write-share", type=float, default=0.01, help="share of single writes in the requests")
    parser.add_argument("--batch-every", type=float, default=20, help="seconds between 2,000-item batches")
    parser.add_argument("--sample", type=float, default=10, help="seconds between memory samples")
    parser.add_argument("--zipf", type=float, default=1.1, help="exponent of the handles' popularity")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="idnode-soak-") as tmp:
        summary = soak(args, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(summary, indent=1))
    samples = [{**s, "rss": {int(k): v for k, v in s["rss"].items()}} for s in summary["samples"]]
    plot(samples, RESULTS / "soak.png", args.warmup)
    shown = {k: v for k, v in summary.items() if k != "samples"}
    print(json.dumps(shown, indent=1))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
