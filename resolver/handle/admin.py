"""Administration over the Handle protocol: challenges, answers, sessions, and the ops.

The flow CNRI's tools follow (hdl-genericbatch 7.3, captured in tests/vectors): set a
session up (SESSION_SETUP, Diffie-Hellman), send the administrative request in it; the
server answers 402 with a challenge (a nonce and the digest of the request) and keeps
the request; the client answers (CHALLENGE_RESPONSE, often on a new connection) with
the same session id; the server checks the answer against the identity's key and only
then does the original request, answering it under the answer's request id.

A request outside a session is challenged under a fresh session id, as CNRI does, so
that its answer can be matched. Challenges and sessions live in ``HandleShared``, which
every worker of the node sees: the answer may reach another worker than the challenge.

Every administrative request is challenged, in a session or not. CNRI lets a session
whose identity once answered skip later challenges, trusting a MAC with the session key
on each request; this node does not verify those MACs, so it does not skip: one more
round trip per request, and no state that a session key could misuse. The one exception is
a TCP connection logged in with China's SDKs' LOGIN_ID_SYSTEM (``resolver.handle.login``):
what binds there is the connection, which the transport passes in as a ``Link``.

``respond`` never raises: malformed or refused requests get the protocol's error response.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import replace

from protocol.codes import ResponseCode
from protocol.errors import (
    AuthenticationFailed,
    AuthenticationTimeout,
    HandleError,
    NotResponsible,
    OperationNotSupported,
    ProtocolViolation,
    SessionFailed,
)
from protocol.wire.auth import new_nonce, request_digest_kind
from protocol.wire.bodies import KEY_EXCHANGE_DH
from protocol.wire.message import (
    NO_SITE_SERIAL,
    Body,
    ChallengeAnswerRequest,
    ChallengeResponse,
    ErrorResponse,
    GenericResponse,
    Message,
    OpCode,
    OpFlag,
    SessionSetupRequest,
    SessionSetupResponse,
    VerifyAuthRequest,
    VerifyAuthResponse,
    decode_message,
    encode_payload,
    response_to,
)
from protocol.wire.session import (
    ENCRYPT_ALG_DES,
    MacScope,
    agree,
    decode_dh_public,
    known_group,
    mac_credential,
    setup_response_data,
)
from registry.identity.answers import SECRET_KEY_TYPE, Answer, malformed
from registry.identity.auth import Authenticator, Identity
from registry.identity.caller import Caller
from registry.service import RegistrationService
from resolver import metrics
from resolver.config import DEFAULTS
from resolver.handle.login import DEFAULT_LOGINS, VIA_LOGIN, Link, LoginPolicy, Logins
from resolver.handle.ops import ADMIN_OPS, AdminOps
from resolver.handle.shared import CHALLENGE_TTL, Challenge, HandleShared, Session

log = logging.getLogger("resolver.handle_admin")

RESPONSE_LIFETIME = 12 * 3600  # the expiration CNRI's server puts on its responses
SIGNED_BY_THE_SERVER = (OpCode.SESSION_SETUP, OpCode.SESSION_EXCHANGE_KEY)
SETUPS_IN_FLIGHT = 2  # key agreements a worker runs at once, off its event loop


class TooManySetups(HandleError):
    """A session setup over the source's or the node's bound: the client may retry shortly."""

    code = ResponseCode.SERVER_TOO_BUSY


class TooManyChallenges(HandleError):
    """An admin request from a source with its quota of challenges pending: answer those first."""

    code = ResponseCode.SERVER_TOO_BUSY


class HandleAdmin:
    """Answers every Handle request but resolution and site info, for one worker."""

    def __init__(
        self,
        service: RegistrationService,
        authenticator: Authenticator,
        shared: HandleShared,
        *,
        site_info_serial: int = NO_SITE_SERIAL,
        exempt: tuple[str, ...] = DEFAULTS.handle_udp_exempt,
        logins: LoginPolicy = DEFAULT_LOGINS,
    ) -> None:
        self.service = service
        self.authenticator = authenticator
        self.shared = shared
        self.exempt = tuple(ipaddress.ip_network(n, strict=False) for n in exempt)
        self.setups_in_flight = 0
        self.ops = AdminOps(service)
        self.site_info_serial = site_info_serial
        self.logins = Logins(self, logins)

    async def respond(
        self, request: Message, raw: bytes, peer: str, transport: str, link: Link | None = None
    ) -> Message:
        """The response to ``request`` (decoded from ``raw``, the whole message) from ``peer``,
        on the TCP connection ``link`` (None over UDP)."""
        try:
            response = await self._respond(request, raw, peer, transport, link)
        except HandleError as exc:
            response = self.error(request, exc)
        except Exception:
            log.exception("Handle %s request %s from %s failed", request.op_code.name, request.request_id, peer)
            return self.error(request, HandleError("internal error; the request was not done"))
        try:
            return self.signed(response)
        except Exception:
            log.exception("could not MAC the response to request %s in session", request.request_id)
            return self.error(request, HandleError("internal error signing the response"))

    async def charge_resolution(self, identity: Identity, peer: str) -> None:
        """A resolution on a connection logged in as ``identity`` counts against its daily
        quota, as an authenticated resolution over REST or SNMS does (603 once used up)."""
        await self.service.charge_resolution(Caller(identity, peer, via=VIA_LOGIN))

    def session_key(self, session_id: int) -> bytes | None:
        """The key agreed for a live session (to MAC responses in it), or None."""
        session = self.shared.session(session_id)
        return None if session is None else session.key

    async def _respond(self, request: Message, raw: bytes, peer: str, transport: str, link: Link | None) -> Message:
        if not request.is_request:
            raise ProtocolViolation("a response was sent where a request was expected")
        op = request.op_code
        if op in ADMIN_OPS:
            if link is not None and link.identity is not None:
                return await self.logins.run(request, peer, link.identity)
            return self.challenge(request, raw, peer, transport, link)
        if op == OpCode.CHALLENGE_RESPONSE:
            return await self.answered(request, peer, link)
        if op == OpCode.LOGIN_ID_SYSTEM:
            return self.logins.challenge(request, raw, peer, transport, link)
        if op == OpCode.LOGIN:
            return await self.logins.password(request, peer, link)
        if op == OpCode.VERIFY_RESPONSE:
            return await self.verify(request, peer)
        if op == OpCode.SESSION_SETUP:
            return await self.setup_session(request, peer, transport)
        if op == OpCode.SESSION_TERMINATE:
            self.shared.end_session(request.envelope.session_id)
            return self.reply(request, GenericResponse())
        if op == OpCode.SESSION_EXCHANGE_KEY:
            raise SessionFailed("this node agrees session keys by Diffie-Hellman only; there is no key to exchange")
        raise OperationNotSupported(f"op code {op.name} is not served by this node")

    # Responses ---------------------------------------------------------------------------

    def reply(self, request: Message, body: Body, code: int = ResponseCode.SUCCESS) -> Message:
        expiration = int(time.time()) + RESPONSE_LIFETIME
        return response_to(
            request, body, code, expiration=expiration, site_info_serial=self.site_info_serial, authoritative=True
        )

    def signed(self, response: Message) -> Message:
        """A certified response in a session carries a MAC with the session key, as CNRI's.

        Session setup is certified by the server's own signature instead (CNRI's client must
        be able to check it before any key is agreed); that, and certified responses outside
        a session, are the front-end's to sign."""
        if not response.flags & OpFlag.CERTIFY or response.op_code in (
            OpCode.SESSION_SETUP,
            OpCode.SESSION_EXCHANGE_KEY,
        ):
            return response
        session = self.shared.session(response.envelope.session_id)
        if session is None:
            return response
        header_and_body = encode_payload(response)[:-4]  # without the (empty) credential's length
        envelope = response.envelope
        scope = MacScope(
            envelope.version, envelope.suggest, envelope.session_id, envelope.request_id,
            session.counter(self.shared.now()),
        )  # fmt: skip
        credential = mac_credential(session.key, header_and_body, scope)
        return replace(response, credential=credential)

    def error(self, request: Message, exc: HandleError) -> Message:
        metrics.error_answered(exc)
        code = exc.code
        if code in (ResponseCode.SUCCESS, ResponseCode.AUTHENTICATION_NEEDED):
            code = ResponseCode.ERROR  # these carry bodies of their own, never an error message
        return self.reply(request, ErrorResponse(exc.message), code)

    # Challenges and answers -----------------------------------------------------------------

    def challenge(self, request: Message, raw: bytes, peer: str, transport: str, link: Link | None = None) -> Message:
        """402 with a fresh nonce; the request is kept to be done once the answer checks out
        (and its session id on ``link``, the connection it came on).

        The request is kept for ``peer``, within its quota, never in place of another source's
        pending challenge: past that the answer is 3 (SERVER_TOO_BUSY), counted as
        ``reason="challenge_limit"``."""
        self.ops.precheck(request)
        if len(raw) > self.shared.max_request:
            raise ProtocolViolation(f"a request to authenticate may be at most {self.shared.max_request} bytes")
        session_id = request.envelope.session_id
        repeated = None
        if self.shared.session(session_id) is None:
            session_id = self.shared.new_session_id()
        elif (pending := self.shared.peek_challenge(session_id)) is not None and pending.request == raw:
            repeated = pending  # the same request again (a UDP retry): the same challenge, as CNRI
        nonce = new_nonce() if repeated is None else repeated.nonce
        response = self.reply(request, ChallengeResponse(nonce), ResponseCode.AUTHENTICATION_NEEDED)
        digest = response.request_digest
        assert digest is not None and int(digest.algorithm) == int(request_digest_kind(response.version))
        pending = Challenge(nonce, digest.algorithm, digest.digest, raw)
        if repeated is None and not self.shared.put_challenge(session_id, pending, peer):
            metrics.handle_dropped(transport, "challenge_limit")
            raise TooManyChallenges(
                "too many challenges are pending from this address, or the node holds too many; "
                f"answer or let them expire (within {CHALLENGE_TTL:.0f} s) and retry"
            )
        if link is not None:
            link.challenged = session_id
        return replace(response, envelope=replace(response.envelope, session_id=session_id))

    async def answered(self, answer: Message, peer: str, link: Link | None = None) -> Message:
        """Check a CHALLENGE_RESPONSE and, if it proves its identity, do the challenged request."""
        assert isinstance(answer.body, ChallengeAnswerRequest)
        session_id = answer.envelope.session_id
        pending = self.shared.pop_challenge(session_id) if session_id > 0 else None
        mine = 0 if link is None else link.challenged  # the last challenge sent on this connection
        if pending is None and mine:
            session_id = mine  # an answer under a session id of the client's own, not the challenge's
            pending = self.shared.pop_challenge(session_id)
        own = 0 < mine == session_id
        if own and link is not None:
            link.challenged = 0
        if pending is None:
            raise AuthenticationTimeout(
                f"no challenge is pending on session {answer.envelope.session_id}: "
                "it expired, was answered already, or was never sent"
            )
        original = decode_message(pending.request)
        if original.op_code == OpCode.LOGIN_ID_SYSTEM:
            return await self.logins.answered(answer, original, pending, peer, link, own)
        try:
            identity = await self.prove(answer.body, pending, answer.version, peer)
            body = await self.ops.run(Caller(identity, peer), original)
            response = self.reply(original, body)
        except HandleError as exc:
            response = self.error(original, exc)
        # CNRI answers the original request under the answer's request id.
        return replace(response, envelope=replace(response.envelope, request_id=answer.request_id))

    async def prove(
        self, body: ChallengeAnswerRequest, pending: Challenge, version: tuple[int, int], peer: str
    ) -> Identity:
        claimed = self.identity(body.user_id_handle, body.user_id_index)
        # An SM2 signature binds the handle as the client wrote it (its signer ID), whatever its case.
        answer = Answer(
            body.auth_type, claimed, pending.nonce, pending.digest, body.signed_response, version, body.user_id_handle
        )
        return await self.authenticator.prove(claimed, peer, lambda: self._check(answer))

    def identity(self, handle_text: str, index: int) -> Identity:
        """The identity an answer names, which must be held here to be checked here."""
        try:
            handle = self.service.parse(handle_text)
        except HandleError as exc:
            raise AuthenticationFailed(f"identity {index}:{handle_text[:100]}: {exc.message}") from None
        if index < 0 or not self.service.responsible_for(handle.zone):
            raise AuthenticationFailed(
                f"identity {index}:{handle.text} is not held on this node, which checks only its own identities"
            )
        return Identity(index, handle.key)

    async def _check(self, answer: Answer) -> Identity | None:
        try:
            return await self.authenticator.check_answer(answer)
        except ProtocolViolation as exc:
            raise malformed(exc, answer) from None

    async def verify(self, request: Message, peer: str) -> Message:
        """VERIFY_RESPONSE: is this HS_SECKEY answer right for an identity held here?"""
        body = request.body
        assert isinstance(body, VerifyAuthRequest)
        try:
            claimed = self.identity(body.handle, body.index)
        except AuthenticationFailed as exc:
            raise NotResponsible(exc.message) from None
        answer = Answer(
            SECRET_KEY_TYPE, claimed, body.nonce, body.request_digest, body.signed_response, request.version
        )
        try:
            await self.authenticator.prove(claimed, peer, lambda: self._check(answer))
        except AuthenticationFailed:
            return self.reply(request, VerifyAuthResponse(False))
        return self.reply(request, VerifyAuthResponse(True))

    # Sessions ----------------------------------------------------------------------------

    async def setup_session(self, request: Message, peer: str, transport: str) -> Message:
        """Agree a key by Diffie-Hellman in a known group, bounded: the client is anonymous yet.

        The group and the client's value are checked first (a lookup and a comparison); the
        exponentiations run in a thread, at most ``SETUPS_IN_FLIGHT`` at once per worker, and
        setups are counted per source address and for the whole node (``SETUPS_PER_*``)."""
        body = request.body
        assert isinstance(body, SessionSetupRequest)
        if body.key_exchange_mode != KEY_EXCHANGE_DH:
            raise SessionFailed(
                f"key exchange mode {body.key_exchange_mode} is not supported; "
                "this node agrees keys by Diffie-Hellman (4)"
            )
        try:
            client = decode_dh_public(body.public_key)
            known_group(client)
        except HandleError as exc:
            raise SessionFailed(exc.message) from None
        self._admit_setup(peer, transport)
        self.setups_in_flight += 1
        try:
            server, key = await asyncio.to_thread(agree, client)
        finally:
            self.setups_in_flight -= 1
        session_id = self.shared.new_session_id()
        session = Session(body.identity_handle, body.identity_index, ENCRYPT_ALG_DES, key, self.shared.now())
        self.shared.put_session(session_id, session, body.timeout)
        data = setup_response_data(server, request.envelope.suggest)
        response = self.reply(request, SessionSetupResponse(KEY_EXCHANGE_DH, data))
        return replace(response, envelope=replace(response.envelope, session_id=session_id))

    def _admit_setup(self, peer: str, transport: str) -> None:
        """Count a setup against its source's and the node's bounds, or refuse it (SERVER_TOO_BUSY)."""
        keys = [] if self._exempt(peer) else [peer]
        wait = 1 if self.setups_in_flight >= SETUPS_IN_FLIGHT else None
        wait = wait or self.shared.setups_per_source.retry_after(keys)
        wait = wait or self.shared.setups_per_node.retry_after(["node"])
        if wait is not None:
            metrics.handle_dropped(transport, "session_limit")
            raise TooManySetups(f"too many session setups at once or from this address; retry in {wait} s")
        self.shared.setups_per_source.record(keys)
        self.shared.setups_per_node.record(["node"])

    def _exempt(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.exempt)
