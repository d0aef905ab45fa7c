"""How close ``idnode import`` comes to a raw COPY of the same rows into PostgreSQL.

Generates N records (``bench.load_store.record_for``), writes them as a JSON-lines file and
as a msgpack stream, then measures, in alternating rounds, (a) the whole ``idnode import``
command (a subprocess: start-up, checking and writing) of each file into an empty store (a new
database each time) and (b) a raw binary COPY (asyncpg ``copy_records_to_table``) of the same
rows, already encoded (same key, handle and record bytes), in chunks as large as the import's,
into the ``handles`` table of another new database. Prints rows/s of each run, the ratio
(a)/(b) of each format within each round and the spread over the rounds; the target is 0.5
or more::

    python -m bench.import_copy postgresql://postgres@127.0.0.1:5432/test --count 200000 --rounds 3

The URL names a database on the server to test; the two fresh ones are created beside it
(and dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.load_store import record_for
from protocol.identifiers import parse_handle
from protocol.records import encode_record
from registry.bulk import items as bulk
from registry.postgres.store import PostgresStore
from registry.postgres.writes import stored_handle

COPY_CHUNK = 50_000  # the import's default chunk
FORMATS = {"jsonl": "records.jsonl", "msgpack": "records.msgpack"}


def _write_file(path: Path, count: int, fmt: str) -> None:
    with open(path, "wb") as fh:
        for start in range(0, count, COPY_CHUNK):
            records = (record_for(i) for i in range(start, min(start + COPY_CHUNK, count)))
            fh.write(bulk.encode_items(records, fmt))


def _rows(count: int) -> list[tuple[str, str | None, bytes]]:
    rows = []
    for i in range(count):
        record = record_for(i)
        key = parse_handle(record.handle).key
        rows.append((key, stored_handle(key, record.handle), encode_record(record)))
    return rows


async def _create(server: str) -> str:
    name = f"idnode_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return server.rsplit("/", 1)[0] + "/" + name


async def _drop(server: str, url: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    finally:
        await conn.close()


async def _schema(url: str) -> None:
    store = PostgresStore(url)  # the same tables, partitions and indexes as the import's store
    await store.open()
    await store.close()


def _command(url: str, path: Path, jobs: int | None) -> list[str]:
    cmd = [sys.executable, "-m", "resolver.cli", "import", str(path), "--store", url]
    return cmd + ([] if jobs is None else ["--jobs", str(jobs)])


def _import(url: str, path: Path, jobs: int | None) -> float:
    started = time.perf_counter()
    done = subprocess.run(_command(url, path, jobs), capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"idnode import failed: {done.stderr.decode()}")
    print(f"  {done.stderr.decode().strip()}", file=sys.stderr)
    return elapsed


async def _copy(url: str, rows: list[tuple[str, str | None, bytes]]) -> float:
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        for start in range(0, len(rows), COPY_CHUNK):
            async with conn.transaction():
                chunk = rows[start : start + COPY_CHUNK]
                await conn.copy_records_to_table("handles", records=chunk, columns=("key", "handle", "record"))
        return time.perf_counter() - started
    finally:
        await conn.close()


async def _fresh(server: str, run: Any) -> float:
    """``run(url)``'s seconds against a new database of the store's schema, dropped after."""
    url = await _create(server)
    try:
        await _schema(url)
        return float(await run(url))
    finally:
        await _drop(server, url)


async def _round(server: str, files: dict[str, Path], rows: list[Any], jobs: int | None) -> dict[str, float]:
    """rows/s of a raw COPY, then of an import of each format, one after the other."""
    count = len(rows)
    rates = {"copy": count / await _fresh(server, lambda url: _copy(url, rows))}
    for fmt, path in files.items():
        seconds = await _fresh(server, lambda url, path=path: asyncio.to_thread(_import, url, path, jobs))
        rates[fmt] = count / seconds
    return rates


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, load {os.getloadavg()[0]:.1f}"


async def _main(server: str, count: int, jobs: int | None, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="idnode-bench-") as tmp:
        files = {fmt: Path(tmp) / name for fmt, name in FORMATS.items()}
        for fmt, path in files.items():
            _write_file(path, count, fmt)
            print(f"{count:,} records, {path.stat().st_size / 1e6:,.1f} MB of {fmt}", file=sys.stderr)
        rows = _rows(count)
        print(f"command: {' '.join(_command('URL', files['jsonl'], jobs))}")
        print(f"machine: {_machine()}, Python {platform.python_version()}")
        ratios: dict[str, list[float]] = {fmt: [] for fmt in files}
        for n in range(1, rounds + 1):
            rates = await _round(server, files, rows, jobs)
            line = ", ".join(f"{fmt} {rate:,.0f} rows/s" for fmt, rate in rates.items())
            for fmt in files:
                ratios[fmt].append(rates[fmt] / rates["copy"])
            shown = ", ".join(f"{fmt} {ratios[fmt][-1]:.2f}" for fmt in files)
            print(f"round {n}: {line}; ratio (import/raw) {shown}", flush=True)
    for fmt, values in ratios.items():
        median = sorted(values)[len(values) // 2]
        print(f"ratio {fmt}: median {median:.2f}, min {min(values):.2f}, max {max(values):.2f} (target >= 0.5)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_copy", description=__doc__.splitlines()[0])
    parser.add_argument("server", help="postgresql://USER@HOST:PORT/DB: the new databases are made beside DB")
    parser.add_argument("--count", type=int, default=200_000, help="records (default 200000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--jobs", type=int, help="idnode import --jobs (default: its own, the cores)")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.server, args.count, args.jobs, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
