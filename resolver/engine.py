"""The resolution engine: the one place that decides how a handle is answered.

Today the answer is local (the store) or "not responsible". The cache tiers and
delegation up the hierarchy plug in here, behind ``resolve``.
"""

from __future__ import annotations

from protocol.errors import HandleNotFound
from protocol.identifiers import Handle, check_responsible
from protocol.records import HandleRecord
from registry.store import Store
from resolver import metrics


class ResolutionEngine:
    def __init__(self, store: Store, *, node_prefix: str) -> None:
        self._store = store
        self._node_prefix = node_prefix

    async def resolve(self, handle: Handle) -> HandleRecord:
        """The record for ``handle``; HandleNotFound or NotResponsible otherwise."""
        check_responsible(handle.zone, self._node_prefix, handle.text, handle=handle.text)
        metrics.STORE_READS.inc()
        record = await self._store.get(handle.key)
        if record is None:
            raise HandleNotFound(f"handle {handle.text} not found", handle=handle.text)
        return record
