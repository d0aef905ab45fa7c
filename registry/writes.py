"""Planning one write: given the record as stored now, what may the caller make of it?

A plan is checked against permissions and yields the record to store. The caller applies
it with ``guard`` so that it lands only if the record is still the one planned against;
single writes and batches share every rule here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol.errors import (
    HandleAlreadyExists,
    HandleNotFound,
    InvalidValue,
    StoreUnavailable,
    ValueAlreadyExists,
    ValuesNotFound,
)
from protocol.identifiers import Handle
from protocol.records import HS_SECKEY, PUBLIC_READ, PUBLIC_WRITE, HandleRecord, HandleValue
from registry.authority import (
    NODE_ADMIN_ONLY,
    Authority,
    change_permissions,
    enclosing_zones,
    same_value,
    value_kind,
)
from registry.identity.caller import Caller
from registry.store import Change, Store
from registry.templates import FIRST_FIELD_INDEX, TEMPLATE_INDEX, TemplateChecker


@dataclass(frozen=True, slots=True)
class Plan:
    operation: str  # create, replace, update, remove_values, delete, unchanged
    new: HandleRecord | None


class Moved(StoreUnavailable):
    """The record changed between planning and writing; plan again."""


def guard(seen: HandleRecord | None, new: HandleRecord | None) -> Change:
    """A change that stores ``new`` only if the record is still ``seen``."""

    def change(old: HandleRecord | None) -> HandleRecord | None:
        if old != seen:
            raise Moved("the record changed while this write was checked; try again")
        return new

    return change


def _join(indexes: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(indexes)))


def _same_values(stored: HandleRecord, values: list[HandleValue]) -> bool:
    """Equal but for timestamps; a secret matches when it verifies against the stored hash."""
    if stored.indexes() != {v.index for v in values}:
        return False
    for value in values:
        before = stored.value_at(value.index)
        assert before is not None
        if value.type.upper() == HS_SECKEY and before.type.upper() == HS_SECKEY:
            continue  # compared by the caller through matches_secrets
        if not same_value(before, value):
            return False
    return True


class Planner:
    """Plans writes for one caller within one request, reusing what it has read."""

    def __init__(
        self, store: Store, auth: Authority, caller: Caller, node_prefix: str, templates: TemplateChecker
    ) -> None:
        self.store = store
        self.auth = auth
        self.caller = caller
        self.node_prefix = node_prefix
        self.templates = templates

    async def _checked(self, handle: Handle, plan: Plan) -> Plan:
        if not handle.is_prefix_handle:
            await self.templates.check(handle.prefix, plan.new)
        return plan

    def _zones(self, handle: Handle) -> list[str]:
        return enclosing_zones(handle, self.node_prefix)

    async def require_create(self, handle: Handle) -> None:
        permission = "add_prefix" if handle.is_prefix_handle else "add_handle"
        await self.auth.require(self.caller, [permission], self._zones(handle), f"create {handle.text}")

    async def _authorise(
        self, handle: Handle, old: HandleRecord, asks: Iterable[str], touched: Iterable[int], what: str
    ) -> None:
        """Authorise a change of ``old`` by what the request asks for, before any value is compared.

        ``asks`` are the permissions the operation needs whatever the stored values (derived from
        the request alone). A caller holding them is an administrator of the handle and may go on
        to the value-by-value check. Anyone else may only touch values open to the public (readable
        and writable by anyone); otherwise the refusal is the same whatever is stored, so that it
        tells nothing about values the caller may not read.
        """
        missing = await self.auth.missing(self.caller, asks, self._zones(handle), old)
        if missing is None:
            return
        open_values = [old.value_at(i) for i in touched]
        if not all(v is not None and v.permissions & PUBLIC_READ and v.permissions & PUBLIC_WRITE for v in open_values):
            raise self.auth.refusal(self.caller, missing, f"{what} {handle.text}")

    async def _require_change(self, handle: Handle, old: HandleRecord, needed: set[str]) -> None:
        await self.auth.require(self.caller, sorted(needed), self._zones(handle), f"change {handle.text}", old)

    async def put(
        self,
        handle: Handle,
        values: list[HandleValue],
        old: HandleRecord | None,
        *,
        overwrite: bool = True,
        indexes: set[int] | None = None,
        must_exist: bool = False,
    ) -> Plan:
        """handle.net PUT: create, replace whole, or (with ``indexes``) add / replace those values.

        ``must_exist`` (the Handle protocol's ADD_VALUE and MODIFY_VALUE) refuses to create
        the handle and, with ``overwrite``, any of the values ``indexes`` names."""
        if old is None and must_exist:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        if old is None:
            await self.require_create(handle)
            return await self._checked(handle, Plan("create", HandleRecord(handle.text, tuple(values))))
        if indexes is None:
            return await self._replace(handle, values, old, overwrite=overwrite)
        kinds = {value_kind(v.type) for v in values}
        asks = {f"add_{k}" for k in kinds} | ({f"modify_{k}" for k in kinds} if overwrite else set())
        await self._authorise(handle, old, sorted(asks), indexes, "change values of")
        absent = sorted(indexes - old.indexes()) if must_exist and overwrite else []
        if absent:
            raise ValuesNotFound(f"no value at index {_join(absent)}", handle=handle.text)
        clash = sorted(v.index for v in values if v.index in old.indexes())
        if clash and not overwrite:
            raise ValueAlreadyExists(f"values already exist at index {_join(clash)}", handle=handle.text)
        await self._require_change(handle, old, change_permissions(old, values))
        merged = {v.index: v for v in old.values} | {v.index: v for v in values}
        return await self._checked(handle, Plan("update", old.with_values(list(merged.values()))))

    async def _replace(self, handle: Handle, values: list[HandleValue], old: HandleRecord, *, overwrite: bool) -> Plan:
        if not overwrite:
            # Creating is what was asked: whoever may not create here learns nothing more.
            await self.require_create(handle)
            raise HandleAlreadyExists(f"handle {handle.text} already exists", handle=handle.text)
        asks = sorted({f"modify_{value_kind(v.type)}" for v in values} | {"modify_value"})
        touched = old.indexes() | {v.index for v in values}
        await self._authorise(handle, old, asks, touched, "replace")
        needed = change_permissions(old, values, removed=old.indexes() - {v.index for v in values})
        await self._require_change(handle, old, needed)
        return await self._checked(handle, Plan("replace", HandleRecord(old.handle, tuple(values))))

    async def create(self, handle: Handle, values: list[HandleValue], old: HandleRecord | None) -> Plan:
        """Create, and report success without writing when the identical record exists (a retry)."""
        if old is not None:
            await self.require_create(handle)  # before comparing: a refusal must not depend on what is stored
            if _same_values(old, values) and await self._same_secrets(old, values):
                return Plan("unchanged", old)
            raise HandleAlreadyExists(f"handle {handle.text} already exists with other values", handle=handle.text)
        return await self.put(handle, values, None)

    async def update_fields(self, handle: Handle, values: list[HandleValue], old: HandleRecord | None) -> Plan:
        """SNMS's update: the template reference and the template's fields become ``values``;
        every other value of the record (its HS_ADMIN, say) stays as it is."""
        if old is None:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        kept = [v for v in old.values if v.index < FIRST_FIELD_INDEX and v.index != TEMPLATE_INDEX]
        return await self.put(handle, [*kept, *values], old)

    async def add_values(self, handle: Handle, values: list[HandleValue], old: HandleRecord | None) -> Plan:
        """Add values; re-adding identical ones (a retry) is not a conflict."""
        if old is None:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        asks = sorted({f"add_{value_kind(v.type)}" for v in values})
        await self._authorise(handle, old, asks, [v.index for v in values], "add values to")
        differing = [v.index for v in values if (b := old.value_at(v.index)) is not None and not same_value(b, v)]
        if differing:
            raise ValueAlreadyExists(f"other values already exist at index {_join(differing)}", handle=handle.text)
        fresh = [v for v in values if v.index not in old.indexes()]
        if not fresh:
            return Plan("unchanged", old)
        return await self.put(handle, fresh, old, indexes={v.index for v in fresh})

    async def remove_values(self, handle: Handle, indexes: set[int], old: HandleRecord | None) -> Plan:
        if old is None:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        await self._authorise(handle, old, ["remove_value"], indexes, "remove values of")
        missing = sorted(indexes - old.indexes())
        if missing:
            raise ValuesNotFound(f"no value at index {_join(missing)}", handle=handle.text)
        await self._require_change(handle, old, change_permissions(old, [], removed=indexes))
        kept = old.with_values([v for v in old.values if v.index not in indexes])
        return await self._checked(handle, Plan("remove_values", kept))

    async def delete(self, handle: Handle, old: HandleRecord | None, *, force: bool = False) -> Plan:
        if old is None:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        permission = "delete_prefix" if handle.is_prefix_handle else "delete_handle"
        await self.auth.require(self.caller, [permission], self._zones(handle), f"delete {handle.text}")
        if handle.is_prefix_handle and handle.zone == self.node_prefix:
            raise InvalidValue(f"{handle.text} is this node's own prefix handle and cannot be deleted")
        if handle.is_prefix_handle:
            await self._check_prefix_empty(handle, force)
        return Plan("delete", None)

    async def _check_prefix_empty(self, handle: Handle, force: bool) -> None:
        count = await self.store.count_handles(handle.zone)
        if not count:
            return
        if force:
            await self.auth.require(self.caller, [NODE_ADMIN_ONLY], [], f"force the deletion of {handle.text}")
            return
        raise InvalidValue(
            f"prefix {handle.zone} still has {count} identifiers; delete them first, "
            "or the node admin may force it with force=true"
        )

    async def _same_secrets(self, old: HandleRecord, values: list[HandleValue]) -> bool:
        for value in values:
            if value.type.upper() != HS_SECKEY:
                continue
            before = old.value_at(value.index)
            if before is None or before.data != value.data:
                # A retry matches whether it sends the secret in clear (hashed on arrival, without
                # salt) or the stored hash back (format "hash"); a value still in the old salted
                # scrypt form matches neither, and is rewritten.
                return False
        return True
