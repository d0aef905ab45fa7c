"""Checking an SM2-signed challenge answer against an identity stored here.

The SDK signs with the identity's handle as the SM2 signer ID, the handle as it writes it in
its answer; without one, the node takes the handle as the record holds it (as registered).
The check runs off the event loop.
"""

from __future__ import annotations

import threading

import pytest

from protocol.errors import ProtocolViolation
from protocol.records import HS_PUBKEY, HandleRecord, HandleValue
from protocol.wire import auth, keys, sm2
from registry.identity.answers import Answer, check_answer
from registry.identity.caller import Identity
from tests.support.memory_store import MemoryStore

HANDLE = "88.118/Sm2User"  # as registered; the store's key is 88.118/SM2USER
NONCE, DIGEST = bytes(range(16)), bytes(range(50, 82))
USER = sm2.generate_private_key()
SECOND = sm2.generate_private_key()


def store(*values: HandleValue) -> MemoryStore:
    return MemoryStore([HandleRecord(HANDLE, values)])


def answer(index: int, signed: bytes, written: str = "") -> Answer:
    return Answer("HS_PUBKEY", Identity(index, "88.118/SM2USER"), NONCE, DIGEST, signed, (2, 10), written)


def signed_by(key: sm2.SM2PrivateKey, signer: str = HANDLE) -> bytes:
    return auth.sign_challenge(key, NONCE, DIGEST, signer=signer)


async def test_an_answer_signed_with_the_registered_handle_proves_the_identity() -> None:
    records = store(HandleValue(300, HS_PUBKEY, keys.sm2_pem(USER.public_key())))
    assert await check_answer(records, answer(300, signed_by(USER))) == Identity(300, "88.118/SM2USER")
    assert await check_answer(records, answer(300, signed_by(USER, "88.118/SM2USER"))) is None
    assert await check_answer(records, answer(300, signed_by(SECOND))) is None


async def test_the_handle_as_the_client_wrote_it_is_the_signer_id() -> None:
    """A node that ignores case takes 88.118/sm2user for the identity; its signature binds that spelling."""
    records = store(HandleValue(300, HS_PUBKEY, keys.sm2_pem(USER.public_key())))
    proved = await check_answer(records, answer(300, signed_by(USER, "88.118/sm2user"), "88.118/sm2user"))
    assert proved == Identity(300, "88.118/SM2USER")
    assert await check_answer(records, answer(300, signed_by(USER), "88.118/sm2user")) is None


async def test_index_0_finds_whichever_key_signed() -> None:
    records = store(
        HandleValue(300, HS_PUBKEY, keys.encode_public_key(SECOND.public_key())),
        HandleValue(301, HS_PUBKEY, b"\0\0\0\x0bSM2_PUB_KEY\0\0\0\0\0\x01\x04"),  # stored before the write check
        HandleValue(302, HS_PUBKEY, keys.sm2_pem(USER.public_key())),
    )
    assert await check_answer(records, answer(0, signed_by(USER))) == Identity(302, "88.118/SM2USER")


async def test_a_malformed_signature_is_a_protocol_violation() -> None:
    records = store(HandleValue(300, HS_PUBKEY, keys.sm2_pem(USER.public_key())))
    with pytest.raises(ProtocolViolation):
        await check_answer(records, answer(300, keys.pack(b"SM3", b"\x30\x01")))


async def test_the_check_runs_off_the_event_loop() -> None:
    records = store(HandleValue(300, HS_PUBKEY, keys.sm2_pem(USER.public_key())))
    threads: list[str] = []
    real = auth.verify_signature

    def spy(*args: object, **kwargs: object) -> bool:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("registry.identity.answers.verify_signature", spy)
        assert await check_answer(records, answer(300, signed_by(USER))) is not None
    assert threads and all(name.startswith("sm2-verify") for name in threads)
