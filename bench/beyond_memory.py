"""Issue 23, item 3: a store far larger than the database server's memory.

The 1.5-billion regime is ~550 GB of records and indexes (366 bytes an identifier, measured
at 50M) on a database server with tens of GB of RAM. This puts bench.pg_scale's PostgreSQL
server (its stores of each size, filled by ``python -m bench.pg_scale --load``) in a memory
cgroup (v1, ``/sys/fs/cgroup/memory``) of ``--memory`` bytes, made here and removed at the
end, with the page cache dropped first so that nothing it reads is charged elsewhere. Then,
for each size in turn, under the same confinement:

- the disk's own random-read rate (8 KiB ``O_DIRECT`` reads over the store's files, one and
  16 in flight), once, so that the resolution figures read against the physical limit;
- uncached resolution (``idnode serve --workers 2 --cache-entries 1``, wrk, REST): Zipf-like
  popularity as in bench/locustfile.py (rank r with probability ~1/r, scattered over the
  store), after a warm-up of the same, then uniform over every record; requests/s, p50/p99,
  and the disk reads per resolution (``/proc/diskstats``, the store's device);
- single registration: one new identifier per ``PUT`` (bench.write_cost's, Basic login),
  wrk -c16;
- batch registration: bench.pg_scale's (msgpack ``POST /api/batch``, 2,000 a batch);
- Locust's mixed scenario (bench.locust_run: REST, UDP, TCP, SNMS and batches by weight),
  node cache on, defaults.

Every figure at a size is given as a ratio to the first size's. Needs root (the cgroup, the
dropped page cache) and wrk::

    timeout 7200 python -m bench.pg_scale --load --sizes 1000000,100000000
    timeout 3600 python -m bench.beyond_memory --sizes 1000000,100000000 --memory 3GiB

Writes bench/results/beyond_memory.json and the Locust runs' files under
bench/results/beyond_memory/.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import csv
import itertools
import json
import mmap
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import pg_scale, write_cost, wrk
from bench.load_store import handle_for
from bench.resolve_baseline import ADMIN_SECRET, REPO, RESULTS, SEED, Target, machine, revision
from tests.support.pgproc import BIN, PgServer

CGROUP = Path("/sys/fs/cgroup/memory/idnode-beyond-memory")
PAGE = 8192  # PostgreSQL's page: the unit of a random read
PATHS = 1_000_000  # handles in a resolution run's file: no run asks one twice by design
CONNECTIONS = 32
_SCATTER = 2654435761  # as bench/locustfile.py's zipf_index: popular ranks all over the store


def zipf_index(rng: random.Random, population: int) -> int:
    """bench/locustfile.py's draw (importing it needs Locust): rank r with probability ~1/r."""
    rank = int(population ** rng.random())
    return (rank * _SCATTER) % population


def parse_bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)


# The cgroup ----------------------------------------------------------------------------------


def drop_page_cache() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


@contextlib.contextmanager
def confined(pg: PgServer, limit: int) -> Iterator[None]:
    """The server restarted inside a memory cgroup of ``limit`` bytes (page cache included),
    shared_buffers a quarter of it; stopped and the cgroup removed on the way out."""
    pg.stop()
    drop_page_cache()
    CGROUP.mkdir(exist_ok=True)
    (CGROUP / "memory.limit_in_bytes").write_text(str(limit))
    (CGROUP / "memory.max_usage_in_bytes").write_text("0")  # reset the peak

    def join() -> None:  # in the child, before exec: it and everything it starts are confined
        (CGROUP / "cgroup.procs").write_text(str(os.getpid()))

    buffers = f"{limit // 4 // (1 << 20)}MB"
    options = f"-c shared_buffers={buffers} -c effective_cache_size={limit // 2 // (1 << 20)}MB"
    pg_ctl = [str(BIN / "pg_ctl"), "-D", str(pg.directory), "-l", str(pg.directory / "log"), "-w", "-t", "120"]
    subprocess.run(["runuser", "-u", "postgres", "--", *pg_ctl, "-o", options, "start"], check=True, preexec_fn=join)
    try:
        yield
    finally:
        pg.stop()
        for pid in (CGROUP / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (CGROUP.parent / "cgroup.procs").write_text(pid)
        CGROUP.rmdir()
        pg.start()  # as bench.pg_scale left it, outside any cgroup
        pg.wait_ready()


def cgroup_memory() -> dict[str, int]:
    stat = dict(line.split() for line in (CGROUP / "memory.stat").read_text().splitlines())
    return {
        "peak": int((CGROUP / "memory.max_usage_in_bytes").read_text()),
        "cache": int(stat["cache"]),
        "rss": int(stat["rss"]),
    }


# The disk ------------------------------------------------------------------------------------


def device_of(path: Path) -> str:
    """The /proc/diskstats name of the block device holding ``path``."""
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        if int(fields[0]) == major and int(fields[1]) == minor:
            return fields[2]
    raise RuntimeError(f"no /proc/diskstats line for {path}'s device {major}:{minor}")


def disk_reads(device: str) -> tuple[int, int]:
    """Reads completed and bytes read on ``device`` so far."""
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        if fields[2] == device:
            return int(fields[3]), int(fields[5]) * 512
    raise RuntimeError(f"no device {device} in /proc/diskstats")


def random_read_rate(files: list[Path], in_flight: int, seconds: float) -> tuple[float, float]:
    """8 KiB O_DIRECT reads at random offsets of ``files`` (the page cache bypassed): reads/s
    and the median latency in ms, ``in_flight`` threads each with one read outstanding."""
    sizes = [(f, f.stat().st_size // PAGE) for f in files]
    sizes = [(f, pages) for f, pages in sizes if pages]
    starts = list(itertools.accumulate((pages for _, pages in sizes), initial=0))
    total = starts.pop()
    counts = [0] * in_flight
    latencies: list[list[float]] = [[] for _ in range(in_flight)]
    stop = time.monotonic() + seconds

    def reader(slot: int) -> None:
        rng = random.Random(SEED + slot)
        buffer = mmap.mmap(-1, PAGE)  # page-aligned, as O_DIRECT wants
        fds = [os.open(f, os.O_RDONLY | os.O_DIRECT) for f, _ in sizes]
        try:
            while time.monotonic() < stop:
                page = rng.randrange(total)
                n = bisect.bisect_right(starts, page) - 1
                began = time.perf_counter()
                os.preadv(fds[n], [buffer], (page - starts[n]) * PAGE)
                latencies[slot].append(time.perf_counter() - began)
                counts[slot] += 1
        finally:
            for fd in fds:
                os.close(fd)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(in_flight)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    return sum(counts) / elapsed, statistics.median(x for slot in latencies for x in slot) * 1000


def store_files(pg: PgServer, url: str) -> list[Path]:
    """The files of the records table's partitions and indexes in ``url``'s database."""
    query = (
        "SELECT pg_relation_filepath(c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid IN "
        "(i.inhrelid, (SELECT indexrelid FROM pg_index WHERE indrelid = i.inhrelid LIMIT 1)) "
        "WHERE i.inhparent = 'handles'::regclass"
    )
    out = subprocess.run(["psql", url, "-Atc", query], check=True, capture_output=True, text=True).stdout
    files = []
    for relative in out.split():
        first = pg.directory / relative
        files += [first, *sorted(first.parent.glob(first.name + ".*"))]
    return [f for f in files if f.exists()]


# The measurements ---------------------------------------------------------------------------


@dataclass
class Resolution:
    shape: str
    rps: float
    p50_ms: float
    p99_ms: float
    disk_reads: float  # per resolution
    disk_kib: float  # per resolution


@dataclass
class SizeResult:
    size: int
    store_bytes: int  # the records table and its indexes
    zipf: Resolution
    uniform: Resolution
    put_rps: float
    put_p99_ms: float
    batch_rate: float
    locust_rps: float
    locust_failures: int
    locust_p99_ms: float
    memory: dict[str, int]


def paths_file(work: Path, size: int, shape: str) -> Path:
    rng = random.Random(f"{SEED}-{size}-{shape}")
    drawn = [zipf_index(rng, size) if shape == "zipf" else rng.randrange(size) for _ in range(PATHS)]
    path = work / f"{shape}-{size}.txt"
    path.write_text("".join(f"/api/handles/{handle_for(i)}\n" for i in drawn))
    return path


def resolve(node: Target, paths: Path, shape: str, seconds: int, device: str) -> Resolution:
    reads0, bytes0 = disk_reads(device)
    run = wrk.run(node.url, paths, connections=CONNECTIONS, seconds=seconds)
    reads1, bytes1 = disk_reads(device)
    if run.errors or run.bad_status:
        raise RuntimeError(f"{shape}: {run.errors} errors, {run.bad_status} answers not 2xx")
    per = 1 / run.requests
    return Resolution(shape, run.rps, run.p50_ms, run.p99_ms, (reads1 - reads0) * per, (bytes1 - bytes0) * per / 1024)


def locust_mixed(node: Target, size: int, seconds: int, out: Path) -> tuple[float, int, float]:
    """Locust's mixed scenario against ``node``: requests/s, failures, p99 ms (all requests)."""
    cmd = [sys.executable, "-m", "bench.locust_run", "--http-port", str(node.port), "--handle-port"]
    cmd += [str(node.handle_port), "--count", str(size), "--seconds", str(seconds), "--scenarios", "mixed"]
    env = {**os.environ, "IDNODE_ADMIN_SECRET": ADMIN_SECRET}
    subprocess.run([*cmd, "--out", str(out)], check=True, cwd=REPO, env=env, timeout=seconds + 300)
    with open(out / "mixed_stats.csv") as f:
        total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    return float(total["Requests/s"]), int(total["Failure Count"]), float(total["99%"])


def measure(pg: PgServer, size: int, url: str, args: argparse.Namespace, work: Path) -> SizeResult:
    device = device_of(pg.directory)
    data_dir = pg_scale.node_dir(args.server_dir)
    # As a store in service is (autovacuum): hint bits set, the visibility map made, statistics
    # fresh; otherwise the first reads of each page write it. Quick once done.
    subprocess.run(["psql", url, "-qc", "VACUUM (ANALYZE) handles"], check=True)
    store = store_bytes(url)
    zipf_paths, uniform_paths = paths_file(work, size, "zipf"), paths_file(work, size, "uniform")
    print(f"beyond_memory: {size:,} ({store / (1 << 30):.1f} GiB stored) ...", file=sys.stderr, flush=True)
    with confined(pg, args.memory):
        node = pg_scale.node(url, False, data_dir)
        try:
            wrk.run(node.url, zipf_paths, connections=CONNECTIONS, seconds=args.warm)  # the cache's steady state
            zipf = resolve(node, zipf_paths, "zipf", args.seconds, device)
            uniform = resolve(node, uniform_paths, "uniform", args.seconds, device)
        finally:
            node.stop()
        node = pg_scale.node(url, True, data_dir)
        try:
            write_cost.prepare(node, work)
            put = write_cost.measure(node, work, "put-16", args.seconds)
            if put.bad:
                raise RuntimeError(f"single registration: {put.bad} PUTs failed")
            locust = locust_mixed(node, size, args.seconds, RESULTS / "beyond_memory" / f"locust-{size}")
        finally:
            node.stop()
        batch_rate, _ = pg_scale.batches(url, size, args.batch_count, data_dir)
        memory = cgroup_memory()
    return SizeResult(size, store, zipf, uniform, put.rps, put.p99_ms, batch_rate, *locust, memory)


def store_bytes(url: str) -> int:
    query = (
        "SELECT sum(pg_table_size(c.oid) + pg_indexes_size(c.oid)) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'handles'::regclass"
    )
    out = subprocess.run(["psql", url, "-Atc", query], check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def report(disk: dict[str, float], results: list[SizeResult], limit: int) -> None:
    print(
        f"disk: {disk['reads_1']:,.0f} random 8 KiB reads/s one in flight (median {disk['ms_1']:.2f} ms), "
        f"{disk['reads_16']:,.0f}/s 16 in flight (median {disk['ms_16']:.2f} ms)"
    )
    base = results[0]
    print(
        "| identifiers | store : memory | Zipf req/s | ratio | p50 / p99 ms | disk reads each | uniform req/s "
        "| ratio | p99 ms | disk reads each | PUT/s | ratio | batch ids/s | ratio | Locust mixed req/s "
        "| failures | p99 ms |"
    )
    print("|---" * 17 + "|")
    for r in results:
        z, u = r.zipf, r.uniform
        print(
            f"| {r.size:,} | {r.store_bytes / limit:.1f} | {z.rps:,.0f} | {z.rps / base.zipf.rps:.2f} "
            f"| {z.p50_ms:.1f} / {z.p99_ms:.1f} | {z.disk_reads:.2f} | {u.rps:,.0f} | {u.rps / base.uniform.rps:.2f} "
            f"| {u.p99_ms:.1f} | {u.disk_reads:.2f} | {r.put_rps:,.0f} | {r.put_rps / base.put_rps:.2f} "
            f"| {r.batch_rate:,.0f} | {r.batch_rate / base.batch_rate:.2f} | {r.locust_rps:,.0f} "
            f"| {r.locust_failures} | {r.locust_p99_ms:.0f} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.beyond_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,100000000", help="stores bench.pg_scale --load filled")
    parser.add_argument("--memory", type=parse_bytes, default=parse_bytes("3GiB"), help="the cgroup's limit")
    parser.add_argument("--server-dir", type=Path, default=Path("/work/pgbench"))
    parser.add_argument("--seconds", type=int, default=30, help="each measured run")
    parser.add_argument("--warm", type=int, default=60, help="Zipf load before the resolution runs")
    parser.add_argument("--batch-count", type=int, default=100_000)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root: it makes a memory cgroup and drops the page cache")
    sizes = [int(s) for s in args.sizes.split(",")]
    pg = pg_scale.server(args.server_dir)
    urls = {size: pg.url.rsplit("/", 1)[0] + f"/{pg_scale.DATABASE}_{size}" for size in sizes}
    for size, url in urls.items():
        if asyncio.run(pg_scale.stored(url)) < size:
            raise SystemExit(f"the {size:,} store is not full: run python -m bench.pg_scale --load first")
    files = store_files(pg, urls[max(sizes)])
    pg.stop()
    drop_page_cache()
    one, ms_1 = random_read_rate(files, 1, 10)
    sixteen, ms_16 = random_read_rate(files, 16, 10)
    disk = {"reads_1": one, "ms_1": ms_1, "reads_16": sixteen, "ms_16": ms_16}
    pg.start()
    pg.wait_ready()
    with tempfile.TemporaryDirectory(prefix="idnode-beyond-") as tmp:
        results = [measure(pg, size, url, args, Path(tmp)) for size, url in urls.items()]
    report(disk, results, args.memory)
    print(f"memory limit {args.memory / (1 << 30):.1f} GiB; machine: {machine()}; revision {revision()}")
    record = {"disk": disk, "memory_limit": args.memory, "results": [asdict(r) for r in results]}
    record |= {"machine": machine(), "revision": revision(), "date": time.strftime("%Y-%m-%d %H:%M")}
    with open(RESULTS / "beyond_memory.json", "a") as out:
        out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
