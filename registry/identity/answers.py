"""Checking a Handle protocol challenge answer against the identity's key stored here.

An answer names an identity (``index:handle``) and carries a MAC keyed with its HS_SECKEY
(``registry.identity.secrets.protocol_key`` opens it from its sealed stored form) or a signature by the private key of
its HS_PUBKEY. Index 0 with HS_PUBKEY means any HS_PUBKEY of the handle, as in CNRI; the
identity is then the one whose key verified. Only identities whose handle this node holds
can be checked: CNRI would ask the identity's home server, this node does not.

Rate limiting and the brake are the Authenticator's (``registry.identity.auth``); this module only
says whether the answer is right.

An SM2 signature (Teleinfo's id-pointer SDK) is checked against the identity's handle as its
signer ID, and off the event loop: it is about a millisecond or two of Python arithmetic,
where RSA takes microseconds in C.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from protocol.errors import AuthenticationFailed, ProtocolViolation
from protocol.records import HS_PUBKEY, HS_SECKEY, HandleRecord, HandleValue
from protocol.wire.auth import is_slow_key, verify_secret_answer, verify_signature
from registry.identity import secrets
from registry.identity.caller import Identity
from registry.store import Store

log = logging.getLogger("registry.answers")

SECRET_KEY_TYPE = "HS_SECKEY"
PUBLIC_KEY_TYPE = "HS_PUBKEY"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a ChallengeAnswer (or a VerifyAuth request) asks to be checked."""

    auth_type: str  # HS_SECKEY or HS_PUBKEY
    identity: Identity  # index 0: any key of its kind on the handle (HS_PUBKEY only)
    nonce: bytes
    request_digest: bytes
    signed_response: bytes
    version: tuple[int, int]  # of the message that carried the answer
    signer: str = ""  # the handle as the client wrote it, its SM2 signer ID (default: as stored)


async def check_answer(store: Store, answer: Answer) -> Identity | None:
    """The identity the answer proves, or None when it is wrong or cannot be checked here.

    A malformed answer raises ProtocolViolation, an authentication type other than the two
    AuthenticationFailed.
    """
    record = await store.get(answer.identity.handle)
    if record is None:
        return None
    if answer.auth_type == SECRET_KEY_TYPE:
        return _check_secret(record, answer)
    if answer.auth_type == PUBLIC_KEY_TYPE:
        keys = _public_keys(record, answer.identity.index)
        if any(is_slow_key(v.data) for v in keys):
            loop = asyncio.get_running_loop()
            signer = answer.signer or record.handle
            return await loop.run_in_executor(_slow_thread(), _check_signature, signer, keys, answer)
        return _check_signature(answer.signer or record.handle, keys, answer)
    raise AuthenticationFailed(f"authentication type {answer.auth_type[:40]!r} is not HS_SECKEY or HS_PUBKEY")


def _check_secret(record: HandleRecord, answer: Answer) -> Identity | None:
    value = record.value_at(answer.identity.index)
    if value is None or value.type.upper() != HS_SECKEY:
        return None
    try:
        key = secrets.protocol_key(value.data)
    except secrets.KeyMissing as exc:
        log.warning("the secret of identity %s cannot verify a challenge answer: it is %s", answer.identity, exc)
        return None
    if key is None:
        log.warning(
            "identity %s holds its secret in the old form, which the Handle protocol cannot check; "
            "it is rewritten at its next HTTP login", answer.identity,
        )  # fmt: skip
        return None
    ok = verify_secret_answer(key, answer.nonce, answer.request_digest, answer.signed_response, version=answer.version)
    return answer.identity if ok else None


def _public_keys(record: HandleRecord, index: int) -> list[HandleValue]:
    keys = [v for v in record.values if v.type.upper() == HS_PUBKEY and index in (0, v.index)]
    return sorted(keys, key=lambda v: v.index)


def _check_signature(signer: str, keys: list[HandleValue], answer: Answer) -> Identity | None:
    for value in keys:
        try:
            if verify_signature(value.data, answer.signed_response, answer.nonce, answer.request_digest, signer=signer):
                return Identity(value.index, answer.identity.handle)
        except AuthenticationFailed:
            continue  # a key this node cannot read proves nothing; another may
    return None


_slow: list[ThreadPoolExecutor] = []


def _slow_thread() -> ThreadPoolExecutor:
    """The one thread that checks SM2 answers, made at first use (after any fork). One: the
    arithmetic holds the GIL, so more threads would not check faster, only take the default
    executor's threads from what else waits on them."""
    if not _slow:
        _slow.append(ThreadPoolExecutor(1, thread_name_prefix="sm2-verify"))
    return _slow[0]


def malformed(exc: ProtocolViolation, answer: Answer) -> AuthenticationFailed:
    """A malformed answer is a failed one, told to the client as such."""
    return AuthenticationFailed(f"the answer of {answer.identity} is malformed: {exc.message}")
