"""The store a process opens, as its configuration says: PostgreSQL or the SQLite file.

Apart from ``resolver.server`` so that operator commands (import, check, rotate) open the
store without importing the serving stack (aiohttp, Redis, the front-ends): that import took
about a second of ``idnode import``'s start-up on a loaded two-core machine.
"""

from __future__ import annotations

from registry.identity import secrets
from registry.postgres.store import PostgresStore
from registry.sqlite.store import SqliteStore
from registry.sqlite.writer import STORE_FILE
from registry.store import Store
from resolver.config import Config


def load_secret_key(config: Config) -> None:
    """Seal and open stored secrets with the node's key file, made now if there is none."""
    secrets.use_key_file(config.secret_key_path)


def default_store(config: Config) -> Store:
    load_secret_key(config)  # every process that opens the store seals and opens secrets with the node's key
    if config.postgres:
        return PostgresStore(
            config.store,
            replicas=config.store_replica,
            pool_size=config.store_pool_size,
            partitions=config.store_partitions,
            audit_retention_days=config.audit_retention_days,
            timeout=max(config.store_timeout, 5.0),
            standby=config.mirror_refusal,
        )
    return SqliteStore(
        config.data_dir / STORE_FILE,
        readers=config.store_readers,
        min_free_bytes=config.min_free_bytes,
        wal_max_bytes=config.wal_max_bytes,
    )
