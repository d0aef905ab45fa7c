"""The PostgreSQL schema: built for billions of records and for distributed PostgreSQL.

- ``handles``: one row per identifier, keyed by the normalised handle, its values packed
  (msgpack, as in SQLite), hash-partitioned on the key so that partitions can later move
  to other servers (Citus distributes such a table on the same column). Keys compare
  byte by byte (``COLLATE "C"``): prefix ranges are scanned as key ranges, and a
  locale's ordering would both break them and cost more. ``handle`` is NULL when the
  handle is spelled as its key (most are), which saves its bytes on billions of rows.
- ``prefix_counts`` and ``daily_registrations`` keep a few slots per prefix that
  transactions pick at random and readers add up, so concurrent batches under one prefix
  do not queue for one row.
- ``quotas`` holds the quotas the node admin set per prefix; ``daily_resolutions`` one row
  per identity and day (a charge is an increment of it, refused at the limit); ``quota_refusals``
  slots like the counts. A write that checks a quota holds the prefix's advisory lock
  (``QUOTA_LOCK``) while it reads the counts, so that transactions under a limited prefix
  count one after another (those under unlimited prefixes take no lock).
- ``audit`` is partitioned by month (``time`` in seconds since the epoch): retention drops
  whole partitions; rows outside every month land in the default partition.
- Only plain tables, btree indexes and ``INSERT ... ON CONFLICT``: nothing a Citus-style
  engine refuses on distributed or reference tables (deploy/POSTGRESQL.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import asyncpg

from protocol.errors import StoreUnavailable

log = logging.getLogger("registry.postgres")

SCHEMA_VERSION = 2  # 2: the quota tables
COUNT_SLOTS = 16
MIGRATION_LOCK = 0x1D0DE001  # pg_advisory_xact_lock key: one worker migrates at a time
OUTBOX_LOCK = 0x1D0DE002  # taken by a transaction that bumps the outbox (see PostgresStore)
# pg_advisory_xact_lock(QUOTA_LOCK, crc32 of the prefix): a two-key lock, a key space apart from the others
QUOTA_LOCK = 0x1D0DE003

TABLES = """
CREATE TABLE IF NOT EXISTS idnode_meta (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS handles (
    key text COLLATE "C" NOT NULL,
    handle text,
    record bytea NOT NULL,
    PRIMARY KEY (key)
) PARTITION BY HASH (key);
CREATE TABLE IF NOT EXISTS prefix_counts (
    prefix text COLLATE "C" NOT NULL,
    slot smallint NOT NULL,
    handles bigint NOT NULL,
    PRIMARY KEY (prefix, slot)
);
CREATE TABLE IF NOT EXISTS daily_registrations (
    prefix text COLLATE "C" NOT NULL,
    day text NOT NULL,
    slot smallint NOT NULL,
    registrations bigint NOT NULL,
    PRIMARY KEY (prefix, day, slot)
);
CREATE SEQUENCE IF NOT EXISTS prefix_outbox_seq;
CREATE TABLE IF NOT EXISTS prefix_outbox (prefix text COLLATE "C" PRIMARY KEY, seq bigint NOT NULL);
CREATE INDEX IF NOT EXISTS prefix_outbox_by_seq ON prefix_outbox (seq);
CREATE TABLE IF NOT EXISTS publications (
    prefix text COLLATE "C" NOT NULL,
    upstream text NOT NULL,
    seq bigint NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL,
    error text NOT NULL,
    updated double precision NOT NULL,
    PRIMARY KEY (prefix, upstream)
);
CREATE TABLE IF NOT EXISTS templates (
    prefix text COLLATE "C" NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    body bytea NOT NULL,
    updated bigint NOT NULL,
    PRIMARY KEY (prefix, name, version)
);
CREATE TABLE IF NOT EXISTS login_digests (seckey text PRIMARY KEY, digest text NOT NULL);
CREATE TABLE IF NOT EXISTS quotas (
    prefix text COLLATE "C" PRIMARY KEY,
    identifiers bigint,
    registrations_per_day bigint,
    resolutions_per_day bigint,
    prefixes bigint
);
CREATE TABLE IF NOT EXISTS daily_resolutions (
    identity text NOT NULL,
    day text NOT NULL,
    prefix text COLLATE "C" NOT NULL,
    resolutions bigint NOT NULL,
    PRIMARY KEY (identity, day)
);
CREATE INDEX IF NOT EXISTS daily_resolutions_by_prefix ON daily_resolutions (prefix, day);
CREATE TABLE IF NOT EXISTS quota_refusals (
    prefix text COLLATE "C" NOT NULL,
    day text NOT NULL,
    kind text NOT NULL,
    slot smallint NOT NULL,
    refusals bigint NOT NULL,
    PRIMARY KEY (prefix, day, kind, slot)
);
CREATE SEQUENCE IF NOT EXISTS audit_id_seq;
CREATE TABLE IF NOT EXISTS audit (
    id bigint NOT NULL DEFAULT nextval('audit_id_seq'),
    time double precision NOT NULL,
    prefix text COLLATE "C" NOT NULL,
    identity text NOT NULL,
    address text NOT NULL,
    operation text NOT NULL,
    handle text NOT NULL,
    result integer NOT NULL,
    message text NOT NULL,
    more bytea
) PARTITION BY RANGE (time);
CREATE TABLE IF NOT EXISTS audit_default PARTITION OF audit DEFAULT;
CREATE INDEX IF NOT EXISTS audit_by_prefix ON audit (prefix, time);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time, id)
"""


def statements(partitions: int) -> list[str]:
    """Everything ``migrate`` runs, idempotent, for a records table of ``partitions`` partitions."""
    found = [s.strip() for s in TABLES.split(";") if s.strip()]
    found += [
        f"CREATE TABLE IF NOT EXISTS handles_p{n:03d} PARTITION OF handles "
        f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {n})"
        for n in range(partitions)
    ]
    return found


def month_start(moment: float) -> dt.datetime:
    t = dt.datetime.fromtimestamp(moment, dt.UTC)
    return dt.datetime(t.year, t.month, 1, tzinfo=dt.UTC)


def next_month(start: dt.datetime) -> dt.datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def audit_partition_name(start: dt.datetime) -> str:
    return f"audit_{start:%Y_%m}"


def audit_partition(start: dt.datetime) -> str:
    """DDL for the month that begins at ``start``."""
    end = next_month(start)
    return (
        f"CREATE TABLE IF NOT EXISTS {audit_partition_name(start)} PARTITION OF audit "
        f"FOR VALUES FROM ({start.timestamp():.0f}) TO ({end.timestamp():.0f})"
    )


async def migrate(conn: asyncpg.Connection, partitions_wanted: int) -> None:
    """Create what is missing, under a lock (every worker runs this at start)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        exists = await conn.fetchval("SELECT to_regclass('idnode_meta') IS NOT NULL")
        stored = await conn.fetchval("SELECT value FROM idnode_meta WHERE name = 'partitions'") if exists else None
        partitions = int(stored) if stored is not None else partitions_wanted
        if partitions != partitions_wanted:
            log.warning(
                "setting 'store_partitions' is %d but the database was created with %d partitions; keeping %d",
                partitions_wanted,
                partitions,
                partitions,
            )
        for statement in statements(partitions):
            await conn.execute(statement)
        await conn.execute(
            "INSERT INTO idnode_meta (name, value) VALUES ('partitions', $1) ON CONFLICT (name) DO NOTHING",
            str(partitions),
        )
        # Every version only adds tables (created above, if missing): an older database is upgraded.
        await conn.execute(
            "INSERT INTO idnode_meta (name, value) VALUES ('schema_version', $1) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value "
            "WHERE idnode_meta.value::int < excluded.value::int",  # an older node sharing it must not lower it
            str(SCHEMA_VERSION),
        )


class SchemaMissing(StoreUnavailable):
    """A read-only node (a mirror site's) found no idnode schema, or an older one, in its database."""


async def check(conn: asyncpg.Connection, shown: str) -> None:
    """What a mirror site's node checks instead of migrating: the schema is there, and not older
    than this code's (a standby cannot be migrated; its primary's node does that)."""
    exists = await conn.fetchval("SELECT to_regclass('idnode_meta') IS NOT NULL")
    version = await conn.fetchval("SELECT value FROM idnode_meta WHERE name = 'schema_version'") if exists else None
    if version is None:
        raise SchemaMissing(
            f"{shown} holds no idnode schema: a mirror site reads a hot standby of a database its primary "
            "node has already set up (start the primary node first, then let the standby replay)"
        )
    if int(version) < SCHEMA_VERSION:
        raise SchemaMissing(
            f"{shown} holds idnode schema version {version}; this node needs {SCHEMA_VERSION}: upgrade the "
            "primary node first (it migrates the database), then let the standby replay"
        )


async def maintain(conn: asyncpg.Connection, retention_days: int) -> None:
    """Audit partitions for this month and the next; months past the retention dropped."""
    now = time.time()
    this = month_start(now)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        for start in (this, next_month(this)):
            await conn.execute(audit_partition(start))
        if retention_days <= 0:
            return
        cutoff = now - retention_days * 86400
        rows = await conn.fetch(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'audit'::regclass"
        )
        for name, bound in rows:
            upper = upper_bound(bound)
            if upper is not None and upper <= cutoff:
                await conn.execute(f'DROP TABLE "{name}"')
                log.info("dropped audit partition %s (older than %d days)", name, retention_days)
        await conn.execute("DELETE FROM audit_default WHERE time < $1", cutoff)


def upper_bound(bound: str) -> float | None:
    # "FOR VALUES FROM ('1764547200') TO ('1767225600')"; the default partition has none.
    _, sep, upper = bound.partition(" TO (")
    try:
        return float(upper.strip(")' ")) if sep else None
    except ValueError:
        return None
