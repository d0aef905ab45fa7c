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
import logging
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from protocol.errors import InvalidValue
from protocol.records import HS_SECKEY, HandleValue
from protocol.wire.auth import hashed_secret_key
from registry.identity import sealing
from registry.identity.sealing import KeyMissing as KeyMissing  # raised by protocol_key: named here for callers
from registry.identity.sealing import Keyring, key_of

log = logging.getLogger("registry.secrets")

_SCHEME = "scrypt"  # the old form, still verified until rewritten
_LOG2_N, _R, _P = 14, 8, 1
_DKLEN = 32
_SALT_BYTES = 16
_MAXMEM = 64 * 1024 * 1024

_HASHED = re.compile(rb"[0-9a-f]{40}")
_FORM = "the 40 lowercase hex digits of the secret's SHA-1 (handle.net's hashed HS_SECKEY)"

# Verified against when an identity has no secret: a value no known secret hashes to (sealed
# when used, so an unknown identity costs what a known one does).
DECOY_HASH = b"0" * 40


def generate_secret() -> str:
    """A strong secret for a new identity (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


_CONTEXT = b"HS_SECKEY"
_DIGEST_CONTEXT = b"login-digest:"
_keyring: Keyring | None = None


def use_keyring(keyring: Keyring | None) -> None:
    """Seal and open with ``keyring`` from now on (the node's secret key file, loaded at start)."""
    global _keyring
    _keyring = keyring


def use_key_file(path: Path) -> Keyring:
    """The keyring in ``path`` (made now if there is none), installed for this process."""
    if sealing.ensure_file(path):  # said at INFO by the node's first start (resolver.server.bootstrap)
        log.debug("made the secret key %s", path)
    installed = sealing.load_file(path)
    use_keyring(installed)
    return installed


def keyring() -> Keyring:
    if _keyring is None:
        raise RuntimeError("the node's secret key (secret_key_file) is not loaded")
    return _keyring


def hash_secret(secret: bytes) -> bytes:
    """The value to store for ``secret``: handle.net's hashed HS_SECKEY, sealed under the node's key."""
    return seal(hashed_secret_key(secret))


def seal(hashed: bytes) -> bytes:
    """The stored form of a hashed HS_SECKEY (40 hex digits): AES-GCM under the node's current key."""
    return keyring().seal(hashed, _CONTEXT).encode()


def is_sealed(stored: bytes) -> bool:
    return key_of(stored[:13].decode("ascii", "replace")) is not None


def is_current(stored: bytes) -> bool:
    """True for a value the Handle protocol can use: sealed, or hashed in clear (as clients send it,
    and as this node stored it before sealing; ``needs_reseal``)."""
    return is_sealed(stored) or _HASHED.fullmatch(stored) is not None


def needs_reseal(stored: bytes) -> bool:
    """True for a hashed value in clear, or one sealed under a key other than the current one this node holds."""
    if _HASHED.fullmatch(stored) is not None:
        return True
    key_id = key_of(stored[:13].decode("ascii", "replace")) if is_sealed(stored) else None
    return key_id is not None and key_id != keyring().current and keyring().holds(key_id)


def reseal(stored: bytes) -> bytes:
    """``stored`` sealed under the current key (KeyMissing, ValueError when it cannot be opened)."""
    hashed = protocol_key(stored)
    if hashed is None:
        raise ValueError("not a hashed secret")
    return seal(hashed)


def protocol_key(stored: bytes) -> bytes | None:
    """The key a Handle protocol client MACs its answer with (the hex SHA-1 of the secret), or
    None for an old scrypt value. KeyMissing when sealed under a key this node does not hold."""
    if _HASHED.fullmatch(stored) is not None:
        return stored
    if not is_sealed(stored):
        return None
    try:
        hashed = keyring().open(stored.decode("ascii"), _CONTEXT)
    except (ValueError, UnicodeDecodeError):
        return None
    return hashed if _HASHED.fullmatch(hashed) is not None else None


def unsealed(stored: bytes) -> bytes:
    """A stored secret as it stays across reseals and nodes: the hashed secret it seals, or the
    stored bytes themselves (a form not sealed, or sealed under a key this node does not hold)."""
    try:
        return protocol_key(stored) or stored
    except KeyMissing:
        return stored


# Login digests (SNMS's dated login, registry.identity.tokens) ----------------------------------
# Kept by a keyed name of the hashed secret, sealed with it: the store holds neither hash in clear.


def digest_names(hashed: bytes) -> list[str]:
    """The names a login digest for the hashed secret ``hashed`` may be kept under, the current first."""
    return keyring().lookup_ids(hashed)


def seal_digest(secret: bytes) -> tuple[str, str]:
    """The (name, sealed value) to keep for a secret seen in clear: its SHA-256 for the dated login."""
    hashed = hashed_secret_key(secret)
    name = keyring().lookup_id(hashed)
    return name, keyring().seal(
        hashed + b":" + hashlib.sha256(secret).hexdigest().encode(), _DIGEST_CONTEXT + name.encode()
    )


def open_digest(name: str, sealed: str) -> tuple[bytes, str]:
    """The hashed secret and the hex SHA-256 a kept login digest holds (KeyMissing, ValueError)."""
    hashed, _, digest = keyring().open(sealed, _DIGEST_CONTEXT + name.encode()).partition(b":")
    return hashed, digest.decode()


def reseal_digest(name: str, stored: str) -> tuple[str, str]:
    """A kept login digest under the current key: from the old form (name = hex SHA-1, value = hex
    SHA-256, in clear) or sealed under an older key."""
    if key_of(name) is None:
        hashed, digest = name.encode(), stored
    else:
        hashed, digest = open_digest(name, stored)
    new_name = keyring().lookup_id(hashed)
    return new_name, keyring().seal(hashed + b":" + digest.encode(), _DIGEST_CONTEXT + new_name.encode())


def digest_needs_reseal(name: str) -> bool:
    key_id = key_of(name)
    return key_id is None or (key_id != keyring().current and keyring().holds(key_id))


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
    """Validate a hash a client sends (format "hash"); return its stored form (sealed).

    Only the current form is taken: an scrypt hash would carry its own cost, and could
    never serve the Handle protocol.
    """
    if not stored:
        raise InvalidValue(
            "HS_SECKEY data is withheld from every read, so it cannot be sent back: to keep a stored "
            "secret, leave its index out (PUT with index= of the other values); to set one, send the "
            f"secret or {_FORM}"
        )
    if _HASHED.fullmatch(stored) is None:
        raise InvalidValue(f"a secret in format hash must be {_FORM}, as this node makes them")
    return seal(stored)


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
            try:
                key = protocol_key(stored)
            except KeyMissing as exc:
                log.warning("a secret cannot be verified: %s", exc)
                return False
            return key is not None and hmac.compare_digest(hashed_secret_key(secret), key)
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
