"""Secrets at rest: handle.net's hashed HS_SECKEY, and the old scrypt values until rewritten."""

from __future__ import annotations

import hashlib
import time

import pytest

from protocol.errors import InvalidValue
from protocol.wire import auth as hsauth
from registry.identity import sealing, secrets
from registry.identity.secrets import Verifier

SALT, HASH = "AAAAAAAAAAAAAAAAAAAAAA==", "A" * 43 + "="


def test_a_hash_round_trips_and_is_the_handle_protocol_key() -> None:
    stored = secrets.hash_secret(b"s3cret")
    hashed = b"fef341f85d87439e7d91a2d465b9871ef66b5e98"  # CNRI's Encoder.encodeSecretKey(hash=true)
    assert secrets.protocol_key(stored) == hashed  # the key, opened from its sealed stored form
    assert secrets.protocol_key(secrets.check_hash(hashed)) == hashed  # a client may send the hash
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


def test_the_stored_form_holds_no_hash_of_the_secret_and_opens_only_under_its_key() -> None:
    hashed = hsauth.hashed_secret_key(b"s3cret")
    stored = secrets.hash_secret(b"s3cret")
    assert hashed not in stored and bytes.fromhex(hashed.decode()) not in stored
    name, digest = secrets.seal_digest(b"s3cret")
    sha256 = hashlib.sha256(b"s3cret").hexdigest()
    assert hashed.decode() not in name + digest and sha256 not in name + digest
    assert secrets.open_digest(name, digest) == (hashed, sha256)
    node_key = secrets.keyring()
    try:
        secrets.use_keyring(sealing.Keyring.generate())  # a store copied to a node without its key
        with pytest.raises(sealing.KeyMissing, match="secret_key_file does not hold"):
            secrets.protocol_key(stored)
        assert not Verifier.verify(stored, b"s3cret")
    finally:
        secrets.use_keyring(node_key)


def test_a_hash_kept_in_clear_before_sealing_still_verifies_and_is_resealed() -> None:
    hashed = hsauth.hashed_secret_key(b"s3cret")
    assert Verifier.verify(hashed, b"s3cret") and secrets.needs_reseal(hashed)
    resealed = secrets.reseal(hashed)
    assert not secrets.needs_reseal(resealed) and secrets.protocol_key(resealed) == hashed
    name, digest = secrets.reseal_digest(hashed.decode(), hashlib.sha256(b"s3cret").hexdigest())
    assert not secrets.digest_needs_reseal(name) and secrets.open_digest(name, digest)[0] == hashed
