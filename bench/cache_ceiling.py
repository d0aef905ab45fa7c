"""Issue 4: the ceiling of resolution over HTTP, cached and uncached, against trivial servers.

Loads a store (1,000,000 records by default), then starts on free loopback ports:

* ``cached``: ``idnode serve --workers 2``, asked for 10,000 handles it has cached;
* ``uncached``: ``idnode serve --workers 2 --cache-entries 1``, asked for handles drawn
  uniformly from the whole store, so that every request reads the store;
* ``baseline``: the trivial aiohttp + uvloop app, 2 workers, same body and headers;
* ``nginx``: nginx (Debian package, one worker) serving the same body and headers from a file.

wrk (one thread, 50 connections) drives each in turn, round after round, so drift on the
machine hits every target alike; then the cached node is driven at fractions of its own
maximum (wrk's per-connection delay) for latency against offered load. Writes the table
to stdout and bench/results/cache_summary.md, the raw reports to bench/results/, the sweep
to bench/results/cache_sweep.json and its plot to bench/results/cache_sweep.png::

    timeout 1200 python -m bench.cache_ceiling
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import wrk
from bench.load_store import handle_for, load
from bench.resolve_baseline import ADMIN_SECRET, RESULTS, SEED, Target, busy_seconds, machine, revision

WORKERS = "2"


@dataclass
class Series:
    target: Target
    paths: Path
    runs: list[wrk.WrkRun] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)

    def median(self, pick: str) -> float:
        return float(statistics.median(float(getattr(r, pick)) for r in self.runs))


def measure(
    s: Series, args: argparse.Namespace, seconds: int, rate: float | None = None, *, record: bool = True
) -> wrk.WrkRun:
    before, busy_before = s.target.cpu_seconds(), busy_seconds()
    run = wrk.run(s.target.url, s.paths, connections=args.connections, seconds=seconds, rate=rate)
    cores = (s.target.cpu_seconds() - before) / run.seconds
    others = max(0.0, (busy_seconds() - busy_before) / run.seconds - cores - run.wrk_cpu_seconds / run.seconds)
    if run.bad_status or run.errors:
        raise RuntimeError(f"{s.target.name}: {run.bad_status} bad statuses, {run.errors} errors:\n{run.report}")
    if record and rate is None:
        s.runs.append(run)
        s.cores.append(cores)
        s.others.append(others)
    return run


def write_paths(path: Path, handles: list[int], form: str = "/api/handles/{}") -> Path:
    path.write_text("".join(form.format(handle_for(i)) + "\n" for i in handles))
    return path


def start_targets(work: Path, data: Path, args: argparse.Namespace) -> dict[str, Series]:
    rng = random.Random(SEED)
    hot = rng.sample(range(args.count), args.handles)
    cached_paths = write_paths(work / "cached.txt", hot)
    uncached_paths = write_paths(work / "uncached.txt", [rng.randrange(args.count) for _ in range(args.uncached)])
    idnode = Path(sys.executable).with_name("idnode")
    serve = (
        [str(idnode), "serve", "--handle-listen", "127.0.0.1:0"]
        if idnode.exists()
        else [sys.executable, "-m", "resolver.cli", "serve", "--handle-listen", "127.0.0.1:0"]
    )
    node = [*serve, "--listen", "127.0.0.1:0", "--data-dir", str(data), "--workers", WORKERS]
    cached = Target("cached", "idnode serve --workers 2, cached", node).start()
    body = work / "body.json"
    first = cached_paths.read_text().split("\n", 1)[0]
    with urllib.request.urlopen(cached.url + first, timeout=10) as reply:
        body.write_bytes(reply.read())
    (RESULTS / "cache_body.json").write_bytes(body.read_bytes())
    py = [sys.executable, "-m"]
    targets = {
        "cached": Series(cached, cached_paths),
        # The same node and handles, asked in the forms that used to miss the cache.
        "proxy": Series(cached, write_paths(work / "proxy.txt", hot, "/{}")),
        "filtered": Series(cached, write_paths(work / "filtered.txt", hot, "/api/handles/{}?type=URL")),
        "uncached": Series(
            Target("uncached", "idnode serve --workers 2 --cache-entries 1", [*node, "--cache-entries", "1"]).start(),
            uncached_paths,
        ),
        "baseline": Series(
            Target(
                "baseline",
                "trivial aiohttp + uvloop, 2 workers, same bytes",
                [*py, "bench.baseline_app", "--listen", "127.0.0.1:0", "--body-file", str(body), "--workers", WORKERS],
            ).start(),
            cached_paths,
        ),
        "nginx": Series(
            Target(
                "nginx",
                "nginx 1 worker, same bytes from a file",
                [*py, "bench.nginx_app", "--listen", "127.0.0.1:0", "--body-file", str(body)],
            ).start(),
            cached_paths,
        ),
    }
    return targets


def table(series: dict[str, Series]) -> str:
    cached = series["cached"].median("rps")
    rows = [
        "| target | req/s (median) | runs | p50 ms | p99 ms | target CPU | others (max) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, s in series.items():
        runs = " / ".join(f"{r.rps:,.0f}" for r in s.runs)
        rows.append(
            f"| {name}: {s.target.label} | {s.median('rps'):,.0f} | {runs} | {s.median('p50_ms'):.2f} | "
            f"{s.median('p99_ms'):.2f} | {statistics.median(s.cores):.2f} | {max(s.others):.2f} |"
        )
    rows += [
        "",
        f"- cached / baseline (target >= 0.85): **{cached / series['baseline'].median('rps'):.2f}**",
        f"- cached / nginx (target >= 0.30): **{cached / series['nginx'].median('rps'):.2f}**",
        f"- uncached / cached (target >= 0.5): **{series['uncached'].median('rps') / cached:.2f}**",
        f"- proxy form (GET /{{handle}}, 302) / cached: **{series['proxy'].median('rps') / cached:.2f}**",
        f"- filtered (?type=URL) / cached: **{series['filtered'].median('rps') / cached:.2f}**",
    ]
    return "\n".join(rows)


def sweep(s: Series, args: argparse.Namespace) -> list[dict[str, float]]:
    top = s.median("rps")
    points = []
    for fraction in args.fractions:
        run = measure(s, args, args.duration, rate=top * fraction)
        points.append({"offered": top * fraction, "fraction": fraction, "rps": run.rps, "p50_ms": run.p50_ms,
                       "p99_ms": run.p99_ms})  # fmt: skip
        print(f"  sweep {fraction:.0%}: {run.rps:,.0f} req/s  p99 {run.p99_ms:.2f} ms", file=sys.stderr, flush=True)
    points.append({"offered": top, "fraction": 1.0, "rps": top, "p50_ms": s.median("p50_ms"),
                   "p99_ms": s.median("p99_ms")})  # fmt: skip
    return points


def plot(points: list[dict[str, float]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offered = [p["offered"] for p in points]
    fig, left = plt.subplots(figsize=(8, 4.5))
    left.plot(offered, [p["rps"] for p in points], "o-", color="tab:blue", label="throughput")
    left.set_xlabel("offered load (requests/s; the last point is unthrottled)")
    left.set_ylabel("achieved requests/s", color="tab:blue")
    right = left.twinx()
    right.plot(offered, [p["p99_ms"] for p in points], "s--", color="tab:red", label="p99")
    right.set_ylabel("p99 latency (ms)", color="tab:red")
    right.axhline(5.0, color="tab:red", linewidth=0.5, linestyle=":")
    left.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def run_all(args: argparse.Namespace, work: Path) -> None:
    data = args.data_dir or work / "data"
    if not (data / "idnode.sqlite3").exists():
        started = time.perf_counter()
        load(data, args.count, admin_secret=ADMIN_SECRET)
        print(f"store: {args.count:,} records in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    series = start_targets(work, data, args)
    try:
        for s in series.values():  # page cache, connections, and the cached node's two caches
            for _ in range(3 if s.target is series["cached"].target else 1):
                measure(s, args, args.warmup, record=False)
        for n in range(1, args.rounds + 1):
            print(f"round {n}/{args.rounds}", file=sys.stderr, flush=True)
            for name, s in series.items():
                run = measure(s, args, args.duration)
                (RESULTS / f"cache-round{n}-{name}.txt").write_text(
                    f"# {s.target.label}\n# {' '.join(s.target.cmd)}\n{run.report}"
                )
                print(f"  {name:<9} {run.rps:>9,.0f} req/s  p99 {run.p99_ms:6.2f} ms", file=sys.stderr)
        points = sweep(series["cached"], args)
    finally:
        for target in {id(s.target): s.target for s in series.values()}.values():
            target.stop()
    summary = table(series)
    at70 = next(p for p in points if p["fraction"] == 0.7) if 0.7 in args.fractions else None
    if at70:
        summary += f"\n- p99 at 70% of the cached maximum (target <= 5 ms): **{at70['p99_ms']:.2f} ms**"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = f"{when}; {machine()}; code {revision()}; {args.count:,} records\n\n"
    (RESULTS / "cache_summary.md").write_text(header + summary + "\n")
    (RESULTS / "cache_sweep.json").write_text(json.dumps(points, indent=1))
    plot(points, RESULTS / "cache_sweep.png", f"cached resolution, idnode --workers 2, {when}")
    print(header + summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="records in the store (default 1000000)")
    parser.add_argument("--data-dir", type=Path, help="reuse (or fill, if empty) this store directory")
    parser.add_argument("--handles", type=int, default=10_000, help="distinct handles of the cached run")
    parser.add_argument("--uncached", type=int, default=100_000, help="uniform draws of the uncached run")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9])
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="idnode-cache-bench-") as work:
        run_all(args, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
