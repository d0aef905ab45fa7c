"""Quotas in both real stores (SQLite, and PostgreSQL in a database of the test's own): checked
in the writing transaction, counted in China's day (the clock injected), refused writes leaving
nothing behind, and one count shared by every process writing to the store."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from protocol.errors import (
    DailyQuotaExceeded,
    HandleError,
    IdentifierQuotaExceeded,
    PrefixQuotaExceeded,
    QuotaExceeded,
)
from protocol.records import HandleRecord, HandleValue
from registry.days import CHINA
from registry.identity.auth import Identity
from registry.identity.caller import Caller
from registry.postgres.store import PostgresStore
from registry.quota import Limits, QuotaPolicy, QuotaSetting
from registry.service import RegistrationService
from registry.sqlite.store import SqliteStore
from registry.store import AuditEntry, Store, Write
from tests.support.pgproc import temp_database

NOON = dt.datetime(2026, 12, 6, 12, 0, tzinfo=CHINA).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rec(handle: str) -> HandleRecord:
    return HandleRecord(handle, (HandleValue(1, "URL", b"https://q.example/"),))


def create(handle: str) -> Write:
    def change(old: HandleRecord | None) -> HandleRecord:
        if old is not None:
            raise HandleError(f"{handle} exists")
        return rec(handle)

    return Write(handle.upper(), change, AuditEntry(NOON, "300:0.NA/88.118", "127.0.0.1", "create", handle))


Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgresql"])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Makes stores on one database: each is what one worker process of a node holds."""
    opened: list[Store] = []
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(temp_database()) if request.param == "postgresql" else ""

        def make() -> Store:
            store: Store = PostgresStore(url, partitions=8) if url else SqliteStore(tmp_path / "store.sqlite3")
            opened.append(store)
            return store

        yield make
        for store in opened:
            await store.close()


async def opened(make: Opener, clock: Clock, **defaults: int) -> Store:
    store = make()
    await store.open()
    store.use_quotas(QuotaPolicy("88.118", Limits(**defaults), clock))
    return store


async def test_a_prefixs_own_quota_is_kept_and_audited(opener: Opener) -> None:
    store = await opened(opener, Clock(NOON))
    entry = AuditEntry(NOON, "300:0.NA/88.118", "127.0.0.1", "set_quota", "0.NA/88.118.8")
    await store.set_quota("88.118.8", QuotaSetting(identifiers=2, prefixes=0), entry)
    await store.set_quota("88.118.9", QuotaSetting(resolutions_per_day=5), entry._replace(handle="0.NA/88.118.9"))
    assert await store.quota_settings(["88.118.8", "88.118.7"]) == {"88.118.8": QuotaSetting(identifiers=2, prefixes=0)}
    assert set(await store.quota_settings(None)) == {"88.118.8", "88.118.9"}
    await store.set_quota("88.118.9", QuotaSetting(), entry._replace(handle="0.NA/88.118.9"))  # back to the defaults
    assert set(await store.quota_settings(None)) == {"88.118.8"}
    logged = await store.audit_entries(["88.118.8"], 0, 10)
    assert [(e.operation, e.handle) for e in logged] == [("set_quota", "0.NA/88.118.8")]


async def test_creations_past_the_identifier_quota_are_refused_and_leave_nothing(opener: Opener) -> None:
    store = await opened(opener, Clock(NOON))
    entry = AuditEntry(NOON, "300:0.NA/88.118", "127.0.0.1", "set_quota", "0.NA/88.118.8")
    await store.set_quota("88.118.8", QuotaSetting(identifiers=3), entry)
    outcomes = await store.apply_many([create(f"88.118.8/i{n}") for n in range(5)])
    assert [type(o).__name__ for o in outcomes[2:]] == [
        "HandleRecord",
        "IdentifierQuotaExceeded",
        "IdentifierQuotaExceeded",
    ]
    assert await store.get("88.118.8/I3") is None and await store.count_handles("88.118.8") == 3
    with pytest.raises(IdentifierQuotaExceeded):
        await store.apply(*create("88.118.8/later")[:3])
    await store.delete("88.118.8/I0", "88.118.8/i0")  # room again
    await store.apply(*create("88.118.8/later")[:3])
    (stats,) = await store.stats(["88.118.8"])
    assert stats.handles == 3 and stats.registrations_per_day == {"2026-12-06": 4}
    assert stats.refusals_per_day == {"2026-12-06": {"identifiers": 3}}
    logged = [e for e in await store.audit_entries(["88.118.8"], 0, 100) if e.result == 604]
    assert [e.handle for e in logged] == ["88.118.8/i3", "88.118.8/i4", "88.118.8/later"]


async def test_the_daily_registration_quota_opens_again_at_chinas_midnight(opener: Opener) -> None:
    clock = Clock(NOON)
    store = await opened(opener, clock, registrations_per_day=2)
    await store.apply_many([create("88.118.8/a"), create("88.118.8/b")])
    with pytest.raises(DailyQuotaExceeded) as refused:
        await store.apply(*create("88.118.8/c")[:3])
    assert refused.value.retry_after == 12 * 3600
    await store.apply(*create("88.118.9/c")[:3])  # another prefix has a day of its own
    await store.apply(*create("88.118/own")[:3])  # and the node's own prefix no quota
    clock.now = dt.datetime(2026, 12, 6, 23, 59, 59, tzinfo=CHINA).timestamp()
    with pytest.raises(DailyQuotaExceeded):
        await store.apply(*create("88.118.8/c")[:3])
    clock.now += 1  # 16:00 UTC: a new day in China
    await store.apply(*create("88.118.8/c")[:3])
    (stats,) = await store.stats(["88.118.8"])
    assert stats.registrations_per_day == {"2026-12-06": 2, "2026-12-07": 1}
    assert stats.refusals_per_day == {"2026-12-06": {"registrations": 2}}
    usage = await store.quota_usage("88.118.8", "2026-12-07")
    assert (usage.identifiers, usage.registrations, usage.refusals) == (3, 1, {})


async def test_derived_prefixes_past_the_quota_are_refused(opener: Opener) -> None:
    store = await opened(opener, Clock(NOON), prefixes=2)
    outcomes = await store.apply_many([create(f"0.NA/88.118.8.{n}") for n in range(3)])
    assert isinstance(outcomes[2], PrefixQuotaExceeded) and outcomes[2].prefix == "88.118.8"
    assert await store.get("0.NA/88.118.8.2") is None
    with pytest.raises(PrefixQuotaExceeded):
        await store.apply(*create("0.NA/88.118.8.0.1")[:3])  # deeper down counts too
    assert (await store.quota_usage("88.118.8", "2026-12-06")).prefixes == 2
    (stats,) = await store.stats(["88.118.8"])  # no identifier under it, but refusals to show
    assert (stats.handles, stats.refusals_per_day) == (0, {"2026-12-06": {"prefixes": 2}})
    assert await store.prefix_outbox() == {"88.118.8.0": 1, "88.118.8.1": 2}  # nothing queued for what was refused


async def test_resolutions_are_charged_per_identity_and_day(opener: Opener) -> None:
    store = await opened(opener, Clock(NOON))
    who, other = "300:0.NA/88.118.8", "300:88.118.8/BOT"
    assert [await store.charge_resolution(who, "88.118.8", 2, "2026-12-06") for _ in range(3)] == [True, True, False]
    assert await store.charge_resolution(other, "88.118.8", 2, "2026-12-06")
    assert await store.charge_resolution(who, "88.118.8", 2, "2026-12-07")
    usage = await store.quota_usage("88.118.8", "2026-12-06")
    assert usage.resolutions == {who: 2, other: 1} and usage.refusals == {"resolutions": 1}


async def test_workers_sharing_the_store_never_pass_a_quota_together(opener: Opener) -> None:
    clock = Clock(NOON)
    workers = [await opened(opener, clock, identifiers=25) for _ in range(3)]
    rounds = [
        w.apply_many([create(f"88.118.8/w{n}-{r}-{i}") for i in range(4)])
        for n, w in enumerate(workers)
        for r in range(4)
    ]
    results = await asyncio.gather(*rounds)
    created = sum(isinstance(o, HandleRecord) for outcomes in results for o in outcomes)
    assert created == 25 and await workers[0].count_handles("88.118.8") == 25
    resolved = await asyncio.gather(
        *(w.charge_resolution("300:0.NA/88.118.8", "88.118.8", 10, "2026-12-06") for w in workers for _ in range(6))
    )
    assert sum(resolved) == 10


async def test_the_service_charges_identities_in_chinas_day_and_never_the_anonymous(opener: Opener) -> None:
    clock = Clock(dt.datetime(2026, 12, 6, 23, 0, tzinfo=CHINA).timestamp())
    refused: list[QuotaExceeded] = []
    store = opener()
    await store.open()
    defaults = Limits(resolutions_per_day=1)
    service = RegistrationService(
        store, node_prefix="88.118", clock=clock, quota_defaults=defaults, quota_refused=refused.append
    )
    enterprise = Caller(Identity(300, "0.NA/88.118.8"), "127.0.0.1")
    await service.charge_resolution(enterprise)
    with pytest.raises(DailyQuotaExceeded) as exc:
        await service.charge_resolution(enterprise)
    assert exc.value.retry_after == 3600 and refused == [exc.value]
    for anyone in (Caller(None, "127.0.0.1"), Caller(service.node_admin, "127.0.0.1")):
        for _ in range(3):
            await service.charge_resolution(anyone)  # anonymous, and the node's own prefix: never counted
    clock.now += 3600  # midnight in China
    await service.charge_resolution(enterprise)
    usage = await store.quota_usage("88.118.8", "2026-12-06")
    assert usage.resolutions == {"300:0.NA/88.118.8": 1} and usage.refusals == {"resolutions": 1}
    assert (await store.quota_usage("88.118.8", "2026-12-07")).resolutions == {"300:0.NA/88.118.8": 1}
