"""How close ``idnode import`` comes to a raw COPY of the same rows into PostgreSQL.

Generates N records (``bench.load_store.record_for``), writes them as a JSON-lines file, then
measures (a) ``idnode import`` of the file into an empty store (a new database) and (b) a raw
binary COPY (asyncpg ``copy_records_to_table``) of the same rows, already encoded (same key,
handle and record bytes), into the ``handles`` table of a second new database. Prints rows/s
for both and the ratio (a)/(b); the target is 0.5 or more::

    python -m bench.import_copy postgresql://postgres@127.0.0.1:5432/test --count 1000000

The URL names a database on the server to test; the two fresh ones are created beside it
(and dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bench.load_store import record_for
from protocol.identifiers import parse_handle
from protocol.records import encode_record
from registry import bulk
from registry.postgres import PostgresStore, stored_handle

COPY_CHUNK = 10_000


def _write_file(path: Path, count: int) -> None:
    with open(path, "wb") as fh:
        for start in range(0, count, COPY_CHUNK):
            records = (record_for(i) for i in range(start, min(start + COPY_CHUNK, count)))
            fh.write(bulk.encode_items(records, "jsonl"))


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


def _import(url: str, path: Path, jobs: int | None) -> float:
    cmd = [sys.executable, "-m", "resolver.cli", "import", str(path), "--store", url]
    cmd += [] if jobs is None else ["--jobs", str(jobs)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, check=False)
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


async def _main(server: str, count: int, jobs: int | None) -> None:
    imported_url, copied_url = await _create(server), await _create(server)
    try:
        await _schema(imported_url)
        await _schema(copied_url)
        with tempfile.TemporaryDirectory(prefix="idnode-bench-") as tmp:
            path = Path(tmp) / "records.jsonl"
            _write_file(path, count)
            print(f"{count:,} records, {path.stat().st_size / 1e6:,.1f} MB of JSON lines", file=sys.stderr)
            imported = await asyncio.to_thread(_import, imported_url, path, jobs)
        copied = await _copy(copied_url, _rows(count))
    finally:
        await _drop(server, imported_url)
        await _drop(server, copied_url)
    a, b = count / imported, count / copied
    print(f"(a) idnode import: {imported:.2f} s, {a:,.0f} rows/s")
    print(f"(b) raw COPY:      {copied:.2f} s, {b:,.0f} rows/s")
    print(f"ratio (a)/(b): {a / b:.2f} (target >= 0.5)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_copy", description=__doc__.splitlines()[0])
    parser.add_argument("server", help="postgresql://USER@HOST:PORT/DB: the new databases are made beside DB")
    parser.add_argument("--count", type=int, default=50_000, help="records (default 50000)")
    parser.add_argument("--jobs", type=int, help="idnode import --jobs (default: its own, the cores)")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.server, args.count, args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
