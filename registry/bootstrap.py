"""First start: create the node's prefix handle and its admin identity."""

from __future__ import annotations

import asyncio
import logging
import time

from protocol import valuedata as vd
from protocol.errors import HandleAlreadyExists
from protocol.identifiers import prefix_handle
from protocol.records import HS_ADMIN, HS_SECKEY, SECRET_PERMISSIONS, HandleRecord, HandleValue
from registry.identity import secrets
from registry.identity.caller import NODE_ADMIN_INDEX
from registry.store import Store

log = logging.getLogger("registry.bootstrap")

ADMIN_VALUE_INDEX = 100
ALL_ADMIN_PERMISSIONS = (1 << vd.ADMIN_PERMISSION_BITS) - 1


def node_admin_record(node_prefix: str, secret_hash: bytes, now: int) -> HandleRecord:
    handle = prefix_handle(node_prefix)
    admin = vd.AdminRef(handle.text, NODE_ADMIN_INDEX, ALL_ADMIN_PERMISSIONS)
    return HandleRecord(
        handle.text,
        (
            HandleValue(ADMIN_VALUE_INDEX, HS_ADMIN, vd.encode_admin(admin), timestamp=now),
            HandleValue(NODE_ADMIN_INDEX, HS_SECKEY, secret_hash, timestamp=now, permissions=SECRET_PERMISSIONS),
        ),
    )


async def ensure_node_prefix(store: Store, node_prefix: str, admin_secret: str | None) -> str | None:
    """Create ``0.NA/<node prefix>`` on first start.

    Returns the admin secret when this call generated it (the caller shows it once);
    None when the handle existed or the secret came from the environment.
    """
    handle = prefix_handle(node_prefix)
    loop = asyncio.get_running_loop()
    existing = await store.get(handle.key)
    if existing is not None:
        stored = existing.value_at(NODE_ADMIN_INDEX)
        if admin_secret and stored is not None:
            matches = await loop.run_in_executor(None, secrets.Verifier.verify, stored.data, admin_secret.encode())
            if not matches:
                log.warning(
                    "IDNODE_ADMIN_SECRET differs from the stored admin secret of %s; "
                    "it is only read on first start and is ignored",
                    handle.text,
                )
            elif secrets.needs_rehash(stored.data):
                fresh = stored._replace(data=secrets.hash_secret(admin_secret.encode()), timestamp=int(time.time()))
                await store.put_values(handle.key, handle.text, [fresh])
                log.info("rewrote the admin secret of %s in the form the Handle protocol can verify", handle.text)
        return None
    generated = None if admin_secret else secrets.generate_secret()
    secret = admin_secret or generated
    assert secret is not None
    digest = await loop.run_in_executor(None, secrets.hash_secret, secret.encode())
    try:
        await store.create(handle.key, node_admin_record(node_prefix, digest, int(time.time())))
    except HandleAlreadyExists:
        return None  # another process of this node created it first and showed its secret
    log.info("created prefix handle %s with admin identity %s:%s", handle.text, NODE_ADMIN_INDEX, handle.text)
    return generated
