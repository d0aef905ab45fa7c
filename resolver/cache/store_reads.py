"""Store reads asked for in one turn of the event loop, made in one ``get_many``.

Under load many misses arrive together; one trip to the store's reader threads for all of
them costs far less than one each (the hop, not the lookup, dominates).
"""

from __future__ import annotations

import asyncio

from protocol.records import HandleRecord
from registry.store import Store


class BatchedReads:
    """Reads by handle key, gathered per loop turn; a read that fails fails each of its waiters."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[str, asyncio.Future[HandleRecord | None]] = {}
        self._pending_primary: dict[str, asyncio.Future[HandleRecord | None]] = {}
        self._reads: set[asyncio.Task[None]] = set()

    def get(self, key: str, *, primary: bool = False) -> asyncio.Future[HandleRecord | None]:
        """``primary``: see ``Store.get_many``."""
        pending = self._pending_primary if primary else self._pending
        future = pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._pending and not self._pending_primary:
                loop.call_soon(self._flush)
            future = pending[key] = loop.create_future()
        return future

    def _flush(self) -> None:
        batches = [(self._pending, False), (self._pending_primary, True)]
        self._pending, self._pending_primary = {}, {}
        for batch, primary in batches:
            if batch:
                task = asyncio.create_task(self._read(batch, primary))
                self._reads.add(task)
                task.add_done_callback(self._reads.discard)

    async def _read(self, batch: dict[str, asyncio.Future[HandleRecord | None]], primary: bool) -> None:
        try:
            found = await self._store.get_many(list(batch), primary=primary)
        except Exception as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # whoever waited may have given up: not "never retrieved"
            return
        for key, future in batch.items():
            if not future.done():
                future.set_result(found.get(key))
