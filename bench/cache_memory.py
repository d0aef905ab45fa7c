"""Issue 4: bytes per entry of the in-process cache tier, measured.

Fills one worker's cache (a real ResolutionEngine over a real store) with N answers, and
reports what tracemalloc saw allocated and how the process's resident set grew, per
entry, with the projection to 1,000,000 entries::

    python -m bench.cache_memory --data-dir /tmp/store --entries 200000
    python -m bench.cache_memory --data-dir /tmp/store1m --entries 1000000 --resident-only [--hot-first]

The resident-set run is bounded as a worker is (``--bound``, default ``cache_bytes``): past
it, hot entries are packed as they are in service, so the run sees what a worker that filled
its cache sees. It also reports what Python's allocator holds free after the sweeper packed
everything (``sys._debugmallocstats``): memory freed by the hot entries but kept in arenas
that some packed entry still uses, which the resident set keeps. ``--hot-first`` fills
without the sweeper, so the cache reaches its byte bound with hot entries before any is
packed: what a worker asked for its whole key set at once (a warm-up, a scan) holds after.

The store is filled first when the directory is empty (bench.load_store records).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import sys
import tempfile
import tracemalloc
from pathlib import Path

import uvloop

from bench.load_store import handle_for, load
from bench.resolve_baseline import ADMIN_SECRET
from registry.sqlite.store import SqliteStore
from resolver.cache.generations import Generations
from resolver.cache.tiers import CachePolicy, CacheTiers
from resolver.config import DEFAULTS
from resolver.engine import ResolutionEngine
from resolver.http.render import unfiltered_body


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def allocator_free() -> int:
    """Bytes pymalloc holds in arenas but not in use: free pools and free blocks in used pools."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)  # _debugmallocstats writes to the C stderr
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode()
    free = re.search(r"unused pools \* \d+ bytes\s*=\s*([\d,]+)", text)
    available = re.search(r"# bytes in available blocks\s*=\s*([\d,]+)", text)
    return sum(int(m.group(1).replace(",", "")) for m in (free, available) if m is not None)


async def measure(
    data: Path, entries: int, trace: bool, bound: int = 1 << 40, hot_first: bool = False
) -> dict[str, float]:
    store = SqliteStore(data / "idnode.sqlite3")
    await store.open()
    try:
        # The cache tiers over the store, as the engine drives them for handles held here, with
        # the REST body kept beside each entry as the REST front-end keeps it.
        tiers = CacheTiers(store, CachePolicy(max_entries=max(entries, 1), max_bytes=bound), Generations())
        tiers.source = lambda handle, via, stale: tiers.read_store(handle.key, stale)
        parse = ResolutionEngine(store, node_prefix="88.118").parse
        local = tiers.local

        async def answer(spelling: str) -> None:
            handle = parse(spelling)
            entry = await tiers.load(handle)
            tiers.remember_rendered(entry, spelling, unfiltered_body(entry, handle.text))

        spellings = [handle_for(i) for i in range(entries)]
        await answer(spellings[0])  # imports, first allocations
        gc.collect()
        rss0 = rss_bytes()
        if trace:
            tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for start in range(1, entries, 500):
            await asyncio.gather(*(answer(s) for s in spellings[start : start + 500]))
            if not trace and not hot_first:  # as in a serving worker: the sweeper packs entries as they go unused
                local.sweep(1000)
        gc.collect()
        hot = tracemalloc.get_traced_memory()[0] - base
        hot_rss = rss_bytes() - rss0
        hot_accounted = local.bytes
        assert len(local) == entries, len(local)
        # What the sweeper does to entries left unused: two passes (the first clears the marks).
        for _ in range(2):
            while local.sweep(10_000) or local._pass:
                pass
        gc.collect()
        cold = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        assert len(local.cold) >= entries - 1, len(local.cold)
        return {
            "hot": hot / entries,
            "cold": cold / entries,
            "hot_rss": hot_rss / entries,
            "cold_rss": (rss_bytes() - rss0) / entries,
            "hot_accounted": hot_accounted / entries,
            "cold_accounted": local.bytes / entries,
            "allocator_free": allocator_free() / entries,
        }
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--bound", type=int, default=DEFAULTS.cache_bytes, help="the resident-set run's cache_bytes")
    parser.add_argument("--resident-only", action="store_true", help="skip the tracemalloc run (slow at 1M)")
    parser.add_argument(
        "--hot-first",
        action="store_true",
        help="no sweeping while filling: every entry stays hot until the byte bound packs it, as when a "
        "worker is asked for its whole key set faster than the sweeper's pass",
    )
    args = parser.parse_args(argv)
    if not (args.data_dir / "idnode.sqlite3").exists():
        load(args.data_dir, args.entries, admin_secret=ADMIN_SECRET)
    # The resident-set run first: memory a run frees stays with the allocator and would
    # hide the growth of a run after it.
    r = uvloop.run(measure(args.data_dir, args.entries, trace=False, bound=args.bound, hot_first=args.hot_first))
    print(
        f"{args.entries:,} entries: resident-set growth per entry, filling with the sweeper at work and "
        f"cache_bytes {args.bound:,} (no tracemalloc): {r['cold_rss']:,.0f} after everything was packed "
        f"({r['hot_rss']:,.0f} before), of which {r['allocator_free']:,.0f} held free by Python's allocator; "
        f"the cache counts {r['cold_accounted']:,.0f}. 1,000,000 entries = {r['cold_rss'] * 1e6 / 2**20:,.0f} MiB",
        flush=True,
    )
    if args.resident_only:
        return 0
    m = uvloop.run(measure(args.data_dir, args.entries, trace=True))
    print(
        f"{args.entries:,} entries, bytes per entry allocated (tracemalloc):\n"
        f"  hot (answers ready to send):   {m['hot']:,.0f} (the cache accounts {m['hot_accounted']:,.0f}); "
        f"1,000,000 entries = {m['hot'] * 1e6 / 2**20:,.0f} MiB\n"
        f"  cold (packed by the sweeper):  {m['cold']:,.0f} (the cache accounts {m['cold_accounted']:,.0f}); "
        f"1,000,000 entries = {m['cold'] * 1e6 / 2**20:,.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
