"""Issue 4: bytes per entry of the in-process cache tier, measured.

Fills one worker's cache (a real ResolutionEngine over a real store) with N answers, and
reports what tracemalloc saw allocated and how the process's resident set grew, per
entry, with the projection to 1,000,000 entries::

    python -m bench.cache_memory --data-dir /tmp/store --entries 200000

The store is filled first when the directory is empty (bench.load_store records).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc
from pathlib import Path

import uvloop

from bench.load_store import handle_for, load
from bench.resolve_baseline import ADMIN_SECRET
from registry.sqlite import SqliteStore
from resolver.engine import CachePolicy, ResolutionEngine


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def measure(data: Path, entries: int) -> tuple[float, float, int]:
    store = SqliteStore(data / "idnode.sqlite3")
    await store.open()
    try:
        engine = ResolutionEngine(store, node_prefix="88.118", policy=CachePolicy(max_bytes=1 << 40))
        spellings = [handle_for(i) for i in range(entries)]
        await engine.answer(spellings[0])  # imports, first allocations
        gc.collect()
        rss0 = rss_bytes()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for start in range(1, entries, 500):
            await asyncio.gather(*(engine.answer(s) for s in spellings[start : start + 500]))
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        rss = rss_bytes() - rss0
        assert len(engine.local) == entries, len(engine.local)
        return traced / entries, rss / entries, engine.local.bytes // entries
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--entries", type=int, default=200_000)
    args = parser.parse_args(argv)
    if not (args.data_dir / "idnode.sqlite3").exists():
        load(args.data_dir, args.entries, admin_secret=ADMIN_SECRET)
    traced, rss, accounted = uvloop.run(measure(args.data_dir, args.entries))
    print(
        f"{args.entries:,} entries: {traced:,.0f} B/entry allocated (tracemalloc), {rss:,.0f} B/entry resident "
        f"(RSS growth, tracemalloc's own overhead included), {accounted:,} B/entry as the cache accounts them; "
        f"1,000,000 entries = {traced * 1e6 / 2**20:,.0f} MiB allocated"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
