"""SNMS's logins: a user name and a secret (or SNMS's dated digest of it) in, a token out.

A user name is an identity ``index:handle``; a handle alone (``88.118.8/app``) means its
HS_SECKEY at index 300, or its lowest-numbered one; a bare prefix (``88.118.8``) means the
prefix's own identity, ``300:0.NA/88.118.8``. Failures are limited and braked by the same
``Authenticator`` as HTTP Basic and the Handle protocol, and all read alike: "用户名/密码错误！".
"""

from __future__ import annotations

import re
import time

from protocol.errors import AuthenticationFailed, HandleError, TooManyFailures
from registry.identity import secrets
from registry.identity.auth import Authenticator, Identity, parse_identity
from registry.identity.tokens import TokenSigner, UsedPasswords, dated_matches
from registry.service import RegistrationService
from resolver.snms.format import LOGIN_FAILED

DEFAULT_INDEX = 300
_INDEXED = re.compile(r"^\d{1,10}:")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class TokenLogins:
    def __init__(
        self,
        service: RegistrationService,
        authenticator: Authenticator,
        signer: TokenSigner,
        used: UsedPasswords | None = None,
    ) -> None:
        self.service = service
        self.authenticator = authenticator
        self.signer = signer
        self.used = used or UsedPasswords()  # the node's, shared by its workers; else this process's

    async def identity_named(self, username: str) -> str:
        """The identity ``index:handle`` a login name stands for."""
        if _INDEXED.match(username):
            return username
        text = username if "/" in username else f"0.NA/{username}"
        try:
            handle = self.service.parse(text)
        except HandleError:
            return f"{DEFAULT_INDEX}:{text}"  # fails in the authenticator, counted like any failure
        indexes = await self.authenticator.secret_key_indexes(handle.key)
        index = DEFAULT_INDEX if DEFAULT_INDEX in indexes or not indexes else indexes[0]
        return f"{index}:{text}"

    async def login(self, username: str, password: str, address: str) -> str:
        """``/identity/token``: the secret in clear, checked as HTTP Basic checks it."""
        claimed = await self.identity_named(username)
        try:
            identity = await self.authenticator.authenticate(claimed, password.encode(), address)
        except TooManyFailures:
            raise
        except AuthenticationFailed:
            raise AuthenticationFailed(LOGIN_FAILED) from None
        await self.authenticator.learn_login_digest(password.encode())  # so that the dated login works from now on
        return await self._token_for(identity)

    async def login_dated(self, username: str, password: str, address: str) -> str:
        """``/identity/token/v1``: ``sha256(sha256(secret) + "yyyy-MM-dd")``, China's date."""
        try:
            claimed = parse_identity(await self.identity_named(username), case_sensitive=self.service.case_sensitive)
        except AuthenticationFailed:
            raise AuthenticationFailed(LOGIN_FAILED) from None

        async def check() -> Identity | None:
            if not _HEX64.match(password):
                return None
            value = await self.authenticator.secret_key(claimed)
            if value is None or not secrets.is_current(value.data):
                return None
            digest = await self.authenticator.login_digest(value.data)
            if digest is None or not dated_matches(digest, password, time.time()):
                return None
            # Once: the same dated password again (a replay, within its three days) is a failure.
            return claimed if self.used.take(str(claimed), password) else None

        try:
            identity = await self.authenticator.prove(claimed, address, check)
        except TooManyFailures:
            raise
        except AuthenticationFailed:
            raise AuthenticationFailed(LOGIN_FAILED) from None
        return await self._token_for(identity)

    async def _token_for(self, identity: Identity) -> str:
        value = await self.authenticator.secret_key(identity)
        if value is None:  # deleted since it was verified
            raise AuthenticationFailed(LOGIN_FAILED)
        return self.signer.issue(identity, value.data, value.timestamp)
