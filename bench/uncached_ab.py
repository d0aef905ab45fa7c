"""Uncached (or cached) resolution over HTTP, this checkout against another, alternately on one store.

Starts ``idnode serve --workers 2 --cache-entries 1`` from each checkout on the same store
(fill one with ``bench.load_store``) and drives them in turn with wrk (one thread, 50
connections, 10 s), the order alternating by round, over 100,000 handles drawn uniformly
from the store; prints each run and the ratio of the medians::

    git worktree add /tmp/old <commit>
    timeout 600 python -m bench.uncached_ab --data-dir /tmp/b1m --tree /tmp/old
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path

from bench import wrk
from bench.load_store import handle_for
from bench.resolve_baseline import REPO, SEED, Target, serve_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.uncached_ab", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a store filled by bench.load_store")
    parser.add_argument("--count", type=int, default=1_000_000, help="records in that store")
    parser.add_argument("--tree", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--cached", action="store_true", help="cached resolution instead: 10,000 handles, cache on")
    args = parser.parse_args(argv)
    rng = random.Random(SEED)
    node = ["--data-dir", str(args.data_dir.resolve()), "--workers", "2"] + (
        [] if args.cached else ["--cache-entries", "1"]
    )
    # The other checkout may predate --handle-listen: it gets the command it knows (a newer one
    # then serves the Handle protocol on its default port, which this one leaves free).
    old_style = [sys.executable, "-m", "resolver.cli", "serve", "--listen", "127.0.0.1:0", *node]
    targets = {
        "this": Target("this", "this checkout", serve_command(*node)),
        "other": Target("other", str(args.tree), old_style, cwd=args.tree.resolve()),
    }
    with tempfile.TemporaryDirectory() as work:
        paths = Path(work) / "paths.txt"
        drawn = (
            rng.sample(range(args.count), 10_000)
            if args.cached
            else (rng.randrange(args.count) for _ in range(100_000))
        )
        paths.write_text("".join(f"/api/handles/{handle_for(i)}\n" for i in drawn))
        runs: dict[str, list[float]] = {name: [] for name in targets}
        try:
            for target in targets.values():
                target.start()
                wrk.run(target.url, paths, seconds=5)
            for n in range(args.rounds):
                for name in ("this", "other") if n % 2 == 0 else ("other", "this"):
                    run = wrk.run(targets[name].url, paths, seconds=args.duration)
                    if run.errors or run.bad_status:
                        raise RuntimeError(f"{name}: {run.errors} errors, {run.bad_status} bad statuses")
                    runs[name].append(run.rps)
                    print(f"round {n + 1} {name:<5} {run.rps:>9,.0f} req/s", flush=True)
        finally:
            for target in targets.values():
                if target.proc is not None:
                    target.stop()
    this, other = (statistics.median(runs[k]) for k in ("this", "other"))
    print(f"this checkout ({REPO}) / {args.tree}: {this:,.0f} / {other:,.0f} req/s = {this / other:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
