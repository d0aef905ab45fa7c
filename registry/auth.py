"""Identities (``index:handle``) and secret-key authentication against HS_SECKEY values."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from protocol.errors import AuthenticationFailed, HandleError, TooManyFailures
from protocol.identifiers import parse_handle
from protocol.records import HS_SECKEY, MAX_INDEX
from registry.ratelimit import FailureLimiter
from registry.secrets import Verifier
from registry.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated (or named) identity: the value at ``index`` of ``handle``."""

    index: int
    handle: str  # normalised key of the identity's handle

    def __str__(self) -> str:
        return f"{self.index}:{self.handle}"


def parse_identity(text: str, *, case_sensitive: bool = False) -> Identity:
    """Parse ``300:0.NA/88.118``; any malformation is an authentication failure."""
    index_text, colon, handle_text = text.partition(":")
    if not colon or not index_text.isascii() or not index_text.isdigit():
        raise AuthenticationFailed(f"identity {text!r} is not of the form index:handle")
    index = int(index_text)
    if not 0 < index <= MAX_INDEX:
        raise AuthenticationFailed(f"identity {text!r} has an index out of range")
    try:
        handle = parse_handle(handle_text, case_sensitive=case_sensitive)
    except HandleError as exc:
        raise AuthenticationFailed(f"identity {text!r}: {exc.message}") from None
    return Identity(index, handle.key)


class Authenticator:
    """Checks a claimed identity's secret against its stored HS_SECKEY hash."""

    def __init__(self, store: Store, *, case_sensitive: bool = False, limiter: FailureLimiter | None = None) -> None:
        self.limiter = limiter or FailureLimiter()
        self._store = store
        self._case_sensitive = case_sensitive
        self._verifier = Verifier()
        # scrypt is deliberately expensive: bound how many run at once so a flood of
        # wrong secrets cannot take every core from the serving path.
        self._slow_checks = asyncio.Semaphore(1)

    async def authenticate(self, user: str, secret: bytes, address: str = "") -> Identity:
        """The identity ``user`` names, if ``secret`` is its secret; AuthenticationFailed otherwise."""
        keys = [f"identity:{user.upper()}", f"address:{address}"]
        wait = self.limiter.retry_after(keys)
        if wait is not None:
            raise TooManyFailures(
                f"too many failed authentications for {user} or from {address}; retry in {wait} s", retry_after=wait
            )
        try:
            return await self._check(user, secret)
        except AuthenticationFailed:
            self.limiter.record(keys)
            log.warning("authentication failed for identity %r from %s", user, address or "?")
            raise

    async def _check(self, user: str, secret: bytes) -> Identity:
        identity = parse_identity(user, case_sensitive=self._case_sensitive)
        record = await self._store.get(identity.handle)
        value = None if record is None else record.value_at(identity.index)
        # One message for every failure, so a caller cannot probe which identities exist.
        failed = AuthenticationFailed(f"authentication failed for identity {user}")
        if value is None or value.type.upper() != HS_SECKEY:
            raise failed
        if self._verifier.known(value.data, secret):
            return identity
        async with self._slow_checks:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(None, self._verifier.verify, value.data, secret)
        if not ok:
            raise failed
        self._verifier.remember(value.data, secret)
        return identity
