"""CPU of the resolution engine's miss path, in-process: no HTTP, so small changes show.

Opens an existing store (fill one with ``bench.load_store``), builds a ResolutionEngine
with a one-entry cache, and has 32 concurrent askers resolve ``--answers`` handles drawn
uniformly from it; prints answers/s and engine CPU per answer. ``--tree`` imports the
engine from another checkout, so two revisions compare on the same store, alternately::

    git worktree add /tmp/old <commit>
    for i in 1 2 3; do
        python -m bench.engine_miss --data-dir /tmp/b1m --tree /tmp/old
        python -m bench.engine_miss --data-dir /tmp/b1m
    done
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ASKERS = 32


async def measure(data_dir: Path, count: int, answers: int) -> tuple[float, float]:
    from bench.load_store import handle_for
    from registry.sqlite.store import SqliteStore
    from resolver.engine import ResolutionEngine

    try:
        from resolver.cache.tiers import CachePolicy
    except ImportError:  # a tree from before the engine split (--tree)
        from resolver.engine import CachePolicy  # type: ignore[attr-defined]

    store = SqliteStore(data_dir / "idnode.sqlite3")
    await store.open()
    try:
        engine = ResolutionEngine(store, node_prefix="88.118", policy=CachePolicy(max_entries=1))
        answer = _answerer(engine)
        rng = random.Random(3)
        names = [handle_for(rng.randrange(count)) for _ in range(answers + 5000)]
        for name in names[:5000]:  # warm: page cache, referrals, reader threads
            await answer(name)
        measured = names[5000:]

        async def ask(chunk: list[str]) -> None:
            for name in chunk:
                await answer(name)

        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(ask(measured[i::ASKERS]) for i in range(ASKERS)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await engine.close()
        return len(measured) / wall, cpu / len(measured) * 1e6
    finally:
        await store.close()


def _answerer(engine: Any) -> Callable[[str], Awaitable[object]]:
    """The engine's answer with the REST body made, as the REST front-end asks for it."""
    old: Callable[[str], Awaitable[object]] | None = getattr(engine, "answer", None)
    if old is not None:  # a tree from before the engine split (--tree): the engine rendered
        return old
    from resolver.http.render import unfiltered_body

    async def answer(spelling: str) -> None:
        handle = engine.parse(spelling)
        entry = await engine.lookup(handle)
        if entry.rendered_for != spelling:
            engine.remember_rendered(entry, spelling, unfiltered_body(entry, handle.text))

    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_miss", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a store filled by bench.load_store")
    parser.add_argument("--count", type=int, default=1_000_000, help="records in that store")
    parser.add_argument("--answers", type=int, default=50_000)
    parser.add_argument("--tree", type=Path, help="import protocol, registry and resolver from this checkout")
    args = parser.parse_args(argv)
    if args.tree is not None:
        sys.path.insert(0, str(args.tree.resolve()))
    import uvloop

    rate, cpu_us = uvloop.run(measure(args.data_dir, args.count, args.answers))
    print(f"{args.tree or 'this checkout'}: {rate:,.0f} answers/s, engine CPU {cpu_us:.1f} µs per answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
