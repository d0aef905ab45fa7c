"""Secrets at rest: only this node's scrypt parameters are accepted or ever run."""

from __future__ import annotations

import time

import pytest

from protocol.errors import InvalidValue
from registry import secrets
from registry.secrets import Verifier

SALT, HASH = "AAAAAAAAAAAAAAAAAAAAAA==", "A" * 43 + "="


def test_a_hash_round_trips() -> None:
    stored = secrets.hash_secret(b"s3cret")
    assert secrets.check_hash(stored) == stored
    assert Verifier.verify(stored, b"s3cret")
    assert not Verifier.verify(stored, b"other")


@pytest.mark.parametrize("params", ["20$8$1", "30$8$1", "14$64$16", "10$8$1", "14$8$2", "+14$8$1", "14$8$1$x"])
def test_other_costs_are_refused_and_never_run(params: str) -> None:
    stored = f"scrypt${params}${SALT}${HASH}".encode()
    with pytest.raises(InvalidValue, match="as this node makes them"):
        secrets.check_hash(stored)
    # A value already stored with other costs (accepted before this rule) never raises and
    # costs what a check with the node's own parameters costs: it simply does not verify.
    began = time.perf_counter()
    assert Verifier.verify(stored, b"anything") is False
    own = time.perf_counter() - began
    began = time.perf_counter()
    Verifier.verify(secrets.DECOY_HASH, b"anything")
    assert own < 5 * (time.perf_counter() - began) + 0.05


@pytest.mark.parametrize(
    "stored", [b"", b"scrypt", b"\xff\xfe", b"bcrypt$14$8$1$" + SALT.encode() + b"$" + HASH.encode()]
)
def test_garbage_is_refused(stored: bytes) -> None:
    with pytest.raises(InvalidValue):
        secrets.check_hash(stored)
    assert Verifier.verify(stored, b"x") is False


def test_the_decoy_never_verifies() -> None:
    assert secrets.check_hash(secrets.DECOY_HASH)
    assert not Verifier.verify(secrets.DECOY_HASH, b"")
