"""``idnode`` with a store that fails on demand, for the serve-stale tests.

Runs the real command line; only the store's record reads and writes are wrapped: while
the file ``FAIL`` exists in the data directory they raise StoreUnavailable, as the SQLite
store does when the disk errors, and while ``SLOW`` exists they take half a second more;
``FAIL_WRITES`` makes only the writes fail.
Everything else (workers, cache, HTTP) is the real node::

    python -m tests.flaky_node serve --data-dir D ...
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence

# Before prometheus_client is imported (by resolver.server, once `serve` runs), as `idnode serve` does.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="idnode-test-metrics-"))

from protocol.errors import StoreUnavailable
from protocol.records import HandleRecord
from registry.sqlite.store import SqliteStore
from registry.store import Outcome, Write
from resolver import cli, stores
from resolver.config import Config


class FlakyStore(SqliteStore):
    async def _check(self) -> None:
        if (self.path.parent / "SLOW").exists():
            await asyncio.sleep(0.5)  # a slow disk: the delay is what the tests exercise
        if (self.path.parent / "FAIL").exists():
            raise StoreUnavailable("store read failed: disk I/O error (injected by the test)")

    async def get(self, key: str) -> HandleRecord | None:
        await self._check()
        return await super().get(key)

    async def get_many(self, keys: Iterable[str], *, primary: bool = False) -> dict[str, HandleRecord]:
        await self._check()
        return await super().get_many(keys, primary=primary)

    async def _apply_many(self, writes: Sequence[Write], *, atomic: bool) -> list[Outcome]:
        if (self.path.parent / "FAIL_WRITES").exists():
            raise StoreUnavailable("the store could not commit: disk I/O error (injected by the test)")
        await self._check()
        return await super()._apply_many(writes, atomic=atomic)


def flaky_store(config: Config) -> SqliteStore:
    return FlakyStore(
        config.data_dir / "idnode.sqlite3",
        readers=config.store_readers,
        min_free_bytes=config.min_free_bytes,
        wal_max_bytes=config.wal_max_bytes,
    )


if __name__ == "__main__":
    stores.default_store = flaky_store
    sys.exit(cli.main())
