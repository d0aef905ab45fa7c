"""The registration service: every write to the node goes through here.

It decides responsibility and permission, stamps and prepares values (secrets are
hashed before they reach the store) and calls the store's atomic operations.

Permissions depend on what is stored (create or replace, which values change), so a
write reads the record, checks, and then applies a change that first verifies the
record is still the one it checked against; if another write got in between, it
starts again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from protocol.errors import (
    HandleAlreadyExists,
    HandleNotFound,
    InvalidValue,
    NotResponsible,
    StoreUnavailable,
    ValueAlreadyExists,
    ValuesNotFound,
)
from protocol.identifiers import (
    NA_PREFIX,
    Handle,
    check_registrable,
    is_at_or_under,
    parse_handle,
    parse_prefix,
    prefix_handle,
)
from protocol.jsonfmt import IncomingValue
from protocol.records import HS_SECKEY, PUBLIC_READ, PUBLIC_WRITE, HandleRecord, HandleValue
from registry import secrets
from registry.auth import Identity
from registry.authority import NODE_ADMIN_ONLY, Authority, change_permissions, enclosing_zones, zone_chain
from registry.permissions import NODE_ADMIN_INDEX, Caller
from registry.store import Change, Store

MINT_ATTEMPTS = 3
GUARD_ATTEMPTS = 5

Stored = HandleRecord | None
# Given the stored record, check permissions and return the change to apply.
Decide = Callable[[HandleRecord | None], Awaitable[Change]]


class RegistrationService:
    def __init__(
        self,
        store: Store,
        *,
        node_prefix: str,
        case_sensitive: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.node_prefix = parse_prefix(node_prefix)
        self.case_sensitive = case_sensitive
        self.node_admin = Identity(NODE_ADMIN_INDEX, prefix_handle(self.node_prefix).key)
        self._clock = clock

    # Naming -------------------------------------------------------------------------

    def parse(self, text: str) -> Handle:
        return parse_handle(text, case_sensitive=self.case_sensitive)

    def responsible_for(self, zone: str) -> bool:
        return is_at_or_under(zone, self.node_prefix)

    def check_responsible(self, handle: Handle) -> None:
        if not self.responsible_for(handle.zone):
            raise NotResponsible(
                f"this node serves prefix {self.node_prefix}; {handle.text} is not under it",
                handle=handle.text,
            )

    # Values ---------------------------------------------------------------------------

    async def _prepare(self, incoming: list[IncomingValue]) -> list[HandleValue]:
        """Stamp values with the write time and hash any secret they carry."""
        now = int(self._clock())
        out = []
        for value, fmt in incoming:
            value = replace(value, timestamp=now)
            if value.type.upper() == HS_SECKEY:
                value = await self._seal_secret(value, fmt)
            out.append(value)
        return out

    async def _seal_secret(self, value: HandleValue, fmt: str) -> HandleValue:
        if fmt == "hash":
            data = secrets.check_hash(value.data)
        else:
            if not value.data:
                raise InvalidValue(f"value {value.index}: HS_SECKEY data is empty")
            data = await asyncio.get_running_loop().run_in_executor(None, secrets.hash_secret, value.data)
        # A secret is never publicly readable or writable, whatever the request said.
        return replace(value, data=data, permissions=value.permissions & ~(PUBLIC_READ | PUBLIC_WRITE))

    def authority(self) -> Authority:
        """A permission evaluator for one request."""
        return Authority(self.store, self.node_prefix, self.node_admin, case_sensitive=self.case_sensitive)

    async def visible_values(self, caller: Caller, handle: Handle, record: HandleRecord) -> list[HandleValue]:
        """The values of ``record`` the caller may read."""
        public = [v for v in record.values if v.public_read]
        if caller.identity is None or len(public) == len(record.values):
            return public
        readable = await self.authority().holds(caller, "read_value", enclosing_zones(handle, self.node_prefix), record)
        if not readable:
            return public
        return [v for v in record.values if v.public_read or v.admin_read]

    # Writes ---------------------------------------------------------------------------

    def check_target(self, handle: Handle) -> None:
        """Refuse early (before a body is read) what no body or credential could make acceptable."""
        self.check_responsible(handle)
        check_registrable(handle)

    async def _guarded(
        self, handle: Handle, decide: Callable[[HandleRecord | None], Awaitable[Change]]
    ) -> HandleRecord | None:
        """Read, let ``decide`` check permissions and build the change, apply it if nothing moved."""
        for _ in range(GUARD_ATTEMPTS):
            seen = await self.store.get(handle.key)
            change = await decide(seen)

            def guarded(
                old: HandleRecord | None, change: Change = change, seen: HandleRecord | None = seen
            ) -> HandleRecord | None:
                if old != seen:
                    raise _Moved()
                return change(old)

            try:
                return await self.store.apply(handle.key, guarded)
            except _Moved:
                continue
        raise StoreUnavailable(f"{handle.text} is being changed by others; try again")

    async def _require_create(self, caller: Caller, auth: Authority, handle: Handle) -> None:
        permission = "add_prefix" if handle.is_prefix_handle else "add_handle"
        await auth.require(caller, [permission], enclosing_zones(handle, self.node_prefix), f"create {handle.text}")

    async def put(
        self,
        caller: Caller,
        handle: Handle,
        incoming: list[IncomingValue],
        *,
        overwrite: bool = True,
        indexes: set[int] | None = None,
    ) -> bool:
        """Create or replace a handle (or, with ``indexes``, only those values). True when created."""
        self.check_target(handle)
        if indexes is not None:
            body = {v.value.index for v in incoming}
            if indexes - body:
                raise InvalidValue(f"index {_join(indexes - body)} is not in the body")
            if body - indexes:
                raise InvalidValue(f"values at index {_join(body - indexes)} are not named by index=")
        values = await self._prepare(incoming)
        auth = self.authority()
        zones = enclosing_zones(handle, self.node_prefix)

        async def decide(old: HandleRecord | None) -> Change:
            if old is None:
                await self._require_create(caller, auth, handle)
                return lambda _: HandleRecord(handle.text, tuple(values))
            if indexes is None and not overwrite:
                raise HandleAlreadyExists(f"handle {handle.text} already exists", handle=handle.text)
            if indexes is not None:
                clash = sorted(v.index for v in values if v.index in old.indexes())
                if clash and not overwrite:
                    raise ValueAlreadyExists(f"values already exist at index {_join(clash)}", handle=handle.text)
                needed = change_permissions(old, values)
                merged = {v.index: v for v in old.values} | {v.index: v for v in values}
                new = old.with_values(list(merged.values()))
            else:
                needed = change_permissions(old, values, removed=old.indexes() - {v.index for v in values})
                new = HandleRecord(old.handle, tuple(values))
            await auth.require(caller, sorted(needed), zones, f"change {handle.text}", old)
            return lambda _: new

        created = False

        async def decide_and_note(old: HandleRecord | None) -> Change:
            nonlocal created
            created = old is None
            return await decide(old)

        await self._guarded(handle, decide_and_note)
        return created

    async def mint(self, caller: Caller, base: str, incoming: list[IncomingValue]) -> Handle:
        """Create a handle named ``base`` plus a fresh unique suffix part."""
        probe = self.parse(base + "x")  # validates the prefix and the given part of the suffix
        self.check_target(probe)
        await self._require_create(caller, self.authority(), probe)
        values = await self._prepare(incoming)
        for _ in range(MINT_ATTEMPTS):
            handle = self.parse(base + str(uuid.uuid4()))
            check_registrable(handle)
            try:
                await self.store.create(handle.key, HandleRecord(handle.text, tuple(values)))
                return handle
            except HandleAlreadyExists:
                continue
        raise InvalidValue("could not mint a unique suffix")  # pragma: no cover - 2^-122 odds

    async def delete(
        self, caller: Caller, handle: Handle, indexes: set[int] | None = None, *, force: bool = False
    ) -> None:
        self.check_target(handle)
        auth = self.authority()
        zones = enclosing_zones(handle, self.node_prefix)
        if indexes:

            async def decide_values(old: HandleRecord | None) -> Change:
                if old is None:
                    raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
                missing = sorted(indexes - old.indexes())
                if missing:
                    raise ValuesNotFound(f"no value at index {_join(missing)}", handle=handle.text)
                needed = change_permissions(old, [], removed=indexes)
                await auth.require(caller, sorted(needed), zones, f"change {handle.text}", old)
                return lambda _: old.with_values([v for v in old.values if v.index not in indexes])

            await self._guarded(handle, decide_values)
            return
        if handle.key == prefix_handle(self.node_prefix).key:
            raise InvalidValue(f"{handle.text} is this node's own prefix handle and cannot be deleted")

        async def decide(old: HandleRecord | None) -> Change:
            if old is None:
                raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
            permission = "delete_prefix" if handle.is_prefix_handle else "delete_handle"
            await auth.require(caller, [permission], zones, f"delete {handle.text}")
            if handle.is_prefix_handle:
                await self._check_prefix_empty(caller, auth, handle, force)
            return lambda _: None

        await self._guarded(handle, decide)

    async def _check_prefix_empty(self, caller: Caller, auth: Authority, handle: Handle, force: bool) -> None:
        count = await self.store.count_handles(handle.zone)
        if not count:
            return
        if force:
            await auth.require(caller, [NODE_ADMIN_ONLY], [], f"force the deletion of {handle.text}")
            return
        raise InvalidValue(
            f"prefix {handle.zone} still has {count} identifiers; delete them first, "
            "or the node admin may force it with force=true"
        )

    # Listing --------------------------------------------------------------------------

    async def list_handles(
        self, caller: Caller, prefix_text: str, page: int | None, page_size: int | None
    ) -> tuple[str, int, list[str]]:
        prefix = parse_prefix(prefix_text)
        if prefix == NA_PREFIX:
            zones = [self.node_prefix]
        elif self.responsible_for(prefix):
            zones = zone_chain(prefix, self.node_prefix)
        else:
            raise NotResponsible(f"this node serves prefix {self.node_prefix}; {prefix} is not under it")
        await self.authority().require(caller, ["list_handles"], zones, f"list handles under {prefix}")
        total = await self.store.count_handles(prefix)
        if page_size == 0:
            return prefix, total, []
        offset = 0 if page is None or page_size is None else page * page_size
        return prefix, total, await self.store.list_handles(prefix, offset, page_size)

    async def homed_prefixes(self) -> list[str]:
        """Prefixes this node serves: its own and every prefix handle held under it."""
        held = await self.store.list_handles(NA_PREFIX)
        found = {self.node_prefix}
        found.update(p for h in held if self.responsible_for(p := h.partition("/")[2].upper()))
        return sorted(found)


class _Moved(Exception):
    """The record changed between the permission check and the write."""


def _join(indexes: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(indexes)))
