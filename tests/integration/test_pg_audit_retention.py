"""Audit retention on PostgreSQL: months past ``audit_retention_days`` are dropped whole by the
maintenance a store runs at open and hourly; recent months, and everything when retention
is 0, are kept."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest

from registry.postgres import schema
from registry.postgres.store import PostgresStore
from registry.store import AuditEntry
from tests.support.pgproc import temp_database

DAY = 86400.0


@pytest.fixture
async def url() -> AsyncIterator[str]:
    with temp_database() as found:
        yield found


def months_back(n: int) -> dt.datetime:
    start = schema.month_start(time.time())
    for _ in range(n):
        start = schema.month_start(start.timestamp() - DAY)
    return start


async def fill(store: PostgresStore, ages_in_months: list[int]) -> None:
    """One audit row in the middle of each month ``ages_in_months`` ago, in its own partition."""
    async with store._primary() as conn:
        for age in ages_in_months:
            await conn.execute(schema.audit_partition(months_back(age)))
    entries = [
        AuditEntry(months_back(age).timestamp() + 14 * DAY, "300:0.NA/88.118", "127.0.0.1", "create", f"88.118/M{age}")
        for age in ages_in_months
    ]
    await store.append_audit(entries)


async def kept(store: PostgresStore) -> tuple[set[str], set[str]]:
    """The handles still in the audit log, and the month partitions left."""
    handles = {e.handle for e in await store.audit_entries(None, 0.0, 1000)}
    async with store._primary() as conn:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'audit'::regclass"
        )
    return handles, {r[0] for r in rows}


async def maintain(url: str, retention_days: int) -> PostgresStore:
    store = PostgresStore(url, partitions=4, audit_retention_days=retention_days)
    await store.open()  # runs the maintenance once
    return store


async def test_months_past_retention_are_dropped_and_recent_ones_kept(url: str) -> None:
    store = await maintain(url, 0)
    try:
        await fill(store, [0, 1, 2, 5, 13])
        # 45 days: this month and last are within reach; a month ending more than 45 days ago is not.
        store.audit_retention_days = 45
        async with store._primary() as conn:
            await schema.maintain(conn, store.audit_retention_days)
        handles, parts = await kept(store)
    finally:
        await store.close()
    assert {"88.118/M0", "88.118/M1"} <= handles
    assert not {"88.118/M5", "88.118/M13"} & handles
    assert schema.audit_partition_name(months_back(5)) not in parts
    assert schema.audit_partition_name(months_back(13)) not in parts
    assert {schema.audit_partition_name(months_back(n)) for n in (0, 1)} <= parts
    assert "audit_default" in parts
    # Month 2 ended less or more than 45 days ago depending on today's date: whole months go.
    two_ended = schema.next_month(months_back(2)).timestamp()
    assert ("88.118/M2" in handles) == (two_ended > time.time() - 45 * DAY)


async def test_old_rows_in_the_default_partition_are_deleted(url: str) -> None:
    store = await maintain(url, 0)
    try:
        old = time.time() - 400 * DAY  # no month partition: lands in audit_default
        await store.append_audit([AuditEntry(old, "300:0.NA/88.118", "127.0.0.1", "create", "88.118/OLD")])
        assert "88.118/OLD" in (await kept(store))[0]
    finally:
        await store.close()
    store = await maintain(url, 30)
    try:
        assert "88.118/OLD" not in (await kept(store))[0]
    finally:
        await store.close()


async def test_retention_zero_keeps_everything(url: str) -> None:
    store = await maintain(url, 0)
    try:
        await fill(store, [0, 3, 24])
        async with store._primary() as conn:
            await schema.maintain(conn, store.audit_retention_days)
        handles, parts = await kept(store)
    finally:
        await store.close()
    assert handles == {"88.118/M0", "88.118/M3", "88.118/M24"}
    assert schema.audit_partition_name(months_back(24)) in parts
