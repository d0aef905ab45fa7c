"""Handle protocol administration in-process, over a real SQLite store, for unit tests.

``seeded_admin`` gives one worker's HandleAdmin (and what it shares with other workers) on a
node serving 88.118.8, whose identity 88.118.8/ADMIN holds an HS_SECKEY (300), a DSA (301) and
an RSA (302) HS_PUBKEY, as in the CNRI 7.3.1 captures; ``send`` drives it with encoded bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from protocol import valuedata as vd
from protocol.records import HS_ADMIN, HS_PUBKEY, HS_SECKEY, HS_VLIST, SECRET_PERMISSIONS, HandleRecord, HandleValue
from protocol.wire.auth import hashed_secret_key
from protocol.wire.message import Message, decode_message, encode_message
from registry.bootstrap import ensure_node_prefix
from registry.identity.auth import Authenticator
from registry.identity.ratelimit import FailureLimiter
from registry.service import RegistrationService
from registry.sqlite.store import SqliteStore
from resolver.handle.admin import HandleAdmin
from resolver.handle.login import DEFAULT_LOGINS, Link, LoginPolicy
from resolver.handle.shared import HandleShared
from tests.support.handleauth import VECTORS, Who, key_file

NODE = "88.118.8"
ADMIN = f"{NODE}/ADMIN"  # 300 HS_SECKEY, 301 HS_PUBKEY DSA, 302 HS_PUBKEY RSA, as in the captures
SECRET = (VECTORS / "keys" / "secret_key.txt").read_text().strip().encode()
KEY = hashed_secret_key(SECRET)  # what this node stores, and what a hashing client MACs with
OTHER_KEY = hashed_secret_key(b"another enterprise")
PEER = "192.0.2.7"
ALL = 0x0FFF
SECKEY_ADMIN = Who(ADMIN, 300, KEY)
RFC2409_P = int(  # the Diffie-Hellman group CNRI's clients agree session keys in (RFC 2409's second)
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)
NODE_ADMIN = Who(f"0.NA/{NODE}", 300, hashed_secret_key(b"node-admin-secret"))


def admin_value(index: int, handle: str, ref_index: int) -> HandleValue:
    return HandleValue(index, HS_ADMIN, vd.encode_admin(vd.AdminRef(handle, ref_index, ALL)))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class AdminNode:
    store: SqliteStore
    service: RegistrationService
    shared: HandleShared
    clock: Clock
    admin: HandleAdmin
    limiter: FailureLimiter

    def worker(self, logins: LoginPolicy = DEFAULT_LOGINS) -> HandleAdmin:
        """Another worker: its own service and authenticator, the node's shared tables and limits."""
        service = RegistrationService(self.store, node_prefix=NODE)
        authenticator = Authenticator(self.store, limiter=self.limiter, brake_delay=0)
        return HandleAdmin(service, authenticator, self.shared, logins=logins)


async def seed(store: SqliteStore) -> None:
    await ensure_node_prefix(store, NODE, "node-admin-secret")
    node_handle = await store.get(f"0.NA/{NODE}")
    assert node_handle is not None
    grants = [admin_value(101 + n, ADMIN, i) for n, i in enumerate((300, 301, 302))]
    await store.put_values(f"0.NA/{NODE}", node_handle.handle, grants)
    admin_values = (
        HandleValue(300, HS_SECKEY, KEY, permissions=SECRET_PERMISSIONS),
        HandleValue(301, HS_PUBKEY, key_file("admin_dsa_pub.bin")),
        HandleValue(302, HS_PUBKEY, key_file("admin_rsa_pub.bin")),
    )
    await store.create(ADMIN, HandleRecord(ADMIN, admin_values))
    # Two enterprises under the node: 88.118.8.1 run by a group, 88.118.8.2 by its own admin.
    await store.create("0.NA/88.118.8.1", HandleRecord("0.NA/88.118.8.1", (admin_value(100, "88.118.8.1/GROUP", 200),)))
    vlist = vd.encode_vlist([("88.118.8.1/USER", 300)])
    await store.create("88.118.8.1/GROUP", HandleRecord("88.118.8.1/GROUP", (HandleValue(200, HS_VLIST, vlist),)))
    user = (HandleValue(300, HS_SECKEY, KEY, permissions=SECRET_PERMISSIONS),)
    await store.create("88.118.8.1/USER", HandleRecord("88.118.8.1/USER", user))
    await store.create("0.NA/88.118.8.2", HandleRecord("0.NA/88.118.8.2", (admin_value(100, "88.118.8.2/ADMIN", 300),)))
    other = (HandleValue(300, HS_SECKEY, OTHER_KEY, permissions=SECRET_PERMISSIONS),)
    await store.create("88.118.8.2/ADMIN", HandleRecord("88.118.8.2/ADMIN", other))


@asynccontextmanager
async def seeded_admin(tmp_path: Path, logins: LoginPolicy = DEFAULT_LOGINS) -> AsyncIterator[AdminNode]:
    """A seeded store and one worker's HandleAdmin on it, failures limited to 3 a minute."""
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    await seed(store)
    clock = Clock()
    shared = HandleShared(small=(64, 8192), large=(8, 300_000), sessions=(64, 512), clock=clock)
    limiter = FailureLimiter(limit=3, window=60)
    service = RegistrationService(store, node_prefix=NODE)
    admin = HandleAdmin(service, Authenticator(store, limiter=limiter, brake_delay=0), shared, logins=logins)
    try:
        yield AdminNode(store, service, shared, clock, admin, limiter)
    finally:
        await store.close()


async def send(
    admin: HandleAdmin, raw: bytes, peer: str = PEER, *, link: Link | None = None, transport: str = "tcp"
) -> Message:
    """What the client reads off the wire for ``raw``, sent on the connection ``link``."""
    response = await admin.respond(decode_message(raw), raw, peer, transport, link)
    return decode_message(encode_message(response))
