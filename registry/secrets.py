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
_MAXMEM = 64 * 1024 * 1024


def generate_secret() -> str:
    """A strong secret for a new identity (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def _derive(secret: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret, salt=salt, n=1 << log2_n, r=r, p=p, dklen=_DKLEN, maxmem=_MAXMEM)


def hash_secret(secret: bytes) -> bytes:
    salt = os.urandom(16)
    digest = _derive(secret, salt, _LOG2_N, _R, _P)
    b64 = base64.b64encode
    return f"{_SCHEME}${_LOG2_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}".encode()


def _parse(stored: bytes) -> tuple[int, int, int, bytes, bytes]:
    try:
        scheme, log2_n, r, p, salt, digest = stored.decode("ascii").split("$")
        if scheme != _SCHEME:
            raise ValueError(scheme)
        params = int(log2_n), int(r), int(p)
        if not (10 <= params[0] <= 20 and 1 <= params[1] <= 16 and 1 <= params[2] <= 4):
            raise ValueError("parameters out of range")
        return (*params, base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True))
    except (ValueError, UnicodeDecodeError):
        raise InvalidValue("not a secret hash of the form scrypt$n$r$p$salt$hash") from None


def check_hash(stored: bytes) -> bytes:
    """Validate a hash a client sends back (format "hash"); return it unchanged."""
    _parse(stored)
    return stored


def is_hash(stored: bytes) -> bool:
    try:
        _parse(stored)
    except InvalidValue:
        return False
    return True


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
            log2_n, r, p, salt, digest = _parse(stored)
        except InvalidValue:
            return False
        return hmac.compare_digest(_derive(secret, salt, log2_n, r, p), digest)

    def remember(self, stored: bytes, secret: bytes) -> None:
        self._ok[self._token(stored, secret)] = None
        while len(self._ok) > self._remember:
            self._ok.popitem(last=False)
