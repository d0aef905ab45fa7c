"""The SQL of a PostgreSQL write transaction: what ``registry.changeset`` decided, run on one
connection inside a transaction the caller holds (``PostgresStore``), and the quota counts it
decides against (``ledger``), read in that transaction under the prefixes' locks."""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping, Sequence

import asyncpg

from protocol.records import HandleRecord
from registry import changeset, quota
from registry.postgres import schema

RECORD_COLUMNS = ("key", "handle", "record")
_UPDATE = "UPDATE handles SET handle = $2, record = $3 WHERE key = $1"
_DELETE = "DELETE FROM handles WHERE key = $1"
_COUNTS = (
    "INSERT INTO prefix_counts (prefix, slot, handles) "
    "SELECT p, $3, n FROM unnest($1::text[], $2::bigint[]) AS u(p, n) "
    "ON CONFLICT (prefix, slot) DO UPDATE SET handles = prefix_counts.handles + excluded.handles"
)
_DAILY = (
    "INSERT INTO daily_registrations (prefix, day, slot, registrations) "
    "SELECT p, $3, $4, n FROM unnest($1::text[], $2::bigint[]) AS u(p, n) "
    "ON CONFLICT (prefix, day, slot) DO UPDATE SET registrations = daily_registrations.registrations + "
    "excluded.registrations"
)
_REFUSALS = (
    "INSERT INTO quota_refusals (prefix, day, kind, slot, refusals) "
    "SELECT p, $4, k, $5, n FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(p, k, n) "
    "ON CONFLICT (prefix, day, kind, slot) DO UPDATE SET refusals = quota_refusals.refusals + excluded.refusals"
)
SETTING_COLUMNS = "prefix, identifiers, registrations_per_day, resolutions_per_day, prefixes"
_SETTINGS = f"SELECT {SETTING_COLUMNS} FROM quotas WHERE prefix = ANY($1::text[])"
_QUOTA_LOCKS = "SELECT pg_advisory_xact_lock($1, k) FROM unnest($2::int[]) AS u(k)"
_HELD = "SELECT prefix, sum(handles) FROM prefix_counts WHERE prefix = ANY($1::text[]) GROUP BY prefix"
_TODAY = (
    "SELECT prefix, sum(registrations) FROM daily_registrations WHERE prefix = ANY($1::text[]) AND day = $2 "
    "GROUP BY prefix"
)
# Prefix handles of prefixes derived from P sort between "0.NA/P." and "0.NA/P/".
DERIVED = "SELECT count(*) FROM handles WHERE key > $1 AND key < $2"
_OUTBOX_BUMP = (
    "INSERT INTO prefix_outbox (prefix, seq) SELECT p, nextval('prefix_outbox_seq') FROM unnest($1::text[]) AS u(p) "
    "ON CONFLICT (prefix) DO UPDATE SET seq = excluded.seq"
)
_STAGE = (
    'CREATE TEMP TABLE IF NOT EXISTS import_stage (key text COLLATE "C", handle text, record bytea) '
    "ON COMMIT DELETE ROWS"
)
# Which rows an upsert created cannot be told by xmax on a partitioned table (PostgreSQL
# refuses system columns there): insert the new ones first, then update the others.
_STAGE_INSERT = (
    "INSERT INTO handles (key, handle, record) SELECT key, handle, record FROM import_stage "
    "ON CONFLICT (key) DO NOTHING RETURNING key"
)
_STAGE_UPDATE = (
    "UPDATE handles h SET handle = s.handle, record = s.record FROM import_stage s "
    "WHERE h.key = s.key AND NOT s.key = ANY($1::text[])"
)
MARK = "INSERT INTO idnode_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
_AUDIT_COLUMNS = ("time", "prefix", "identity", "address", "operation", "result", "message", "handle", "more")


def stored_handle(key: str, handle: str) -> str | None:
    return None if handle == key else handle


async def run(conn: asyncpg.Connection, changes: changeset.ChangeSet) -> None:
    if changes.inserts:
        # COPY (binary) rather than INSERT: the keys were absent when locked, so a
        # duplicate means another transaction created one meanwhile, and the unique
        # violation makes this one run again against what is stored now. In key order,
        # as the locks above: batches creating the same new records in other orders
        # would each wait for a record the other inserted (a deadlock).
        rows = [(k, stored_handle(k, h), b) for k, h, b in sorted(changes.inserts)]
        await conn.copy_records_to_table("handles", records=rows, columns=RECORD_COLUMNS)
    if changes.updates:
        await conn.executemany(_UPDATE, [(k, stored_handle(k, h), b) for k, h, b in changes.updates])
    if changes.deletes:
        await conn.executemany(_DELETE, [(k,) for k in changes.deletes])
    await run_tables(conn, changes)


async def run_tables(conn: asyncpg.Connection, changes: changeset.ChangeSet) -> None:
    """Everything beside the records themselves: counts, registrations, outbox, audit."""
    slot = random.randrange(schema.COUNT_SLOTS)
    if changes.counts:
        prefixes = sorted(changes.counts)
        await conn.execute(_COUNTS, prefixes, [changes.counts[p] for p in prefixes], slot)
    if changes.created:
        prefixes = sorted(changes.created)
        await conn.execute(_DAILY, prefixes, [changes.created[p] for p in prefixes], changes.day, slot)
    if changes.outbox:
        await bump(conn, changes.outbox)
    if changes.refusals:
        await refused(conn, changes.day, changes.refusals, slot)
    await audit(conn, changes.audit)


async def refused(conn: asyncpg.Connection, day: str, refusals: Mapping[tuple[str, str], int], slot: int) -> None:
    rows = sorted(refusals.items())
    await conn.execute(_REFUSALS, [p for (p, _), _ in rows], [k for (_, k), _ in rows], [n for _, n in rows], day, slot)


def lock_key(prefix: str) -> int:
    """The second key of ``prefix``'s quota lock: its CRC-32 as a signed 32-bit integer."""
    return zlib.crc32(prefix.encode()) - 2**31


async def settings(conn: asyncpg.Connection, prefixes: Sequence[str]) -> dict[str, quota.QuotaSetting]:
    return {prefix: quota.QuotaSetting(*limits) for prefix, *limits in await conn.fetch(_SETTINGS, list(prefixes))}


def derived_range(prefix: str) -> tuple[str, str]:
    return f"{quota.NA_KEY_START}{prefix}.", f"{quota.NA_KEY_START}{prefix}/"


async def ledger(
    conn: asyncpg.Connection, policy: quota.QuotaPolicy, keys: list[str], stored: Mapping[str, HandleRecord]
) -> quota.Ledger:
    """The quota counts writes to ``keys`` are checked against. The limited prefixes are locked
    first, in the order of their lock keys (so two transactions cannot wait for each other), and
    their counts read after: under READ COMMITTED each statement sees what committed before it,
    so a transaction that held the lock before this one is counted in."""
    watch = policy.watch(keys, stored)
    if not watch:
        return quota.Ledger.of(policy)
    found = await settings(conn, watch.every)
    limits = {p: policy.limits(p, found.get(p)) for p in watch.every}
    needs = quota.needs(watch, limits)
    if not needs.every:
        return quota.Ledger.of(policy, limits)
    await conn.execute(_QUOTA_LOCKS, schema.QUOTA_LOCK, sorted({lock_key(p) for p in needs.every}))
    result = quota.Ledger.of(policy, limits)
    if needs.held:
        result.held = {p: 0 for p in needs.held} | {p: int(n) for p, n in await conn.fetch(_HELD, needs.held)}
    if needs.today:
        counted = await conn.fetch(_TODAY, needs.today, result.day)
        result.today = {p: 0 for p in needs.today} | {p: int(n) for p, n in counted}
    for prefix in needs.derived:
        result.derived[prefix] = int(await conn.fetchval(DERIVED, *derived_range(prefix)))
    return result


async def bump(conn: asyncpg.Connection, prefixes: Sequence[str]) -> None:
    # Held to COMMIT, so outbox numbers become visible in the order they were given:
    # the publisher reads "everything after the last number seen" and must not skip one
    # that a slower transaction commits later. Prefix handles change rarely.
    await conn.execute("SELECT pg_advisory_xact_lock($1)", schema.OUTBOX_LOCK)
    await conn.execute(_OUTBOX_BUMP, sorted(prefixes))


async def copy_in(conn: asyncpg.Connection, records: list[tuple[str, str | None, bytes]]) -> set[str] | None:
    """COPY the rows in; the keys that were created (None: all). Into ``handles`` straight
    when none is there yet (a fresh load: the fast path), else through a staging table and
    an upsert."""
    try:
        async with conn.transaction():  # a savepoint: a clash undoes only the COPY
            await conn.copy_records_to_table("handles", records=records, columns=RECORD_COLUMNS)
        return None
    except asyncpg.UniqueViolationError:
        pass
    await conn.execute(_STAGE)
    await conn.execute("TRUNCATE import_stage")  # an earlier chunk's rows, when one transaction takes several
    await conn.copy_records_to_table("import_stage", records=records, columns=RECORD_COLUMNS)
    created = [key for (key,) in await conn.fetch(_STAGE_INSERT)]
    await conn.execute(_STAGE_UPDATE, created)  # the staged rows go at COMMIT (ON COMMIT DELETE ROWS)
    return set(created)


async def audit(conn: asyncpg.Connection, rows: Sequence[changeset.AuditRow]) -> None:
    if rows:
        await conn.copy_records_to_table("audit", records=rows, columns=_AUDIT_COLUMNS)
