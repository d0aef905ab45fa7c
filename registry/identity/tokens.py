"""SNMS login tokens: signed, stateless, 24 hours, void once the identity's secret is written.

A token is a JWT (HS256), as SNMS's are: ``{"sub": identity, "iat", "exp", "sfp"}``, signed
with the node's token key. Any worker, and any node given the same key file, checks one
without a store read. ``sfp`` is a keyed fingerprint of the identity's stored HS_SECKEY
*and of its generation*, the time it was written (the value's timestamp, which the node
stamps on every write of it): a request is refused once the stored value or its generation
differs, so setting a new secret revokes every token issued before, and setting the old
secret back later does not revive them (the stored hash is the same, its generation is not).
The record is read through the cache, which every write invalidates on every worker.

SNMS's dated login (``/identity/token/v1``) sends ``sha256(sha256(secret) + "yyyy-MM-dd")``
in hex. The stored SHA-1 of the secret cannot give that, so the node keeps, per stored
secret, the SHA-256 it learned when the secret was last seen in clear (set through the API,
or a login with it): ``Store.login_digest``. A dated password is good for three days of
China's calendar, so each one logs in once: ``UsedPasswords`` refuses it the second time.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import mmap
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import AuthenticationFailed, AuthenticationNeeded
from registry.datadir import make_private_once
from registry.days import CHINA  # SNMS dates the login in China's time (a client's may be a day off ours)
from registry.identity import secrets
from registry.identity.auth import Identity, parse_identity

LIFETIME = 24 * 3600
KEY_FILE = "snms-token-key"
KEY_BYTES = 32
MAX_TOKEN_CHARS = 2048
_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")


class TokenKeyError(Exception):
    """The token key file cannot be made or read; the message names the setting and the path."""


class TokenRefused(AuthenticationNeeded):
    """A token that is missing, malformed, forged or expired; the message says which.

    A refusal like any other (HandleError), so that SNMS's routes share the HTTP error edge.
    """


@dataclass(frozen=True, slots=True)
class Claims:
    identity: Identity
    expires: int
    fingerprint: str


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"a token key has at least {KEY_BYTES} bytes")
        self._key = key
        self._clock = clock

    def fingerprint(self, seckey: bytes, written: int) -> str:
        """What a token holds of the stored HS_SECKEY and of when it was ``written`` (its generation):
        keyed, so it gives nothing of the value away."""
        message = b"idnode-token-seckey\0%d\0" % written + secrets.unsealed(seckey)
        return _b64(hmac.digest(self._key, message, "sha256")[:12]).decode()

    def issue(self, identity: Identity, seckey: bytes, written: int) -> str:
        now = int(self._clock())
        claims = {"sub": str(identity), "iat": now, "exp": now + LIFETIME, "sfp": self.fingerprint(seckey, written)}
        signed = _HEADER + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        return (signed + b"." + _b64(hmac.digest(self._key, signed, "sha256"))).decode()

    def verify(self, token: str, *, case_sensitive: bool = False) -> Claims:
        """The claims of a token this key signed that has not expired; TokenRefused otherwise."""
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise TokenRefused("token无效 (the token is not one this node issued)")
        header, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        try:
            # The signature's one spelling (no padding, zero spare bits): another is another token.
            expected = _b64(hmac.digest(self._key, f"{header}.{payload}".encode(), "sha256"))
            if header.encode() != _HEADER or not hmac.compare_digest(signature.encode(), expected):
                raise TokenRefused("token无效 (the token's signature does not verify)")
            claims = json.loads(_unb64(payload))
            identity = parse_identity(claims["sub"], case_sensitive=case_sensitive)
            expires, fingerprint = claims["exp"], claims["sfp"]
            if type(expires) is not int or not isinstance(fingerprint, str):
                raise ValueError("malformed claims")
        except (binascii.Error, ValueError, KeyError, TypeError, AuthenticationFailed):
            raise TokenRefused("token无效 (the token is malformed)") from None
        if expires <= self._clock():
            raise TokenRefused("token已过期，请重新登录 (the token expired; log in again)")
        return Claims(identity, expires, fingerprint)


def dated_password(digest: str, day: dt.date) -> str:
    """SNMS's dated login password for a secret whose hex SHA-256 is ``digest``."""
    return hashlib.sha256(f"{digest}{day:%Y-%m-%d}".encode()).hexdigest()


class UsedPasswords:
    """Dated passwords that have logged in, kept while they could log in again, for the whole node.

    A dated password is accepted on three days of China's calendar; kept for ``KEPT`` seconds
    from its use, it cannot be used twice. Entries live in memory shared by every worker (an
    anonymous shared mapping made before they fork), as the failure limits' do: a slot is a
    salted 64-bit fingerprint of (identity, password) and the time it may be forgotten. A key
    probes ``PROBES`` slots; when all hold live entries the login is refused (it errs on the side
    of refusing; a table of 65,536 slots holds that many identities' daily logins). Nodes that
    share only a database do not share this table: a password used at one can be used once at
    each of the others. Two workers taking the same password within the same instant may both
    succeed; one after the other, the second is refused.
    """

    SLOTS = 1 << 16
    PROBES = 8
    KEPT = 3 * 24 * 3600 + 3600  # yesterday, today, tomorrow, and an hour of clock skew

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._salt = os.urandom(16)
        self._map = mmap.mmap(-1, self.SLOTS * 16)
        self._words = memoryview(self._map).cast("q")  # (fingerprint, forget after) per slot

    def take(self, identity: str, password: str) -> bool:
        """True the first time (identity, password) is taken within ``KEPT`` seconds, else False."""
        digest = hashlib.blake2b(f"{identity}\0{password.lower()}".encode(), key=self._salt, digest_size=8).digest()
        mark = int.from_bytes(digest, "little", signed=True) or 1
        now = int(self._clock())
        free = None
        for probe in range(self.PROBES):
            slot = ((mark + probe) & (self.SLOTS - 1)) * 2
            live = self._words[slot + 1] > now
            if live and self._words[slot] == mark:
                return False
            if not live and free is None:
                free = slot
        if free is None:
            return False
        self._words[free], self._words[free + 1] = mark, now + self.KEPT
        return True


def dated_matches(digest: str, sent: str, now: float) -> bool:
    """True when ``sent`` is the dated password for ``digest`` on China's yesterday, today or tomorrow."""
    today = dt.datetime.fromtimestamp(now, CHINA).date()
    sent = sent.lower()
    found = False
    for shift in (-1, 0, 1):
        found |= hmac.compare_digest(dated_password(digest, today + dt.timedelta(days=shift)), sent)
    return found


# The key file ---------------------------------------------------------------------------


def ensure_key(path: Path) -> Path:
    """The token key file, made now (random, mode 0600, atomically) if there is none."""
    make_private_once(path, lambda: base64.b64encode(os.urandom(KEY_BYTES)) + b"\n", TokenKeyError, "token_key_file")
    return path


def load_key(path: Path) -> bytes:
    try:
        text = path.read_bytes().strip()
    except OSError as exc:
        raise TokenKeyError(f"setting 'token_key_file': cannot read {path}: {exc.strerror or exc}") from None
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        key = b""
    if len(key) < KEY_BYTES:
        raise TokenKeyError(
            f"setting 'token_key_file': {path} must hold at least {KEY_BYTES} random bytes in base64 "
            "(make one with: head -c 32 /dev/urandom | base64)"
        )
    return key
