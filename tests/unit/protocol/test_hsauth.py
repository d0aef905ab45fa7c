"""Handle protocol authentication against what CNRI's Java code computes, and forgeries refused."""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import AuthenticationFailed, InvalidValue, ProtocolViolation
from protocol.wire import auth as hsauth
from protocol.wire import keys as hskeys
from protocol.wire.auth import MacKind
from protocol.wire.keys import generate_dsa_key

VECTORS = dict(
    line.split(" ", 1)
    for line in (Path(__file__).parent / "hsauth_vectors.txt").read_text().splitlines()
    if not line.startswith("#")
)
KEY, NONCE = b"s3cret\xe9", bytes(range(1, 17))
DIGEST = bytes.fromhex(VECTORS["digest"])
SALT = bytes(range(0xA0, 0xB0))


def vector(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name])


def test_the_request_digest_is_java_s() -> None:
    assert hsauth.request_digest(MacKind.SHA256, b"request") == DIGEST


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (MacKind.MD5, "md5"),
        (MacKind.SHA1, "sha1"),
        (MacKind.SHA256, "sha256"),
        (MacKind.HMAC_SHA1, "hmacsha1"),
        (MacKind.HMAC_SHA256, "hmacsha256"),
    ],
)
def test_each_secret_key_mac_matches_java(kind: MacKind, name: str) -> None:
    assert hsauth.secret_key_mac(kind, KEY, NONCE, DIGEST) == vector(name)
    answer = hsauth.secret_answer(kind, KEY, NONCE, DIGEST)
    assert answer == bytes([kind]) + vector(name)
    assert hsauth.verify_secret_answer(KEY, NONCE, DIGEST, answer)
    assert not hsauth.verify_secret_answer(b"other", NONCE, DIGEST, answer)
    assert not hsauth.verify_secret_answer(KEY, NONCE, DIGEST[::-1], answer)


def test_pbkdf2_matches_java_including_its_utf8_widening_of_bytes() -> None:
    """Java hashes the bytes as chars' UTF-8: the 0xe9 in the key counts as two bytes."""
    answer = hsauth.secret_answer(MacKind.PBKDF2_HMAC_SHA1, KEY, NONCE, DIGEST, salt=SALT)
    expected_body = hskeys.pack(SALT) + struct.pack(">ii", 10_000, 160) + hskeys.pack(vector("pbkdf2"))
    assert answer == bytes([MacKind.PBKDF2_HMAC_SHA1]) + expected_body
    assert hsauth.verify_secret_answer(KEY, NONCE, DIGEST, answer)
    assert not hsauth.verify_secret_answer(b"s3cret\xe8", NONCE, DIGEST, answer)


def test_the_hashed_secret_key_is_handle_net_s() -> None:
    assert hsauth.hashed_secret_key(b"s3cret") == VECTORS["hashedkey"].encode()


def test_the_old_format_has_no_kind_byte() -> None:
    answer = hsauth.secret_answer(MacKind.MD5_OLD_FORMAT, KEY, NONCE, DIGEST)
    assert answer == vector("md5")
    assert hsauth.verify_secret_answer(KEY, NONCE, DIGEST, answer, version=(2, 0))
    assert not hsauth.verify_secret_answer(b"other", NONCE, DIGEST, answer, version=(2, 0))


def _pbkdf2_answer(iterations: int, bits: int, salt: bytes = SALT) -> bytes:
    body = hsauth.pbkdf2_mac(KEY, NONCE + DIGEST, salt, iterations, bits)
    return bytes([MacKind.PBKDF2_HMAC_SHA1]) + body


@pytest.mark.parametrize(
    ("iterations", "bits"), [(10_001, 160), (2**31 - 1, 160), (0, 160), (-5, 160), (10, 8), (10, 512)]
)
def test_a_client_cannot_choose_the_cost_or_a_guessable_key(iterations: int, bits: int) -> None:
    body = hskeys.pack(SALT) + struct.pack(">ii", iterations, bits) + hskeys.pack(bytes(20))
    with pytest.raises(ProtocolViolation, match="iterations"):
        hsauth.verify_secret_answer(KEY, NONCE, DIGEST, bytes([MacKind.PBKDF2_HMAC_SHA1]) + body)


def test_fewer_iterations_and_a_128_bit_key_still_verify() -> None:
    assert hsauth.verify_secret_answer(KEY, NONCE, DIGEST, _pbkdf2_answer(1, 128))


def test_a_kind_can_be_refused() -> None:
    answer = hsauth.secret_answer(MacKind.MD5, KEY, NONCE, DIGEST)
    with pytest.raises(ProtocolViolation, match="MD5"):
        hsauth.verify_secret_answer(KEY, NONCE, DIGEST, answer, accept=frozenset({MacKind.SHA1}))


@pytest.mark.parametrize(
    "answer", [b"", b"\x07abc", b"\x22", b"\x22\x00\x00\x00\x10", b"\x22" + bytes(40), b"\xff" * 30]
)
def test_malformed_secret_answers_are_protocol_violations(answer: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        hsauth.verify_secret_answer(KEY, NONCE, DIGEST, answer)


@given(st.binary(max_size=80))
def test_any_secret_answer_is_false_or_a_protocol_violation(answer: bytes) -> None:
    with contextlib.suppress(ProtocolViolation):
        assert hsauth.verify_secret_answer(KEY, NONCE, DIGEST, answer) is False


# What a CNRI client picks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("challenge", "suggested", "kind"),
    [
        ((2, 11), (2, 11), MacKind.PBKDF2_HMAC_SHA1),
        ((2, 11), (2, 5), MacKind.SHA1),  # the server suggests an older version: the lower wins
        ((2, 5), (2, 11), MacKind.SHA1),
        ((2, 0), (2, 0), MacKind.MD5_OLD_FORMAT),
        ((2, 7), (2, 7), MacKind.PBKDF2_HMAC_SHA1),
    ],
)
def test_the_client_s_secret_kind(challenge: hsauth.Version, suggested: hsauth.Version, kind: MacKind) -> None:
    assert hsauth.client_secret_kind(challenge, suggested) == kind


def test_the_client_s_signature_hash_and_the_server_s_digest() -> None:
    dsa_key = hskeys.decode_public_key(vector("DSApub"))
    rsa_key = hskeys.decode_public_key(vector("RSApub"))
    assert hsauth.client_signature_hash((2, 5), rsa_key) == "SHA1"
    assert hsauth.client_signature_hash((2, 7), rsa_key) == "SHA-256"
    assert hsauth.client_signature_hash((2, 10), dsa_key) == "SHA1"
    assert hsauth.client_signature_hash((2, 11), dsa_key) == "SHA-256"
    assert [hsauth.request_digest_kind(v) for v in ((2, 0), (2, 5), (2, 11))] == [
        MacKind.MD5_OLD_FORMAT,
        MacKind.SHA1,
        MacKind.SHA256,
    ]


# Keys and signatures ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RSA", "DSA"])
def test_keys_made_by_cnri_decode_and_encode_byte_for_byte(alg: str) -> None:
    public, private = vector(alg + "pub"), vector(alg + "priv")
    assert hskeys.encode_public_key(hskeys.decode_public_key(public)) == public
    assert hskeys.encode_private_key(hskeys.decode_private_key(private)) == private
    assert hskeys.decrypt_private_key_file(vector(alg + "file"), b"passphrase") == private  # 7.3.1's DES-CBC
    with pytest.raises(AuthenticationFailed):
        hskeys.decrypt_private_key_file(vector(alg + "file"), b"wrong passphrase")


@pytest.mark.parametrize(
    ("alg", "sig", "hash_name"),
    [(a, s, h) for a in ("RSA", "DSA") for s, h in (("sig1", "SHA1"), ("sig256", "SHA-256"))],
)
def test_signatures_made_by_java_verify_and_forgeries_do_not(alg: str, sig: str, hash_name: str) -> None:
    public, signature = vector(alg + "pub"), vector(alg + sig)
    answer = hskeys.pack(hash_name.encode(), signature)
    assert hsauth.verify_signature(public, answer, NONCE, DIGEST)
    assert not hsauth.verify_signature(public, answer, NONCE[::-1], DIGEST)
    flipped = bytearray(signature)
    flipped[-1] ^= 1
    assert not hsauth.verify_signature(public, hskeys.pack(hash_name.encode(), bytes(flipped)), NONCE, DIGEST)
    other = "SHA-256" if hash_name == "SHA1" else "SHA1"
    assert not hsauth.verify_signature(public, hskeys.pack(other.encode(), signature), NONCE, DIGEST)


@pytest.mark.parametrize("make", [lambda: rsa.generate_private_key(65537, 2048), lambda: generate_dsa_key(2048)])
def test_our_own_keys_sign_verify_and_round_trip_through_a_key_file(make: object) -> None:
    key = make()  # type: ignore[operator]
    public = hskeys.encode_public_key(key.public_key())
    for hash_name in ("SHA1", "SHA-256"):
        answer = hsauth.sign_challenge(key, NONCE, DIGEST, hash_name=hash_name)
        assert hsauth.verify_signature(public, answer, NONCE, DIGEST)
    other = hskeys.encode_public_key(rsa.generate_private_key(65537, 2048).public_key())
    assert not hsauth.verify_signature(other, hsauth.sign_challenge(key, NONCE, DIGEST), NONCE, DIGEST)
    file = hskeys.encrypt_private_key_file(
        hskeys.encode_private_key(key), "pass\u00e9".encode(), salt=os.urandom(16), iv=os.urandom(16)
    )
    loaded = hskeys.load_private_key_file(file, "pass\u00e9".encode())
    assert hskeys.encode_private_key(loaded) == hskeys.encode_private_key(key)
    plain = hskeys.encrypt_private_key_file(hskeys.encode_private_key(key), None, salt=b"", iv=b"")
    assert hskeys.encode_private_key(hskeys.load_private_key_file(plain, None)) == hskeys.encode_private_key(key)


@pytest.mark.parametrize(
    "answer",
    [
        b"",
        b"\x00\x00\x00\x04SHA1",
        hskeys.pack(b"MD5", b"x"),
        hskeys.pack(b"SHA1", b"x") + b"extra",
        b"\x7f\xff\xff\xff",
    ],
)
def test_malformed_signed_responses_are_protocol_violations(answer: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        hsauth.verify_signature(vector("RSApub"), answer, NONCE, DIGEST)


@pytest.mark.parametrize(
    "stored",
    [
        b"",
        b"\x00\x00\x00\x0bRSA_PUB_KEY",
        hskeys.pack(b"EC_PUB_KEY") + b"\0\0",
        vector("RSApub")[:40],
        hskeys.pack(b"RSA_PUB_KEY") + b"\0\0" + hskeys.pack(b"\x02", b"\x09"),
    ],
)
def test_a_stored_key_that_does_not_decode_fails_authentication(stored: bytes) -> None:
    answer = hskeys.pack(b"SHA1", vector("RSAsig1"))
    with pytest.raises(AuthenticationFailed):
        hsauth.verify_signature(stored, answer, NONCE, DIGEST)
    with pytest.raises(InvalidValue):
        hskeys.decode_public_key(stored)


@given(st.binary(max_size=120))
def test_any_key_bytes_decode_or_raise_invalid_value(data: bytes) -> None:
    for decode in (hskeys.decode_public_key, hskeys.decode_private_key):
        with contextlib.suppress(InvalidValue):
            decode(data)
    with contextlib.suppress(InvalidValue, AuthenticationFailed):
        hskeys.decrypt_private_key_file(data, b"p")
