"""Secrets at rest: handle.net's hashed HS_SECKEY, and the old scrypt values until rewritten."""

from __future__ import annotations

import time

import pytest

from protocol.errors import InvalidValue
from protocol.wire import auth as hsauth
from registry.identity import secrets
from registry.identity.secrets import Verifier

SALT, HASH = "AAAAAAAAAAAAAAAAAAAAAA==", "A" * 43 + "="


def test_a_hash_round_trips_and_is_the_handle_protocol_key() -> None:
    stored = secrets.hash_secret(b"s3cret")
    assert stored == b"fef341f85d87439e7d91a2d465b9871ef66b5e98"  # CNRI's Encoder.encodeSecretKey(hash=true)
    assert secrets.check_hash(stored) == stored
    assert Verifier.verify(stored, b"s3cret")
    assert not Verifier.verify(stored, b"other")
    assert not Verifier.verify(stored, stored)  # the hash is not a password for HTTP
    # A CNRI client that hashes the secret answers a challenge the node verifies with the stored value.
    key = secrets.protocol_key(stored)
    assert key is not None
    nonce, digest = hsauth.new_nonce(), hsauth.request_digest(hsauth.MacKind.SHA256, b"request")
    answer = hsauth.secret_answer(hsauth.MacKind.PBKDF2_HMAC_SHA1, hsauth.hashed_secret_key(b"s3cret"), nonce, digest)
    assert hsauth.verify_secret_answer(key, nonce, digest, answer)


def test_an_old_scrypt_value_verifies_needs_rehash_and_serves_no_protocol() -> None:
    old = secrets.legacy_hash(b"s3cret")
    assert Verifier.verify(old, b"s3cret") and not Verifier.verify(old, b"other")
    assert secrets.needs_rehash(old) and not secrets.needs_rehash(secrets.hash_secret(b"s3cret"))
    assert secrets.protocol_key(old) is None
    with pytest.raises(InvalidValue, match="as this node makes them"):
        secrets.check_hash(old)  # a client may no longer send one


@pytest.mark.parametrize("params", ["20$8$1", "30$8$1", "14$64$16", "10$8$1", "14$8$2", "+14$8$1", "14$8$1$x"])
def test_other_costs_are_refused_and_never_run(params: str) -> None:
    stored = f"scrypt${params}${SALT}${HASH}".encode()
    with pytest.raises(InvalidValue, match="as this node makes them"):
        secrets.check_hash(stored)
    began = time.perf_counter()
    assert Verifier.verify(stored, b"anything") is False
    assert time.perf_counter() - began < 0.01  # never ran: a run at 2^20 takes seconds
    assert not secrets.needs_rehash(stored)


@pytest.mark.parametrize(
    "stored",
    [
        b"",
        b"scrypt",
        b"\xff\xfe",
        b"FEF341F85D87439E7D91A2D465B9871EF66B5E98",
        b"fef341f85d87439e7d91a2d465b9871ef66b5e9",
        b"s3cret",
    ],
)
def test_garbage_is_refused(stored: bytes) -> None:
    with pytest.raises(InvalidValue):
        secrets.check_hash(stored)
    assert Verifier.verify(stored, b"x") is False


def test_the_decoy_never_verifies() -> None:
    assert secrets.check_hash(secrets.DECOY_HASH)
    assert not Verifier.verify(secrets.DECOY_HASH, b"")
