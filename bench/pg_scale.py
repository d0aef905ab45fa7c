"""Issue 11: the PostgreSQL store from 1M to 50M identifiers, measured in one run.

Runs a PostgreSQL server of its own (``--server-dir``, initdb on first use, tuned for a
benchmark machine: see TUNING) with one store (database) per size, filled through the
store's bulk import path (``PostgresStore.import_rows``, COPY; what ``idnode import`` runs)
by ``--load``, resumable. ``--measure`` then measures each size, with
``idnode serve --workers 2`` on that store:

- uncached resolution: wrk (one thread, 50 connections) over 100,000 handles drawn uniformly
  from everything stored, node cache off (``--cache-entries 1``), median of ``--rounds``;
- cached resolution, for the capacity model: 10,000 of them, node cache on, one run;
- batch registration: ``POST /api/batch``, msgpack, 2,000 new identifiers a batch, over
  2 connections, ``--batch-count`` identifiers;
- bytes on disk per identifier: the records table and its indexes, over the rows stored.

Every figure at a size is also given as a ratio to the first size's, so that the curve
means something on a machine whose speed varies from day to day::

    timeout 7200 python -m bench.pg_scale --load --sizes 1000000,10000000,50000000
    timeout 3600 python -m bench.pg_scale --measure --sizes 1000000,10000000,50000000

Loading is not measured, so it may run while the machine does other work; measuring needs
a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import wrk
from bench.batch_register import bodies_from, send_all
from bench.load_store import NODE_PREFIX, RowMaker, handle_for
from bench.resolve_baseline import ADMIN_SECRET, RESULTS, SEED, Target, machine, revision, serve_command
from registry.bootstrap import ensure_node_prefix
from registry.identity import secrets
from registry.identity.resealing import reseal_store
from registry.identity.sealing import KEY_FILE
from registry.postgres.store import PostgresStore
from registry.store import AuditEntry, ImportMarker
from tests.support.pgproc import PgServer

# max_wal_size bounds the WAL kept between checkpoints: 32GB filled 30 GB of disk beside a
# 100M store (~40 GB); 8GB costs the load more full-page writes, not the measurements.
TUNING = (
    "shared_buffers = 4GB\neffective_cache_size = 16GB\nmaintenance_work_mem = 1GB\nmax_wal_size = 8GB\n"
    "checkpoint_timeout = 15min\nwal_compression = on\nmax_connections = 200\n"
)
CHUNK = 20_000
DATABASE = "idnode_scale"
SOURCE = "bench.pg_scale"  # the import marker's name: records 0..N-1 of bench.load_store are in


@dataclass
class SizeResult:
    size: int
    rows: int  # identifiers stored when measured: the load's and earlier runs' registrations
    table_bytes: int
    index_bytes: int
    uncached_rps: float
    uncached_p99_ms: float
    cached_rps: float
    batch_rate: float
    batch_p50_ms: float

    @property
    def bytes_per_identifier(self) -> float:
        return (self.table_bytes + self.index_bytes) / self.rows


def server(directory: Path) -> PgServer:
    if (directory / "PG_VERSION").exists():
        pg = PgServer.existing(directory)
    else:
        pg = PgServer(directory).init()
        with open(directory / "postgresql.conf", "a") as conf:
            conf.write(TUNING)
    if not pg.ready():
        pg.start()
        pg.wait_ready()
    return pg


async def stored(url: str) -> int:
    """How many records earlier runs loaded (the import's own resume marker)."""
    store = PostgresStore(url)
    await store.open()
    try:
        return await store.import_progress(SOURCE)
    finally:
        await store.close()


_MAKER: RowMaker | None = None


def rows_for(first: int) -> list[tuple[str, str, bytes]]:
    """The encoded rows of records first .. first + CHUNK - 1 (made in a pool process)."""
    global _MAKER
    if _MAKER is None:
        _MAKER = RowMaker()
    return _MAKER.rows(first, first + CHUNK)


def node_dir(server_dir: Path) -> Path:
    """The nodes' --data-dir beside the server's: its secret key seals the admin's secret."""
    path = server_dir.with_name(server_dir.name + "-node")
    path.mkdir(parents=True, exist_ok=True)
    return path


async def load(url: str, start: int, stop: int, data_dir: Path) -> float:
    """Records start..stop-1 through the bulk import path; seconds taken."""
    secrets.use_key_file(data_dir / KEY_FILE)
    began, have = time.perf_counter(), start
    # Two processes make the rows (started before any connection exists) while this one COPYs.
    with multiprocessing.get_context("fork").Pool(2) as pool:
        store = PostgresStore(url)
        await store.open()
        try:
            if start == 0:  # as a node's first start on an empty store: the pass that finds nothing to seal
                await reseal_store(store)
            await ensure_node_prefix(store, NODE_PREFIX, ADMIN_SECRET)
            # A window of chunks in making, not imap: it makes ahead without bound, and the
            # makers outrun the COPY (100M rows held in memory).
            firsts = iter(range(start, stop, CHUNK))
            window = deque(pool.apply_async(rows_for, (f,)) for f in itertools.islice(firsts, 4))
            while window:
                rows = window.popleft().get()[: stop - start]
                window.extend(pool.apply_async(rows_for, (f,)) for f in itertools.islice(firsts, 1))
                entry = AuditEntry(time.time(), "bench", "127.0.0.1", "import", rows[0][1])
                start += len(rows)
                await store.import_rows(rows, entry, ImportMarker(SOURCE, start))
                rate = (start - have) / (time.perf_counter() - began)
                print(f"\rpg_scale: loaded {start:,}/{stop:,} ({rate:,.0f}/s)  ", end="", file=sys.stderr, flush=True)
        finally:
            await store.close()
    print(file=sys.stderr)
    return time.perf_counter() - began


async def analyse(url: str) -> tuple[int, int, int]:
    """Table bytes, index bytes and rows of the records table (fresh statistics)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE handles")
        table, index = await conn.fetchrow(
            "SELECT sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid)) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'handles'::regclass"
        )
        rows = await conn.fetchval("SELECT sum(handles) FROM prefix_counts")
        return int(table), int(index), int(rows)
    finally:
        await conn.close()


def node(url: str, cache: bool, data_dir: Path) -> Target:
    cmd = serve_command("--store", url)
    cmd += ["--workers", "2", "--data-dir", str(data_dir)]
    return Target("node", "idnode serve", cmd + ([] if cache else ["--cache-entries", "1"])).start()


def resolution(url: str, size: int, rounds: int, duration: int, cache: bool, data_dir: Path) -> tuple[float, float]:
    """Median req/s and p99 ms: uncached over 100,000 handles drawn from everything stored, or
    cached over 10,000 of them (each resolved once before the runs)."""
    rng = random.Random(SEED + size)
    drawn = [handle_for(rng.randrange(size)) for _ in range(10_000 if cache else 100_000)]
    with tempfile.TemporaryDirectory() as work:
        paths = Path(work) / "paths.txt"
        paths.write_text("".join(f"/api/handles/{h}\n" for h in drawn))
        target = node(url, cache, data_dir)
        try:
            wrk.run(target.url, paths, seconds=3)  # warm the connections and the pools
            runs = [wrk.run(target.url, paths, seconds=duration) for _ in range(rounds)]
        finally:
            target.stop()
    for run in runs:
        if run.errors or run.bad_status:
            raise RuntimeError(f"run at {size:,}: {run.errors} errors, {run.bad_status} bad statuses")
    return statistics.median(r.rps for r in runs), statistics.median(r.p99_ms for r in runs)


def batches(url: str, size: int, count: int, data_dir: Path) -> tuple[float, float]:
    # New handles: none of the load's, no other size's, none of an earlier run's (a run
    # repeating handles would measure the idempotent re-create, which writes nothing).
    payloads = bodies_from(size * 10 + int(time.time()) // 60 % 1000 * count, count, "msgpack")
    target = node(url, True, data_dir)
    try:
        wall, latencies, failed = send_all(target.port, payloads, "msgpack", 2)
    finally:
        target.stop()
    if failed:
        raise RuntimeError(f"batch registration at {size:,}: {failed} items failed")
    return count / wall, statistics.median(latencies) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000,50000000")
    parser.add_argument("--load", action="store_true", help="fill the store of each size (resumable)")
    parser.add_argument("--measure", action="store_true", help="measure each size")
    parser.add_argument("--server-dir", type=Path, default=Path("/work/pgbench"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--batch-count", type=int, default=100_000)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    pg = server(args.server_dir)
    urls = {size: pg.url.rsplit("/", 1)[0] + f"/{DATABASE}_{size}" for size in sizes}
    if args.load:
        for size, url in urls.items():
            subprocess.run(["psql", pg.url, "-qc", f"CREATE DATABASE {DATABASE}_{size}"], capture_output=True)
            have = asyncio.run(stored(url))
            seconds = asyncio.run(load(url, have, size, node_dir(args.server_dir))) if have < size else 0.0
            if seconds:
                print(f"loaded {size - have:,} records in {seconds:,.0f} s ({(size - have) / seconds:,.0f}/s)")
    if args.measure:
        results = [measure(size, url, args) for size, url in urls.items()]
        report(results)
        with open(RESULTS / "pg_scale.jsonl", "a") as out:
            for result in results:
                out.write(json.dumps({**asdict(result), "machine": machine(), "revision": revision(),
                                      "date": time.strftime("%Y-%m-%d %H:%M")}) + "\n")  # fmt: skip
        print(f"machine: {machine()}; revision {revision()}")
    return 0


def measure(size: int, url: str, args: argparse.Namespace) -> SizeResult:
    have = asyncio.run(stored(url))
    if have < size:
        raise SystemExit(f"the {size:,} store holds {have:,} records: run --load first")
    table, index, rows = asyncio.run(analyse(url))
    data_dir = node_dir(args.server_dir)
    rps, p99 = resolution(url, size, args.rounds, args.duration, False, data_dir)
    cached, _ = resolution(url, size, 1, args.duration, True, data_dir)
    batch_rate, batch_p50 = batches(url, size, args.batch_count, data_dir)
    result = SizeResult(size, rows, table, index, rps, p99, cached, batch_rate, batch_p50)
    print(f"{size:,}: {rps:,.0f} uncached req/s (p99 {p99:.1f} ms), {cached:,.0f} cached, {batch_rate:,.0f} "
          f"identifiers/s registered, {(table + index) / rows:.0f} bytes/identifier", flush=True)  # fmt: skip
    return result


def report(results: list[SizeResult]) -> None:
    base = results[0]
    print(
        "| identifiers | uncached req/s | ratio | p99 ms | cached req/s | batch ids/s | ratio "
        "| bytes/identifier (table + index) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = r.uncached_rps / base.uncached_rps
        print(
            f"| {r.size:,} | {r.uncached_rps:,.0f} | {ratio:.2f} | {r.uncached_p99_ms:.1f} | {r.cached_rps:,.0f} "
            f"| {r.batch_rate:,.0f} | {r.batch_rate / base.batch_rate:.2f} | {r.bytes_per_identifier:.0f} "
            f"({r.table_bytes / r.rows:.0f} + {r.index_bytes / r.rows:.0f}) |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
