"""China's SDKs' captured sessions, replayed against a real node, without Java.

tests.vectors.make_sdk_vectors ran CAICT's ID-SDK (``idsdk-2.0.x``) and Teleinfo's
id-pointer-sdk (``idpointer``), unmodified, against idnode and kept what they sent and what
was answered. Here a fresh node holds the same records and keys (tests.vectors.sdk_node,
with the folder's committed ``keys/``), and each scenario's requests are sent again in the
order they were captured: each captured TCP connection as one connection (so a login and
the writes that follow it share one, as the SDKs send them), each UDP request as a
datagram. Every answer must agree with the captured one in op code, response code, body
type and values, a challenge also in its request digest (of the same bytes), and after each
write the REST API must show what the SDK's write did.

A challenge answer cannot be replayed as captured: the nonce is new. It is made again as the
SDK made it, over the new nonce: a MAC of the same kind with the hashed secret, or a
signature with the same hash and the committed DSA, RSA or SM2 key (SM3withSM2, the
identity's handle as signer ID), under the new challenge's session id where the SDK
answered under the challenge's. That the committed keys are the ones the SDKs signed with
is checked too: every captured answer verifies against its captured challenge.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from protocol.wire.auth import (
    MacKind,
    hashed_secret_key,
    secret_answer,
    sign_challenge,
    verify_secret_answer,
    verify_signature,
)
from protocol.wire.keys import PrivateKey, load_private_key_file, reader
from protocol.wire.message import (
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    DeleteHandleRequest,
    Message,
    OpCode,
    RemoveValueRequest,
    ResolutionResponse,
    decode_message,
    encode_message,
)
from protocol.wire.sm2 import SM2PrivateKey
from tests.conftest import LIMITS_OFF
from tests.support.handleclient import read_message
from tests.support.nodeproc import Node
from tests.vectors import sdk_node
from tests.vectors.load import Captured, captured

VECTORS = Path(__file__).parents[1] / "vectors"
FOLDERS = ("idsdk-2.0.x", "idpointer")
WRITES = {
    OpCode.CREATE_HANDLE: "create",
    OpCode.ADD_VALUE: "add",
    OpCode.MODIFY_VALUE: "modify",
    OpCode.REMOVE_VALUE: "remove",
    OpCode.DELETE_HANDLE: "delete",
}
WRITE_BODIES = (CreateHandleRequest, DeleteHandleRequest, RemoveValueRequest)  # add's and modify's subclass create's
ALGORITHMS = {index: alg for alg, index in sdk_node.INDEXES.items()}  # 301: "dsa", ...


def vectors() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (VECTORS / folder).glob("*.json"))


def summary(msg: Message) -> tuple[int, int, str, list[tuple[int, str]] | None, bytes | None]:
    """What must agree: op code, response code, body type, values, a challenge's request digest."""
    values = sorted((v.index, v.type) for v in msg.body.values) if isinstance(msg.body, ResolutionResponse) else None
    digest = msg.request_digest.digest if isinstance(msg.body, ChallengeResponse) and msg.request_digest else None
    return int(msg.op_code), msg.response_code, type(msg.body).__name__, values, digest


def answer_to(messages: list[Captured], request: Captured) -> Captured:
    return next(
        m
        for m in messages
        if m.direction == "response" and m.flow == request.flow and m.request_id == request.request_id
    )


# Challenge answers ----------------------------------------------------------------------------


def private_key(keys: Path, alg: str) -> PrivateKey | SM2PrivateKey:
    if alg == "sm2":
        return sdk_node.sm2_private_key((keys / "admin_sm2_priv.pem").read_bytes())
    return load_private_key_file((keys / f"admin_{alg}_priv.bin").read_bytes(), None)


def public_key(keys: Path, alg: str) -> bytes:
    """The identity's HS_PUBKEY value data, as the node holds it."""
    if alg == "sm2":
        return (keys / "admin_sm2_pub.pem").read_bytes()
    return (keys / f"admin_{alg}_pub.bin").read_bytes()


def signed_again(answer: ChallengeAnswerRequest, nonce: bytes, digest: bytes, keys: Path) -> bytes:
    """A new signed response to (nonce, digest), made as the SDK that sent ``answer`` made it."""
    if answer.auth_type == "HS_SECKEY":
        kind = MacKind(answer.signed_response[0])
        return secret_answer(kind, hashed_secret_key(sdk_node.SECRET.encode()), nonce, digest)
    key = private_key(keys, ALGORITHMS[answer.user_id_index])
    hash_id = reader(answer.signed_response, "the captured answer").blob("hash id").decode()
    return sign_challenge(key, nonce, digest, hash_name=hash_id, signer=answer.user_id_handle)


def answered_again(theirs: Captured, captured_challenge: Message, live_challenge: Message, keys: Path) -> bytes:
    """The captured challenge answer, signed over the live challenge's nonce."""
    msg = theirs.message
    assert isinstance(msg.body, ChallengeAnswerRequest) and isinstance(live_challenge.body, ChallengeResponse)
    assert live_challenge.request_digest is not None
    body = replace(
        msg.body,
        signed_response=signed_again(msg.body, live_challenge.body.nonce, live_challenge.request_digest.digest, keys),
    )
    session = msg.envelope.session_id
    if session == captured_challenge.envelope.session_id:  # the SDK answered under the challenge's session id
        session = live_challenge.envelope.session_id
    return encode_message(replace(msg, body=body, envelope=replace(msg.envelope, session_id=session)))


# The node -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    """One node per SDK folder, set up as the captures' was, the clear-text 2000 login on."""
    started: dict[str, Node] = {}
    try:
        for folder in FOLDERS:
            node = Node(tmp_path_factory.mktemp(folder) / "data", env=LIMITS_OFF)
            node.args = ["--workers", "1", "--handle-password-login"]
            started[folder] = node.start()
            sdk_node.prepare(node, VECTORS / folder / "keys")
        yield started
    finally:
        for node in started.values():
            node.stop()


class Replay:
    """The captured connections of one scenario, opened again one by one as the capture used them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections: dict[int, socket.socket] = {}
        self.challenges: dict[int, Message] = {}  # the last challenge on each connection

    def send(self, request: Captured, data: bytes) -> Message:
        if request.transport == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(10)
                sock.sendto(data, ("127.0.0.1", self.port))
                return decode_message(sock.recvfrom(65536)[0])
        if request.flow not in self.connections:
            self.connections[request.flow] = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock = self.connections[request.flow]
        sock.sendall(data)
        answer = decode_message(read_message(sock))
        if isinstance(answer.body, ChallengeResponse):
            self.challenges[request.flow] = answer
        return answer

    def close(self) -> None:
        for sock in self.connections.values():
            sock.close()


def challenge_before(messages: list[Captured], at: int) -> Message:
    """The challenge that the answer ``messages[at]`` answers: the message before it on its connection."""
    challenge = next(m for m in reversed(messages[:at]) if m.flow == messages[at].flow).message
    assert isinstance(challenge.body, ChallengeResponse), challenge
    return challenge


@pytest.mark.parametrize("path", vectors(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_sdk_s_session_gets_the_captured_answers(nodes: dict[str, Node], path: Path) -> None:
    node, keys = nodes[path.parent.name], path.parent / "keys"
    messages = captured(path)
    assert any(m.direction == "request" for m in messages), f"{path.name} holds no request"
    replay, checked = Replay(node.handle_port), []
    try:
        for at, request in enumerate(messages):
            if request.direction != "request":
                continue
            reference = answer_to(messages, request)
            data = request.data
            if request.message.op_code == OpCode.CHALLENGE_RESPONSE:
                live = replay.challenges[request.flow]
                data = answered_again(request, challenge_before(messages, at), live, keys)
            ours = replay.send(request, data)
            assert ours.request_id == request.request_id and not ours.is_request
            assert summary(ours) == summary(reference.message), f"{request.message.body} over {request.transport}"
            body = request.message.body
            if isinstance(body, WRITE_BODIES) and reference.message.response_code == 1:
                write = WRITES[request.message.op_code]
                shown = sdk_node.values(node, body.handle)
                assert sdk_node.CHECKS[write](shown), f"after {write}: {shown}"
                checked.append(write)
    finally:
        replay.close()
    if path.stem.startswith("login-"):  # a login, then every write on what it logged in
        assert checked == list(WRITES.values())


def _challenge_answers() -> dict[str, tuple[Path, Message, Message]]:
    """Every captured challenge answer and the challenge it answers, by vector and position."""
    out = {}
    for path in vectors():
        messages = captured(path)
        for at, m in enumerate(messages):
            if m.direction == "request" and m.message.op_code == OpCode.CHALLENGE_RESPONSE:
                out[f"{path.parent.name}/{path.stem}/{at}"] = (path, m.message, challenge_before(messages, at))
    return out


@pytest.mark.parametrize(("path", "answer", "challenge"), _challenge_answers().values(), ids=_challenge_answers())
def test_the_committed_keys_are_the_ones_the_sdks_answered_with(
    path: Path, answer: Message, challenge: Message
) -> None:
    body, keys = answer.body, path.parent / "keys"
    assert isinstance(body, ChallengeAnswerRequest) and isinstance(challenge.body, ChallengeResponse)
    assert challenge.request_digest is not None
    nonce, digest = challenge.body.nonce, challenge.request_digest.digest
    if body.auth_type == "HS_SECKEY":
        key = hashed_secret_key(sdk_node.SECRET.encode())
        assert verify_secret_answer(key, nonce, digest, body.signed_response, version=answer.version)
        return
    stored = public_key(keys, ALGORITHMS[body.user_id_index])
    assert verify_signature(stored, body.signed_response, nonce, digest, signer=body.user_id_handle)
    ours = signed_again(body, nonce, digest, keys)  # and the replay's private key is its pair
    assert verify_signature(stored, ours, nonce, digest, signer=body.user_id_handle)
