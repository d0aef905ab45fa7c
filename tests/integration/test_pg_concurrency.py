"""Several stores on one PostgreSQL database (as the worker processes of one node, or several
nodes, are): batches that race for the same records neither deadlock nor lose a count."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from protocol.errors import HandleAlreadyExists
from protocol.records import HandleRecord, HandleValue
from registry.postgres.store import PostgresStore
from registry.store import Write
from tests.support.pgproc import query, temp_database

ROUNDS = 15
BATCH = 12


@pytest.fixture
async def stores() -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    with temp_database() as url:
        # A deadlock would cost its victim this long, where PostgreSQL's default is 1 s:
        # long enough that the test's time limit tells a deadlock from a lost race.
        query(url, f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET deadlock_timeout = '10s'")
        a, b = PostgresStore(url, partitions=4), PostgresStore(url, partitions=4)
        await a.open()
        await b.open()
        yield a, b
        await a.close()
        await b.close()


def creating(handle: str) -> Write:
    record = HandleRecord(handle, (HandleValue(1, "URL", b"https://c.example/"),))

    def change(old: HandleRecord | None) -> HandleRecord:
        if old is not None:
            raise HandleAlreadyExists(f"{handle} exists")
        return record

    return Write(handle.upper(), change)


async def test_batches_creating_the_same_records_in_opposite_orders_do_not_deadlock(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = stores
    started = time.monotonic()
    for n in range(ROUNDS):
        handles = [f"88.118/R{n}-{i:02d}" for i in range(BATCH)]
        forward = a.apply_many([creating(h) for h in handles])
        backward = b.apply_many([creating(h) for h in reversed(handles)])
        first, second = await asyncio.gather(forward, backward)
        created = [isinstance(o, HandleRecord) for o in first] + [isinstance(o, HandleRecord) for o in second]
        assert created.count(True) == BATCH  # each record created once, the other attempt refused
    assert time.monotonic() - started < 8.0, "batches waited for a deadlock to be broken"
    assert await a.count_handles("88.118") == ROUNDS * BATCH
