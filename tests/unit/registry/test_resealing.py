"""Resealing at start: every record read once per key, not at every start (1.5 billion of them)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.records import HS_SECKEY, HandleRecord, HandleValue
from registry.identity import resealing, sealing, secrets
from registry.sqlite.store import SqliteStore


class ExportCounting(SqliteStore):
    """A real SQLite store that counts the pages of records read for export."""

    pages = 0

    async def export_after(self, prefix: str | None, after: str | None, limit: int) -> list[tuple[str, HandleRecord]]:
        self.pages += 1
        return await super().export_after(prefix, after, limit)


@pytest.fixture
def keyring() -> Iterator[sealing.Keyring]:
    """A keyring of the test's own, put back as it was afterwards."""
    before = secrets.keyring()
    ring = sealing.Keyring.generate()
    secrets.use_keyring(ring)
    yield ring
    secrets.use_keyring(before)


def seckey_record(handle: str, data: bytes) -> HandleRecord:
    return HandleRecord(handle, (HandleValue(300, HS_SECKEY, data),))


def test_records_are_read_once_under_a_key_and_again_when_it_changes(tmp_path: Path, keyring: sealing.Keyring) -> None:
    in_clear = hashlib.sha1(b"s3cret").hexdigest().encode()  # as a node before sealing kept it

    async def run() -> None:
        store = ExportCounting(tmp_path / "s.sqlite3")
        await store.open()
        try:
            await store.create("0.NA/88.118", seckey_record("0.NA/88.118", in_clear))
            first = await resealing.reseal_store(store)
            assert first.values == 1 and first.records_read and store.pages > 0
            stored = await store.get("0.NA/88.118")
            assert stored is not None and not secrets.needs_reseal(stored.values[0].data)

            store.pages = 0
            again = await resealing.reseal_store(store)
            assert store.pages == 0 and not again.records_read and again.values == 0

            # Another current key (a rotation, or another key file): every record read again.
            secrets.use_keyring(sealing.Keyring(sealing.Keyring.generate().keys + keyring.keys))
            rotated = await resealing.reseal_store(store)
            assert store.pages > 0 and rotated.values == 1
        finally:
            await store.close()

    asyncio.run(run())


def test_values_under_a_key_not_held_are_counted_at_every_start_and_read_again_once_it_is_given(
    tmp_path: Path, keyring: sealing.Keyring
) -> None:
    lost = sealing.Keyring.generate()  # the key of a store copied without its key file

    async def run() -> None:
        store = ExportCounting(tmp_path / "s.sqlite3")
        await store.open()
        try:
            secrets.use_keyring(lost)
            sealed_elsewhere = secrets.hash_secret(b"s3cret")
            secrets.use_keyring(keyring)
            await store.create("0.NA/88.118", seckey_record("0.NA/88.118", sealed_elsewhere))

            first = await resealing.reseal_store(store)
            assert first.missing == {lost.current: 1} and first.values == 0
            store.pages = 0
            again = await resealing.reseal_store(store)
            assert again.missing == {lost.current: 1} and store.pages == 0  # said, without a pass

            secrets.use_keyring(sealing.Keyring(keyring.keys + lost.keys))  # the lost key given back
            found = await resealing.reseal_store(store)
            assert store.pages > 0 and found.values == 1 and found.missing == {}
            stored = await store.get("0.NA/88.118")
            assert stored is not None and sealing.key_of(stored.values[0].data.decode()) == keyring.current
        finally:
            await store.close()

    asyncio.run(run())


def test_a_pass_that_left_a_record_behind_leaves_no_note(tmp_path: Path, keyring: sealing.Keyring) -> None:
    in_clear = hashlib.sha1(b"s3cret").hexdigest().encode()

    class Moving(ExportCounting):
        async def export_after(
            self, prefix: str | None, after: str | None, limit: int
        ) -> list[tuple[str, HandleRecord]]:
            rows = await super().export_after(prefix, after, limit)
            for key, _ in rows:  # changed by someone else between the read and the reseal
                await self.replace(key, seckey_record("0.NA/88.118", hashlib.sha1(b"other").hexdigest().encode()))
            return rows

    async def run() -> None:
        store = Moving(tmp_path / "s.sqlite3")
        await store.open()
        try:
            await store.create("0.NA/88.118", seckey_record("0.NA/88.118", in_clear))
            done = await resealing.reseal_store(store)
            assert done.failed == 1 and await store.note(resealing.SEALED_UNDER) is None
        finally:
            await store.close()

    asyncio.run(run())
