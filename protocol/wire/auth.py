"""The cryptography of Handle protocol authentication, as CNRI's hdllib computes it.

A server challenges an administrative request with a ChallengeResponse: a 16-byte nonce and
a digest of the request's encoded body (MD5 below protocol 2.1, SHA-1 up to 2.6, SHA-256 from
2.7: ``AbstractResponse.takeDigestOfRequest``). The client's ChallengeAnswer carries:

- for HS_SECKEY, a MAC over ``nonce || request_digest`` keyed with the secret key
  (``SecretKeyAuthenticationInfo.authenticate``): a kind byte (``Common.HASH_CODE_*``) then
  the MAC. The client picks the kind from the lower of the challenge's protocol version and
  the version it suggests: below 2.1 a bare MD5 with no kind byte, 2.1-2.6 SHA-1, from 2.7
  PBKDF2-HMAC-SHA1. The keyed hashes are ``H(key || message || key)``; the PBKDF2 kind
  derives a key from the secret under a salt and iteration count the client chooses, and
  sends them: ``salt, iterations, key bits, mac`` (``Util.doPbkdf2HmacSHA1``).
- for HS_PUBKEY, ``hash id, signature`` over ``nonce || request_digest``
  (``PublicKeyAuthenticationInfo.authenticate``): SHA256withRSA or SHA256withDSA from 2.7
  (SHA1withDSA below 2.11), SHA1with* before (``Util.getDefaultSigId``). Teleinfo's id-pointer
  SDK signs with an SM2 key differently, whatever the version: hash id ``SM3``, and a DER SM2
  signature (BouncyCastle's SM2Signer through hutool's ``SM2.signHex``) of
  ``SM3(nonce || request_digest)`` under the signer ID that is the identity's handle, as UTF-8
  (so e = SM3(Z_A || SM3(nonce || request_digest))). The request digest stays MD5, SHA-1 or
  SHA-256: the SDK's ``Util.doDigest`` knows no other. An SM2 private key the SDK reads with
  its own ``KeyConverter`` (algorithm ``SM2``, not hutool's ``EC``) goes the generic way,
  ``Signature.getInstance("SHA256withSM2")``: BouncyCastle's SM2Signer over SHA-256 (Z_A and e
  both), under the default signer ID, of ``nonce || request_digest`` itself, hash id
  ``SHA-256``. The node accepts both forms.

The secret key is whatever bytes the HS_SECKEY value holds. handle.net's "hashed" secret key
(``Encoder.encodeSecretKey(secret, hash=true)``) is the lowercase hex of SHA-1(secret) stored
as the value *and* used as the key, so a client that hashes computes the same MAC.

What CNRI's server accepts and we do not: a PBKDF2 answer may name any cost and key length.
A large cost lets a client make each verification expensive, and a short key length lets
a forger guess the derived key (8 bits: one chance in 256). We bound both.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from protocol.errors import AuthenticationFailed, InvalidValue, ProtocolViolation
from protocol.wire import sm2
from protocol.wire.keys import (
    DSAPrivateKey,
    DSAPublicKey,
    PrivateKey,
    PublicKey,
    claims_sm2,
    decode_public_key,
    pack,
    reader,
)

Version = tuple[int, int]
NONCE_BYTES = 16  # Common.CHALLENGE_NONCE_SIZE


class MacKind(IntEnum):
    """``Common.HASH_CODE_*``: how a secret-key answer (and a request digest) is computed."""

    MD5_OLD_FORMAT = 0
    MD5 = 1
    SHA1 = 2
    SHA256 = 3
    HMAC_SHA1 = 0x12
    HMAC_SHA256 = 0x13
    PBKDF2_HMAC_SHA1 = 0x22


DIGEST_KINDS = (MacKind.MD5_OLD_FORMAT, MacKind.MD5, MacKind.SHA1, MacKind.SHA256)
ALL_SECRET_KINDS = frozenset(MacKind)
PBKDF2_ITERATIONS = 10_000  # what CNRI's clients send
MAX_PBKDF2_ITERATIONS = 10_000
PBKDF2_KEY_BITS = (128, 160)  # CNRI sends 160; fewer bits would make the derived key guessable
PBKDF2_SALT_BYTES = (8, 64)

_HASHLIB = {MacKind.MD5_OLD_FORMAT: "md5", MacKind.MD5: "md5", MacKind.SHA1: "sha1", MacKind.SHA256: "sha256"}


def at_least(version: Version, major: int, minor: int) -> bool:
    """``AbstractMessage.hasEqualOrGreaterVersion`` (a major of 5 was an old client's mistake)."""
    if version[0] == 5:
        return major == 5 and version[1] >= minor
    return major == 5 or version >= (major, minor)


# What each side picks from a protocol version ----------------------------------------------


def request_digest_kind(version: Version) -> MacKind:
    """The digest a server of ``version`` puts in its challenge."""
    if not at_least(version, 2, 1):
        return MacKind.MD5_OLD_FORMAT
    return MacKind.SHA256 if at_least(version, 2, 7) else MacKind.SHA1


def request_digest(kind: MacKind | int, body: bytes) -> bytes:
    """The digest of a request's encoded body (``Util.doDigest``)."""
    if kind not in DIGEST_KINDS:
        raise ProtocolViolation(f"request digest kind {kind} is not MD5, SHA-1 or SHA-256")
    return hashlib.new(_HASHLIB[MacKind(kind)], body).digest()


def client_secret_kind(challenge: Version, suggested: Version) -> MacKind:
    """The MAC a CNRI client answers a challenge with, from the lower of the two versions."""
    lower = suggested if at_least(challenge, *suggested) else challenge
    if not at_least(lower, 2, 1):
        return MacKind.MD5_OLD_FORMAT
    return MacKind.PBKDF2_HMAC_SHA1 if at_least(lower, 2, 7) else MacKind.SHA1


def client_signature_hash(challenge: Version, key: PrivateKey | sm2.SM2PrivateKey | PublicKey) -> str:
    """The hash a client signs a challenge with: CNRI's ``SHA-256`` or ``SHA1``, id-pointer's ``SM3`` for SM2."""
    if isinstance(key, sm2.SM2PrivateKey | sm2.SM2PublicKey):
        return "SM3"
    if not at_least(challenge, 2, 7):
        return "SHA1"
    is_dsa = isinstance(key, DSAPrivateKey | DSAPublicKey)
    return "SHA1" if is_dsa and not at_least(challenge, 2, 11) else "SHA-256"


# Secret keys ---------------------------------------------------------------------------------


def hashed_secret_key(secret: bytes) -> bytes:
    """handle.net's hashed HS_SECKEY for ``secret``: lowercase hex of its SHA-1, as ASCII."""
    return hashlib.sha1(secret).hexdigest().encode("ascii")


def _keyed_hash(name: str) -> Callable[[bytes, bytes], bytes]:
    return lambda key, message: hashlib.new(name, key + message + key).digest()


_MACS: dict[MacKind, Callable[[bytes, bytes], bytes]] = {
    MacKind.MD5_OLD_FORMAT: _keyed_hash("md5"),
    MacKind.MD5: _keyed_hash("md5"),
    MacKind.SHA1: _keyed_hash("sha1"),
    MacKind.SHA256: _keyed_hash("sha256"),
    MacKind.HMAC_SHA1: lambda key, message: hmac.digest(key, message, "sha1"),
    MacKind.HMAC_SHA256: lambda key, message: hmac.digest(key, message, "sha256"),
}


def _pbkdf2_key(key: bytes, salt: bytes, iterations: int, bits: int) -> bytes:
    # Java widens each byte to a char and PBKDF2WithHmacSHA1 hashes the chars' UTF-8.
    password = key.decode("latin-1").encode("utf-8")
    return hashlib.pbkdf2_hmac("sha1", password, salt, iterations, bits // 8)


def pbkdf2_mac(key: bytes, message: bytes, salt: bytes, iterations: int, bits: int) -> bytes:
    """``Util.doPbkdf2HmacSHA1``: the parameters and the HMAC-SHA1 under the derived key."""
    mac = hmac.digest(_pbkdf2_key(key, salt, iterations, bits), message, "sha1")
    return pack(salt) + struct.pack(">ii", iterations, bits) + pack(mac)


def secret_key_mac(
    kind: MacKind | int, key: bytes, nonce: bytes, request_digest: bytes, *, salt: bytes | None = None
) -> bytes:
    """The MAC (without its kind byte) a client computes with ``key`` (``Util.doMac``).

    For PBKDF2 the result holds the salt (random unless given) and CNRI's cost and length.
    """
    message = nonce + request_digest
    if kind == MacKind.PBKDF2_HMAC_SHA1:
        salt = os.urandom(16) if salt is None else salt
        return pbkdf2_mac(key, message, salt, PBKDF2_ITERATIONS, 160)
    if kind not in _MACS:
        raise ProtocolViolation(f"secret-key answer kind {kind:#04x} is not one handle.net defines")
    return _MACS[MacKind(kind)](key, message)


def secret_answer(
    kind: MacKind, key: bytes, nonce: bytes, request_digest: bytes, *, salt: bytes | None = None
) -> bytes:
    """The ChallengeAnswer's signed response for HS_SECKEY: kind byte and MAC (bare MAC for MD5_OLD_FORMAT)."""
    mac = secret_key_mac(kind, key, nonce, request_digest, salt=salt)
    return mac if kind == MacKind.MD5_OLD_FORMAT else bytes([kind]) + mac


def split_secret_answer(answer: bytes, version: Version) -> tuple[MacKind, bytes]:
    """The kind and MAC of a secret-key answer in a message of protocol ``version``."""
    if not at_least(version, 2, 1):
        return MacKind.MD5_OLD_FORMAT, answer
    if not answer:
        raise ProtocolViolation("the secret-key answer is empty")
    if answer[0] not in ALL_SECRET_KINDS:
        raise ProtocolViolation(f"secret-key answer kind {answer[0]:#04x} is not one handle.net defines")
    return MacKind(answer[0]), answer[1:]


def _pbkdf2_params(mac: bytes) -> tuple[bytes, int, int]:
    r = reader(mac, "the PBKDF2 secret-key answer")
    try:
        salt, iterations, bits, digest = r.blob("salt"), r.i32("iterations"), r.i32("key bits"), r.blob("mac")
        r.done()
    except InvalidValue as exc:
        raise ProtocolViolation(exc.message) from None
    if not PBKDF2_SALT_BYTES[0] <= len(salt) <= PBKDF2_SALT_BYTES[1] or len(digest) != 20:
        raise ProtocolViolation(
            f"the PBKDF2 secret-key answer has a {len(salt)}-byte salt and a {len(digest)}-byte MAC"
        )
    if not 0 < iterations <= MAX_PBKDF2_ITERATIONS or bits not in PBKDF2_KEY_BITS:
        raise ProtocolViolation(
            f"the PBKDF2 secret-key answer asks for {iterations} iterations and a {bits}-bit key; this node "
            f"accepts 1 to {MAX_PBKDF2_ITERATIONS} iterations and a key of {PBKDF2_KEY_BITS} bits"
        )
    return salt, iterations, bits


def verify_secret_answer(
    key: bytes,
    nonce: bytes,
    request_digest: bytes,
    answer: bytes,
    *,
    version: Version = (2, 11),
    accept: frozenset[MacKind] = ALL_SECRET_KINDS,
) -> bool:
    """True when ``answer`` (the signed response of a message of ``version``) was made with ``key``.

    A malformed answer, a kind outside ``accept`` or PBKDF2 parameters out of bounds raise
    ProtocolViolation; a wrong MAC is False. ``key`` is the HS_SECKEY value's data.
    """
    kind, mac = split_secret_answer(answer, version)
    if kind not in accept:
        raise ProtocolViolation(f"this node does not accept secret-key answers of kind {kind.name}")
    message = nonce + request_digest
    if kind == MacKind.PBKDF2_HMAC_SHA1:
        expected = pbkdf2_mac(key, message, *_pbkdf2_params(mac))
    else:
        expected = _MACS[kind](key, message)
    return hmac.compare_digest(expected, mac)


# Public keys ---------------------------------------------------------------------------------

_SIGNATURE_HASHES: dict[bytes, Callable[[], hashes.HashAlgorithm]] = {
    b"SHA1": hashes.SHA1,
    b"SHA-1": hashes.SHA1,
    bytes([MacKind.SHA1]): hashes.SHA1,
    b"SHA-256": hashes.SHA256,
    b"SHA256": hashes.SHA256,
    bytes([MacKind.SHA256]): hashes.SHA256,
    b"SM3": hashes.SM3,  # id-pointer's Common.HASH_ALG_SM3, with SM2 keys only
}


def sign_challenge(
    key: PrivateKey | sm2.SM2PrivateKey,
    nonce: bytes,
    request_digest: bytes,
    *,
    hash_name: str = "",
    signer: str | None = None,
) -> bytes:
    """The ChallengeAnswer's signed response for HS_PUBKEY: hash id, then the signature.

    ``hash_name`` defaults to SHA-256; an SM2 key signs as id-pointer does: by default with SM3,
    as hutool does, ``signer`` (the identity's handle) its signer ID; with SHA-256, as
    BouncyCastle's SHA256withSM2."""
    message = nonce + request_digest
    if isinstance(key, sm2.SM2PrivateKey):
        if hash_name in ("SHA-256", "SHA256"):  # BouncyCastle's SHA256withSM2: no signer ID given
            signature = sm2.sign(key, message, sm2.DEFAULT_USER_ID, algorithm=hashes.SHA256())
            return pack(hash_name.encode(), sm2.encode_signature(signature))
        signature = sm2.sign(key, sm2.sm3(message), _signer_id(signer))
        return pack(b"SM3", sm2.encode_signature(signature))
    hash_name = hash_name or "SHA-256"
    algorithm = _SIGNATURE_HASHES[hash_name.encode()]()
    if isinstance(key, DSAPrivateKey):
        signature_bytes = key.sign(message, algorithm)
    else:
        signature_bytes = key.sign(message, padding.PKCS1v15(), algorithm)
    return pack(hash_name.encode(), signature_bytes)


def split_signed_response(signed_response: bytes) -> tuple[hashes.HashAlgorithm, bytes]:
    """The hash and signature of an HS_PUBKEY answer; ProtocolViolation if malformed or not SHA-1/SHA-256/SM3."""
    r = reader(signed_response, "the public-key answer")
    try:
        hash_id, signature = r.blob("hash id"), r.blob("signature")
        r.done()
    except InvalidValue as exc:
        raise ProtocolViolation(exc.message) from None
    if hash_id not in _SIGNATURE_HASHES:
        raise ProtocolViolation(
            f"the public-key answer is signed with hash {hash_id[:20]!r}; this node accepts SHA-1 and SHA-256, "
            "and SM3 with SM2 keys"
        )
    return _SIGNATURE_HASHES[hash_id](), signature


def _signer_id(signer: str | None) -> bytes:
    return sm2.DEFAULT_USER_ID if signer is None else signer.encode("utf-8")


def _verify_sm2(
    key: sm2.SM2PublicKey, signature: bytes, message: bytes, algorithm: hashes.HashAlgorithm, signer: str | None
) -> bool:
    if not isinstance(algorithm, hashes.SM3 | hashes.SHA256):
        return False  # an SM2 key signs with SM3 (hutool) or SHA-256 (BouncyCastle's SHA256withSM2)
    try:
        pair = sm2.decode_signature(signature)
    except InvalidValue as exc:
        raise ProtocolViolation(exc.message) from None
    if isinstance(algorithm, hashes.SHA256):
        return sm2.verify(key, pair, message, sm2.DEFAULT_USER_ID, algorithm)
    return sm2.verify(key, pair, sm2.sm3(message), _signer_id(signer))


def _verify(key: PublicKey, signature: bytes, message: bytes, algorithm: hashes.HashAlgorithm) -> bool:
    if isinstance(key, sm2.SM2PublicKey) or isinstance(algorithm, hashes.SM3):
        return False  # SM3 signs only with SM2 keys
    try:
        if isinstance(key, DSAPublicKey):
            key.verify(signature, message, algorithm)
        else:
            key.verify(signature, message, padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_signature(
    public_key_bytes: bytes, signed_response: bytes, nonce: bytes, request_digest: bytes, *, signer: str | None = None
) -> bool:
    """True when ``signed_response`` is a signature of the challenge by the HS_PUBKEY ``public_key_bytes``.

    ``signer`` is the identity's handle: an SM2 signature binds it as its signer ID (None: the
    standard's default ID, which no SDK uses for an answer). A malformed answer raises
    ProtocolViolation; a stored key this node cannot read raises AuthenticationFailed (the
    identity cannot authenticate with it); a wrong signature is False. An SM2 check costs about
    a millisecond of Python arithmetic: ``is_slow_key`` tells a caller to run it off its loop.
    """
    algorithm, signature = split_signed_response(signed_response)
    try:
        key = decode_public_key(public_key_bytes)
    except InvalidValue as exc:
        raise AuthenticationFailed(exc.message) from None
    if isinstance(key, sm2.SM2PublicKey):
        return _verify_sm2(key, signature, nonce + request_digest, algorithm, signer)
    return _verify(key, signature, nonce + request_digest, algorithm)


def is_slow_key(public_key_bytes: bytes) -> bool:
    """Whether verifying with this HS_PUBKEY value takes long enough to keep off an event loop (SM2)."""
    return claims_sm2(public_key_bytes)


def new_nonce() -> bytes:
    """A challenge nonce: 16 random bytes, as CNRI's servers send."""
    return os.urandom(NONCE_BYTES)
