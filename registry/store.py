"""The store interface every caller uses.

A backend provides reads (``get``, ``get_many``, listing, counting), one write primitive
(``apply_many``: a list of read-modify-write changes committed in one transaction, each
recorded in the audit log with its outcome) and the small tables beside the records:
audit, statistics, quotas, metadata templates and the publication outbox: every committed change
to a prefix handle ``0.NA/<prefix>`` gives that prefix the outbox's next sequence number in
the same transaction, so that publishing it to the top-level node can never be lost (see
``resolver.delegation.publisher``). The named operations (create, replace, delete,
add / replace / remove values) are built on ``apply`` here, once, so a PostgreSQL backend
inherits exactly the same semantics.

Once given a ``QuotaPolicy`` (``use_quotas``), a backend checks every write's creations
against the prefixes' quotas inside the write's transaction (``registry.quota``).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from protocol.codes import ResponseCode
from protocol.errors import HandleAlreadyExists, HandleError, HandleNotFound, ValueAlreadyExists, ValuesNotFound
from protocol.records import HandleRecord, HandleValue
from registry.quota import QuotaPolicy, QuotaSetting, QuotaUsage

MAX_GROUP = 512  # single writes committed together at most (``Store.apply``)

# How long after a write reads of the written keys avoid read replicas: the replication
# lag a node tolerates (a replica further behind serves other keys stale for longer).
RECENT_WRITE_SECONDS = 10.0

# Given the stored record (None when absent) return the record to store (None deletes);
# raise a HandleError to refuse, leaving the store untouched.
Change = Callable[[HandleRecord | None], HandleRecord | None]
Outcome = HandleRecord | None | HandleError
WriteListener = Callable[[list[str]], Awaitable[None]]


def redact_url(url: str) -> str:
    """A store URL with any password replaced by ***, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    auth, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in auth:
        return url
    return f"{scheme}{sep}{auth.partition(':')[0]}:***@{host}"


def _applied(outcome: Outcome) -> bool:
    return not isinstance(outcome, HandleError)


class AuditEntry(NamedTuple):
    """Who did what to which handle, from where, and how it ended (a Handle response code)."""

    time: float
    identity: str
    address: str
    operation: str
    handle: str
    result: int = 1
    message: str = ""

    @property
    def prefix(self) -> str:
        prefix, _, rest = self.handle.partition("/")
        return rest if prefix.upper() == "0.NA" else prefix.upper()


class ImportMarker(NamedTuple):
    """How far a bulk import has got: ``items`` of the input whose digest is ``source`` are in."""

    source: str
    items: int

    @property
    def name(self) -> str:
        return marker_name(self.source)


def marker_name(source: str) -> str:
    """The metadata name an import's progress is kept under."""
    return f"import:{source}"


class Write(NamedTuple):
    key: str
    change: Change
    audit: AuditEntry | None = None


@dataclass(frozen=True, slots=True)
class Publication:
    """How far publishing one prefix to one upstream has got."""

    prefix: str
    upstream: str
    seq: int  # the outbox sequence number the state is for
    state: str  # published, withdrawn or failed
    attempts: int = 0  # failures since the last success
    error: str = ""
    updated: float = 0.0

    def covers(self, seq: int) -> bool:
        """True when the upstream has the change numbered ``seq`` (or a later one)."""
        return self.seq >= seq and self.state != "failed"


@dataclass(frozen=True, slots=True)
class PrefixStats:
    prefix: str
    handles: int
    registrations_per_day: dict[str, int] = field(default_factory=dict)
    refusals_per_day: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> quota kind -> refusals


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    prefix: str
    name: str
    version: str
    body: bytes
    updated: int


class BatchAborted(HandleError):
    """An atomic batch had a failing item, so this item was not applied either."""

    code = ResponseCode.ERROR


class Store(ABC):
    """Durable map from normalised handle key to record, with its audit trail and stats."""

    def __init__(self) -> None:
        self._write_listeners: list[WriteListener] = []
        self.quotas: QuotaPolicy | None = None  # no quota is checked until ``use_quotas``
        # Single writes waiting for the next group commit (``apply``), and the task that commits them.
        self._singles: list[tuple[Write, asyncio.Future[Outcome]]] = []
        self._committer: asyncio.Task[None] | None = None
        # A mirror site's store (a PostgreSQL hot standby): how it stood when ``write_problem`` last looked.
        self.standby_status = ""

    def use_quotas(self, policy: QuotaPolicy | None) -> None:
        """Check every write's creations against the quotas of ``policy`` from now on (None: none)."""
        self.quotas = policy

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def get(self, key: str) -> HandleRecord | None:
        """The record stored under ``key``, or None."""

    @abstractmethod
    async def get_many(self, keys: Iterable[str], *, primary: bool = False) -> dict[str, HandleRecord]:
        """The records stored under ``keys`` (absent keys are left out).

        ``primary``: the caller knows the keys changed within ``RECENT_WRITE_SECONDS`` (or is
        about to write them): read them where writes land, not from a replica that may lag.
        """

    async def apply_many(self, writes: Sequence[Write], *, atomic: bool = False) -> list[Outcome]:
        """Apply the changes in order, in one transaction; one outcome per write.

        A change that raises a HandleError fails alone (its outcome is the error), unless
        ``atomic``, when any failure leaves everything unwritten. Later changes to the same
        key see earlier ones. Every write with an audit entry is logged with its outcome.
        Returns only after the result is durable and every write listener has been told
        which keys changed (caches drop them before the writer is answered).
        """
        outcomes = await self._apply_many(writes, atomic=atomic)
        if listeners := self._write_listeners:
            changed = list(dict.fromkeys(w.key for w, o in zip(writes, outcomes, strict=True) if _applied(o)))
            for listener in listeners:
                await listener(changed)
        return outcomes

    async def write_problem(self) -> str | None:
        """Why writes would fail now (disk full, read-only, I/O error), or None when they work."""
        return None

    def add_write_listener(self, listener: WriteListener) -> None:
        """Call ``listener`` with the keys of every committed write, before its writer hears back."""
        self._write_listeners.append(listener)

    @abstractmethod
    async def _apply_many(self, writes: Sequence[Write], *, atomic: bool) -> list[Outcome]:
        """``apply_many`` without telling the listeners."""

    @abstractmethod
    async def prefix_outbox(self, after: int = 0) -> dict[str, int]:
        """Prefixes whose prefix handle changed, each with the sequence number of its last change,
        for changes numbered above ``after`` (one sequence for the whole outbox), oldest first."""

    @abstractmethod
    async def touch_prefix(self, prefix: str) -> None:
        """Give ``prefix`` a new outbox sequence number without a change (republish it)."""

    @abstractmethod
    async def publications(self) -> list[Publication]: ...

    @abstractmethod
    async def record_publication(self, publication: Publication) -> None: ...

    @abstractmethod
    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Log refusals decided before the store was reached."""

    @abstractmethod
    async def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        """Handles directly under normalised ``prefix``, in key order."""

    @abstractmethod
    async def list_after(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` (key, handle) pairs directly under ``prefix`` whose key sorts after
        ``after`` (from the start when None), in key order: a keyset cursor's page, which costs
        the same however deep into the listing it is."""

    @abstractmethod
    async def count_handles(self, prefix: str) -> int:
        """How many handles are directly under normalised ``prefix``."""

    @abstractmethod
    async def audit_entries(self, prefixes: Sequence[str] | None, since: float, limit: int) -> list[AuditEntry]:
        """Audit entries at or after ``since`` for ``prefixes`` (and prefixes under them), oldest first."""

    @abstractmethod
    async def stats(self, prefixes: Sequence[str] | None) -> list[PrefixStats]:
        """Identifiers registered, registrations and quota refusals per day, per prefix (under ``prefixes``)."""

    # Quotas (registry.quota) ------------------------------------------------------------

    @abstractmethod
    async def quota_settings(self, prefixes: Sequence[str] | None) -> dict[str, QuotaSetting]:
        """The quotas the node admin set for ``prefixes`` (for every prefix that has some, when None)."""

    @abstractmethod
    async def set_quota(self, prefix: str, setting: QuotaSetting, audit: AuditEntry) -> None:
        """Keep ``setting`` as ``prefix``'s own quotas (none, when it sets none), audited in the same transaction."""

    @abstractmethod
    async def charge_resolution(self, identity: str, prefix: str, limit: int, day: str) -> bool:
        """Count one resolution by ``identity`` (of ``prefix``) on ``day`` unless it made ``limit``
        already; False when it had, and then the refusal is counted for ``prefix`` instead."""

    @abstractmethod
    async def quota_usage(self, prefix: str, day: str) -> QuotaUsage:
        """What ``prefix`` holds now, and what it and its identities used on ``day``."""

    @abstractmethod
    async def put_template(self, template: StoredTemplate, audit: AuditEntry) -> bool:
        """Store a template version; True when it is new."""

    @abstractmethod
    async def get_template(self, prefix: str, name: str, version: str | None = None) -> StoredTemplate | None:
        """A template version, or the most recently updated one when ``version`` is None."""

    @abstractmethod
    async def list_templates(self, prefix: str) -> list[StoredTemplate]: ...

    @abstractmethod
    async def delete_template(self, prefix: str, name: str, version: str | None, audit: AuditEntry) -> int:
        """Delete one version, or every version when None; how many were deleted."""

    # SNMS's dated login (registry.identity.tokens) --------------------------------------

    # Both are kept sealed under the node's secret key (``registry.identity.secrets.seal_digest``):
    # ``seckey`` is a keyed name of the hashed secret, ``digest`` the sealed SHA-256 of the secret.

    @abstractmethod
    async def login_digest(self, seckey: str) -> str | None:
        """The sealed digest kept under the name ``seckey``, once known."""

    @abstractmethod
    async def put_login_digest(self, seckey: str, digest: str) -> None:
        """Remember the sealed ``digest`` under ``seckey``, unless one is kept there already."""

    @abstractmethod
    async def login_digests(self) -> list[tuple[str, str]]:
        """Every kept (name, digest): for resealing them under a new key."""

    @abstractmethod
    async def replace_login_digests(self, rows: Sequence[tuple[str, str]], drop: Sequence[str]) -> None:
        """In one transaction, forget the names ``drop`` and keep ``rows`` (replacing any under their names)."""

    # The node's own notes about the store ----------------------------------------------

    @abstractmethod
    async def note(self, name: str) -> str | None:
        """The note kept under ``name`` (in the store's metadata table), if any."""

    @abstractmethod
    async def set_note(self, name: str, value: str) -> None:
        """Keep ``value`` under ``name``, replacing what was there."""

    # Bulk import and export (registry.bulk, resolver.commands.bulk) ---------------------

    @abstractmethod
    async def import_rows(self, rows: Sequence[tuple[str, str, bytes]], entry: AuditEntry, marker: ImportMarker) -> int:
        """Upsert (key, handle, packed record) rows with their counts, registrations, outbox and
        audit (``changeset.imported``), and record ``marker`` as the import's progress, all in
        one transaction; how many rows were created. Keys must be distinct."""

    async def import_pending(
        self,
        chunks: AsyncIterator[tuple[int, Sequence[tuple[str, str, bytes]]]],
        entry: AuditEntry,
        settle: Callable[[bool], Awaitable[ImportMarker | None]],
    ) -> int | None:
        """The (last item number, rows) chunks of an import that arrive while the rest of its input
        is still being checked, written as import_rows writes them once ``settle(fresh)`` gives the
        marker (every item passed); nothing is visible before, and nothing is written when it gives
        None (None) or raises. ``fresh``: the store held none of the chunks' keys before (their rows
        need no comparison with what it held). How many rows were created.

        This one keeps the chunks until settled, then writes each in a transaction of its own; a
        store that can hold a transaction open while it waits (PostgresStore) writes them as they
        come, into one transaction committed once settled."""
        kept = [chunk async for chunk in chunks]
        marker = await settle(False)
        if marker is None:
            return None
        created = 0
        for last, rows in kept:
            created += await self.import_rows(rows, entry, marker._replace(items=last))
        return created

    @abstractmethod
    async def import_progress(self, source: str) -> int:
        """How many items of the input ``source`` (its digest) earlier runs committed."""

    @abstractmethod
    async def export_after(self, prefix: str | None, after: str | None, limit: int) -> list[tuple[str, HandleRecord]]:
        """Up to ``limit`` (key, record) pairs in key order whose key sorts after ``after``: every
        record (``prefix`` None) or those directly under ``prefix``; a keyset page."""

    # Single writes ------------------------------------------------------------------

    async def apply(self, key: str, change: Change, audit: AuditEntry | None = None) -> HandleRecord | None:
        """Atomically apply one change; raise its HandleError if it refuses.

        Group commit: single writes arriving while a commit is under way wait for it, then
        go together in the next ``apply_many`` (each alone in its outcome, as in a batch),
        so concurrent writers share one transaction and one flush to disk. Each is answered
        only once its group has committed.
        """
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._singles.append((Write(key, change, audit), future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_singles(), name="store-group-commit")
        outcome = await future
        if isinstance(outcome, HandleError):
            raise outcome
        return outcome

    async def _commit_singles(self) -> None:
        group: list[tuple[Write, asyncio.Future[Outcome]]] = []
        try:
            while self._singles:
                group, self._singles = self._singles[:MAX_GROUP], self._singles[MAX_GROUP:]
                results: Sequence[Outcome | Exception]
                try:
                    results = await self.apply_many([write for write, _ in group])
                except Exception as exc:  # the whole group failed (StoreUnavailable): every writer hears it
                    results = [exc] * len(group)
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():  # its writer gave up waiting; the write stands or falls with the group
                        continue
                    if isinstance(result, Exception) and not isinstance(result, HandleError):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                group = []
        finally:
            self._committer = None
            if group:  # cancelled (the loop is closing) with a group under way: nobody commits the rest
                waiting, self._singles = group + self._singles, []
                for _, future in waiting:
                    if not future.done():
                        future.cancel()

    async def create(self, key: str, record: HandleRecord, audit: AuditEntry | None = None) -> None:
        def change(old: HandleRecord | None) -> HandleRecord:
            if old is not None:
                raise HandleAlreadyExists(f"handle {record.handle} already exists", handle=record.handle)
            return record

        await self.apply(key, change, audit)

    async def replace(self, key: str, record: HandleRecord, audit: AuditEntry | None = None) -> bool:
        """Store ``record`` whole; True when it did not exist before."""
        existed = False

        def change(old: HandleRecord | None) -> HandleRecord:
            nonlocal existed
            existed = old is not None
            return record

        await self.apply(key, change, audit)
        return not existed

    async def delete(self, key: str, handle: str, audit: AuditEntry | None = None) -> None:
        def change(old: HandleRecord | None) -> None:
            if old is None:
                raise HandleNotFound(f"handle {handle} not found", handle=handle)

        await self.apply(key, change, audit)

    async def put_values(self, key: str, handle: str, values: Iterable[HandleValue], *, overwrite: bool = True) -> bool:
        """Add or replace the given values, keeping the others; True when the handle was created."""
        values = list(values)
        created = False

        def change(old: HandleRecord | None) -> HandleRecord:
            nonlocal created
            created = old is None
            current = {} if old is None else {v.index: v for v in old.values}
            clash = sorted(v.index for v in values if v.index in current)
            if clash and not overwrite:
                raise ValueAlreadyExists(f"values already exist at index {', '.join(map(str, clash))}", handle=handle)
            current.update((v.index, v) for v in values)
            return HandleRecord(old.handle if old else handle, tuple(current.values()))

        await self.apply(key, change)
        return created

    async def remove_values(self, key: str, handle: str, indexes: Iterable[int]) -> HandleRecord:
        wanted = set(indexes)

        def change(old: HandleRecord | None) -> HandleRecord:
            if old is None:
                raise HandleNotFound(f"handle {handle} not found", handle=handle)
            missing = sorted(wanted - old.indexes())
            if missing:
                raise ValuesNotFound(f"no value at index {', '.join(map(str, missing))}", handle=handle)
            return old.with_values([v for v in old.values if v.index not in wanted])

        result = await self.apply(key, change)
        assert result is not None
        return result
