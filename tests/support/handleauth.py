"""Handle protocol credentials for tests: who answers a challenge and how, as CNRI's clients
and China's SDKs compute the answer (a MAC with the HS_SECKEY, or a DSA/RSA signature), and
the keys of the CNRI 7.3.1 captures that tests give their identities."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol.codes import ResponseCode
from protocol.wire.auth import client_secret_kind, secret_answer, sign_challenge
from protocol.wire.keys import PrivateKey, load_private_key_file
from protocol.wire.message import (
    Body,
    ChallengeAnswerRequest,
    ChallengeResponse,
    Envelope,
    LoginIdSystemRequest,
    Message,
    OpCode,
    OpFlag,
    encode_message,
)

VECTORS = Path(__file__).parents[1] / "vectors" / "cnri-7.3.1"
SDK_VERSION = (2, 10)  # what CNRI 7.3 and China's SDKs speak


def key_file(name: str) -> bytes:
    return (VECTORS / "keys" / name).read_bytes()


def private_key(alg: str) -> PrivateKey:
    """The captures' admin key, ``dsa`` or ``rsa`` (its public half: ``key_file(f"admin_{alg}_pub.bin")``)."""
    return load_private_key_file(key_file(f"admin_{alg}_priv.bin"), None)


def encoded(
    op: OpCode,
    body: Body,
    *,
    session_id: int = 0,
    version: tuple[int, int] = SDK_VERSION,
    flags: int = 0,
    rid: int = 0,
) -> bytes:
    """A request as CNRI's tools write it (recursive, cache-certify and public-only set)."""
    envelope = Envelope(
        request_id=rid or random.randrange(1, 2**31), session_id=session_id, version=version, suggest=version
    )
    return encode_message(Message(op, body, envelope=envelope, flags=OpFlag(0x19000000 | flags)))


@dataclass(frozen=True)
class Who:
    """An identity and its key: the hashed HS_SECKEY's bytes, or the private key of an HS_PUBKEY."""

    handle: str
    index: int
    key: bytes | PrivateKey

    def answer(self, challenge: Message) -> ChallengeAnswerRequest:
        assert isinstance(challenge.body, ChallengeResponse) and challenge.request_digest is not None
        nonce, digest = challenge.body.nonce, challenge.request_digest.digest
        if isinstance(self.key, bytes):
            kind = client_secret_kind(challenge.version, challenge.envelope.suggest)
            return ChallengeAnswerRequest(
                "HS_SECKEY", self.handle, self.index, secret_answer(kind, self.key, nonce, digest)
            )
        signed = sign_challenge(self.key, nonce, digest, signer=self.handle)
        return ChallengeAnswerRequest("HS_PUBKEY", self.handle, self.index, signed)


SDK_SESSION = 4242  # a session id the client chose itself, as id-pointer sends on its logins


def login_request(who: Who, *, session_id: int = SDK_SESSION) -> bytes:
    """LOGIN_ID_SYSTEM as China's SDKs send it: the identity in the body."""
    return encoded(OpCode.LOGIN_ID_SYSTEM, LoginIdSystemRequest(who.handle, who.index), session_id=session_id)


def login_answer(who: Who, challenge: Message, *, session_id: int = SDK_SESSION, own_session: bool = False) -> bytes:
    """The answer to a login's challenge, under the challenge's session id as both SDKs send it
    (tests/vectors/idsdk-2.0.x, idpointer), or under the client's own (``own_session``:
    ``session_id``), which the node matches to its connection's last challenge."""
    answer_session = session_id if own_session else challenge.envelope.session_id
    return encoded(OpCode.CHALLENGE_RESPONSE, who.answer(challenge), session_id=answer_session)


def login(ask: Callable[[bytes], Message], who: Who, *, own_session: bool = False) -> Message:
    """A login over ``ask`` (one connection): the request, and the answer to its challenge if
    there is one; the node's last reply."""
    challenge = ask(login_request(who))
    if challenge.response_code != ResponseCode.AUTHENTICATION_NEEDED:
        return challenge
    return ask(login_answer(who, challenge, own_session=own_session))
