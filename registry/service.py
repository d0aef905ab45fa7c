"""The registration service: every write to the node goes through here.

It decides responsibility, prepares values (stamps them; secrets are hashed before they
reach the store), plans the write against the stored record (``registry.writes``) and
applies it, recording the outcome in the audit log. A write that was refused before it
reached the store is logged here; one refused or done by the store is logged there, in
the same transaction as the change. The store checks the writes against the prefixes'
quotas (``registry.quota``); the service charges authenticated resolutions to theirs and
lets the node admin set them.

A mirror site's service (``read_only``) refuses every write with ``MirrorReadOnly`` before
anything is read or checked, keeps no audit of refusals and counts no resolution against a
quota: its store is a replica it cannot write (deploy/MIRROR.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from protocol.errors import (
    AuthenticationNeeded,
    HandleAlreadyExists,
    HandleError,
    HandleNotFound,
    InsufficientPermissions,
    InvalidValue,
    MirrorReadOnly,
    QuotaExceeded,
    StoreUnavailable,
)
from protocol.identifiers import (
    NA_PREFIX,
    Handle,
    check_registrable,
    check_responsible,
    is_at_or_under,
    parse_handle,
    parse_prefix,
    prefix_handle,
)
from protocol.jsonfmt import IncomingValue
from protocol.records import HS_PUBKEY, HS_SECKEY, PUBLIC_READ, PUBLIC_WRITE, HandleRecord, HandleValue
from protocol.wire.keys import check_public_key_value
from registry import quota
from registry.authority import Authority, enclosing_zones, zone_chain
from registry.days import china_day
from registry.identity import secrets
from registry.identity.auth import Identity
from registry.identity.caller import NODE_ADMIN_INDEX, Caller
from registry.store import AuditEntry, PrefixStats, Store, StoredTemplate
from registry.templates import (
    Template,
    TemplateChecker,
    check_name,
    check_version_query,
    decode_template,
    encode_template,
    parse_template,
)
from registry.writes import Moved, Plan, Planner, guard

MINT_ATTEMPTS = 3
PLAN_ATTEMPTS = 5
# A write plans against the records its login read (``Caller.read_ahead``) only while they
# are at most this many seconds old; older, it reads them again, so a request body sent
# slowly cannot age the grants the write is checked against.
READ_AHEAD_AGE = 0.5

# Given the record as stored now, plan the write.
PlanFor = Callable[[HandleRecord | None], Awaitable[Plan]]
QuotaRefused = Callable[[QuotaExceeded], None]


def _uncounted(exc: QuotaExceeded) -> None:
    pass


def _check_public_key(value: HandleValue) -> None:
    """InvalidValue naming the value when its HS_PUBKEY data claims SM2 and is no SM2 key: an
    identity given it could never log in, and the writer would only learn so at its first login."""
    try:
        check_public_key_value(value.data)
    except InvalidValue as exc:
        raise InvalidValue(f"value {value.index}: {exc.message}") from None


class RegistrationService:
    def __init__(
        self,
        store: Store,
        *,
        node_prefix: str,
        case_sensitive: bool = False,
        clock: Callable[[], float] = time.time,
        quota_defaults: quota.Limits = quota.UNLIMITED,
        quota_refused: QuotaRefused = _uncounted,
        read_only: str | None = None,
    ) -> None:
        """``read_only``: this is a mirror site's service; the message every write is refused with."""
        self.store = store
        self.read_only = read_only
        self.node_prefix = parse_prefix(node_prefix)
        self.case_sensitive = case_sensitive
        self.node_admin = Identity(NODE_ADMIN_INDEX, prefix_handle(self.node_prefix).key)
        self.clock = clock
        # The store checks every write through the service against these (its clock says when "today" is).
        self.quotas = quota.QuotaPolicy(self.node_prefix, quota_defaults, clock)
        store.use_quotas(self.quotas)
        self.quota_refused = quota_refused  # told of every quota refusal (the metric)

    # Naming ---------------------------------------------------------------------------

    def parse(self, text: str) -> Handle:
        return parse_handle(text, case_sensitive=self.case_sensitive)

    def responsible_for(self, zone: str) -> bool:
        return is_at_or_under(zone, self.node_prefix)

    def check_responsible(self, handle: Handle) -> None:
        check_responsible(handle.zone, self.node_prefix, handle.text, handle=handle.text)

    def check_writable(self) -> None:
        """MirrorReadOnly on a mirror site, which takes no write whatever it is."""
        if self.read_only is not None:
            raise MirrorReadOnly(self.read_only)

    def check_target(self, handle: Handle) -> None:
        """Refuse early (before a body is read) what no body or credential could make acceptable."""
        self.check_writable()
        self.check_responsible(handle)
        check_registrable(handle)

    # Values and permissions -------------------------------------------------------------

    def now(self) -> int:
        """The write time values are stamped with (whole seconds, as the wire carries)."""
        return int(self.clock())

    async def prepare(self, incoming: list[IncomingValue]) -> list[HandleValue]:
        """The values to store: any secret among them hashed (values are stamped when parsed),
        any HS_PUBKEY that claims to be an SM2 key checked to be one."""
        for value, _ in incoming:
            if value.type.upper() == HS_PUBKEY:
                _check_public_key(value)
        if not any(value.type.upper() == HS_SECKEY for value, _ in incoming):
            return [value for value, _ in incoming]
        return [
            await self._seal_secret(value, fmt) if value.type.upper() == HS_SECKEY else value for value, fmt in incoming
        ]

    async def _seal_secret(self, value: HandleValue, fmt: str) -> HandleValue:
        if fmt == "hash":
            data = secrets.check_hash(value.data)
        else:
            if not value.data:
                raise InvalidValue(f"value {value.index}: HS_SECKEY data is empty")
            data = secrets.hash_secret(value.data)
        # A secret is never publicly readable or writable, whatever the request said.
        return value._replace(data=data, permissions=value.permissions & ~(PUBLIC_READ | PUBLIC_WRITE))

    async def learn_digests(self, incoming: list[IncomingValue]) -> None:
        """Remember, for each secret sent in clear, the SHA-256 SNMS's dated login proves it by
        (``registry.identity.tokens``): the stored SHA-1 cannot give it. Called once the write is done."""
        for value, fmt in incoming:
            if self.read_only is None and value.type.upper() == HS_SECKEY and fmt != "hash" and value.data:
                await self.store.put_login_digest(*secrets.seal_digest(value.data))

    def authority(self) -> Authority:
        """A permission evaluator for one request."""
        return Authority(self.store, self.node_prefix, self.node_admin, case_sensitive=self.case_sensitive)

    def template_checker(self) -> TemplateChecker:
        """Finds the template a record names for a prefix (the nearest definition), once per request."""
        return TemplateChecker(self.store, lambda prefix: zone_chain(prefix, self.node_prefix))

    def write_keys(self, handle: Handle) -> list[str]:
        """What a write of ``handle`` plans against: its record and the prefix handles above it."""
        return [handle.key, *Authority.prefix_keys(enclosing_zones(handle, self.node_prefix))]

    def planner(self, caller: Caller) -> Planner:
        return Planner(self.store, self.authority(), caller, self.node_prefix, self.template_checker())

    async def visible_values(self, caller: Caller, handle: Handle, record: HandleRecord) -> list[HandleValue]:
        """The values of ``record`` the caller may read, secrets withheld (``secrets.withhold``)."""
        public = [v for v in record.values if v.public_read]
        if caller.identity is None or len(public) == len(record.values):
            return secrets.withhold(public)
        zones = enclosing_zones(handle, self.node_prefix)
        if not await self.authority().holds(caller, "read_value", zones, record):
            return secrets.withhold(public)
        return secrets.withhold(v for v in record.values if v.public_read or v.admin_read)

    # Audit ------------------------------------------------------------------------------

    def audit_entry(self, caller: Caller, operation: str, handle: str) -> AuditEntry:
        identity = "anonymous" if caller.identity is None else str(caller.identity)
        if caller.via:
            operation = f"{caller.via}_{operation}"
        return AuditEntry(self.clock(), identity, caller.address, operation, handle)

    async def log_refusal(self, caller: Caller, operation: str, handle: str, exc: HandleError) -> None:
        if self.read_only is not None:  # a mirror's store is a replica: the primary keeps the audit log
            return
        entry = self.audit_entry(caller, operation, handle)
        await self.store.append_audit([entry._replace(result=int(exc.code), message=exc.message)])

    # Writes -----------------------------------------------------------------------------

    async def _write(self, caller: Caller, handle: Handle, verb: str, planner: Planner, plan_for: PlanFor) -> Plan:
        """Plan against the stored record and apply, again if the record moved meanwhile.

        The record and the prefix handles whose grants the plan checks are read in one trip
        to the store (each trip costs far more than the lookup: a thread hop, or a round trip).
        """
        try:
            self.check_target(handle)
            wanted = self.write_keys(handle)
            grants = wanted[1:]
            ahead = caller.read_ahead
            fresh = time.monotonic() - caller.read_at <= READ_AHEAD_AGE
            for _ in range(PLAN_ATTEMPTS):
                if ahead and fresh and all(key in ahead for key in wanted):  # read with the caller's login
                    read = {key: record for key in wanted if (record := ahead[key]) is not None}
                else:
                    read = await self.store.get_many(wanted, primary=True)
                if ahead:
                    ahead.clear()  # once: a second plan, or a second write, reads afresh
                planner.auth.learn({key: read.get(key) for key in grants})
                seen = read.get(handle.key)
                plan = await plan_for(seen)
                audit = self.audit_entry(caller, plan.operation, handle.text)
                try:
                    await self.store.apply(handle.key, guard(seen, plan.new), audit)
                    return plan
                except Moved:
                    continue
            raise StoreUnavailable(f"{handle.text} is being changed by others; try again")
        except HandleError as exc:
            if isinstance(exc, QuotaExceeded):
                self.quota_refused(exc)
            if not exc.logged:
                await self.log_refusal(caller, verb, handle.text, exc)
            raise

    async def put(
        self,
        caller: Caller,
        handle: Handle,
        incoming: list[IncomingValue],
        *,
        overwrite: bool = True,
        indexes: set[int] | None = None,
        must_exist: bool = False,
    ) -> bool:
        """Create or replace a handle (or, with ``indexes``, only those values). True when created.

        ``must_exist``: the handle must exist and, with ``overwrite``, every value ``indexes``
        names (the Handle protocol's ADD_VALUE and MODIFY_VALUE)."""
        if indexes is not None:
            body = {v.value.index for v in incoming}
            if indexes - body:
                raise InvalidValue(f"index {', '.join(map(str, sorted(indexes - body)))} is not in the body")
            if body - indexes:
                extra = ", ".join(map(str, sorted(body - indexes)))
                raise InvalidValue(f"values at index {extra} are not named by index=")
        values = await self.prepare(incoming)
        planner = self.planner(caller)

        async def plan_for(old: HandleRecord | None) -> Plan:
            return await planner.put(handle, values, old, overwrite=overwrite, indexes=indexes, must_exist=must_exist)

        plan = await self._write(caller, handle, "put", planner, plan_for)
        await self.learn_digests(incoming)
        return plan.operation == "create"

    async def create(self, caller: Caller, handle: Handle, incoming: list[IncomingValue]) -> bool:
        """Create a handle; True when created, False when the identical record was there already
        (a retry of a create whose answer was lost). Other values there: HandleAlreadyExists."""
        values = await self.prepare(incoming)
        planner = self.planner(caller)

        async def plan_for(old: HandleRecord | None) -> Plan:
            return await planner.create(handle, values, old)

        plan = await self._write(caller, handle, "create", planner, plan_for)
        await self.learn_digests(incoming)
        return plan.operation == "create"

    async def update_fields(self, caller: Caller, handle: Handle, incoming: list[IncomingValue]) -> None:
        """Replace the template reference and fields of an existing handle (``Planner.update_fields``)."""
        values = await self.prepare(incoming)
        planner = self.planner(caller)

        async def plan_for(old: HandleRecord | None) -> Plan:
            return await planner.update_fields(handle, values, old)

        await self._write(caller, handle, "update", planner, plan_for)

    async def mint(self, caller: Caller, base: str, incoming: list[IncomingValue]) -> Handle:
        """Create a handle named ``base`` plus a fresh unique suffix part."""
        values = await self.prepare(incoming)
        planner = self.planner(caller)
        for _ in range(MINT_ATTEMPTS):
            handle = self.parse(base + str(uuid.uuid4()))

            async def plan_for(old: HandleRecord | None, handle: Handle = handle) -> Plan:
                return await planner.put(handle, values, old, overwrite=False)

            try:
                await self._write(caller, handle, "mint", planner, plan_for)
                await self.learn_digests(incoming)
                return handle
            except HandleAlreadyExists:
                continue
        raise InvalidValue("could not mint a unique suffix")  # pragma: no cover - 2^-122 odds

    async def delete(
        self, caller: Caller, handle: Handle, indexes: set[int] | None = None, *, force: bool = False
    ) -> None:
        planner = self.planner(caller)

        async def plan_for(old: HandleRecord | None) -> Plan:
            if indexes:
                return await planner.remove_values(handle, indexes, old)
            return await planner.delete(handle, old, force=force)

        await self._write(caller, handle, "delete", planner, plan_for)

    # Listing --------------------------------------------------------------------------

    def prefix_zones(self, prefix: str) -> list[str]:
        """The zones whose admins govern ``prefix``; NotResponsible outside the node prefix."""
        if prefix == NA_PREFIX:
            return [self.node_prefix]
        check_responsible(prefix, self.node_prefix, prefix)
        return zone_chain(prefix, self.node_prefix)

    async def list_handles(
        self, caller: Caller, prefix_text: str, page: int | None, page_size: int | None
    ) -> tuple[str, int, list[str]]:
        prefix, total = await self._listing(caller, prefix_text)
        if page_size == 0:
            return prefix, total, []
        offset = 0 if page is None or page_size is None else page * page_size
        return prefix, total, await self.store.list_handles(prefix, offset, page_size)

    async def list_after(
        self, caller: Caller, prefix_text: str, after: str | None, page_size: int
    ) -> tuple[str, int, list[tuple[str, str]]]:
        """A keyset page: up to ``page_size`` (key, handle) pairs after the key ``after``."""
        prefix, total = await self._listing(caller, prefix_text)
        return prefix, total, await self.store.list_after(prefix, after, page_size) if page_size else []

    async def _listing(self, caller: Caller, prefix_text: str) -> tuple[str, int]:
        prefix = parse_prefix(prefix_text)
        zones = self.prefix_zones(prefix)
        await self.authority().require(caller, ["list_handles"], zones, f"list handles under {prefix}")
        return prefix, await self.store.count_handles(prefix)

    async def write_problem(self) -> str | None:
        """Why the node cannot take writes now (a full disk, a failing store), or None.

        On a mirror site: why it cannot serve its replica, or None; ``standby_status`` then says
        whether the replica is still a standby or was promoted."""
        return await self.store.write_problem()

    @property
    def standby_status(self) -> str:
        return self.store.standby_status

    async def homed_prefixes(self) -> list[str]:
        """Prefixes this node serves: its own and every prefix handle held under it."""
        held = await self.store.list_handles(NA_PREFIX)
        found = {self.node_prefix}
        found.update(p for h in held if self.responsible_for(p := h.partition("/")[2].upper()))
        return sorted(found)

    # Templates ------------------------------------------------------------------------

    async def _require_prefix_admin(self, caller: Caller, prefix: str, permission: str, what: str) -> None:
        await self.authority().require(caller, [permission], self.prefix_zones(prefix), what)

    async def put_template(self, caller: Caller, prefix_text: str, name: str, body: object) -> bool:
        """Define (or redefine) one version of a template; True when that version is new."""
        self.check_writable()
        prefix = parse_prefix(prefix_text)
        shown = f"template {prefix}/{name}"
        try:
            template = parse_template(name, body)
            await self._require_prefix_admin(caller, prefix, "modify_value", f"define {shown}")
        except HandleError as exc:
            await self.log_refusal(caller, "put_template", shown, exc)
            raise
        stored = StoredTemplate(prefix, name, template.version, encode_template(template), int(self.clock()))
        audit = self.audit_entry(caller, "put_template", f"{prefix}/{name}@{template.version}")
        return await self.store.put_template(stored, audit)

    async def delete_template(self, caller: Caller, prefix_text: str, name: str, version: str | None) -> int:
        self.check_writable()
        prefix = parse_prefix(prefix_text)
        shown = f"template {prefix}/{name}"
        try:
            await self._require_prefix_admin(caller, prefix, "modify_value", f"delete {shown}")
            check_name(name)
            check_version_query(version)
            if await self.store.get_template(prefix, name, version) is None:
                raise HandleNotFound(f"{shown}{'' if version is None else '@' + version} is not defined")
        except HandleError as exc:
            await self.log_refusal(caller, "delete_template", shown, exc)
            raise
        audit = self.audit_entry(caller, "delete_template", f"{prefix}/{name}@{version or '*'}")
        return await self.store.delete_template(prefix, name, version, audit)

    async def get_template(self, prefix_text: str, name: str, version: str | None) -> Template:
        prefix = parse_prefix(prefix_text)
        self.prefix_zones(prefix)
        stored = await self.store.get_template(prefix, check_name(name), check_version_query(version))
        if stored is None:
            raise HandleNotFound(f"template {prefix}/{name}{'' if version is None else '@' + version} is not defined")
        return decode_template(stored)

    async def list_templates(self, prefix_text: str) -> tuple[str, list[Template]]:
        prefix = parse_prefix(prefix_text)
        self.prefix_zones(prefix)
        return prefix, [decode_template(t) for t in await self.store.list_templates(prefix)]

    # Oversight ------------------------------------------------------------------------

    async def _oversight_scope(self, caller: Caller, prefix_text: str | None, what: str) -> list[str] | None:
        """The prefixes a caller may see ``what`` for: all (None) for the node admin."""
        auth = self.authority()
        if prefix_text is None:
            if caller.identity is None:
                raise AuthenticationNeeded(f"{what} requires authentication")
            if caller.identity != self.node_admin:
                raise InsufficientPermissions(f"only the node admin sees {what} of every prefix; give prefix=")
            return None
        prefix = parse_prefix(prefix_text)
        await auth.require(caller, ["list_handles"], self.prefix_zones(prefix), f"see {what} of {prefix}")
        return [prefix]

    async def audit_log(self, caller: Caller, prefix: str | None, since: float, limit: int) -> list[AuditEntry]:
        scope = await self._oversight_scope(caller, prefix, "the audit log")
        return await self.store.audit_entries(scope, since, limit)

    async def stats(self, caller: Caller, prefix: str | None) -> list[PrefixStats]:
        scope = await self._oversight_scope(caller, prefix, "statistics")
        return await self.store.stats(scope)

    # Quotas ---------------------------------------------------------------------------

    async def charge_resolution(self, caller: Caller) -> None:
        """Count an authenticated resolution against the daily quota of its identity's prefix;
        DailyQuotaExceeded (nothing counted but the refusal) once it is used up. Anonymous
        resolutions have no identity to count against: they cost nothing here."""
        identity = caller.identity
        if identity is None or self.read_only is not None:  # a mirror cannot count: its store is a replica
            return
        prefix = quota.identity_prefix(identity.handle)
        if not self.quotas.governs(prefix):
            return
        setting = (await self.store.quota_settings([prefix])).get(prefix)
        limit = self.quotas.limits(prefix, setting).resolutions_per_day
        if not limit:
            return
        now = self.quotas.clock()
        day = china_day(now)
        if not await self.store.charge_resolution(str(identity), prefix, limit, day):
            exc = quota.resolution_refused(str(identity), prefix, limit, day, now)
            self.quota_refused(exc)
            raise exc

    async def quota_report(self, caller: Caller, prefix_text: str) -> quota.QuotaReport:
        """A prefix's quotas (its own, and those in force) and today's use of them; for whoever
        may see its statistics."""
        prefix = parse_prefix(prefix_text)
        await self._oversight_scope(caller, prefix, "the quotas")
        setting = (await self.store.quota_settings([prefix])).get(prefix, quota.QuotaSetting())
        day = china_day(self.quotas.clock())
        usage = await self.store.quota_usage(prefix, day)
        return quota.QuotaReport(prefix, day, self.quotas.limits(prefix, setting), setting, usage)

    async def quota_settings(self, caller: Caller) -> tuple[quota.Limits, dict[str, quota.QuotaSetting]]:
        """The node's default quotas and every prefix's own: the node admin's view."""
        self._require_node_admin(caller, "see the quotas of every prefix")
        return self.quotas.defaults, await self.store.quota_settings(None)

    def _require_node_admin(self, caller: Caller, what: str) -> None:
        if caller.identity is None:
            raise AuthenticationNeeded(f"only the node admin may {what}: authenticate as {self.node_admin}")
        if caller.identity != self.node_admin:
            raise InsufficientPermissions(f"only the node admin ({self.node_admin}) may {what}")

    async def set_quota(self, caller: Caller, prefix_text: str, changes: dict[str, int | None]) -> quota.QuotaSetting:
        """Change a prefix's own quotas (a None puts the node's default back); the node admin's alone."""
        self.check_writable()
        prefix = parse_prefix(prefix_text)
        shown = prefix_handle(prefix).text
        try:
            self._require_node_admin(caller, f"set the quotas of {prefix}")
            check_responsible(prefix, self.node_prefix, prefix)
            if not self.quotas.governs(prefix):
                raise InvalidValue(f"{prefix} is this node's own prefix: quotas govern the prefixes under it")
            if await self.store.get(prefix_handle(prefix).key) is None:
                raise HandleNotFound(f"prefix {prefix} is not allocated here ({shown} does not exist)", handle=shown)
        except HandleError as exc:
            await self.log_refusal(caller, "set_quota", shown, exc)
            raise
        setting = (await self.store.quota_settings([prefix])).get(prefix, quota.QuotaSetting()).changed(changes)
        entry = self.audit_entry(caller, "set_quota", shown)
        message = ", ".join(f"{k}={'default' if v is None else v}" for k, v in setting.as_json().items())
        await self.store.set_quota(prefix, setting, entry._replace(message=message))
        return setting
