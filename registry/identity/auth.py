"""Identities (``index:handle``) and secret-key authentication against HS_SECKEY values."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from protocol.errors import AuthenticationFailed, HandleError, InvalidValue, MirrorReadOnly, TooManyFailures
from protocol.identifiers import parse_handle
from protocol.records import HS_SECKEY, MAX_INDEX, HandleRecord, HandleValue
from registry.identity import secrets
from registry.identity.answers import Answer, check_answer
from registry.identity.caller import Identity as Identity  # named here too: most callers find it with Authenticator
from registry.identity.ratelimit import FailureLimiter
from registry.store import AuditEntry, Store

log = logging.getLogger("registry.auth")

BRAKE_LIMIT = 30  # failures in the window on one identity before its failures are slowed
NODE_BRAKE_FACTOR = 10  # the node-wide brake engages at this many times the per-identity one
BRAKE_DELAY = 1.0  # seconds added to each failed attempt while braking
BRAKE_LOG_KEYS = 10_000  # forget when each brake was last logged beyond this many


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
    """Checks a claimed identity's secret against its stored HS_SECKEY hash, rewriting an old one.

    Failures are limited per identity *and* client address, and per address: a third party
    guessing from its own addresses locks out only itself, never the owner coming from
    elsewhere. Guessing spread over many addresses meets a brake instead: once an identity
    sees more than ``brake`` failures in the window (the whole node ten times that), every further failed
    attempt is answered only after ``brake_delay`` seconds. The brake slows, it never refuses,
    and a right secret is answered at once.
    """

    def __init__(
        self,
        store: Store,
        *,
        case_sensitive: bool = False,
        limiter: FailureLimiter | None = None,
        brake: FailureLimiter | None = None,
        node_brake: FailureLimiter | None = None,
        brake_delay: float = BRAKE_DELAY,
    ) -> None:
        self.limiter = limiter or FailureLimiter()
        self.brake = brake or FailureLimiter(limit=BRAKE_LIMIT)
        self.node_brake = node_brake or FailureLimiter(limit=NODE_BRAKE_FACTOR * BRAKE_LIMIT)
        self.brake_delay = brake_delay
        self._store = store
        self._case_sensitive = case_sensitive
        self._verifier = secrets.Verifier()
        self._slow_checks = asyncio.Semaphore(1)
        self._braking_logged: dict[str, float] = {}

    # What the identities hold: for logins and answers checked outside this class ------------

    async def secret_key(self, identity: Identity) -> HandleValue | None:
        """The HS_SECKEY value ``identity`` names, or None (no such record, value or type)."""
        record = await self._store.get(identity.handle)
        value = None if record is None else record.value_at(identity.index)
        return value if value is not None and value.type.upper() == HS_SECKEY else None

    async def secret_key_indexes(self, handle_key: str) -> list[int]:
        """The indexes of the HS_SECKEY values of the handle ``handle_key``, in order."""
        record = await self._store.get(handle_key)
        return sorted(v.index for v in record.values if v.type.upper() == HS_SECKEY) if record else []

    async def login_digest(self, stored: bytes) -> str | None:
        """The SHA-256 of the secret whose stored HS_SECKEY is ``stored``, if it was ever seen in clear."""
        try:
            hashed = secrets.protocol_key(stored)
        except secrets.KeyMissing as exc:
            log.warning("a dated login cannot be verified: %s", exc)
            return None
        if hashed is None:
            return None
        for name in secrets.digest_names(hashed):
            sealed = await self._store.login_digest(name)
            if sealed is not None:
                try:
                    return secrets.open_digest(name, sealed)[1]
                except (secrets.KeyMissing, ValueError) as exc:
                    log.warning("a login digest cannot be opened: %s", exc)
        return await self._store.login_digest(hashed.decode())  # kept in clear before sealing

    async def learn_login_digest(self, secret: bytes) -> None:
        """Keep the SHA-256 of ``secret``, just seen in clear, for the dated login, unless known already."""
        name, sealed = secrets.seal_digest(secret)
        if await self._store.login_digest(name) is None:
            try:
                await self._store.put_login_digest(name, sealed)
            except MirrorReadOnly:  # a mirror site's store is a replica: its primary learns it at a login there
                return

    async def check_answer(self, answer: Answer) -> Identity | None:
        """The identity a Handle protocol challenge answer proves (``registry.identity.answers``)."""
        return await check_answer(self._store, answer)

    # Checking secrets ------------------------------------------------------------------

    async def authenticate(
        self,
        user: str,
        secret: bytes,
        address: str = "",
        *,
        read_with: Sequence[str] = (),
        into: dict[str, HandleRecord | None] | None = None,
    ) -> Identity:
        """The identity ``user`` names, if ``secret`` is its secret; AuthenticationFailed otherwise.

        ``read_with``: keys read in the same trip as the identity's record, from the primary
        (those a write is about to plan against), put in ``into`` (None for those absent)."""
        malformed: AuthenticationFailed | None = None
        try:
            identity: Identity | None = parse_identity(user, case_sensitive=self._case_sensitive)
        except AuthenticationFailed as exc:
            identity, malformed = None, exc  # counted against the address alone
        # Limits are kept by the identity as parsed, so respelling it (0300:, 0.na, %2F) gains nothing.
        name = str(identity) if identity is not None else "?"
        keys = self._admit(identity, address)
        try:
            if malformed is not None or identity is None:
                raise malformed or AuthenticationFailed(f"identity {user!r} is malformed")
            return await self._check(identity, secret, address, read_with, into)
        except AuthenticationFailed:
            await self._failed(name, address, keys)
            raise

    async def prove(self, claimed: Identity, address: str, check: Callable[[], Awaitable[Identity | None]]) -> Identity:
        """The identity ``check`` proves (a Handle protocol answer verified against its key),
        limited and braked as ``authenticate`` is: refused with TooManyFailures while over the
        limit, AuthenticationFailed (counted) when ``check`` finds None or raises it."""
        keys = self._admit(claimed, address)
        try:
            proved = await check()
            if proved is None:
                raise AuthenticationFailed(f"authentication failed for identity {claimed}")
            return proved
        except AuthenticationFailed:
            await self._failed(str(claimed), address, keys)
            raise

    def _admit(self, identity: Identity | None, address: str) -> list[str]:
        """The limiter's keys for an attempt, or TooManyFailures while any is over its limit."""
        name = str(identity) if identity is not None else "?"
        keys = [f"address:{address}"] + ([f"identity:{name}@{address}"] if identity is not None else [])
        wait = self.limiter.retry_after(keys)
        if wait is not None:
            raise TooManyFailures(
                f"too many failed authentications for {name} from {address}; retry in {wait} s", retry_after=wait
            )
        return keys

    async def _failed(self, name: str, address: str, keys: list[str]) -> None:
        self.limiter.record(keys)
        self.brake.record([f"identity:{name}"])
        self.node_brake.record(["node"])
        log.warning("authentication failed for identity %s from %s", name, address or "?")
        await self._slow_down(name)

    async def _slow_down(self, name: str) -> None:
        """Hold a failure back while its identity, or the whole node, is under a guessing flood."""
        braking = [
            (what, limiter)
            for what, limiter, key in (
                (name, self.brake, f"identity:{name}"),
                ("the whole node", self.node_brake, "node"),
            )
            if limiter.retry_after([key]) is not None
        ]
        if not braking:
            return
        now = time.monotonic()
        for what, limiter in braking:
            if now - self._braking_logged.get(what, -math.inf) >= limiter.window:
                self._braking_logged[what] = now
                log.warning(
                    "authentication brake on for %s: over %d failures in %d s from any address; "
                    "failed attempts are answered after %.1f s",
                    what, limiter.limit, limiter.window, self.brake_delay,
                )  # fmt: skip
        if len(self._braking_logged) > BRAKE_LOG_KEYS:
            self._braking_logged.clear()
        await asyncio.sleep(self.brake_delay)

    async def _check(
        self,
        identity: Identity,
        secret: bytes,
        address: str,
        read_with: Sequence[str] = (),
        into: dict[str, HandleRecord | None] | None = None,
    ) -> Identity:
        wanted = [identity.handle, *read_with] if into is not None else []
        if len(wanted) > 1:
            read = await self._store.get_many(wanted, primary=True)
            record = read.get(identity.handle)
        else:
            record = await self._store.get(identity.handle)
        value = None if record is None else record.value_at(identity.index)
        # One message for every failure, so a caller cannot probe which identities exist.
        failed = AuthenticationFailed(f"authentication failed for identity {identity}")
        stored = value.data if value is not None and value.type.upper() == HS_SECKEY else None
        if stored is None or secrets.is_current(stored):
            # An unknown identity costs one hash, as a wrong secret does: the time taken must
            # not tell which identities exist.
            if not secrets.Verifier.verify(stored or secrets.seal(secrets.DECOY_HASH), secret) or stored is None:
                raise failed
            if secrets.needs_reseal(stored):  # in clear or under an old key: sealed anew now it verified
                await self._rehash(identity, stored, secret, address)
            elif into is not None and len(wanted) > 1:  # a resealed identity's record is read again
                into.update({key: read.get(key) for key in wanted})
            return identity
        if not await self._check_legacy(stored, secret):
            raise failed
        await self._rehash(identity, stored, secret, address)
        return identity

    async def _check_legacy(self, stored: bytes, secret: bytes) -> bool:
        """An old scrypt value: slow by design, so remembered, and run one at a time off the loop."""
        if self._verifier.known(stored, secret):
            return True
        # scrypt is deliberately expensive: bound how many run at once so a flood of
        # wrong secrets cannot take every core from the serving path.
        async with self._slow_checks:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(None, self._verifier.verify, stored, secret)
        if ok:
            self._verifier.remember(stored, secret)
        return ok

    async def _rehash(self, identity: Identity, stored: bytes, secret: bytes, address: str) -> None:
        """Rewrite an old scrypt value in the current form, now that the secret is known to be right.

        Only if the value is still the one verified (an owner may have just changed it); a
        failure to write leaves the old value, which goes on verifying, and is retried next time.
        """
        fresh = secrets.hash_secret(secret)

        def change(old: HandleRecord | None) -> HandleRecord | None:
            value = None if old is None else old.value_at(identity.index)
            if old is None or value is None or value.data != stored:
                raise InvalidValue("the value changed since it was verified; left as it is")
            return old.with_values([fresh_value(v) for v in old.values])

        def fresh_value(v: HandleValue) -> HandleValue:
            return v._replace(data=fresh, timestamp=int(time.time())) if v.index == identity.index else v

        audit = AuditEntry(time.time(), str(identity), address, "rehash_secret", identity.handle)
        try:
            await self._store.apply(identity.handle, change, audit)
        except HandleError as exc:
            log.warning("could not rewrite the old-form secret of %s: %s", identity, exc.message)
            return
        log.info("rewrote the secret of %s in the form the Handle protocol can verify", identity)
