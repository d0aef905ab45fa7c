"""The Handle permission model: who holds which HS_ADMIN permission on what.

Grants come from HS_ADMIN values. For changes to a record's values they are read from
the record itself and from every prefix handle above it; for creating and deleting
handles, creating sub-prefixes, listing and templates, from the prefix handles
``0.NA/<prefix>`` that enclose the target, nearest first, up to the node prefix. A grant
held on a prefix therefore holds for everything under it, and the node admin, named on
the node's own prefix handle, is above every prefix. HS_VLIST groups are followed to a
bounded depth, loops ignored. An admin reference with index 0 names any index of its
handle, as in handle.net.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from protocol import valuedata as vd
from protocol.errors import AuthenticationNeeded, HandleError, InsufficientPermissions
from protocol.identifiers import NA_PREFIX, Handle, is_at_or_under, parse_handle
from protocol.records import ADMIN_WRITE, CREDENTIAL_TYPES, HS_ADMIN, HS_VLIST, PUBLIC_WRITE, HandleRecord, HandleValue
from registry.identity.auth import Identity
from registry.identity.caller import Caller
from registry.store import Store

MAX_GROUP_DEPTH = 4


def enclosing_zones(handle: Handle, node_prefix: str) -> list[str]:
    """Prefixes whose prefix handles govern ``handle``, nearest first, down to the node prefix.

    For ``88.118.8.1/x`` that is 88.118.8.1, 88.118.8, 88.118; for the prefix handle
    ``0.NA/88.118.8`` it starts one level up, at 88.118.
    """
    return list(_enclosing(handle.zone, handle.is_prefix_handle, node_prefix))


@functools.lru_cache(maxsize=4096)
def _enclosing(zone: str, strictly_above: bool, node_prefix: str) -> tuple[str, ...]:
    segments = zone.split(".")
    start = len(segments) - 1 if strictly_above else len(segments)
    zones = [".".join(segments[:n]) for n in range(start, 0, -1)]
    return tuple(z for z in zones if is_at_or_under(z, node_prefix))


def zone_chain(prefix: str, node_prefix: str) -> list[str]:
    """``prefix`` and the prefixes above it, down to the node prefix."""
    segments = prefix.split(".")
    zones = [".".join(segments[:n]) for n in range(len(segments), 0, -1)]
    return [z for z in zones if is_at_or_under(z, node_prefix)]


def admin_refs(record: HandleRecord | None) -> list[vd.AdminRef]:
    if record is None:
        return []
    refs = []
    for value in record.values:
        if value.type.upper() == HS_ADMIN:
            try:
                refs.append(vd.decode_admin(value.data))
            except HandleError:
                continue  # a malformed admin value grants nothing
    return refs


class Authority:
    """Answers "may this caller do that here?" for one request, remembering what it read."""

    def __init__(self, store: Store, node_prefix: str, node_admin: Identity, *, case_sensitive: bool = False) -> None:
        self._store = store
        self._node_prefix = node_prefix
        self._node_admin = node_admin
        self._case_sensitive = case_sensitive
        self._records: dict[str, HandleRecord | None] = {}
        self._answers: dict[tuple[Identity, str, tuple[str, ...]], bool] = {}

    @staticmethod
    def prefix_keys(zones: list[str]) -> list[str]:
        """The keys of the prefix handles of ``zones`` (what ``prefix_grants`` reads)."""
        return [f"{NA_PREFIX}/{zone}" for zone in zones]

    def learn(self, records: dict[str, HandleRecord | None]) -> None:
        """Take ``records`` (None: no such handle), read by the caller, as this request's view of them."""
        self._records.update(records)

    async def _get(self, key: str) -> HandleRecord | None:
        if key not in self._records:
            self._records[key] = await self._store.get(key)
        return self._records[key]

    def _key(self, handle_text: str) -> str | None:
        try:
            return parse_handle(handle_text, case_sensitive=self._case_sensitive).key
        except HandleError:
            return None

    async def _names(self, ref_handle: str, ref_index: int, identity: Identity, depth: int, seen: set[str]) -> bool:
        """Does the admin reference ``ref_index:ref_handle`` name ``identity``, directly or by group?"""
        key = self._key(ref_handle)
        if key is None:
            return False
        if key == identity.handle and ref_index in (0, identity.index):
            return True
        marker = f"{ref_index}:{key}"
        if depth >= MAX_GROUP_DEPTH or marker in seen:
            return False
        seen.add(marker)
        record = await self._get(key)
        if record is None:
            return False
        for value in record.values:
            if value.type.upper() != HS_VLIST or ref_index not in (0, value.index):
                continue
            try:
                members = vd.decode_vlist(value.data)
            except HandleError:
                continue
            for member_handle, member_index in members:
                if await self._names(member_handle, member_index, identity, depth + 1, seen):
                    return True
        return False

    async def _granted(self, identity: Identity, permission: str, refs: Iterable[vd.AdminRef]) -> bool:
        for ref in refs:
            if ref.allows(permission) and await self._names(ref.handle, ref.index, identity, 0, set()):
                return True
        return False

    async def prefix_grants(self, zones: list[str]) -> list[vd.AdminRef]:
        refs: list[vd.AdminRef] = []
        for key in self.prefix_keys(zones):
            refs += admin_refs(await self._get(key))
        return refs

    async def holds(
        self, caller: Caller, permission: str, zones: list[str], target: HandleRecord | None = None
    ) -> bool:
        """True when the caller holds ``permission`` on ``target`` (if given) or on any of ``zones``."""
        identity = caller.identity
        if identity is None:
            return False
        if identity == self._node_admin:
            return True
        if permission == NODE_ADMIN_ONLY:
            return False
        if target is not None and await self._granted(identity, permission, admin_refs(target)):
            return True
        # A batch asks the same question of the same prefix many times: answer it once.
        key = (identity, permission, tuple(zones))
        if key not in self._answers:
            self._answers[key] = await self._granted(identity, permission, await self.prefix_grants(zones))
        return self._answers[key]

    async def missing(
        self, caller: Caller, permissions: Iterable[str], zones: list[str], target: HandleRecord | None = None
    ) -> str | None:
        """The first of ``permissions`` the caller does not hold, or None when it holds them all."""
        for permission in permissions:
            if not await self.holds(caller, permission, zones, target):
                return permission
        return None

    @staticmethod
    def refusal(caller: Caller, permission: str, what: str) -> HandleError:
        """The error for a caller without ``permission`` to do ``what``."""
        if caller.identity is None:
            return AuthenticationNeeded(f"{what} requires authentication")
        return InsufficientPermissions(
            f"identity {caller.identity} lacks the {permission.replace('_', ' ')} permission to {what}"
        )

    async def require(
        self, caller: Caller, permissions: Iterable[str], zones: list[str], what: str,
        target: HandleRecord | None = None,
    ) -> None:  # fmt: skip
        """Raise unless the caller holds every one of ``permissions``."""
        if caller.identity is None:
            raise AuthenticationNeeded(f"{what} requires authentication")
        missing = await self.missing(caller, permissions, zones, target)
        if missing is not None:
            raise self.refusal(caller, missing, what)


def value_kind(value_type: str) -> str:
    """The kind of right a value needs: admin for the values that say who may act for a handle
    (HS_ADMIN, and the credentials an identity logs in with: HS_SECKEY, HS_PUBKEY, HS_VLIST),
    value for the rest. An editor granted value rights on a prefix could otherwise set the
    enterprise admin's secret and log in as the admin."""
    return "admin" if value_type.upper() in CREDENTIAL_TYPES else "value"


def change_permissions(
    old: HandleRecord, new_values: Iterable[HandleValue], *, removed: Iterable[int] = ()
) -> set[str]:
    """HS_ADMIN permissions needed to turn ``old`` into one with ``new_values`` and without ``removed``.

    Per value: adding needs add_value (add_admin for HS_ADMIN), changing needs modify_*,
    removing needs remove_*. Changing a value into or out of an HS_ADMIN is changing an admin:
    an HS_ADMIN overwritten by a URL is an admin removed (issue #21's probe). A value marked
    public-write may be changed or removed by anyone; one without admin-write by nobody but the
    node admin.
    """
    needed: set[str] = set()
    current = {v.index: v for v in old.values}
    for value in new_values:
        before = current.get(value.index)
        if before is None:
            needed.add(f"add_{value_kind(value.type)}")
        elif not same_value(before, value):
            kind = "admin" if "admin" in (value_kind(before.type), value_kind(value.type)) else "value"
            needed |= _touch(before, "modify", kind)
    for index in removed:
        if index in current:
            needed |= _touch(current[index], "remove", value_kind(current[index].type))
    return needed


def same_value(a: HandleValue, b: HandleValue) -> bool:
    return (a.type, a.data, a.ttl, a.ttl_absolute, a.permissions, a.references) == (
        b.type, b.data, b.ttl, b.ttl_absolute, b.permissions, b.references,
    )  # fmt: skip


def _touch(value: HandleValue, verb: str, kind: str) -> set[str]:
    if value.permissions & PUBLIC_WRITE:
        return set()
    if not value.permissions & ADMIN_WRITE:
        return {NODE_ADMIN_ONLY}
    return {f"{verb}_{kind}"}


NODE_ADMIN_ONLY = "node_admin"  # pseudo-permission: held by the node admin alone
