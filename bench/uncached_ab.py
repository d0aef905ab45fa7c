"""Resolution, this checkout against another, alternately on one store: REST or Handle UDP.

Starts ``idnode serve --workers 2`` from each checkout on the same store (fill one with
``bench.load_store``) and drives them in turn, the order alternating by round; prints each
run (answers/s and the server's CPU per answer, its whole process tree) and the ratios of
the medians. Shapes:

* default: uncached REST (``--cache-entries 1``), wrk (one thread, 50 connections) over
  100,000 handles drawn uniformly from the store;
* ``--cached``: cached REST, wrk over 10,000 handles, cache on;
* ``--udp``: cached Handle protocol over UDP, ``bench.handle_load`` (32 in flight) over the
  same 10,000 handles, cache on;
* ``--tcp``: the same over TCP, a connection per request as CNRI's clients use it (16 in
  flight).

::

    git worktree add /tmp/old <commit>
    timeout 600 python -m bench.uncached_ab --data-dir /tmp/b1m --tree /tmp/old [--cached | --udp | --tcp]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path

from bench import wrk
from bench.handle_load import LoadConfig, run_load
from bench.handle_load_base import Pace, RequestMix
from bench.load_store import handle_for
from bench.resolve_baseline import REPO, SEED, Target, serve_command

CACHED_HANDLES = 10_000


def _measure(target: Target, args: argparse.Namespace, paths: Path, names: list[str], seconds: float) -> float:
    """One run against ``target``: answers/s; the server's CPU µs per answer is printed."""
    if args.udp or args.tcp:
        pace = Pace(seconds, concurrency=16 if args.tcp else 32)
        address = ("127.0.0.1", target.handle_port)
        transport = "tcp" if args.tcp else "udp"
        config = LoadConfig(target=address, pace=pace, transport=transport, server_pids=(target.proc_pid,))
        report = run_load(config, RequestMix(names, seed=SEED))
        if report.errors or report.timeouts:
            raise RuntimeError(f"{target.name}: {report.errors} errors, {report.timeouts} timeouts")
        target.last_cpu_us = report.server_cpu_us_per_answer or 0.0
        return report.answers_per_s
    before = target.cpu_seconds()
    run = wrk.run(target.url, paths, seconds=int(seconds))
    if run.errors or run.bad_status:
        raise RuntimeError(f"{target.name}: {run.errors} errors, {run.bad_status} bad statuses")
    target.last_cpu_us = (target.cpu_seconds() - before) / max(1, run.requests) * 1e6
    return run.rps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.uncached_ab", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a store filled by bench.load_store")
    parser.add_argument("--count", type=int, default=1_000_000, help="records in that store")
    parser.add_argument("--tree", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=int, default=10)
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--cached", action="store_true", help="cached REST: 10,000 handles, cache on")
    shape.add_argument("--udp", action="store_true", help="cached Handle protocol over UDP: 10,000 handles")
    shape.add_argument("--tcp", action="store_true", help="the same over TCP, a connection per request")
    args = parser.parse_args(argv)
    rng = random.Random(SEED)
    cached = args.cached or args.udp or args.tcp
    node = ["--data-dir", str(args.data_dir.resolve()), "--workers", "2", "--handle-listen", "127.0.0.1:0"]
    node += [] if cached else ["--cache-entries", "1"]
    other = [sys.executable, "-m", "resolver.cli", "serve", "--listen", "127.0.0.1:0", *node]
    targets = {
        "this": Target("this", "this checkout", serve_command(*node)),
        "other": Target("other", str(args.tree), other, cwd=args.tree.resolve()),
    }
    with tempfile.TemporaryDirectory() as work:
        paths = Path(work) / "paths.txt"
        drawn = (
            rng.sample(range(args.count), CACHED_HANDLES)
            if cached
            else [rng.randrange(args.count) for _ in range(100_000)]
        )
        names = [handle_for(i) for i in drawn]
        paths.write_text("".join(f"/api/handles/{name}\n" for name in names))
        runs: dict[str, list[float]] = {name: [] for name in targets}
        cpu: dict[str, list[float]] = {name: [] for name in targets}
        try:
            for target in targets.values():
                target.start()
                _measure(target, args, paths, names, 5)  # warm: caches, page cache, reader threads
            for n in range(args.rounds):
                for name in ("this", "other") if n % 2 == 0 else ("other", "this"):
                    rate = _measure(targets[name], args, paths, names, args.duration)
                    runs[name].append(rate)
                    cpu[name].append(targets[name].last_cpu_us)
                    print(
                        f"round {n + 1} {name:<5} {rate:>9,.0f} /s  {targets[name].last_cpu_us:6.1f} µs CPU", flush=True
                    )
        finally:
            for target in targets.values():
                if target.proc is not None:
                    target.stop()
    this_rate, other_rate = (statistics.median(runs[k]) for k in ("this", "other"))
    this_cpu, other_cpu = (statistics.median(cpu[k]) for k in ("this", "other"))
    print(
        f"this checkout ({REPO}) / {args.tree}: {this_rate:,.0f} / {other_rate:,.0f} answers/s = "
        f"{this_rate / other_rate:.2f}; "
        f"server CPU per answer {this_cpu:.1f} / {other_cpu:.1f} µs = {this_cpu / other_cpu:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
