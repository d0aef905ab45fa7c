"""A session agreed with CNRI 7.3.1's own client classes (run in Java): the DH session key,
the client's MAC on a request and this node's MACs on its responses must all agree.

Skipped when Java or CNRI's jars (``CNRI_HOME``, by default /work/cnri/7.3.1) are absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from protocol.codes import ResponseCode
from protocol.wire.bodies import KEY_EXCHANGE_DH
from protocol.wire.message import (
    ChallengeAnswerRequest,
    ChallengeResponse,
    Envelope,
    Message,
    OpCode,
    SessionSetupRequest,
    SessionSetupResponse,
    decode_message,
    encode_message,
)
from protocol.wire.session import MacScope, decode_dh_public, verify_mac_credential
from tests.support.handle_admin_node import NODE_ADMIN, RFC2409_P, AdminNode, seeded_admin, send

CNRI_HOME = Path(os.environ.get("CNRI_HOME", "/work/cnri/7.3.1"))
PEER_SOURCE = Path(__file__).with_name("cnri") / "CnriSessionPeer.java"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[AdminNode]:
    async with seeded_admin(tmp_path) as seeded:
        yield seeded


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    if shutil.which("javac") is None or not (CNRI_HOME / "lib" / "handle.jar").exists():
        pytest.skip("needs Java and CNRI HANDLE.NET 7.3.1's jars")
    classpath = f"{CNRI_HOME / 'lib'}/*"
    subprocess.run(["javac", "-cp", classpath, "-d", str(tmp_path), str(PEER_SOURCE)], check=True, timeout=120)
    # JDK 17 derives a DES key from DH only with the legacy KDF, as bench/cnri.py runs CNRI.
    args = [
        "java",
        "-Djdk.crypto.KeyAgreement.legacyKDF=true",
        "-cp",
        f"{tmp_path}:{classpath}",
        "CnriSessionPeer",
        format(RFC2409_P, "x"),
    ]
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield process
    process.kill()
    process.wait()


def ask(process: subprocess.Popen[str], line: str | None = None) -> str:
    assert process.stdin is not None and process.stdout is not None
    if line is not None:
        process.stdin.write(line + "\n")
        process.stdin.flush()
    return process.stdout.readline().strip()


@pytest.mark.filterwarnings("ignore:Diffie-Hellman")
async def test_cnri_s_client_and_this_node_agree_the_session_key_and_its_macs(
    node: AdminNode, peer: subprocess.Popen[str]
) -> None:
    client_key = bytes.fromhex(ask(peer))
    assert decode_dh_public(client_key).p == RFC2409_P
    setup = SessionSetupRequest(KEY_EXCHANGE_DH, 600, NODE_ADMIN.handle, 300, public_key=client_key)
    envelope = Envelope(request_id=7, version=(2, 5), suggest=(2, 5))
    setup_raw = encode_message(Message(OpCode.SESSION_SETUP, setup, envelope=envelope))
    response = await send(node.admin, setup_raw)
    assert isinstance(response.body, SessionSetupResponse)
    session_id = response.envelope.session_id

    their_key = bytes.fromhex(ask(peer, response.body.data.hex()))
    assert their_key == node.admin.session_key(session_id)

    home_raw = bytes.fromhex(ask(peer, str(session_id)))
    home = decode_message(home_raw)
    assert home.op_code == OpCode.HOME_PREFIX and home.envelope.session_id == session_id
    scope = MacScope(home.version, home.envelope.suggest, session_id, home.request_id, 0)
    assert verify_mac_credential(their_key, home.credential, home.header_and_body, scope)
    assert not verify_mac_credential(bytes(8), home.credential, home.header_and_body, scope)

    challenge = await send(node.admin, home_raw)
    assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED and challenge.credential
    assert ask(peer, encode_message(challenge).hex()) == "verified"
    assert isinstance(challenge.body, ChallengeResponse)
    answer = NODE_ADMIN.answer(challenge)
    answer_envelope = Envelope(request_id=8, session_id=session_id, version=(2, 5), suggest=(2, 5))
    answer_raw = encode_message(Message(OpCode.CHALLENGE_RESPONSE, answer, envelope=answer_envelope))
    assert isinstance(answer, ChallengeAnswerRequest)
    done = await send(node.worker(), answer_raw)
    assert (done.op_code, done.response_code) == (OpCode.HOME_PREFIX, ResponseCode.SUCCESS)
    assert ask(peer, encode_message(done).hex()) == "verified"
    tampered = encode_message(done)[:-1] + bytes([encode_message(done)[-1] ^ 1])
    assert ask(peer, tampered.hex()) == "refused"
