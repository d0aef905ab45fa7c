"""Logins that last for a TCP connection: China's SDKs' LOGIN_ID_SYSTEM (2001) and OC_LOGIN (2000).

CAICT's ID-SDK and Teleinfo's id-pointer-sdk open one TCP connection, log in on it once and
then send creations and value changes with no credentials, answering no challenge:

* LOGIN_ID_SYSTEM names an identity (handle and index). It is challenged as any
  administrative request (402, op code 2001) and the answer is checked by the same function,
  for any kind of key, through the same failure limiter and brake. A right answer binds the
  connection to that identity: its administrative requests are then done as that identity,
  under the same permissions, templates and audit as any front-end's (the audit's operation
  says ``login_``). A second login replaces the first only once its own answer checks out;
  a failed one logs the connection out.
* OC_LOGIN (ID-SDK only) carries the identity and its secret in clear, checked as an HTTP
  Basic login is (``Authenticator.authenticate``). Off unless ``handle_password_login``.

What a login binds is the connection (``Link``: the transport's connection object is one),
never a session id. Clients choose their session ids themselves (id-pointer puts one of its
own on every message of a connection), so an id would be a bearer token anyone could replay
from elsewhere. A login ends with its connection: it reaches no other connection, no other
worker, nothing over UDP, and nothing after the idle timeout.

Both SDKs answer a challenge under the session id it came with (their captures in
tests/vectors show it); an answer whose session id names no challenge is matched to the last
challenge sent on its connection.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from protocol.errors import AuthenticationFailed, HandleError, OperationNotSupported
from protocol.wire.message import (
    ChallengeAnswerRequest,
    GenericResponse,
    LoginIdSystemRequest,
    LoginRequest,
    Message,
    ResolutionResponse,
)
from registry.identity.caller import Caller, Identity
from resolver.config import DEFAULTS, Config
from resolver.handle.shared import Challenge

if TYPE_CHECKING:
    from resolver.handle.admin import HandleAdmin

log = logging.getLogger("resolver.handle_login")

VIA_LOGIN = "login"  # how the audit names requests done under a connection's login


class Link:
    """What one TCP connection carries from a request to the next: who is logged in on it, and
    the session id of the last challenge sent on it (0: none). Class-level defaults: a
    connection that never logs in or is never challenged stores nothing."""

    identity: Identity | None = None
    challenged: int = 0


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """Which logins the node accepts; every default is ``Config``'s."""

    login: bool = DEFAULTS.handle_login
    password_login: bool = DEFAULTS.handle_password_login

    @classmethod
    def of(cls, config: Config) -> LoginPolicy:
        return cls(login=config.handle_login, password_login=config.handle_password_login)


DEFAULT_LOGINS = LoginPolicy()


class Logins:
    """LOGIN_ID_SYSTEM and OC_LOGIN for one worker's HandleAdmin."""

    def __init__(self, admin: HandleAdmin, policy: LoginPolicy) -> None:
        self.admin = admin
        self.policy = policy

    def challenge(self, request: Message, raw: bytes, peer: str, transport: str, link: Link | None) -> Message:
        """A LOGIN_ID_SYSTEM: challenged, once the node knows it can check the identity it names."""
        body = request.body
        assert isinstance(body, LoginIdSystemRequest)
        if not self.policy.login:
            raise OperationNotSupported(
                "LOGIN_ID_SYSTEM (2001) is switched off on this node (setting handle_login): "
                "answer the challenge of each administrative request instead"
            )
        link = _connection(link, "LOGIN_ID_SYSTEM")
        with _logged_out_on_failure(link):
            self.admin.identity(body.handle, body.index)
        return self.admin.challenge(request, raw, peer, transport, link)

    async def answered(
        self, answer: Message, original: Message, pending: Challenge, peer: str, link: Link | None, own: bool
    ) -> Message:
        """The answer to a LOGIN_ID_SYSTEM's challenge (``own``: sent on this connection): the
        connection is bound to the identity it proves, or logged out."""
        body, login = answer.body, original.body
        assert isinstance(body, ChallengeAnswerRequest) and isinstance(login, LoginIdSystemRequest)
        try:
            if link is None or not own:
                raise AuthenticationFailed("a login must be answered on the TCP connection that sent it")
            named = self.admin.identity(login.handle, login.index)
            if self.admin.identity(body.user_id_handle, body.user_id_index) != named:
                raise AuthenticationFailed(f"the login names {named}; the answer must come from that identity")
            link.identity = await self.admin.prove(body, pending, answer.version, peer)
            log.info("identity %s logged in on a Handle connection from %s", link.identity, peer)
            response = self.admin.reply(original, GenericResponse())
        except HandleError as exc:
            if link is not None:
                link.identity = None
            response = self.admin.error(original, exc)
        return replace(response, envelope=replace(response.envelope, request_id=answer.request_id))

    async def password(self, request: Message, peer: str, link: Link | None) -> Message:
        """An OC_LOGIN: the secret checked as an HTTP Basic login's, the connection bound or logged out."""
        body = request.body
        assert isinstance(body, LoginRequest)
        if not self.policy.password_login:
            raise OperationNotSupported(
                "OC_LOGIN (2000) is switched off on this node (setting handle_password_login): it sends the "
                "secret in clear; log in with LOGIN_ID_SYSTEM (2001), which answers a challenge instead"
            )
        link = _connection(link, "OC_LOGIN")
        with _logged_out_on_failure(link):
            identity = await self.admin.authenticator.authenticate(body.user, body.secret, peer)
        link.identity = identity
        log.info("identity %s logged in with its secret on a Handle connection from %s", identity, peer)
        return self.admin.reply(request, ResolutionResponse(body.handle))

    async def run(self, request: Message, peer: str, identity: Identity) -> Message:
        """An administrative request on a logged-in connection, done as its identity without a challenge."""
        ops = self.admin.ops
        ops.precheck(request)
        body = await ops.run(Caller(identity, peer, via=VIA_LOGIN), request)
        return self.admin.reply(request, body)


@contextlib.contextmanager
def _logged_out_on_failure(link: Link) -> Iterator[None]:
    """A failed login leaves its connection logged out, whoever was logged in on it before."""
    try:
        yield
    except HandleError:
        link.identity = None
        raise


def _connection(link: Link | None, what: str) -> Link:
    if link is None:
        raise OperationNotSupported(f"{what} logs a TCP connection in; over UDP there is none to log in")
    return link
