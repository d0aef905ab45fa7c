"""How many trips to the store a single write makes: each costs far more than the lookup."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from protocol.errors import AuthenticationFailed, InsufficientPermissions
from protocol.jsonfmt import IncomingValue
from protocol.records import HandleRecord, HandleValue
from registry.bootstrap import ensure_node_prefix
from registry.identity.auth import Authenticator, Identity
from registry.identity.caller import Caller
from registry.service import RegistrationService
from registry.sqlite.store import SqliteStore
from registry.store import Outcome, Write
from tests.support.handle_admin_node import admin_value
from tests.support.memory_store import MemoryStore


class CountingStore(SqliteStore):
    """A real SQLite store that notes each read it is asked for, by the keys it names."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.trips: list[list[str]] = []

    async def get(self, key: str) -> HandleRecord | None:
        self.trips.append([key])
        return await super().get(key)

    async def get_many(self, keys: Iterable[str], *, primary: bool = False) -> dict[str, HandleRecord]:
        wanted = list(keys)
        self.trips.append(wanted)
        return await super().get_many(wanted, primary=primary)


def test_a_create_reads_its_record_and_the_prefix_handles_above_it_in_one_trip(tmp_path: Path) -> None:
    async def run() -> None:
        store = CountingStore(tmp_path / "s.sqlite3")
        await store.open()
        try:
            await ensure_node_prefix(store, "88.118", "node-admin-secret")
            enterprise = HandleRecord("0.NA/88.118.8", (admin_value(100, "0.NA/88.118.8", 300),))
            await store.create("0.NA/88.118.8", enterprise)
            service = RegistrationService(store, node_prefix="88.118")
            caller = Caller(Identity(300, "0.NA/88.118.8"), "127.0.0.1")
            url = IncomingValue(HandleValue(1, "URL", b"https://factory.example/p/1"), "string")

            store.trips = []
            assert await service.create(caller, service.parse("88.118.8/P1"), [url]) is True
            assert store.trips[0] == ["88.118.8/P1", "0.NA/88.118.8", "0.NA/88.118"]
            assert all(not set(trip) & {"0.NA/88.118.8", "0.NA/88.118", "88.118.8/P1"} for trip in store.trips[1:])

            # Refused as before when the caller holds no grant there: what was read is the same.
            stranger = Caller(Identity(300, "0.NA/88.118.9"), "127.0.0.1")
            store.trips = []
            with pytest.raises(InsufficientPermissions):
                await service.create(stranger, service.parse("88.118.8/P2"), [url])
            assert store.trips[0] == ["88.118.8/P2", "0.NA/88.118.8", "0.NA/88.118"]
            assert await store.get("88.118.8/P2") is None
        finally:
            await store.close()

    asyncio.run(run())


def test_writers_waiting_for_a_group_commit_hear_it_when_the_committer_is_cancelled() -> None:
    class Stuck(MemoryStore):
        async def _apply_many(self, writes: Sequence[Write], *, atomic: bool) -> list[Outcome]:
            await asyncio.Event().wait()  # a commit that never ends
            raise AssertionError("unreachable")

    async def run() -> None:
        store = Stuck()
        first = asyncio.create_task(store.create("88.118/A", HandleRecord("88.118/A", ())))
        await asyncio.sleep(0.01)  # its group is under way ...
        second = asyncio.create_task(store.create("88.118/B", HandleRecord("88.118/B", ())))
        await asyncio.sleep(0.01)  # ... and this one waits for the next
        assert store._committer is not None
        store._committer.cancel()
        for writer in (first, second):
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(writer, 1)
        assert store._committer is None and store._singles == []

    asyncio.run(run())


def test_a_basic_login_reads_what_its_write_plans_against_in_the_same_trip(tmp_path: Path) -> None:
    async def run() -> None:
        store = CountingStore(tmp_path / "s.sqlite3")
        await store.open()
        try:
            await ensure_node_prefix(store, "88.118", "node-admin-secret")
            service = RegistrationService(store, node_prefix="88.118")
            authenticator = Authenticator(store)
            handle = service.parse("88.118/P1")
            url = IncomingValue(HandleValue(1, "URL", b"https://factory.example/p/1"), "string")

            store.trips = []
            read: dict[str, HandleRecord | None] = {}
            keys = service.write_keys(handle)
            identity = await authenticator.authenticate(
                "300:0.NA/88.118", b"node-admin-secret", "127.0.0.1", read_with=keys, into=read
            )
            assert store.trips == [["0.NA/88.118", "88.118/P1", "0.NA/88.118"]]
            assert read["88.118/P1"] is None and read["0.NA/88.118"] is not None
            caller = Caller(identity, "127.0.0.1", read_ahead=read, read_at=time.monotonic())
            assert await service.create(caller, handle, [url]) is True
            assert all(not set(trip) & {"0.NA/88.118", "88.118/P1"} for trip in store.trips[1:])
            assert read == {}  # taken once

            # A second write by the same caller reads for itself: what was read ahead is gone.
            store.trips = []
            assert await service.create(caller, service.parse("88.118/P2"), [url]) is True
            assert store.trips[0] == ["88.118/P2", "0.NA/88.118"]

            # Records read seconds before the write (a body sent slowly) are read again.
            p3 = service.parse("88.118/P3")
            early: dict[str, HandleRecord | None] = {}
            await authenticator.authenticate(
                "300:0.NA/88.118", b"node-admin-secret", "127.0.0.1", read_with=service.write_keys(p3), into=early
            )
            assert set(early) == {"0.NA/88.118", "88.118/P3"}
            stale = Caller(identity, "127.0.0.1", read_ahead=early, read_at=time.monotonic() - 5)
            store.trips = []
            assert await service.create(stale, p3, [url]) is True
            assert store.trips[0] == ["88.118/P3", "0.NA/88.118"]

            # A wrong secret reads the same, and hands nothing on.
            refused: dict[str, HandleRecord | None] = {}
            with pytest.raises(AuthenticationFailed):
                await authenticator.authenticate("300:0.NA/88.118", b"wrong", "127.0.0.1", read_with=keys, into=refused)
            assert refused == {}
        finally:
            await store.close()

    asyncio.run(run())
