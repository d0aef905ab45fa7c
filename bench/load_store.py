"""Fill a node's SQLite store with synthetic, realistic handle records, fast.

Everything goes through ``SqliteStore`` itself: the node's prefix handle is created as
``idnode serve`` creates it on first start, and the records are written through the bulk
import path (``import_rows``, what ``idnode import`` runs: one transaction per batch with
its audit row and progress marker), so the encoding, the keys and the tables kept beside
the records (per-prefix counts, daily registrations) are exactly what the node keeps.

Handle ``i`` is a pure function of ``i`` (``handle_for``), so drivers can pick handles
without reading the store back::

    IDNODE_ADMIN_SECRET=... python -m bench.load_store --data-dir /tmp/d --count 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from protocol import valuedata as vd
from protocol.identifiers import parse_handle, prefix_handle
from protocol.records import HS_ADMIN, URL, HandleRecord, HandleValue, encode_record
from registry.bootstrap import node_admin_record
from registry.identity import secrets
from registry.identity.sealing import KEY_FILE
from registry.sqlite.store import SqliteStore
from registry.store import AuditEntry, ImportMarker, Store

STORE_FILE = "idnode.sqlite3"  # the name resolver.server.serve() opens under --data-dir
NODE_PREFIX = "88.118"
ENTERPRISES = 1000  # enterprise codes 1..1000 under the node prefix
BASE_TIME = 1_764_201_600  # 2025-11-27T00:00:00Z: fixed, so bodies are reproducible
ADMIN_PERMISSIONS = vd.AdminRef.parse_permissions("011111110011")
ADMIN_INDEX = 300
BATCH = 10_000
_PRODUCTS = ("轴承座", "Bearing housing", "Gear shaft", "液压阀", "Sensor module", "Cable harness")


def _letters(n: int) -> str:
    """Four upper-case letters naming enterprise ``n`` (like the JXDY of JXDY2106023)."""
    out = ""
    for _ in range(4):
        n, r = divmod(n, 26)
        out += chr(ord("A") + r)
    return out


def handle_for(i: int, node_prefix: str = NODE_PREFIX) -> str:
    """The handle of synthetic record ``i`` (0-based), e.g. ``88.118.1/BAAA2106001-000001``."""
    enterprise = i % ENTERPRISES + 1
    serial = i // ENTERPRISES + 1
    return f"{node_prefix}.{enterprise}/{_letters(enterprise)}{2106000 + enterprise:07d}-{serial:06d}"


def record_for(i: int, node_prefix: str = NODE_PREFIX) -> HandleRecord:
    """Record ``i``: a URL, a product name and an HS_ADMIN for the enterprise prefix's admin."""
    text = handle_for(i, node_prefix)
    prefix, _, suffix = text.partition("/")
    url = f"https://trace.e{prefix.rpartition('.')[2]}.example.cn/p/{suffix}"
    when = BASE_TIME + i
    admin = vd.AdminRef(prefix_handle(prefix).text, ADMIN_INDEX, ADMIN_PERMISSIONS)
    return HandleRecord(
        text,
        (
            HandleValue(1, URL, url.encode(), timestamp=when),
            HandleValue(2, "productName", f"{_PRODUCTS[i % len(_PRODUCTS)]} {suffix}".encode(), timestamp=when),
            HandleValue(100, HS_ADMIN, vd.encode_admin(admin), timestamp=when),
        ),
    )


class RowMaker:
    """The stored rows ``(key, handle, encode_record(record_for(i)))`` of records
    ``start..stop-1`` at ~1 µs a row instead of ~34: records differ only in their serial and
    timestamp, so each of the 3,000 (enterprise, product) shapes is encoded once and patched.
    Checked against ``record_for`` for a sample of indexes when made; for stores of up to
    ``MAX_COUNT`` records (serials of six digits, timestamps of four bytes)."""

    MAX_COUNT = 999_999 * ENTERPRISES
    _SHAPES = ENTERPRISES * len(_PRODUCTS) // 2  # lcm(1000, 6): i % 3000 fixes enterprise and product

    def __init__(self, node_prefix: str = NODE_PREFIX) -> None:
        self.node_prefix = node_prefix
        self._shapes = [self._shape(t) for t in range(self._SHAPES)]
        for i in (0, 1, 2999, 3000, 123_456, 1_000_000, 77_777_777, self.MAX_COUNT - 1):
            if self.rows(i, i + 1) != [self._slow(i)]:
                raise AssertionError(f"RowMaker's row {i} differs from record_for's")

    def _slow(self, i: int) -> tuple[str, str, bytes]:
        record = record_for(i, self.node_prefix)
        return parse_handle(record.handle).key, record.handle, encode_record(record)

    def _shape(self, t: int) -> tuple[str, str, bytes, list[int], list[int], int, int]:
        key, handle, blob = self._slow(t)
        serial = f"-{t // ENTERPRISES + 1:06d}"
        stamp = b"\xce" + (BASE_TIME + t).to_bytes(4, "big")
        serials = [m.start() + 1 for m in re.finditer(re.escape(serial.encode()), blob)]
        stamps = [m.start() + 1 for m in re.finditer(re.escape(stamp), blob)]
        if len(serials) != 3 or len(stamps) != 3:
            raise AssertionError(f"shape {t}: {len(serials)} serials and {len(stamps)} timestamps found")
        return key, handle, blob, serials, stamps, key.rindex(serial) + 1, handle.rindex(serial) + 1

    def rows(self, start: int, stop: int) -> list[tuple[str, str, bytes]]:
        if not 0 <= start <= stop <= self.MAX_COUNT:
            raise ValueError(f"RowMaker makes records 0..{self.MAX_COUNT - 1}")
        out = []
        shapes, count = self._shapes, self._SHAPES
        for i in range(start, stop):
            key, handle, blob, serials, stamps, at_key, at_handle = shapes[i % count]
            serial = f"{i // ENTERPRISES + 1:06d}"
            digits = serial.encode()
            stamp = (BASE_TIME + i).to_bytes(4, "big")
            patched = bytearray(blob)
            for at in serials:
                patched[at : at + 6] = digits
            for at in stamps:
                patched[at : at + 4] = stamp
            key_i = key[:at_key] + serial + key[at_key + 6 :]
            out.append((key_i, handle[:at_handle] + serial + handle[at_handle + 6 :], bytes(patched)))
        return out


async def _ensure_prefix_handle(store: Store, node_prefix: str, admin_secret: str) -> bool:
    """Create ``0.NA/<node prefix>`` with the admin secret's hash; False when it already exists."""
    handle = prefix_handle(node_prefix)
    if await store.get(handle.key) is not None:
        return False
    digest = await asyncio.to_thread(secrets.hash_secret, admin_secret.encode())
    await store.create(handle.key, node_admin_record(node_prefix, digest, int(time.time())))
    return True


RecordFor = Callable[[int, str], HandleRecord]


async def _fill(store: Store, count: int, node_prefix: str, record_of: RecordFor = record_for) -> None:
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        stop = min(start + BATCH, count)
        rows = []
        for i in range(start, stop):
            record = record_of(i, node_prefix)
            rows.append((parse_handle(record.handle).key, record.handle, encode_record(record)))
        entry = AuditEntry(time.time(), "bench", "127.0.0.1", "import", rows[0][1])
        await store.import_rows(rows, entry, ImportMarker("bench.load_store", stop))
        elapsed = max(time.perf_counter() - started, 1e-9)
        rate = stop / elapsed
        filled = stop * 30 // count
        left = (count - stop) / rate
        print(
            f"\rload_store: [{'#' * filled}{'.' * (30 - filled)}] {stop:,}/{count:,} records "
            f"({rate:,.0f}/s, {left:,.0f} s left)   ",
            end="",
            file=sys.stderr,
            flush=True,
        )
    print(file=sys.stderr)


async def _load(path: Path, count: int, node_prefix: str, admin_secret: str, record_of: RecordFor) -> bool:
    # synchronous=NORMAL: a benchmark fixture need not survive power loss between batches.
    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    try:
        created = await _ensure_prefix_handle(store, node_prefix, admin_secret)
        await _fill(store, count, node_prefix, record_of)
        return created
    finally:
        await store.close()


def load(
    data_dir: Path,
    count: int,
    node_prefix: str = NODE_PREFIX,
    admin_secret: str | None = None,
    record_of: RecordFor = record_for,
) -> str | None:
    """Fill ``data_dir`` with ``count`` records (``record_of(i, node_prefix)``, by default
    ``record_for``); return the admin secret when one was generated."""
    path = data_dir / STORE_FILE
    generated = None if admin_secret else secrets.generate_secret()
    secret = admin_secret or generated
    assert secret is not None
    data_dir.mkdir(parents=True, exist_ok=True)
    secrets.use_key_file(data_dir / KEY_FILE)  # the node's default secret key: it seals the admin's secret
    started = time.perf_counter()
    if not asyncio.run(_load(path, count, node_prefix, secret, record_of)):
        generated = None  # the existing prefix handle keeps its secret
    elapsed = time.perf_counter() - started
    rate = count / max(elapsed, 1e-9)
    print(f"load_store: wrote {count:,} records in {elapsed:.1f} s ({rate:,.0f}/s) to {path}", file=sys.stderr)
    return generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load_store", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the node's --data-dir")
    parser.add_argument("--count", type=int, required=True, help="how many records to write")
    parser.add_argument("--node-prefix", default=NODE_PREFIX, help=f"the node's prefix (default {NODE_PREFIX})")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must not be negative")
    # Same variable the server reads, so `IDNODE_ADMIN_SECRET=... idnode serve` then just works.
    generated = load(args.data_dir, args.count, args.node_prefix, os.environ.get("IDNODE_ADMIN_SECRET") or None)
    if generated:
        print(f"load_store: admin secret for 300:0.NA/{args.node_prefix}: {generated}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
