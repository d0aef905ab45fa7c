"""The SQLite schema, and its upgrades from earlier versions."""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 5

_TABLES = """
CREATE TABLE IF NOT EXISTS handles (
    key TEXT PRIMARY KEY,
    handle TEXT NOT NULL,
    record BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    prefix TEXT NOT NULL,
    identity TEXT NOT NULL,
    address TEXT NOT NULL,
    operation TEXT NOT NULL,
    handle TEXT NOT NULL,
    result INTEGER NOT NULL,
    message TEXT NOT NULL,
    more BLOB
);
CREATE INDEX IF NOT EXISTS audit_by_prefix ON audit (prefix, time);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time);
CREATE TABLE IF NOT EXISTS prefix_counts (prefix TEXT PRIMARY KEY, handles INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_registrations (
    prefix TEXT NOT NULL,
    day TEXT NOT NULL,
    registrations INTEGER NOT NULL,
    PRIMARY KEY (prefix, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS prefix_outbox (prefix TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS prefix_outbox_by_seq ON prefix_outbox (seq);
CREATE TABLE IF NOT EXISTS publications (
    prefix TEXT NOT NULL,
    upstream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (prefix, upstream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS templates (
    prefix TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    body BLOB NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (prefix, name, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS login_digests (seckey TEXT PRIMARY KEY, digest TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quotas (
    prefix TEXT PRIMARY KEY,
    identifiers INTEGER,
    registrations_per_day INTEGER,
    resolutions_per_day INTEGER,
    prefixes INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_resolutions (
    identity TEXT NOT NULL,
    day TEXT NOT NULL,
    prefix TEXT NOT NULL,
    resolutions INTEGER NOT NULL,
    PRIMARY KEY (identity, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS daily_resolutions_by_prefix ON daily_resolutions (prefix, day);
CREATE TABLE IF NOT EXISTS quota_refusals (
    prefix TEXT NOT NULL,
    day TEXT NOT NULL,
    kind TEXT NOT NULL,
    refusals INTEGER NOT NULL,
    PRIMARY KEY (prefix, day, kind)
) WITHOUT ROWID;
"""


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the database to SCHEMA_VERSION; idempotent."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _TABLES.split(";"):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        version = 1 if row is None else int(row[0])
        if version < 2:
            # Version 1 kept no counts: derive them from the records once.
            conn.execute("DELETE FROM prefix_counts")
            conn.execute(
                "INSERT INTO prefix_counts (prefix, handles) "
                "SELECT substr(key, 1, instr(key, '/') - 1), count(*) FROM handles GROUP BY 1"
            )
        columns = {row[1] for row in conn.execute("PRAGMA table_info(audit)")}
        if "more" not in columns:
            # Version 3 logs a batch's alike entries in one row (the other handles in "more").
            conn.execute("ALTER TABLE audit ADD COLUMN more BLOB")
        if version < 4:
            # Version 4 keeps an outbox of changed prefix handles: start it with those held.
            conn.execute(
                "INSERT OR IGNORE INTO prefix_outbox (prefix, seq) "
                "SELECT substr(key, 6), row_number() OVER (ORDER BY key) FROM handles "
                "WHERE key >= '0.NA/' AND key < '0.NA0'"
            )
        # Version 5 adds the quota tables (quotas, daily_resolutions, quota_refusals): created
        # above, empty, which is where an upgraded node starts (no prefix has a quota of its own).
        conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
