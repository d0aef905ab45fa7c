"""The embedded store: SQLite in WAL mode (its threads are in ``registry.sqlite.writer``).

Writes go to one writer thread that commits whatever is queued together and answers only
after the commit, so an acknowledged write survives ``kill -9``. Reads run on a small
thread pool with one read-only connection per thread, so a read that has to go to disk
never stalls the event loop.

A batch of writes is one job: the records it touches are read with one query per 500
keys, the changes run in Python, and the results are written with ``executemany``
together with their audit rows and the per-prefix counters, inside the same commit. The
counts a job checks quotas against are read inside it too: the writer holds the database's
write lock (and the node's other workers wait on the file lock), so no one else can count
meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from protocol.errors import StoreUnavailable
from protocol.records import HandleRecord, decode_record
from registry import changeset, quota
from registry.datadir import StoreInUse, hold, prepare_directory, space_problem
from registry.sqlite.writer import Checkpointer, Writer, connect, create_private
from registry.store import (
    AuditEntry,
    ImportMarker,
    Outcome,
    PrefixStats,
    Publication,
    Store,
    StoredTemplate,
    Write,
    marker_name,
)


def _range(prefix: str) -> tuple[str, str]:
    # Keys under P are "P/..."; '0' is the code point right after '/'.
    return f"{prefix}/", f"{prefix}0"


_CHUNK = 500
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_INTERVAL_SECONDS = 1.0


def _probe(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('write_probe', ?)", (time.time(),))


def _select_many(conn: sqlite3.Connection, keys: list[str]) -> dict[str, HandleRecord]:
    found: dict[str, HandleRecord] = {}
    for n in range(0, len(keys), _CHUNK):
        chunk = keys[n : n + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for key, blob in conn.execute(f"SELECT key, record FROM handles WHERE key IN ({marks})", chunk):
            found[key] = decode_record(blob)
    return found


def _apply_job(
    conn: sqlite3.Connection, writes: Sequence[Write], atomic: bool, policy: quota.QuotaPolicy | None
) -> list[Outcome]:
    stored = _select_many(conn, list(dict.fromkeys(w.key for w in writes)))
    ledger = None if policy is None else _ledger(conn, policy, [w.key for w in writes], stored)
    changes = changeset.plan(stored, writes, atomic=atomic, ledger=ledger)
    _run(conn, changes)
    return changes.outcomes


def _ledger(
    conn: sqlite3.Connection, policy: quota.QuotaPolicy, keys: list[str], stored: dict[str, HandleRecord]
) -> quota.Ledger:
    """The quota counts the writes to ``keys`` are checked against, read in the writing transaction."""
    watch = policy.watch(keys, stored)
    if not watch:
        return quota.Ledger.of(policy)
    settings = _settings(conn, watch.every)
    limits = {p: policy.limits(p, settings.get(p)) for p in watch.every}
    needs = quota.needs(watch, limits)
    ledger = quota.Ledger.of(policy, limits)
    for prefix in needs.held:
        row = conn.execute("SELECT handles FROM prefix_counts WHERE prefix = ?", (prefix,)).fetchone()
        ledger.held[prefix] = 0 if row is None else int(row[0])
    for prefix in needs.today:
        row = conn.execute(
            "SELECT registrations FROM daily_registrations WHERE prefix = ? AND day = ?", (prefix, ledger.day)
        ).fetchone()
        ledger.today[prefix] = 0 if row is None else int(row[0])
    for prefix in needs.derived:
        ledger.derived[prefix] = _derived_count(conn, prefix)
    return ledger


def _derived_count(conn: sqlite3.Connection, prefix: str) -> int:
    # Prefix handles of prefixes derived from P sort between "0.NA/P." and "0.NA/P/".
    lo, hi = f"{quota.NA_KEY_START}{prefix}.", f"{quota.NA_KEY_START}{prefix}/"
    return int(conn.execute("SELECT count(*) FROM handles WHERE key > ? AND key < ?", (lo, hi)).fetchone()[0])


_SETTING_COLUMNS = "prefix, identifiers, registrations_per_day, resolutions_per_day, prefixes"


def _settings(conn: sqlite3.Connection, prefixes: Sequence[str] | None) -> dict[str, quota.QuotaSetting]:
    if prefixes is None:
        rows = conn.execute(f"SELECT {_SETTING_COLUMNS} FROM quotas ORDER BY prefix")
    else:
        marks = ",".join("?" * len(prefixes))
        rows = conn.execute(f"SELECT {_SETTING_COLUMNS} FROM quotas WHERE prefix IN ({marks})", list(prefixes))
    return {prefix: quota.QuotaSetting(*limits) for prefix, *limits in rows}


def _refused(conn: sqlite3.Connection, day: str, refusals: dict[tuple[str, str], int]) -> None:
    conn.executemany(
        "INSERT INTO quota_refusals (prefix, day, kind, refusals) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (prefix, day, kind) DO UPDATE SET refusals = refusals + excluded.refusals",
        [(prefix, day, kind, n) for (prefix, kind), n in refusals.items()],
    )


def _charge_job(conn: sqlite3.Connection, identity: str, prefix: str, limit: int, day: str) -> bool:
    counted = conn.execute(
        "INSERT INTO daily_resolutions (identity, day, prefix, resolutions) VALUES (?, ?, ?, 1) "
        "ON CONFLICT (identity, day) DO UPDATE SET resolutions = resolutions + 1 WHERE resolutions < ?",
        (identity, day, prefix, limit),
    ).rowcount
    if not counted:
        _refused(conn, day, {(prefix, quota.RESOLUTIONS): 1})
    return bool(counted)


_UPSERT = "INSERT OR REPLACE INTO handles (key, handle, record) VALUES (?, ?, ?)"


def _run(conn: sqlite3.Connection, changes: changeset.ChangeSet) -> None:
    conn.executemany(_UPSERT, changes.upserts)
    conn.executemany("DELETE FROM handles WHERE key = ?", [(k,) for k in changes.deletes])
    _run_tables(conn, changes)


def _run_tables(conn: sqlite3.Connection, changes: changeset.ChangeSet) -> None:
    """Everything beside the records themselves: counts, registrations, outbox, audit."""
    conn.executemany(OUTBOX_BUMP, [(p,) for p in changes.outbox])
    conn.executemany(
        "INSERT INTO prefix_counts (prefix, handles) VALUES (?, ?) "
        "ON CONFLICT (prefix) DO UPDATE SET handles = handles + excluded.handles",
        changes.counts.items(),
    )
    conn.executemany(
        "INSERT INTO daily_registrations (prefix, day, registrations) VALUES (?, ?, ?) "
        "ON CONFLICT (prefix, day) DO UPDATE SET registrations = registrations + excluded.registrations",
        [(p, changes.day, n) for p, n in changes.created.items()],
    )
    _refused(conn, changes.day, changes.refusals)
    _audit(conn, changes.audit)


# One sequence for the whole outbox, so a reader can ask for what changed after what it saw.
OUTBOX_BUMP = (
    "INSERT INTO prefix_outbox (prefix, seq) VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM prefix_outbox)) "
    "ON CONFLICT (prefix) DO UPDATE SET seq = excluded.seq"
)


def _existing(conn: sqlite3.Connection, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for n in range(0, len(keys), _CHUNK):
        chunk = keys[n : n + _CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(k for (k,) in conn.execute(f"SELECT key FROM handles WHERE key IN ({marks})", chunk))
    return found


def _import_job(
    conn: sqlite3.Connection, rows: Sequence[tuple[str, str, bytes]], entry: AuditEntry, marker: ImportMarker
) -> int:
    existed = _existing(conn, [r[0] for r in rows])
    conn.executemany(_UPSERT, rows)
    changes = changeset.imported(rows, {r[0] for r in rows} - existed, entry)
    _run_tables(conn, changes)
    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (marker.name, marker.items))
    return len(changes.inserts)


def _audit(conn: sqlite3.Connection, rows: Sequence[changeset.AuditRow]) -> None:
    conn.executemany(
        "INSERT INTO audit (time, prefix, identity, address, operation, result, message, handle, more) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


class SqliteStore(Store):
    """SQLite-backed store for one node process."""

    def __init__(
        self,
        path: Path,
        *,
        readers: int = 4,
        synchronous: str = "FULL",
        threaded_reads: bool = True,
        min_free_bytes: int = 0,
        wal_max_bytes: int = 0,
    ) -> None:
        super().__init__()
        self.path = path
        self.min_free_bytes = min_free_bytes
        # threaded_reads=False reads on the event loop itself; kept only so the benchmark can
        # compare the two (bench/read_modes.py): a cold read would then stall every request.
        self._threaded_reads = threaded_reads
        self._writer = Writer(path, synchronous, min_free_bytes=min_free_bytes, wal_max_bytes=wal_max_bytes)
        self._checkpointer = Checkpointer(path, wal_max_bytes=wal_max_bytes)
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="idnode-sqlite-reader")
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._probed = -PROBE_INTERVAL_SECONDS
        self._in_use: int | None = None

    async def open(self) -> None:
        try:
            prepare_directory(self.path.parent)
            self._in_use = hold(self.path, exclusive=False)
            create_private(self.path)
        except StoreInUse as exc:
            raise StoreUnavailable(f"cannot open store: {exc}") from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot open store {self.path}: {exc.strerror}") from None
        self._writer.start()
        await asyncio.get_running_loop().run_in_executor(None, self._writer.ready.wait)
        if self._writer.failure is not None:
            raise StoreUnavailable(f"cannot open store {self.path}: {self._writer.failure}")
        self._checkpointer.start()

    async def close(self) -> None:
        self._writer.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._checkpointer.stopping.set()
        if self._checkpointer.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, self._checkpointer.join)
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
        if self._in_use is not None:  # last: the store is closed only when every connection is
            os.close(self._in_use)
            self._in_use = None

    async def write_problem(self) -> str | None:
        """Why writes fail now (read-only or full data directory, a failed write), or None.

        A small write (it joins the next group commit) tries the disk, at most once per
        PROBE_INTERVAL_SECONDS: each worker has its own writer, and one that has not
        written lately would otherwise not know that another one's writes fail. After a
        failure the same probe turns the answer back to None once writes succeed, without
        waiting for a client to write.
        """
        problem = space_problem(self.path.parent, self.min_free_bytes)
        if problem is not None:
            return problem
        now = time.monotonic()
        if now - self._probed < PROBE_INTERVAL_SECONDS:
            return self._writer.write_failure
        self._probed = now
        try:
            await asyncio.wait_for(self._writer.submit(_probe), PROBE_TIMEOUT_SECONDS)
        except StoreUnavailable as exc:
            return exc.message
        except TimeoutError:
            return f"a store write took longer than {PROBE_TIMEOUT_SECONDS} s"
        return self._writer.write_failure

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def run() -> Any:
            try:
                return fn(self._reader())
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"store read failed: {exc}") from exc

        if not self._threaded_reads:
            return run()
        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    # Records --------------------------------------------------------------------------

    async def get(self, key: str) -> HandleRecord | None:
        def read(conn: sqlite3.Connection) -> HandleRecord | None:
            row = conn.execute("SELECT record FROM handles WHERE key = ?", (key,)).fetchone()
            return None if row is None else decode_record(row[0])

        result: HandleRecord | None = await self._read(read)
        return result

    async def get_many(self, keys: Iterable[str], *, primary: bool = False) -> dict[str, HandleRecord]:
        wanted = list(dict.fromkeys(keys))
        result: dict[str, HandleRecord] = await self._read(lambda conn: _select_many(conn, wanted))
        return result

    async def _apply_many(self, writes: Sequence[Write], *, atomic: bool) -> list[Outcome]:
        if not writes:
            return []
        policy = self.quotas
        result: list[Outcome] = await self._writer.submit(lambda conn: _apply_job(conn, writes, atomic, policy))
        return result

    # Bulk import and export ------------------------------------------------------------

    async def import_rows(self, rows: Sequence[tuple[str, str, bytes]], entry: AuditEntry, marker: ImportMarker) -> int:
        result: int = await self._writer.submit(lambda conn: _import_job(conn, rows, entry, marker))
        return result

    async def note(self, name: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT value FROM meta WHERE name = ?", (f"note:{name}",)).fetchone()
            return None if row is None else str(row[0])

        result: str | None = await self._read(read)
        return result

    async def set_note(self, name: str, value: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (f"note:{name}", value))

        await self._writer.submit(work)

    async def import_progress(self, source: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value FROM meta WHERE name = ?", (marker_name(source),)).fetchone()
            return 0 if row is None else int(row[0])

        result: int = await self._read(read)
        return result

    async def export_after(self, prefix: str | None, after: str | None, limit: int) -> list[tuple[str, HandleRecord]]:
        lo, hi = _range(prefix) if prefix is not None else ("", "\U0010ffff")
        start, op = (after, ">") if after is not None and after >= lo else (lo, ">=")

        def read(conn: sqlite3.Connection) -> list[tuple[str, HandleRecord]]:
            rows = conn.execute(
                f"SELECT key, record FROM handles WHERE key {op} ? AND key < ? ORDER BY key LIMIT ?", (start, hi, limit)
            )
            return [(k, decode_record(b)) for k, b in rows]

        result: list[tuple[str, HandleRecord]] = await self._read(read)
        return result

    # Publication outbox --------------------------------------------------------------

    async def prefix_outbox(self, after: int = 0) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(conn.execute("SELECT prefix, seq FROM prefix_outbox WHERE seq > ? ORDER BY seq", (after,)))

        result: dict[str, int] = await self._read(read)
        return result

    async def touch_prefix(self, prefix: str) -> None:
        await self._writer.submit(lambda conn: conn.execute(OUTBOX_BUMP, (prefix,)))

    async def publications(self) -> list[Publication]:
        def read(conn: sqlite3.Connection) -> list[Publication]:
            rows = conn.execute(
                "SELECT prefix, upstream, seq, state, attempts, error, updated FROM publications ORDER BY prefix"
            )
            return [Publication(*row) for row in rows]

        result: list[Publication] = await self._read(read)
        return result

    async def record_publication(self, publication: Publication) -> None:
        p = publication
        await self._writer.submit(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO publications (prefix, upstream, seq, state, attempts, error, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (p.prefix, p.upstream, p.seq, p.state, p.attempts, p.error, p.updated),
            )
        )

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        rows = changeset.audit_rows([(e, None) for e in entries])
        await self._writer.submit(lambda conn: _audit(conn, rows))

    async def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        lo, hi = _range(prefix)

        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT handle FROM handles WHERE key >= ? AND key < ? ORDER BY key LIMIT ? OFFSET ?",
                (lo, hi, -1 if limit is None else limit, offset),
            )
            return [r[0] for r in rows]

        result: list[str] = await self._read(read)
        return result

    async def list_after(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, str]]:
        lo, hi = _range(prefix)

        def read(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            if after is not None and after >= lo:
                query, start = "SELECT key, handle FROM handles WHERE key > ? AND key < ? ORDER BY key LIMIT ?", after
            else:
                query, start = "SELECT key, handle FROM handles WHERE key >= ? AND key < ? ORDER BY key LIMIT ?", lo
            return [(k, h) for k, h in conn.execute(query, (start, hi, limit))]

        result: list[tuple[str, str]] = await self._read(read)
        return result

    async def count_handles(self, prefix: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT handles FROM prefix_counts WHERE prefix = ?", (prefix,)).fetchone()
            return 0 if row is None else int(row[0])

        result: int = await self._read(read)
        return result

    # Audit and statistics -------------------------------------------------------------

    async def audit_entries(self, prefixes: Sequence[str] | None, since: float, limit: int) -> list[AuditEntry]:
        where, args = _under("prefix", prefixes)

        def read(conn: sqlite3.Connection) -> list[AuditEntry]:
            rows = conn.execute(
                "SELECT time, identity, address, operation, handle, result, message, more FROM audit "
                f"WHERE time >= ? AND ({where}) ORDER BY time, id LIMIT ?",
                (since, *args, limit),
            )
            entries: list[AuditEntry] = []
            for *fields, more in rows:
                entries.extend(changeset.expand_audit(fields, more))
                if len(entries) >= limit:
                    break
            return entries[:limit]

        result: list[AuditEntry] = await self._read(read)
        return result

    async def stats(self, prefixes: Sequence[str] | None) -> list[PrefixStats]:
        where, args = _under("prefix", prefixes)

        def read(conn: sqlite3.Connection) -> list[PrefixStats]:
            counts = conn.execute(f"SELECT prefix, handles FROM prefix_counts WHERE {where} ORDER BY prefix", args)
            found = {p: PrefixStats(p, n) for p, n in counts if p != "0.NA"}
            daily = conn.execute(
                f"SELECT prefix, day, registrations FROM daily_registrations WHERE {where} ORDER BY prefix, day", args
            )
            for prefix, day, n in daily:
                if prefix in found:
                    found[prefix].registrations_per_day[day] = n
            refused = conn.execute(
                f"SELECT prefix, day, kind, refusals FROM quota_refusals WHERE {where} ORDER BY prefix, day, kind", args
            )
            for prefix, day, kind, n in refused:  # a prefix refused a sub-prefix may hold no identifier
                found.setdefault(prefix, PrefixStats(prefix, 0)).refusals_per_day.setdefault(day, {})[kind] = n
            return sorted(found.values(), key=lambda s: s.prefix)

        result: list[PrefixStats] = await self._read(read)
        return result

    # Quotas ---------------------------------------------------------------------------

    async def quota_settings(self, prefixes: Sequence[str] | None) -> dict[str, quota.QuotaSetting]:
        if prefixes is not None and not prefixes:
            return {}
        wanted = None if prefixes is None else list(prefixes)
        result: dict[str, quota.QuotaSetting] = await self._read(lambda conn: _settings(conn, wanted))
        return result

    async def set_quota(self, prefix: str, setting: quota.QuotaSetting, audit: AuditEntry) -> None:
        def work(conn: sqlite3.Connection) -> None:
            if setting.empty:
                conn.execute("DELETE FROM quotas WHERE prefix = ?", (prefix,))
            else:
                conn.execute(
                    f"INSERT OR REPLACE INTO quotas ({_SETTING_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                    (prefix, *setting.as_row()),
                )
            _audit(conn, changeset.audit_rows([(audit, None)]))

        await self._writer.submit(work)

    async def charge_resolution(self, identity: str, prefix: str, limit: int, day: str) -> bool:
        result: bool = await self._writer.submit(lambda conn: _charge_job(conn, identity, prefix, limit, day))
        return result

    async def quota_usage(self, prefix: str, day: str) -> quota.QuotaUsage:
        def read(conn: sqlite3.Connection) -> quota.QuotaUsage:
            held = conn.execute("SELECT handles FROM prefix_counts WHERE prefix = ?", (prefix,)).fetchone()
            registered = conn.execute(
                "SELECT registrations FROM daily_registrations WHERE prefix = ? AND day = ?", (prefix, day)
            ).fetchone()
            resolutions = conn.execute(
                "SELECT identity, resolutions FROM daily_resolutions WHERE prefix = ? AND day = ? ORDER BY identity",
                (prefix, day),
            )
            refusals = conn.execute(
                "SELECT kind, refusals FROM quota_refusals WHERE prefix = ? AND day = ? ORDER BY kind", (prefix, day)
            )
            return quota.QuotaUsage(
                identifiers=0 if held is None else int(held[0]),
                registrations=0 if registered is None else int(registered[0]),
                prefixes=_derived_count(conn, prefix),
                resolutions={str(i): int(n) for i, n in resolutions},
                refusals={str(k): int(n) for k, n in refusals},
            )

        result: quota.QuotaUsage = await self._read(read)
        return result

    # Templates ------------------------------------------------------------------------

    async def put_template(self, template: StoredTemplate, audit: AuditEntry) -> bool:
        t = template

        def work(conn: sqlite3.Connection) -> bool:
            key = (t.prefix, t.name, t.version)
            existed = conn.execute(
                "SELECT 1 FROM templates WHERE prefix = ? AND name = ? AND version = ?", key
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO templates (prefix, name, version, body, updated) VALUES (?, ?, ?, ?, ?)",
                (*key, t.body, t.updated),
            )
            _audit(conn, changeset.audit_rows([(audit, None)]))
            return existed is None

        result: bool = await self._writer.submit(work)
        return result

    async def get_template(self, prefix: str, name: str, version: str | None = None) -> StoredTemplate | None:
        def read(conn: sqlite3.Connection) -> StoredTemplate | None:
            query = "SELECT prefix, name, version, body, updated FROM templates WHERE prefix = ? AND name = ?"
            if version is None:
                row = conn.execute(query + " ORDER BY updated DESC, version DESC LIMIT 1", (prefix, name)).fetchone()
            else:
                row = conn.execute(query + " AND version = ?", (prefix, name, version)).fetchone()
            return None if row is None else StoredTemplate(*row)

        result: StoredTemplate | None = await self._read(read)
        return result

    async def list_templates(self, prefix: str) -> list[StoredTemplate]:
        def read(conn: sqlite3.Connection) -> list[StoredTemplate]:
            rows = conn.execute(
                "SELECT prefix, name, version, body, updated FROM templates WHERE prefix = ? ORDER BY name, version",
                (prefix,),
            )
            return [StoredTemplate(*row) for row in rows]

        result: list[StoredTemplate] = await self._read(read)
        return result

    async def delete_template(self, prefix: str, name: str, version: str | None, audit: AuditEntry) -> int:
        def work(conn: sqlite3.Connection) -> int:
            if version is None:
                cur = conn.execute("DELETE FROM templates WHERE prefix = ? AND name = ?", (prefix, name))
            else:
                cur = conn.execute(
                    "DELETE FROM templates WHERE prefix = ? AND name = ? AND version = ?", (prefix, name, version)
                )
            _audit(conn, changeset.audit_rows([(audit, None)]))
            return cur.rowcount

        result: int = await self._writer.submit(work)
        return result

    # SNMS's dated login -------------------------------------------------------------

    async def login_digest(self, seckey: str) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT digest FROM login_digests WHERE seckey = ?", (seckey,)).fetchone()
            return None if row is None else str(row[0])

        result: str | None = await self._read(read)
        return result

    async def put_login_digest(self, seckey: str, digest: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO login_digests (seckey, digest) VALUES (?, ?)", (seckey, digest))

        await self._writer.submit(work)

    async def login_digests(self) -> list[tuple[str, str]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return [(str(a), str(b)) for a, b in conn.execute("SELECT seckey, digest FROM login_digests")]

        result: list[tuple[str, str]] = await self._read(read)
        return result

    async def replace_login_digests(self, rows: Sequence[tuple[str, str]], drop: Sequence[str]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM login_digests WHERE seckey = ?", [(name,) for name in drop])
            conn.executemany("INSERT OR REPLACE INTO login_digests (seckey, digest) VALUES (?, ?)", rows)

        await self._writer.submit(work)


def _under(column: str, prefixes: Sequence[str] | None) -> tuple[str, list[str]]:
    """SQL condition: ``column`` is one of ``prefixes`` or a prefix derived from one (any, when None)."""
    if prefixes is None:
        return "1", []
    if not prefixes:
        return "0", []
    # Prefixes under P sort between "P." and "P/" ('/' follows '.').
    clauses = [f"({column} = ? OR ({column} > ? AND {column} < ?))" for _ in prefixes]
    args = [a for p in prefixes for a in (p, p + ".", p + "/")]
    return " OR ".join(clauses), args
