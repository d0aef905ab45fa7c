"""Secrets at rest: handle.net's hashed HS_SECKEY, which both front-ends can verify.

A stored HS_SECKEY value holds the lowercase hex of SHA-1(secret), 40 ASCII bytes: exactly
what handle.net stores for a "hashed" secret key (``Encoder.encodeSecretKey(secret, true)``).
The Handle protocol proves a secret by a MAC keyed with the value's bytes, so the server must
hold the client's MAC key; with this form a CNRI client that hashes (the admin tool's
"hashed password" box, Teleinfo's SDK with ``hash=true``) computes the same key from the
secret, and hdl-genericbatch is given the 40 hex characters as its secret. HTTP Basic sends
the secret and is checked by hashing it.

The trade-off, said plainly: this value is a credential for the Handle protocol, as any
stored MAC key must be, and an unsalted SHA-1 offers no resistance to guessing a weak secret
from a leaked store. It still keeps the secret itself out of the store (it may be reused
elsewhere), and node-generated secrets (192 random bits) cannot be guessed at any speed.
The scrypt form it replaces protected a leaked store better but could serve only HTTP.

No cost is stored, so a client cannot choose what a verification costs (a scrypt hash it
sent back once could). Values still in the old ``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>``
form verify over HTTP, at this node's scrypt parameters only, and are rewritten to the new
form on their next successful login (``registry.identity.auth``); they cannot authenticate over the
Handle protocol until then, or until the owner sets the secret again.

Because the stored value is the MAC key, it is never shown: ``withhold`` is the one read view
of values for every reader and every path (REST, SNMS, the Handle protocol, export). It keeps
an HS_SECKEY's index, type, ttl, timestamp and permissions and empties its data, which JSON
shows as ``{"format": "hash", "value": ""}``. That form is refused on a write (``check_hash``),
so sending a read back can never replace a stored secret with nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable

from protocol.errors import InvalidValue
from protocol.records import HS_SECKEY, HandleValue
from protocol.wire.auth import hashed_secret_key

_SCHEME = "scrypt"  # the old form, still verified until rewritten
_LOG2_N, _R, _P = 14, 8, 1
_DKLEN = 32
_SALT_BYTES = 16
_MAXMEM = 64 * 1024 * 1024

_HASHED = re.compile(rb"[0-9a-f]{40}")
_FORM = "the 40 lowercase hex digits of the secret's SHA-1 (handle.net's hashed HS_SECKEY)"

# Verified against when an identity has no secret: a value no known secret hashes to.
DECOY_HASH = b"0" * 40


def generate_secret() -> str:
    """A strong secret for a new identity (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def hash_secret(secret: bytes) -> bytes:
    """The value to store for ``secret``: handle.net's hashed HS_SECKEY."""
    return hashed_secret_key(secret)


def is_current(stored: bytes) -> bool:
    """True for a value in the form this node stores, which the Handle protocol can use."""
    return _HASHED.fullmatch(stored) is not None


def protocol_key(stored: bytes) -> bytes | None:
    """The key a Handle protocol client MACs its answer with, or None for an old scrypt value."""
    return stored if is_current(stored) else None


def needs_rehash(stored: bytes) -> bool:
    """True for an old scrypt value made with this node's parameters (one that can still verify)."""
    try:
        _parse_scrypt(stored)
    except InvalidValue:
        return False
    return True


def _derive(secret: bytes, salt: bytes) -> bytes:
    return hashlib.scrypt(secret, salt=salt, n=1 << _LOG2_N, r=_R, p=_P, dklen=_DKLEN, maxmem=_MAXMEM)


def _parse_scrypt(stored: bytes) -> tuple[bytes, bytes]:
    """Salt and digest of an old hash made with exactly this node's parameters.

    Other costs were refused when clients could send hashes in this form, and are never run:
    a huge one exhausted memory, a large one burned a core per attempt.
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
        raise InvalidValue("not an scrypt hash with this node's parameters") from None


def withhold(values: Iterable[HandleValue]) -> list[HandleValue]:
    """``values`` as any reader is shown them: each HS_SECKEY's data withheld, the rest as stored."""
    return [v._replace(data=b"") if v.type.upper() == HS_SECKEY else v for v in values]


def check_hash(stored: bytes) -> bytes:
    """Validate a hash a client sends (format "hash"); return it unchanged.

    Only the current form is taken: an scrypt hash would carry its own cost, and could
    never serve the Handle protocol.
    """
    if not stored:
        raise InvalidValue(
            "HS_SECKEY data is withheld from every read, so it cannot be sent back: to keep a stored "
            "secret, leave its index out (PUT with index= of the other values); to set one, send the "
            f"secret or {_FORM}"
        )
    if not is_current(stored):
        raise InvalidValue(f"a secret in format hash must be {_FORM}, as this node makes them")
    return stored


class Verifier:
    """Checks secrets against stored values, remembering recent successes of the slow old form."""

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
        """Check ``secret`` against ``stored``; for an old scrypt value this is the slow path,
        touching no shared state, so it may run in a worker thread. Garbage never verifies."""
        if is_current(stored):
            return hmac.compare_digest(hash_secret(secret), stored)
        try:
            salt, digest = _parse_scrypt(stored)
        except InvalidValue:
            return False
        return hmac.compare_digest(_derive(secret, salt), digest)

    def remember(self, stored: bytes, secret: bytes) -> None:
        self._ok[self._token(stored, secret)] = None
        while len(self._ok) > self._remember:
            self._ok.popitem(last=False)


def legacy_hash(secret: bytes) -> bytes:
    """An old-form scrypt value, as this node made them before: for tests of the migration."""
    salt = os.urandom(_SALT_BYTES)
    b64 = base64.b64encode
    return f"{_SCHEME}${_LOG2_N}${_R}${_P}${b64(salt).decode()}${b64(_derive(secret, salt)).decode()}".encode()
