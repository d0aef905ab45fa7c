"""Batch registration: up to 2,000 operations checked item by item, written in one transaction.

Each item is planned with the same rules as a single write (``registry.writes``). Without
``atomic`` a failing item fails alone and the rest commit; with it, any failure leaves
everything unwritten and the failing items are named. Retrying a batch after a timeout is
safe: a ``create`` of a record identical to the stored one succeeds as "unchanged".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from protocol.errors import HandleError, InvalidHandle, InvalidValue, ProtocolViolation, QuotaExceeded
from protocol.identifiers import Handle
from protocol.jsonfmt import IncomingValue, values_from_body
from protocol.records import HandleRecord, HandleValue
from registry.authority import enclosing_zones
from registry.identity.caller import Caller
from registry.service import RegistrationService
from registry.store import AuditEntry, BatchAborted, Write
from registry.templates import TEMPLATE_INDEX
from registry.writes import Plan, Planner, guard

MAX_OPERATIONS = 2000
OPERATIONS = ("create", "replace", "delete", "add_values", "mint")
_new_tuple = tuple.__new__
_AUDIT_OPS = {"create": "batch_create", "replace": "batch_replace", "update": "batch_update", "delete": "batch_delete"}
_DONE = {"create": "created", "replace": "replaced", "update": "updated", "delete": "deleted", "unchanged": "unchanged"}


@dataclass(slots=True)
class ItemResult:
    handle: str
    code: int = 1
    message: str = ""
    aborted: bool = False  # fine itself, but not applied because its atomic batch failed

    def as_dict(self) -> dict[str, Any]:
        return {"handle": self.handle, "responseCode": self.code, "message": self.message}


@dataclass(slots=True)
class BatchItem:
    """One operation of a batch; a front-end that parses its own items builds these (the
    ops of OPERATIONS, and ``update_fields``, SNMS's update)."""

    op: str
    text: str
    handle: Handle | None = None
    values: list[HandleValue] | None = None
    incoming: list[IncomingValue] | None = None
    error: HandleError | None = None


def parse_batch(body: Any) -> tuple[bool, list[Any]]:
    """The envelope: ``{"atomic": bool, "operations": [...]}`` with at most 2,000 operations."""
    if not isinstance(body, dict):
        raise ProtocolViolation('a batch must be an object: {"atomic": false, "operations": [...]}')
    operations = body.get("operations")
    if not isinstance(operations, list) or not operations:
        raise ProtocolViolation("a batch needs a non-empty array 'operations'")
    if len(operations) > MAX_OPERATIONS:
        raise ProtocolViolation(f"a batch holds at most {MAX_OPERATIONS} operations; this one has {len(operations)}")
    atomic = body.get("atomic", False)
    if not isinstance(atomic, bool):
        raise ProtocolViolation("'atomic' must be true or false")
    return atomic, operations


class BatchRunner:
    def __init__(self, service: RegistrationService, caller: Caller) -> None:
        self.service = service
        self.caller = caller
        self.planner: Planner = service.planner(caller)
        self.now = service.now()
        self._create_checks: dict[tuple[object, ...], HandleError | None] = {}
        self._identity = "anonymous" if caller.identity is None else str(caller.identity)

    def _audit(self, operation: str, handle: str) -> AuditEntry:
        # Built directly (tuple.__new__): a batch makes one per item, all alike but the handle.
        return _new_tuple(AuditEntry, (self.now, self._identity, self.caller.address, operation, handle, 1, ""))

    def _parse(self, raw: Any) -> BatchItem:
        if not isinstance(raw, dict):
            return BatchItem("?", "", error=ProtocolViolation("an operation must be an object"))
        op, text = raw.get("op"), raw.get("handle")
        item = BatchItem(op if isinstance(op, str) else "?", text if isinstance(text, str) else "")
        try:
            if op not in OPERATIONS:
                raise ProtocolViolation(f"unknown op {op!r}; use one of {', '.join(OPERATIONS)}")
            if not isinstance(text, str):
                raise InvalidHandle("'handle' must be a string")
            if op == "mint":
                if not text.endswith("/"):
                    raise InvalidHandle("mint takes a prefix ending in '/' as its handle")
                text = item.text = text + str(uuid.uuid4())
            item.handle = self.service.parse(text)
            self.service.check_target(item.handle)
            if op != "delete":
                if "values" not in raw:
                    raise InvalidValue(f"op {op} needs 'values'")
                item.incoming = values_from_body(raw["values"], self.now)
        except HandleError as exc:
            item.error = exc
        return item

    async def _may_create(self, handle: Handle) -> None:
        """The create permission, asked once per enclosing prefix in a batch."""
        zones = enclosing_zones(handle, self.service.node_prefix)
        key = (handle.is_prefix_handle, *zones)
        if key not in self._create_checks:
            try:
                await self.planner.require_create(handle)
                self._create_checks[key] = None
            except HandleError as exc:
                self._create_checks[key] = exc
        refusal = self._create_checks[key]
        if refusal is not None:
            raise type(refusal)(refusal.message, handle=handle.text)

    async def _plan(self, item: BatchItem, handle: Handle, old: HandleRecord | None) -> Plan:
        values = item.values or []
        if old is None and item.op in ("create", "mint") and all(v.index != TEMPLATE_INDEX for v in values):
            # The common case of a factory batch: a new record naming no template.
            await self._may_create(handle)
            return Plan("create", HandleRecord(handle.text, tuple(values)))
        if item.op == "replace":
            return await self.planner.put(handle, values, old)
        if item.op == "delete":
            return await self.planner.delete(handle, old)
        if item.op == "add_values":
            return await self.planner.add_values(handle, values, old)
        if item.op == "update_fields":
            return await self.planner.update_fields(handle, values, old)
        return await self.planner.create(handle, values, old)  # create, mint

    async def run(self, atomic: bool, operations: list[Any]) -> list[ItemResult]:
        return await self.run_items(atomic, [self._parse(raw) for raw in operations])

    async def run_items(self, atomic: bool, items: list[BatchItem]) -> list[ItemResult]:
        """Plan and write parsed items (those with an ``error`` already fail alone)."""
        self.service.check_writable()  # a mirror site refuses the whole batch, not each item
        for item in items:
            if item.error is None and item.incoming is not None:
                try:
                    item.values = await self.service.prepare(item.incoming)
                except HandleError as exc:
                    item.error = exc
        keys = [i.handle.key for i in items if i.handle is not None and i.error is None]
        state: dict[str, HandleRecord | None] = dict(await self.service.store.get_many(keys, primary=True))
        writes: list[Write] = []
        slots: list[int] = []  # which item each write belongs to
        plans: dict[int, Plan] = {}
        for n, item in enumerate(items):
            if item.error is not None or item.handle is None:
                continue
            old = state.get(item.handle.key)
            try:
                plan = await self._plan(item, item.handle, old)
            except HandleError as exc:
                item.error = exc
                continue
            state[item.handle.key] = plan.new
            plans[n] = plan
            audit = self._audit(_AUDIT_OPS.get(plan.operation) or f"batch_{plan.operation}", item.handle.text)
            writes.append(_new_tuple(Write, (item.handle.key, guard(old, plan.new), audit)))
            slots.append(n)
        failed = [n for n, i in enumerate(items) if i.error is not None]
        if atomic and failed:
            writes, slots = [], []
        outcomes = await self.service.store.apply_many(writes, atomic=atomic)
        for n, outcome in zip(slots, outcomes, strict=True):
            if isinstance(outcome, BatchAborted):
                continue  # fine itself: shown as aborted, naming the item that failed (the store audited it)
            if isinstance(outcome, HandleError):
                items[n].error = outcome
                if isinstance(outcome, QuotaExceeded):
                    self.service.quota_refused(outcome)
        await self._log_refusals(items)
        return self._results(items, plans, atomic)

    async def _log_refusals(self, items: list[BatchItem]) -> None:
        entries: list[AuditEntry] = []
        for item in items:
            if item.error is not None and not item.error.logged:
                entry = self._audit(f"batch_{item.op}", item.text)
                entries.append(entry._replace(result=int(item.error.code), message=item.error.message))
        if entries:
            await self.service.store.append_audit(entries)

    def _results(self, items: list[BatchItem], plans: dict[int, Plan], atomic: bool) -> list[ItemResult]:
        failed = [n for n, i in enumerate(items) if i.error is not None]
        results = []
        for n, item in enumerate(items):
            shown = item.handle.text if item.handle is not None else item.text
            if item.error is not None:
                results.append(ItemResult(shown, int(item.error.code), item.error.message))
            elif atomic and failed:
                aborted = BatchAborted(f"not applied: the atomic batch failed at item {failed[0]}")
                results.append(ItemResult(shown, int(aborted.code), aborted.message, aborted=True))
            else:
                results.append(ItemResult(shown, 1, _DONE.get(plans[n].operation, plans[n].operation)))
        return results
