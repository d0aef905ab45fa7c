"""The store interface against both real backends (SQLite, and PostgreSQL in a database of the
test's own): named operations, batches, audit, counts, the outbox, listing."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from protocol.codes import ResponseCode
from protocol.errors import HandleAlreadyExists, HandleNotFound, ValueAlreadyExists, ValuesNotFound
from protocol.records import HandleRecord, HandleValue
from registry.postgres.store import PostgresStore
from registry.sqlite.store import SqliteStore
from registry.store import AuditEntry, BatchAborted, Change, Outcome, Publication, Store, Write
from tests.support.pgproc import temp_database


def rec(handle: str, *indexes: int) -> HandleRecord:
    return HandleRecord(handle, tuple(HandleValue(i, "URL", f"https://{i}.example/".encode()) for i in indexes))


def stored(record: HandleRecord) -> Change:
    return lambda _old: record


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            s: Store = SqliteStore(tmp_path / "store.sqlite3")
        else:
            s = PostgresStore(stack.enter_context(temp_database()), partitions=8)
        await s.open()
        yield s
        await s.close()


async def test_named_operations(store: Store) -> None:
    await store.create("88.118/A", rec("88.118/a", 1))
    with pytest.raises(HandleAlreadyExists):
        await store.create("88.118/A", rec("88.118/a", 2))
    assert await store.replace("88.118/A", rec("88.118/a", 3)) is False
    assert await store.replace("88.118/B", rec("88.118/b", 1)) is True
    assert await store.put_values("88.118/A", "88.118/a", rec("x", 4, 5).values) is False
    with pytest.raises(ValueAlreadyExists):
        await store.put_values("88.118/A", "88.118/a", rec("x", 4).values, overwrite=False)
    assert (await store.remove_values("88.118/A", "88.118/a", [3, 4])).indexes() == {5}
    with pytest.raises(ValuesNotFound):
        await store.remove_values("88.118/A", "88.118/a", [9])
    await store.delete("88.118/B", "88.118/b")
    with pytest.raises(HandleNotFound):
        await store.delete("88.118/B", "88.118/b")
    assert await store.get("88.118/B") is None
    assert await store.list_handles("88.118") == ["88.118/a"]
    assert await store.count_handles("88.118") == 1


async def test_batches_see_their_own_writes_and_atomic_ones_write_nothing(store: Store) -> None:
    def put(record: HandleRecord) -> Write:
        return Write(record.handle.upper(), lambda _old: record)

    def fail(_old: HandleRecord | None) -> HandleRecord:
        raise HandleAlreadyExists("no")

    outcomes = await store.apply_many([put(rec("88.118/x", 1)), Write("88.118/Y", fail), put(rec("88.118/x", 2))])
    assert isinstance(outcomes[1], HandleAlreadyExists)
    stored = await store.get("88.118/X")
    assert stored is not None and stored.indexes() == {2}
    atomic = await store.apply_many([put(rec("88.118/z", 1)), Write("88.118/Y", fail)], atomic=True)
    assert isinstance(atomic[0], BatchAborted)
    assert await store.get("88.118/Z") is None
    assert await store.count_handles("88.118") == 1


async def test_audit_rows_of_a_batch_are_read_back_one_per_handle(store: Store) -> None:
    entries = [AuditEntry(1000.0, "300:0.NA/88.118", "127.0.0.1", "batch_create", f"88.118.5/h{i}") for i in range(5)]

    def create(handle: str) -> Change:
        return lambda _old: rec(handle, 1)

    writes = [Write(e.handle.upper(), create(e.handle), e) for e in entries]
    await store.apply_many(writes)
    back = await store.audit_entries(["88.118.5"], 0, 100)
    assert [e.handle for e in back] == [e.handle for e in entries]
    assert len(await store.audit_entries(None, 0, 3)) == 3
    assert await store.audit_entries(["88.118.6"], 0, 100) == []


async def test_changes_to_prefix_handles_bump_the_outbox_in_their_transaction(store: Store) -> None:
    await store.create("0.NA/88.118.1", rec("0.NA/88.118.1", 100))
    await store.create("88.118.1/X", rec("88.118.1/X", 1))
    await store.create("0.NA/88.118.2", rec("0.NA/88.118.2", 100))
    assert await store.prefix_outbox() == {"88.118.1": 1, "88.118.2": 2}
    await store.put_values("0.NA/88.118.1", "0.NA/88.118.1", [HandleValue(1, "URL", b"u")])
    await store.delete("0.NA/88.118.1", "0.NA/88.118.1")
    assert await store.prefix_outbox() == {"88.118.2": 2, "88.118.1": 4}
    # A refused change bumps nothing.
    with pytest.raises(HandleNotFound):
        await store.delete("0.NA/88.118.1", "0.NA/88.118.1")
    await store.touch_prefix("88.118")
    assert await store.prefix_outbox() == {"88.118.2": 2, "88.118.1": 4, "88.118": 5}
    # A reader asks for what changed after what it saw, oldest first.
    assert list((await store.prefix_outbox(after=2)).items()) == [("88.118.1", 4), ("88.118", 5)]


async def test_publications_are_kept(store: Store) -> None:
    first = Publication("88.118.1", "http://127.0.0.1:8100", 3, "failed", 2, "refused", 1.5)
    await store.record_publication(first)
    await store.record_publication(replace(first, upstream="http://127.0.0.2:8100", state="published", attempts=0))
    await store.record_publication(replace(first, state="published", attempts=0, error=""))
    shown = {p.upstream: p for p in await store.publications()}
    assert shown["http://127.0.0.1:8100"] == replace(first, state="published", attempts=0, error="")
    assert shown["http://127.0.0.2:8100"].state == "published"


async def test_notes_are_kept_apart_from_import_markers(store: Store) -> None:
    assert await store.note("secrets_sealed_under") is None
    await store.set_note("secrets_sealed_under", "k1;")
    await store.set_note("secrets_sealed_under", "k2;k1=3")
    assert await store.note("secrets_sealed_under") == "k2;k1=3"
    assert await store.import_progress("secrets_sealed_under") == 0  # another name space


async def test_upgrading_to_schema_4_puts_the_prefix_handles_held_in_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.create("0.NA/88.118", rec("0.NA/88.118", 100))
    await store.create("0.NA/88.118.7", rec("0.NA/88.118.7", 100))
    await store.create("88.118.7/X", rec("88.118.7/X", 1))
    await store.close()
    with sqlite3.connect(path) as conn:  # as a version 3 database was: no outbox
        conn.execute("DROP TABLE prefix_outbox")
        conn.execute("UPDATE meta SET value = 3 WHERE name = 'schema_version'")
    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        assert await upgraded.prefix_outbox() == {"88.118": 1, "88.118.7": 2}
    finally:
        await upgraded.close()


async def test_listing_by_keyset_cursor_walks_every_handle_once(store: Store) -> None:
    await store.apply_many([Write(f"88.118/K{i:03d}", stored(rec(f"88.118/k{i:03d}", 1))) for i in range(25)])
    await store.create("88.118.1/OTHER", rec("88.118.1/other", 1))  # a derived prefix is not "under"
    await store.create("88.1180/NEAR", rec("88.1180/near", 1))
    seen: list[str] = []
    after: str | None = None
    while page := await store.list_after("88.118", after, 10):
        seen += [h for _, h in page]
        after = page[-1][0]
    assert seen == [f"88.118/k{i:03d}" for i in range(25)]
    assert await store.list_handles("88.118", 20, 10) == seen[20:]
    # A cursor from elsewhere in the key space starts at the prefix, or ends the listing.
    assert [h for _, h in await store.list_after("88.118", "0", 2)] == seen[:2]
    assert await store.list_after("88.118", "88.118/ZZZ", 2) == []


async def test_counts_and_daily_registrations_follow_creates_and_deletes(store: Store) -> None:
    await store.apply_many([Write(f"88.118.3/C{i}", stored(rec(f"88.118.3/C{i}", 1))) for i in range(7)])
    await store.delete("88.118.3/C0", "88.118.3/C0")
    assert await store.count_handles("88.118.3") == 6
    (stats,) = await store.stats(["88.118.3"])
    assert stats.handles == 6 and sum(stats.registrations_per_day.values()) == 7


async def test_two_postgresql_workers_racing_on_the_same_new_keys_create_each_once(tmp_path: Path) -> None:
    with temp_database() as url:
        stores = [PostgresStore(url, partitions=8) for _ in range(2)]
        for s in stores:
            await s.open()
        try:

            def create(handle: str) -> Change:
                def change(old: HandleRecord | None) -> HandleRecord:
                    if old is not None:
                        raise HandleAlreadyExists(f"{handle} exists")
                    return rec(handle, 1)

                return change

            keys = [f"88.118.9/R{i}" for i in range(300)]
            rounds = [s.apply_many([Write(k, create(k)) for k in keys]) for s in stores for _ in range(3)]
            results = await asyncio.gather(*rounds)
            created = [sum(not isinstance(o, HandleAlreadyExists) for o in outcomes) for outcomes in results]
            assert sum(created) == 300
            assert await stores[0].count_handles("88.118.9") == 300
        finally:
            for s in stores:
                await s.close()


async def test_concurrent_single_writes_commit_together_each_with_its_own_outcome(store: Store) -> None:
    groups: list[int] = []
    apply_many = store._apply_many

    async def counted(writes: Sequence[Write], *, atomic: bool) -> list[Outcome]:
        groups.append(len(writes))
        return await apply_many(writes, atomic=atomic)

    store._apply_many = counted  # type: ignore[method-assign]
    await store.create("88.118/TAKEN", rec("88.118/taken", 1))
    audit = AuditEntry(1.0, "300:0.NA/88.118", "127.0.0.1", "create", "")
    writes = [
        store.create(f"88.118/G{n}", rec(f"88.118/g{n}", 1), audit._replace(handle=f"88.118/g{n}")) for n in range(40)
    ]
    writes.append(store.create("88.118/TAKEN", rec("88.118/taken", 2), audit._replace(handle="88.118/taken")))
    writes.append(store.create("88.118/TWICE", rec("88.118/twice", 1)))
    writes.append(store.create("88.118/TWICE", rec("88.118/twice", 2)))
    results = await asyncio.gather(*writes, return_exceptions=True)

    assert results[:40] == [None] * 40
    assert isinstance(results[40], HandleAlreadyExists)  # refused alone: its group committed
    assert sorted(map(type, results[41:]), key=str) == sorted([type(None), HandleAlreadyExists], key=str)
    assert (await store.get("88.118/TWICE")) == rec("88.118/twice", 1)  # the first in line won
    found = await store.get_many([f"88.118/G{n}" for n in range(40)])
    assert found == {f"88.118/G{n}": rec(f"88.118/g{n}", 1) for n in range(40)}
    assert groups[0] == 1 and sum(groups) == 44 and len(groups) <= 3  # 43 writers, one or two commits
    logged = await store.audit_entries(None, 0.0, 100)
    assert sum(e.result == 1 for e in logged if e.handle.startswith("88.118/g")) == 40
    assert [e.result for e in logged if e.handle == "88.118/taken"] == [int(ResponseCode.HANDLE_ALREADY_EXISTS)]
