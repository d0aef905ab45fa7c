"""A ``Store`` kept in a dict, for in-process tests of what reads it (the resolution engine).

Record reads are counted (``reads``: the keys of each ``get_many``, in order) and can be made
to fail (``fail``) or to wait (``block`` until ``release``), the way a real store's reader
threads fail or stall. Writes go through ``Store.apply_many``, so the write listeners are told
after the commit exactly as the real stores tell them. The tables beside the records are
not kept: their methods raise NotImplementedError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import NamedTuple, NoReturn

from protocol.errors import HandleError
from protocol.identifiers import parse_handle
from protocol.records import HandleRecord
from registry.quota import QuotaSetting, QuotaUsage
from registry.store import AuditEntry, ImportMarker, Outcome, PrefixStats, Publication, Store, StoredTemplate, Write


class Read(NamedTuple):
    keys: list[str]
    primary: bool


class MemoryStore(Store):
    """Records by normalised key, in memory; reads counted, failing or blocked on demand."""

    def __init__(self, records: Iterable[HandleRecord] = ()) -> None:
        super().__init__()
        self.records = {parse_handle(r.handle).key: r for r in records}
        self.reads: list[Read] = []
        self.fail: HandleError | None = None  # raised by every read while set
        self._gate: asyncio.Event | None = None
        self._read_begun = asyncio.Condition()
        self._notes: dict[str, str] = {}

    def put(self, record: HandleRecord) -> None:
        """Store ``record`` without telling the write listeners (a change no cache hears of)."""
        self.records[parse_handle(record.handle).key] = record

    def block(self) -> None:
        """Make reads wait (after taking their snapshot of the records) until ``release``."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    def keys_read(self) -> list[list[str]]:
        return [read.keys for read in self.reads]

    async def reads_reach(self, n: int) -> None:
        """Wait until ``n`` reads have begun (for at most 5 s)."""
        async with asyncio.timeout(5), self._read_begun:
            await self._read_begun.wait_for(lambda: len(self.reads) >= n)

    async def get_many(self, keys: Iterable[str], *, primary: bool = False) -> dict[str, HandleRecord]:
        keys = list(keys)
        self.reads.append(Read(keys, primary))
        found = {k: self.records[k] for k in keys if k in self.records}  # what a read started now sees
        async with self._read_begun:
            self._read_begun.notify_all()
        if self._gate is not None:
            await self._gate.wait()
        if self.fail is not None:
            raise self.fail
        return found

    async def get(self, key: str) -> HandleRecord | None:
        return (await self.get_many([key])).get(key)

    async def _apply_many(self, writes: Sequence[Write], *, atomic: bool) -> list[Outcome]:
        before = dict(self.records)
        outcomes: list[Outcome] = []
        for write in writes:
            try:
                new = write.change(self.records.get(write.key))
            except HandleError as exc:
                outcomes.append(exc)
                continue
            if new is None:
                self.records.pop(write.key, None)
            else:
                self.records[write.key] = new
            outcomes.append(new)
        if atomic and any(isinstance(o, HandleError) for o in outcomes):
            self.records = before
        return outcomes

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.release()

    # Not kept --------------------------------------------------------------------------

    async def prefix_outbox(self, after: int = 0) -> dict[str, int]:
        _not_kept()

    async def touch_prefix(self, prefix: str) -> None:
        _not_kept()

    async def publications(self) -> list[Publication]:
        _not_kept()

    async def record_publication(self, publication: Publication) -> None:
        _not_kept()

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        _not_kept()

    async def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        _not_kept()

    async def list_after(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, str]]:
        _not_kept()

    async def count_handles(self, prefix: str) -> int:
        _not_kept()

    async def audit_entries(self, prefixes: Sequence[str] | None, since: float, limit: int) -> list[AuditEntry]:
        _not_kept()

    async def stats(self, prefixes: Sequence[str] | None) -> list[PrefixStats]:
        _not_kept()

    async def quota_settings(self, prefixes: Sequence[str] | None) -> dict[str, QuotaSetting]:
        return {}  # none set: the node's defaults apply (writes here are not checked against them)

    async def set_quota(self, prefix: str, setting: QuotaSetting, audit: AuditEntry) -> None:
        _not_kept()

    async def charge_resolution(self, identity: str, prefix: str, limit: int, day: str) -> bool:
        _not_kept()

    async def quota_usage(self, prefix: str, day: str) -> QuotaUsage:
        _not_kept()

    async def put_template(self, template: StoredTemplate, audit: AuditEntry) -> bool:
        _not_kept()

    async def get_template(self, prefix: str, name: str, version: str | None = None) -> StoredTemplate | None:
        _not_kept()

    async def list_templates(self, prefix: str) -> list[StoredTemplate]:
        _not_kept()

    async def delete_template(self, prefix: str, name: str, version: str | None, audit: AuditEntry) -> int:
        _not_kept()

    async def login_digest(self, seckey: str) -> str | None:
        _not_kept()

    async def put_login_digest(self, seckey: str, digest: str) -> None:
        _not_kept()

    async def login_digests(self) -> list[tuple[str, str]]:
        _not_kept()

    async def replace_login_digests(self, rows: Sequence[tuple[str, str]], drop: Sequence[str]) -> None:
        _not_kept()

    async def import_rows(self, rows: Sequence[tuple[str, str, bytes]], entry: AuditEntry, marker: ImportMarker) -> int:
        _not_kept()

    async def note(self, name: str) -> str | None:
        return self._notes.get(name)

    async def set_note(self, name: str, value: str) -> None:
        self._notes[name] = value

    async def import_progress(self, source: str) -> int:
        _not_kept()

    async def export_after(self, prefix: str | None, after: str | None, limit: int) -> list[tuple[str, HandleRecord]]:
        _not_kept()


def _not_kept() -> NoReturn:
    raise NotImplementedError("MemoryStore keeps only records")
