"""An old scrypt secret is rewritten, on its next successful login, in the form the Handle protocol verifies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from protocol.errors import AuthenticationFailed
from protocol.identifiers import parse_handle
from protocol.records import HS_SECKEY, HandleRecord, HandleValue
from protocol.wire import auth as hsauth
from registry.identity import secrets
from registry.identity.auth import Authenticator
from registry.sqlite.store import SqliteStore

HANDLE = "88.118/owner"
KEY = parse_handle(HANDLE).key


async def _scenario(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        old = secrets.legacy_hash(b"s3cret")
        await store.create(KEY, HandleRecord(HANDLE, (HandleValue(300, HS_SECKEY, old, timestamp=1),)))
        auth = Authenticator(store)
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(f"300:{HANDLE}", b"wrong", "127.0.0.1")
        record = await store.get(KEY)
        assert record is not None and record.values[0].data == old  # a wrong secret rewrites nothing
        await auth.authenticate(f"300:{HANDLE}", b"s3cret", "127.0.0.1")
        record = await store.get(KEY)
        assert record is not None
        stored = record.values[0].data
        key = secrets.protocol_key(stored)  # sealed at rest; the key opens from it
        assert key == hsauth.hashed_secret_key(b"s3cret") and key not in stored
        nonce, digest = hsauth.new_nonce(), hsauth.request_digest(hsauth.MacKind.SHA256, b"create")
        answer = hsauth.secret_answer(hsauth.MacKind.SHA1, key, nonce, digest)
        assert hsauth.verify_secret_answer(key, nonce, digest, answer)
        await auth.authenticate(f"300:{HANDLE}", b"s3cret", "127.0.0.1")  # and Basic still works
        entries = await store.audit_entries(None, 0, 10)
        assert [e.operation for e in entries].count("rehash_secret") == 1
    finally:
        await store.close()


def test_a_successful_login_rewrites_an_old_scrypt_secret(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path / "store.sqlite3"))
