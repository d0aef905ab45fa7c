"""The production store: PostgreSQL through asyncpg, a pool per worker process.

Writes run the shared rules of ``registry.changeset`` in one transaction and are answered
after COMMIT (``synchronous_commit`` as the server has it, on by default). Concurrency
between workers and nodes is the database's: the records a batch touches are locked
(``FOR UPDATE``) and new ones inserted, both in key order, so batches cannot deadlock on
them; a record created meanwhile by someone else makes the insert find a conflict, and
the whole transaction runs again against what is stored now. A connection the server
closed is replaced; what ran on it runs again when it cannot have been committed.

A mirror site's node opens its store as a ``standby``: a hot standby of the primary's database,
which it only reads. It creates nothing (the schema must be there, replicated), runs no
maintenance, and refuses every write itself with ``MirrorReadOnly`` rather than let the
database refuse it; ``standby_status`` says whether the database is still in recovery, or was
promoted (deploy/MIRROR.md).

Reads may go to streaming replicas (``replicas``), routed by ``registry.postgres.replicas``:
a worker reads what it wrote itself from the primary for a while, since a replica may not
have replayed it yet; a record a replica lacks is looked for on the primary (another
worker or node may just have created it); a replica that fails is skipped for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import asyncpg

from protocol.errors import MirrorReadOnly, StoreUnavailable
from protocol.records import HandleRecord, decode_record
from registry import changeset, quota
from registry.postgres import schema
from registry.postgres import writes as txn
from registry.postgres.replicas import REPLICA_RETRY_SECONDS, ReadRouting
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
    redact_url,
)

log = logging.getLogger("registry.postgres")

WRITE_ATTEMPTS = 5
MAINTENANCE_SECONDS = 3600.0
PROBE_INTERVAL_SECONDS = 1.0
# Lost races, retried: a concurrent insert of the same new key, a deadlock PostgreSQL broke.
_RETRY = (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# A connection the server closed (restart, pg_terminate_backend, crash), found out when it is
# used: asyncpg notices the socket's end only when it next reads, so a pooled connection can
# look alive for one more query, which then fails with one of these.
_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.InternalClientError,
    ConnectionError,
)
# The database is unreachable, restarting, read-only or out of space: the request may be retried.
_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)

# A nested loop of index lookups: each key is routed to its partition at run time, where
# "key = ANY($1)" would probe every partition's index for every key.
_GET_MANY = (
    "SELECT h.key, h.record FROM unnest($1::text[]) AS u(k), "
    "LATERAL (SELECT key, record FROM handles WHERE key = u.k OFFSET 0) h"
)
# One key (most misses when the load is light): the plain lookup, pruned to one partition
# before execution; the join above sets up every partition's scan for each run (measured on
# 50M records: 146 against 385 us a query).
_GET_ONE = "SELECT key, record FROM handles WHERE key = $1"
_LOCK_MANY = (
    "SELECT h.key, h.record FROM unnest($1::text[]) AS u(k), "
    "LATERAL (SELECT key, record FROM handles WHERE key = u.k OFFSET 0 FOR UPDATE) h"
)


class _Lost(StoreUnavailable):
    """The connection broke under a statement: whatever was not committed was rolled back."""


class PostgresStore(Store):
    """PostgreSQL-backed store; any number of worker processes and nodes may share one database."""

    def __init__(
        self,
        url: str,
        *,
        replicas: Sequence[str] = (),
        pool_size: int = 8,
        partitions: int = 64,
        audit_retention_days: int = 0,
        timeout: float = 5.0,
        standby: str | None = None,
    ) -> None:
        """``standby``: open the database read-only, as a mirror site's; the refusal every write gets."""
        super().__init__()
        self.standby = standby
        self.url = url
        self.replica_urls = tuple(replicas)
        self.pool_size = pool_size
        self.partitions = partitions
        self.audit_retention_days = audit_retention_days
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._replicas: list[asyncpg.Pool] = []
        self._routing = ReadRouting(len(self.replica_urls))
        self._maintenance: asyncio.Task[None] | None = None
        self._probed = -PROBE_INTERVAL_SECONDS
        self._problem: str | None = None
        self._promoted = False

    # Connections ----------------------------------------------------------------------

    async def _connect(self, url: str, *, min_size: int = 1) -> asyncpg.Pool:
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=self.pool_size,
                timeout=self.timeout,
                command_timeout=max(30.0, self.timeout),
                # Every query is prepared once per connection; generic plans keep the batch
                # lookups nested loops with run-time partition routing (bench/RESULTS.md).
                server_settings={"plan_cache_mode": "force_generic_plan", "application_name": "idnode"},
            )
        except (*_UNAVAILABLE, ValueError) as exc:
            raise StoreUnavailable(f"cannot open store {redact_url(url)}: {_reason(exc)}") from None
        return pool

    async def open(self) -> None:
        self._pool = await self._connect(self.url)
        if self.standby is not None:
            try:
                async with self._primary() as conn:
                    await schema.check(conn, redact_url(self.url))
                    self.standby_status = await self._standby_state(conn)
                    log.info("store %s opened read-only (mirror site): %s", redact_url(self.url), self.standby_status)
            except BaseException:
                await self.close()
                raise
            return
        try:
            async with self._primary() as conn:
                await _refuse_standby(conn, self.url)
                await schema.migrate(conn, self.partitions)
                await schema.maintain(conn, self.audit_retention_days)
            # Replicas only spare the primary: one that is down (rebuilt, restarting) must not
            # stop the node. Their pools connect when first used; a failing one is skipped.
            self._replicas = [await self._connect(url, min_size=0) for url in self.replica_urls]
        except BaseException:
            await self.close()
            raise
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain_forever())

    async def close(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        for pool in [*self._replicas, *([self._pool] if self._pool else [])]:
            with contextlib.suppress(*_UNAVAILABLE):
                await asyncio.wait_for(pool.close(), self.timeout)
        self._replicas, self._pool = [], None

    @contextlib.asynccontextmanager
    async def _using(self, pool: asyncpg.Pool | None) -> AsyncIterator[asyncpg.Connection]:
        if pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with pool.acquire(timeout=self.timeout) as conn:
                try:
                    yield conn
                except _LOST:
                    # Its idle siblings are likely gone too (a restart ends them all): each is
                    # replaced when next acquired, rather than failing one request apiece.
                    with contextlib.suppress(asyncpg.InterfaceError):  # the pool may have let it go already
                        conn.terminate()
                    await pool.expire_connections()
                    raise
        except _RETRY:
            raise
        except _LOST as exc:
            raise _Lost(f"the store is unavailable: {_reason(exc)}") from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"the store is unavailable: {_reason(exc)}") from exc

    def _primary(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        return self._using(self._pool)

    async def _read(self, query: str, *args: Any, keys: Iterable[str] = (), fetch: str = "fetch") -> Any:
        """Run a read on a replica when there is one and no key was written here lately."""
        return (await self._read_from(query, *args, keys=keys, fetch=fetch))[0]

    async def _read_from(self, query: str, *args: Any, keys: Iterable[str] = (), fetch: str = "fetch") -> Any:
        """``_read``, and whether a replica answered."""
        n = self._routing.pick(keys)
        if n is not None:
            try:
                async with self._using(self._replicas[n]) as conn:
                    return await getattr(conn, fetch)(query, *args), True
            except StoreUnavailable as exc:
                self._routing.failed(n)
                log.warning(
                    "setting 'store_replica': %s failed, reading from the primary for %g s: %s",
                    redact_url(self.replica_urls[n]),
                    REPLICA_RETRY_SECONDS,
                    exc.message,
                )
        return await self._read_primary(query, *args, fetch=fetch), False

    async def _read_primary(self, query: str, *args: Any, fetch: str = "fetch") -> Any:
        try:
            async with self._primary() as conn:
                return await getattr(conn, fetch)(query, *args)
        except _Lost:  # a read may run again; the pool has a new connection by now
            async with self._primary() as conn:
                return await getattr(conn, fetch)(query, *args)

    # Schema and maintenance -----------------------------------------------------------

    async def _maintain_forever(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_SECONDS)
            try:
                async with self._primary() as conn:
                    await schema.maintain(conn, self.audit_retention_days)
            except StoreUnavailable as exc:
                log.warning("audit partition maintenance failed: %s", exc.message)

    async def write_problem(self) -> str | None:
        """Why writes fail now, or None: a small write, at most once per PROBE_INTERVAL_SECONDS.

        Each host writes a row of its own: every worker of every node probes while its
        ``/healthz`` is polled, and one shared row would make them queue for its lock."""
        now = time.monotonic()
        if now - self._probed < PROBE_INTERVAL_SECONDS:
            return self._problem
        self._probed = now
        if self.standby is not None:
            return await self._standby_problem()
        try:
            async with self._primary() as conn:
                await conn.execute(
                    "INSERT INTO idnode_meta (name, value) VALUES ($1, $2) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    f"write_probe:{socket.gethostname()}",
                    str(time.time()),
                    timeout=self.timeout,
                )
            self._problem = None
        except StoreUnavailable as exc:
            self._problem = exc.message
        return self._problem

    # A mirror site's standby -----------------------------------------------------------

    async def _standby_state(self, conn: asyncpg.Connection) -> str:
        if await conn.fetchval("SELECT pg_is_in_recovery()"):
            self._promoted = False
            return "a hot standby, replaying the primary's changes"
        if not self._promoted:
            log.warning(
                "store %s is no longer in recovery: the standby was promoted. This node still refuses "
                "writes as a mirror; restart it without 'mirror_of' to take writes as the primary site "
                "(deploy/MIRROR.md)",
                redact_url(self.url),
            )
        self._promoted = True
        return "promoted: no longer a standby (restart this node without 'mirror_of' to take writes)"

    async def _standby_problem(self) -> str | None:
        """None while the standby answers reads (the node is healthy as a mirror), else why not."""
        try:
            async with self._primary() as conn:
                self.standby_status = await self._standby_state(conn)
            self._problem = None
        except StoreUnavailable as exc:
            self._problem = exc.message
        return self._problem

    def _read_only(self) -> None:
        if self.standby is not None:
            raise MirrorReadOnly(self.standby)

    # Records --------------------------------------------------------------------------

    async def get(self, key: str) -> HandleRecord | None:
        return (await self.get_many([key])).get(key)

    async def get_many(self, keys: Iterable[str], *, primary: bool = False) -> dict[str, HandleRecord]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        if primary:
            return {key: decode_record(blob) for key, blob in await self._read_primary(*_lookup(wanted))}
        rows, replica = await self._read_from(*_lookup(wanted), keys=wanted)
        found = {key: decode_record(blob) for key, blob in rows}
        missing = [k for k in wanted if k not in found] if replica else []
        if missing:
            # A replica's "no such handle" may only mean it has not replayed the creation yet,
            # made by another worker or node (this worker's own writes never reach here), and
            # the answer would be cached as a 404. Misses are few: the primary has the last word.
            rows = await self._read_primary(*_lookup(missing))
            found.update((key, decode_record(blob)) for key, blob in rows)
        return found

    async def _apply_many(self, writes: Sequence[Write], *, atomic: bool) -> list[Outcome]:
        self._read_only()
        if not writes:
            return []
        keys = sorted({w.key for w in writes})
        write_keys = [w.key for w in writes]
        for _ in range(WRITE_ATTEMPTS):
            committing = False
            try:
                async with self._primary() as conn, conn.transaction():
                    rows = await conn.fetch(_LOCK_MANY, keys)
                    stored = {k: decode_record(b) for k, b in rows}
                    ledger = None if self.quotas is None else await txn.ledger(conn, self.quotas, write_keys, stored)
                    changes = changeset.plan(stored, writes, atomic=atomic, ledger=ledger)
                    await txn.run(conn, changes)
                    committing = True
            except _RETRY:
                continue
            except _Lost as exc:
                if committing:  # COMMIT may or may not have reached the server: only the client may retry
                    raise StoreUnavailable(f"{exc.message}; the write may or may not have been applied") from exc
                continue  # rolled back by the server: safe to run again on a new connection
            self._routing.wrote(keys)
            return changes.outcomes
        raise StoreUnavailable(f"the store kept losing races for {len(keys)} records; try again")

    # Bulk import and export ------------------------------------------------------------

    async def import_rows(self, rows: Sequence[tuple[str, str, bytes]], entry: AuditEntry, marker: ImportMarker) -> int:
        self._read_only()
        async with self._primary() as conn, conn.transaction():
            created = await _import_chunk(conn, rows, entry)
            await conn.execute(txn.MARK, marker.name, str(marker.items))
        self._routing.wrote([r[0] for r in rows])
        return created

    async def import_pending(
        self,
        chunks: AsyncIterator[tuple[int, Sequence[tuple[str, str, bytes]]]],
        entry: AuditEntry,
        settle: Callable[[bool], Awaitable[ImportMarker | None]],
    ) -> int | None:
        self._read_only()
        # Each chunk is copied as it comes, into a transaction held open until settle() says
        # every item passed: PostgreSQL copies while the checking processes go on. A chunk
        # copied straight into the table (no key clashed with its unique index) held no key before.
        created, fresh = 0, True
        keys: list[str] = []
        try:
            async with self._primary() as conn, conn.transaction():
                async for _, rows in chunks:
                    made = await _import_chunk(conn, rows, entry)
                    created += made
                    fresh = fresh and made == len(rows)
                    keys.extend(r[0] for r in rows)
                marker = await settle(fresh)
                if marker is None:
                    raise _Unsettled
                await conn.execute(txn.MARK, marker.name, str(marker.items))
        except _Unsettled:
            return None
        self._routing.wrote(keys)
        return created

    async def note(self, name: str) -> str | None:
        query = "SELECT value FROM idnode_meta WHERE name = $1"
        found = await self._read_primary(query, f"note:{name}", fetch="fetchval")
        return None if found is None else str(found)

    async def set_note(self, name: str, value: str) -> None:
        self._read_only()
        async with self._primary() as conn:
            await conn.execute(
                "INSERT INTO idnode_meta (name, value) VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                f"note:{name}",
                value,
            )

    async def import_progress(self, source: str) -> int:
        async with self._primary() as conn:
            value = await conn.fetchval("SELECT value FROM idnode_meta WHERE name = $1", marker_name(source))
        return 0 if value is None else int(value)

    async def export_after(self, prefix: str | None, after: str | None, limit: int) -> list[tuple[str, HandleRecord]]:
        lo, hi = (f"{prefix}/", f"{prefix}0") if prefix is not None else ("", None)
        start, op = (after, ">") if after is not None and after >= lo else (lo, ">=")
        upper = "" if hi is None else " AND key < $3"
        query = f"SELECT key, record FROM handles WHERE key {op} $1{upper} ORDER BY key LIMIT $2"
        async with self._primary() as conn:
            rows = await conn.fetch(query, start, limit, *([] if hi is None else [hi]))
        return [(k, decode_record(b)) for k, b in rows]

    # Publication outbox --------------------------------------------------------------

    async def prefix_outbox(self, after: int = 0) -> dict[str, int]:
        async with self._primary() as conn:
            rows = await conn.fetch("SELECT prefix, seq FROM prefix_outbox WHERE seq > $1 ORDER BY seq", after)
        return {p: s for p, s in rows}

    async def touch_prefix(self, prefix: str) -> None:
        self._read_only()
        async with self._primary() as conn, conn.transaction():
            await txn.bump(conn, [prefix])

    async def publications(self) -> list[Publication]:
        async with self._primary() as conn:
            rows = await conn.fetch(
                "SELECT prefix, upstream, seq, state, attempts, error, updated FROM publications ORDER BY prefix"
            )
        return [Publication(*row) for row in rows]

    async def record_publication(self, publication: Publication) -> None:
        self._read_only()
        p = publication
        async with self._primary() as conn:
            await conn.execute(
                "INSERT INTO publications (prefix, upstream, seq, state, attempts, error, updated) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (prefix, upstream) DO UPDATE SET "
                "seq = excluded.seq, state = excluded.state, attempts = excluded.attempts, "
                "error = excluded.error, updated = excluded.updated",
                p.prefix,
                p.upstream,
                p.seq,
                p.state,
                p.attempts,
                p.error,
                p.updated,
            )

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        self._read_only()
        async with self._primary() as conn:
            await txn.audit(conn, changeset.audit_rows([(e, None) for e in entries]))

    # Listing and counting ---------------------------------------------------------------

    async def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        rows = await self._read(
            "SELECT coalesce(handle, key) FROM handles WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3 OFFSET $4",
            f"{prefix}/",
            f"{prefix}0",
            limit,
            offset,
        )
        return [r[0] for r in rows]

    async def list_after(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, str]]:
        start = f"{prefix}/" if after is None or after < f"{prefix}/" else after
        op = ">=" if after is None or start != after else ">"
        rows = await self._read(
            f"SELECT key, coalesce(handle, key) FROM handles WHERE key {op} $1 AND key < $2 ORDER BY key LIMIT $3",
            start,
            f"{prefix}0",
            limit,
        )
        return [(k, h) for k, h in rows]

    async def count_handles(self, prefix: str) -> int:
        n = await self._read(
            "SELECT coalesce(sum(handles), 0) FROM prefix_counts WHERE prefix = $1", prefix, fetch="fetchval"
        )
        return int(n)

    # Audit and statistics -------------------------------------------------------------

    async def audit_entries(self, prefixes: Sequence[str] | None, since: float, limit: int) -> list[AuditEntry]:
        where, args = _under("prefix", prefixes, first=2)
        rows = await self._read(
            "SELECT time, identity, address, operation, handle, result, message, more FROM audit "
            f"WHERE time >= $1 AND ({where}) ORDER BY time, id LIMIT ${len(args) + 2}",
            since,
            *args,
            limit,
        )
        entries: list[AuditEntry] = []
        for *fields, more in rows:
            entries.extend(changeset.expand_audit(fields, more))
            if len(entries) >= limit:
                break
        return entries[:limit]

    async def stats(self, prefixes: Sequence[str] | None) -> list[PrefixStats]:
        where, args = _under("prefix", prefixes, first=1)
        counts = await self._read(
            f"SELECT prefix, sum(handles) FROM prefix_counts WHERE {where} GROUP BY prefix ORDER BY prefix", *args
        )
        found = {p: PrefixStats(p, int(n)) for p, n in counts if p != "0.NA"}
        daily = await self._read(
            f"SELECT prefix, day, sum(registrations) FROM daily_registrations WHERE {where} "
            "GROUP BY prefix, day ORDER BY prefix, day",
            *args,
        )
        for prefix, day, n in daily:
            if prefix in found:
                found[prefix].registrations_per_day[day] = int(n)
        refused = await self._read(
            f"SELECT prefix, day, kind, sum(refusals) FROM quota_refusals WHERE {where} "
            "GROUP BY prefix, day, kind ORDER BY prefix, day, kind",
            *args,
        )
        for prefix, day, kind, n in refused:  # a prefix refused a sub-prefix may hold no identifier
            found.setdefault(prefix, PrefixStats(prefix, 0)).refusals_per_day.setdefault(day, {})[kind] = int(n)
        return sorted(found.values(), key=lambda s: s.prefix)

    # Quotas ---------------------------------------------------------------------------

    async def quota_settings(self, prefixes: Sequence[str] | None) -> dict[str, quota.QuotaSetting]:
        if prefixes is None:
            rows = await self._read_primary(f"SELECT {txn.SETTING_COLUMNS} FROM quotas ORDER BY prefix")
            return {prefix: quota.QuotaSetting(*limits) for prefix, *limits in rows}
        if not prefixes:
            return {}
        # From the primary: a quota the node admin just set applies at once, whichever worker reads it.
        async with self._primary() as conn:
            return await txn.settings(conn, prefixes)

    async def set_quota(self, prefix: str, setting: quota.QuotaSetting, audit: AuditEntry) -> None:
        self._read_only()
        async with self._primary() as conn, conn.transaction():
            if setting.empty:
                await conn.execute("DELETE FROM quotas WHERE prefix = $1", prefix)
            else:
                await conn.execute(
                    f"INSERT INTO quotas ({txn.SETTING_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
                    "ON CONFLICT (prefix) DO UPDATE SET identifiers = excluded.identifiers, "
                    "registrations_per_day = excluded.registrations_per_day, "
                    "resolutions_per_day = excluded.resolutions_per_day, prefixes = excluded.prefixes",
                    prefix,
                    *setting.as_row(),
                )
            await txn.audit(conn, changeset.audit_rows([(audit, None)]))

    async def charge_resolution(self, identity: str, prefix: str, limit: int, day: str) -> bool:
        self._read_only()
        # One row per identity and day: the upsert's row lock makes concurrent charges count one
        # after another, and its WHERE refuses the one past the limit.
        async with self._primary() as conn, conn.transaction():
            counted = await conn.fetchval(
                "INSERT INTO daily_resolutions (identity, day, prefix, resolutions) VALUES ($1, $2, $3, 1) "
                "ON CONFLICT (identity, day) DO UPDATE SET resolutions = daily_resolutions.resolutions + 1 "
                "WHERE daily_resolutions.resolutions < $4 RETURNING resolutions",
                identity,
                day,
                prefix,
                limit,
            )
            if counted is None:
                await txn.refused(conn, day, {(prefix, quota.RESOLUTIONS): 1}, random.randrange(schema.COUNT_SLOTS))
        return counted is not None

    async def quota_usage(self, prefix: str, day: str) -> quota.QuotaUsage:
        async with self._primary() as conn:
            held = await conn.fetchval("SELECT coalesce(sum(handles), 0) FROM prefix_counts WHERE prefix = $1", prefix)
            registered = await conn.fetchval(
                "SELECT coalesce(sum(registrations), 0) FROM daily_registrations WHERE prefix = $1 AND day = $2",
                prefix,
                day,
            )
            derived = await conn.fetchval(txn.DERIVED, *txn.derived_range(prefix))
            resolutions = await conn.fetch(
                "SELECT identity, resolutions FROM daily_resolutions WHERE prefix = $1 AND day = $2 ORDER BY identity",
                prefix,
                day,
            )
            refusals = await conn.fetch(
                "SELECT kind, sum(refusals) FROM quota_refusals WHERE prefix = $1 AND day = $2 GROUP BY kind "
                "ORDER BY kind",
                prefix,
                day,
            )
        return quota.QuotaUsage(
            identifiers=int(held),
            registrations=int(registered),
            prefixes=int(derived),
            resolutions={str(i): int(n) for i, n in resolutions},
            refusals={str(k): int(n) for k, n in refusals},
        )

    # Templates ------------------------------------------------------------------------

    async def put_template(self, template: StoredTemplate, audit: AuditEntry) -> bool:
        self._read_only()
        t = template
        async with self._primary() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO templates (prefix, name, version, body, updated) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (prefix, name, version) DO UPDATE SET body = excluded.body, updated = excluded.updated "
                "RETURNING xmax = 0",
                t.prefix,
                t.name,
                t.version,
                t.body,
                t.updated,
            )
            await txn.audit(conn, changeset.audit_rows([(audit, None)]))
        return bool(inserted)

    async def get_template(self, prefix: str, name: str, version: str | None = None) -> StoredTemplate | None:
        query = "SELECT prefix, name, version, body, updated FROM templates WHERE prefix = $1 AND name = $2"
        if version is None:
            latest = query + " ORDER BY updated DESC, version DESC LIMIT 1"
            row = await self._read(latest, prefix, name, fetch="fetchrow")
        else:
            row = await self._read(query + " AND version = $3", prefix, name, version, fetch="fetchrow")
        return None if row is None else StoredTemplate(*row)

    async def list_templates(self, prefix: str) -> list[StoredTemplate]:
        rows = await self._read(
            "SELECT prefix, name, version, body, updated FROM templates WHERE prefix = $1 ORDER BY name, version",
            prefix,
        )
        return [StoredTemplate(*row) for row in rows]

    async def delete_template(self, prefix: str, name: str, version: str | None, audit: AuditEntry) -> int:
        self._read_only()
        async with self._primary() as conn, conn.transaction():
            if version is None:
                status = await conn.execute("DELETE FROM templates WHERE prefix = $1 AND name = $2", prefix, name)
            else:
                status = await conn.execute(
                    "DELETE FROM templates WHERE prefix = $1 AND name = $2 AND version = $3", prefix, name, version
                )
            await txn.audit(conn, changeset.audit_rows([(audit, None)]))
        return int(status.rsplit(" ", 1)[1])

    async def login_digest(self, seckey: str) -> str | None:
        found = await self._read_primary("SELECT digest FROM login_digests WHERE seckey = $1", seckey, fetch="fetchval")
        return None if found is None else str(found)

    async def put_login_digest(self, seckey: str, digest: str) -> None:
        self._read_only()
        async with self._primary() as conn:
            await conn.execute(
                "INSERT INTO login_digests (seckey, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING", seckey, digest
            )

    async def login_digests(self) -> list[tuple[str, str]]:
        async with self._primary() as conn:
            rows = await conn.fetch("SELECT seckey, digest FROM login_digests")
        return [(str(r[0]), str(r[1])) for r in rows]

    async def replace_login_digests(self, rows: Sequence[tuple[str, str]], drop: Sequence[str]) -> None:
        self._read_only()
        async with self._primary() as conn, conn.transaction():
            await conn.execute("DELETE FROM login_digests WHERE seckey = ANY($1::text[])", list(drop))
            await conn.executemany(
                "INSERT INTO login_digests (seckey, digest) VALUES ($1, $2) "
                "ON CONFLICT (seckey) DO UPDATE SET digest = EXCLUDED.digest",
                list(rows),
            )


async def _refuse_standby(conn: asyncpg.Connection, url: str) -> None:
    """A node that writes cannot run on a hot standby: say so plainly before a CREATE fails."""
    if await conn.fetchval("SELECT pg_is_in_recovery()"):
        raise StoreUnavailable(
            f"{redact_url(url)} is a hot standby (in recovery), which takes no writes: point 'store' at the "
            "primary database, or run this node as a mirror site of it ('mirror_of', deploy/MIRROR.md)"
        )


def _lookup(keys: list[str]) -> tuple[str, str | list[str]]:
    """The query and its argument that read ``keys``."""
    return (_GET_ONE, keys[0]) if len(keys) == 1 else (_GET_MANY, keys)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _under(column: str, prefixes: Sequence[str] | None, *, first: int) -> tuple[str, list[str]]:
    """SQL condition: ``column`` is one of ``prefixes`` or a prefix derived from one (any, when None)."""
    if prefixes is None:
        return "true", []
    if not prefixes:
        return "false", []
    # Prefixes under P sort between "P." and "P/" ('/' follows '.').
    clauses = []
    for n in range(len(prefixes)):
        a = first + 3 * n
        clauses.append(f"({column} = ${a} OR ({column} > ${a + 1} AND {column} < ${a + 2}))")
    return " OR ".join(clauses), [a for p in prefixes for a in (p, p + ".", p + "/")]


class _Unsettled(Exception):
    """Rolls back an import_pending transaction whose input did not settle."""


async def _import_chunk(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, bytes]], entry: AuditEntry) -> int:
    """One chunk of an import in the caller's transaction: the rows, then the side tables; how many were created."""
    records = [(k, txn.stored_handle(k, h), b) for k, h, b in rows]
    created = await txn.copy_in(conn, records)
    changes = changeset.imported(rows, created, entry)
    await txn.run_tables(conn, changes)
    return len(changes.inserts)
