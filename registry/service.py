"""The registration service: every write to the node goes through here.

It decides responsibility and permission, stamps and prepares values (secrets are
hashed before they reach the store) and calls the store's atomic operations.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from protocol.errors import HandleError, InvalidValue, NotResponsible
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
from registry.permissions import Caller, Policy
from registry.store import Store

MINT_ATTEMPTS = 3


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
        self.policy = Policy(self.node_prefix)
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

    def visible_values(self, caller: Caller, record: HandleRecord) -> list[HandleValue]:
        return [v for v in record.values if self.policy.can_read(caller, v)]

    # Writes ---------------------------------------------------------------------------

    def check_write(self, caller: Caller, handle: Handle, what: str = "write") -> None:
        """Refuse early (before a body is read) what no body could make acceptable."""
        self.check_responsible(handle)
        check_registrable(handle)
        self.policy.check_write(caller, f"{what} {handle.text}")

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
        self.check_write(caller, handle, "write")
        if indexes is not None:
            body = {v.value.index for v in incoming}
            if indexes - body:
                raise InvalidValue(f"index {', '.join(map(str, sorted(indexes - body)))} is not in the body")
            if body - indexes:
                raise InvalidValue(
                    f"values at index {', '.join(map(str, sorted(body - indexes)))} are not named by index="
                )
        values = await self._prepare(incoming)
        if indexes is not None:
            return await self.store.put_values(handle.key, handle.text, values, overwrite=overwrite)
        record = HandleRecord(handle.text, tuple(values))
        if not overwrite:
            await self.store.create(handle.key, record)
            return True
        return await self.store.replace(handle.key, record)

    async def mint(self, caller: Caller, base: str, incoming: list[IncomingValue]) -> Handle:
        """Create a handle named ``base`` plus a fresh unique suffix part."""
        probe = self.parse(base + "x")  # validates the prefix and the given part of the suffix
        self.check_write(caller, probe, "mint under")
        values = await self._prepare(incoming)
        for _ in range(MINT_ATTEMPTS):
            handle = self.parse(base + str(uuid.uuid4()))
            check_registrable(handle)
            try:
                await self.store.create(handle.key, HandleRecord(handle.text, tuple(values)))
                return handle
            except HandleError as exc:
                if exc.code != 101:
                    raise
        raise InvalidValue("could not mint a unique suffix")  # pragma: no cover - 2^-122 odds

    async def delete(self, caller: Caller, handle: Handle, indexes: set[int] | None = None) -> None:
        self.check_write(caller, handle, "delete")
        if indexes:
            await self.store.remove_values(handle.key, handle.text, indexes)
            return
        if handle.key == prefix_handle(self.node_prefix).key:
            raise InvalidValue(f"{handle.text} is this node's own prefix handle and cannot be deleted")
        await self.store.delete(handle.key, handle.text)

    # Listing --------------------------------------------------------------------------

    async def list_handles(
        self, caller: Caller, prefix_text: str, page: int | None, page_size: int | None
    ) -> tuple[str, int, list[str]]:
        prefix = parse_prefix(prefix_text)
        if prefix != NA_PREFIX and not self.responsible_for(prefix):
            raise NotResponsible(f"this node serves prefix {self.node_prefix}; {prefix} is not under it")
        self.policy.check_list(caller, prefix)
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
