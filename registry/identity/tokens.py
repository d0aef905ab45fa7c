"""SNMS login tokens: signed, stateless, 24 hours, void once the identity's secret changes.

A token is a JWT (HS256), as SNMS's are: ``{"sub": identity, "iat", "exp", "sfp"}``, signed
with the node's token key. Any worker, and any node given the same key file, checks one
without a store read. ``sfp`` is a keyed fingerprint of the identity's stored HS_SECKEY
when the token was issued: a request is refused once the stored value differs, so setting
a new secret revokes every token issued before (the record is read through the cache,
which every write invalidates on every worker).

SNMS's dated login (``/identity/token/v1``) sends ``sha256(sha256(secret) + "yyyy-MM-dd")``
in hex. The stored SHA-1 of the secret cannot give that, so the node keeps, per stored
secret, the SHA-256 it learned when the secret was last seen in clear (set through the API,
or a login with it): ``Store.login_digest``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import AuthenticationFailed, AuthenticationNeeded
from registry.datadir import write_private
from registry.identity.auth import Identity, parse_identity

LIFETIME = 24 * 3600
KEY_FILE = "snms-token-key"
KEY_BYTES = 32
MAX_TOKEN_CHARS = 2048
# SNMS dates the login in China's time; a client's clock may be a day either side of ours.
CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
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

    def fingerprint(self, seckey: bytes) -> str:
        """What a token holds of the stored HS_SECKEY: keyed, so it gives nothing of the value away."""
        return _b64(hmac.digest(self._key, b"idnode-token-seckey\0" + seckey, "sha256")[:12]).decode()

    def issue(self, identity: Identity, seckey: bytes) -> str:
        now = int(self._clock())
        claims = {"sub": str(identity), "iat": now, "exp": now + LIFETIME, "sfp": self.fingerprint(seckey)}
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
    if path.exists():
        return path
    try:
        write_private(path, base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
    except OSError as exc:
        raise TokenKeyError(f"setting 'token_key_file': cannot write {path}: {exc.strerror or exc}") from None
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
