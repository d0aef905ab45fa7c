"""The store interface every caller uses; backends implement four primitives.

A backend provides ``get``, ``apply`` (an atomic read-modify-write of one record),
``list_handles`` and ``count_handles``. The named operations (create, replace, delete,
add / replace / remove values) are built on ``apply`` here, once, so a PostgreSQL
backend inherits exactly the same semantics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

from protocol.errors import HandleAlreadyExists, HandleNotFound, ValueAlreadyExists, ValuesNotFound
from protocol.records import HandleRecord, HandleValue

# Given the stored record (None when absent) return the record to store (None deletes);
# raise a HandleError to refuse, leaving the store untouched.
Change = Callable[[HandleRecord | None], HandleRecord | None]


class Store(ABC):
    """Durable map from normalised handle key to record."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def get(self, key: str) -> HandleRecord | None:
        """The record stored under ``key``, or None."""

    @abstractmethod
    async def apply(self, key: str, change: Change) -> HandleRecord | None:
        """Atomically apply ``change`` to the record at ``key``; return what is now stored.

        Returns only after the result is durable.
        """

    @abstractmethod
    async def list_handles(self, prefix: str, offset: int = 0, limit: int | None = None) -> list[str]:
        """Handles directly under normalised ``prefix``, in key order."""

    @abstractmethod
    async def count_handles(self, prefix: str) -> int:
        """How many handles are directly under normalised ``prefix``."""

    # Named operations -----------------------------------------------------------

    async def create(self, key: str, record: HandleRecord) -> None:
        def change(old: HandleRecord | None) -> HandleRecord:
            if old is not None:
                raise HandleAlreadyExists(f"handle {record.handle} already exists", handle=record.handle)
            return record

        await self.apply(key, change)

    async def replace(self, key: str, record: HandleRecord) -> bool:
        """Store ``record`` whole; True when it did not exist before."""
        existed = False

        def change(old: HandleRecord | None) -> HandleRecord:
            nonlocal existed
            existed = old is not None
            return record

        await self.apply(key, change)
        return not existed

    async def delete(self, key: str, handle: str) -> None:
        def change(old: HandleRecord | None) -> None:
            if old is None:
                raise HandleNotFound(f"handle {handle} not found", handle=handle)

        await self.apply(key, change)

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
