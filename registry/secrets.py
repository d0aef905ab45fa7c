"""Secrets at rest: salted scrypt hashes, never the secret itself.

A stored HS_SECKEY value holds ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``.
Verifying costs tens of milliseconds by design, so a successful verification is
remembered (as an HMAC under a per-process key, not the secret) for later requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections import OrderedDict

from protocol.errors import InvalidValue

_SCHEME = "scrypt"
_LOG2_N, _R, _P = 14, 8, 1
_DKLEN = 32
_SALT_BYTES = 16
_MAXMEM = 64 * 1024 * 1024


DECOY_SALT = bytes(_SALT_BYTES)
# Verified against when an identity has no secret, so that its failure takes as long as a wrong secret.
DECOY_HASH = f"{_SCHEME}${_LOG2_N}${_R}${_P}${base64.b64encode(DECOY_SALT).decode()}${'A' * 43}=".encode()


def generate_secret() -> str:
    """A strong secret for a new identity (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def _derive(secret: bytes, salt: bytes) -> bytes:
    return hashlib.scrypt(secret, salt=salt, n=1 << _LOG2_N, r=_R, p=_P, dklen=_DKLEN, maxmem=_MAXMEM)


def hash_secret(secret: bytes) -> bytes:
    salt = os.urandom(_SALT_BYTES)
    digest = _derive(secret, salt)
    b64 = base64.b64encode
    return f"{_SCHEME}${_LOG2_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}".encode()


_FORM = f"{_SCHEME}${_LOG2_N}${_R}${_P}$<{_SALT_BYTES}-byte salt, base64>$<{_DKLEN}-byte hash, base64>"


def _parse(stored: bytes) -> tuple[bytes, bytes]:
    """Salt and digest of a hash made with exactly this node's parameters.

    The cost parameters are part of the stored text, and a client may send a hash back
    (format "hash"): accepting other costs would let it set what a verification costs the
    node (a huge one exhausted memory, a large one burned a core per attempt).
    """
    try:
        scheme, log2_n, r, p, salt_b64, digest_b64 = stored.decode("ascii").split("$")
        if (scheme, log2_n, r, p) != (_SCHEME, str(_LOG2_N), str(_R), str(_P)):
            raise ValueError("not this node's scheme and parameters")
        salt, digest = base64.b64decode(salt_b64, validate=True), base64.b64decode(digest_b64, validate=True)
        if len(salt) != _SALT_BYTES or len(digest) != _DKLEN:
            raise ValueError("salt or hash of the wrong length")
        return salt, digest
    except (ValueError, UnicodeDecodeError):
        raise InvalidValue(f"a secret in format hash must read {_FORM}, as this node makes them") from None


def check_hash(stored: bytes) -> bytes:
    """Validate a hash a client sends back (format "hash"); return it unchanged."""
    _parse(stored)
    return stored


class Verifier:
    """Checks secrets against stored hashes, remembering recent successes."""

    def __init__(self, remember: int = 10_000) -> None:
        self._key = os.urandom(32)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._remember = remember

    def _token(self, stored: bytes, secret: bytes) -> bytes:
        return hmac.digest(self._key, stored + b"\0" + secret, "sha256")

    def known(self, stored: bytes, secret: bytes) -> bool:
        """True when this exact secret was verified against this exact hash recently."""
        token = self._token(stored, secret)
        if token in self._ok:
            self._ok.move_to_end(token)
            return True
        return False

    @staticmethod
    def verify(stored: bytes, secret: bytes) -> bool:
        """Slow path: run scrypt. Touches no shared state, so it may run in a worker thread."""
        try:
            salt, digest = _parse(stored)
        except InvalidValue:
            salt, digest = DECOY_SALT, b""  # never matches, and costs what a real check costs
        return hmac.compare_digest(_derive(secret, salt), digest)

    def remember(self, stored: bytes, secret: bytes) -> None:
        self._ok[self._token(stored, secret)] = None
        while len(self._ok) > self._remember:
            self._ok.popitem(last=False)
