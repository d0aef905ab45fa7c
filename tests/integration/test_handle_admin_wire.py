"""Handle protocol administration over real sockets, against a node of two workers.

As CNRI's tools do it: every message on a new TCP connection, so a challenge and its
answer often reach different workers; the session setup CNRI's batch tool sends over UDP,
certified, answered with the server's signature, checked with the key its site info shows.
"""

from __future__ import annotations

import json
from pathlib import Path

from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire.auth import client_secret_kind, hashed_secret_key, secret_answer
from protocol.wire.keys import decode_public_key
from protocol.wire.message import (
    Body,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    DeleteHandleRequest,
    Envelope,
    GenericRequest,
    GetSiteInfoResponse,
    Message,
    OpCode,
    OpFlag,
    RemoveValueRequest,
    SessionSetupResponse,
    decode_message,
    encode_message,
)
from protocol.wire.sign import bound_prefix, verify_signed_credential
from tests.support.handleclient import resolution, tcp, udp
from tests.support.nodeproc import ADMIN_SECRET, Node

NODE_ADMIN = "0.NA/88.118"
KEY = hashed_secret_key(ADMIN_SECRET.encode())  # what the node stores, and a hashing client's MAC key
VECTORS = Path(__file__).parents[1] / "vectors" / "cnri-7.3.1"


def request(op: OpCode, body: Body, *, session_id: int = 0, flags: int = 0, rid: int = 7) -> bytes:
    envelope = Envelope(request_id=rid, session_id=session_id, version=(2, 10), suggest=(2, 10))
    return encode_message(Message(op, body, envelope=envelope, flags=OpFlag(0x19000000 | flags)))


def as_admin(node: Node, op: OpCode, body: Body, *, key: bytes = KEY, rid: int = 11) -> Message:
    """Send, take the challenge, answer it on a new connection, as hdl-genericbatch does."""
    (challenge,) = tcp(node.handle_port, request(op, body, rid=rid))
    assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED, challenge
    assert isinstance(challenge.body, ChallengeResponse) and challenge.request_digest is not None
    kind = client_secret_kind(challenge.version, challenge.envelope.suggest)
    mac = secret_answer(kind, key, challenge.body.nonce, challenge.request_digest.digest)
    answer = ChallengeAnswerRequest("HS_SECKEY", NODE_ADMIN, 300, mac)
    (done,) = tcp(
        node.handle_port,
        request(OpCode.CHALLENGE_RESPONSE, answer, session_id=challenge.envelope.session_id, rid=rid + 1),
    )
    return done


def test_create_change_and_delete_over_the_protocol_are_seen_everywhere(fresh_node: Node) -> None:
    fresh_node.args = ["--workers", "2"]
    node = fresh_node.start()
    for n in range(8):  # challenge and answer land on either worker, in every combination
        handle = f"88.118/WIRE-{n}"
        values = (
            HandleValue(1, "URL", f"https://wire.example/{n}".encode()),
            HandleValue(2, "EMAIL", b"w@example.com"),
        )
        created = as_admin(node, OpCode.CREATE_HANDLE, CreateHandleRequest(handle, values), rid=100 + 2 * n)
        assert created.response_code == ResponseCode.SUCCESS, created.body
        rest = node.get(f"/api/handles/{handle}")
        assert rest.status == 200 and [v["index"] for v in rest.json["values"]] == [1, 2]
        assert udp(node.handle_port, resolution(handle)).response_code == ResponseCode.SUCCESS
    removed = as_admin(node, OpCode.REMOVE_VALUE, RemoveValueRequest("88.118/WIRE-0", (2,)))
    assert removed.response_code == ResponseCode.SUCCESS
    assert [v["index"] for v in node.get("/api/handles/88.118/WIRE-0").json["values"]] == [1]
    gone = as_admin(node, OpCode.DELETE_HANDLE, DeleteHandleRequest("88.118/WIRE-1"))
    assert gone.response_code == ResponseCode.SUCCESS
    assert node.get("/api/handles/88.118/WIRE-1").status == 404
    assert udp(node.handle_port, resolution("88.118/WIRE-1")).response_code == ResponseCode.HANDLE_NOT_FOUND
    audit = node.get("/api/audit?prefix=88.118", auth=("300:0.NA/88.118", ADMIN_SECRET))
    assert audit.status == 200 and any(e.get("identity") == f"300:{NODE_ADMIN}" for e in audit.json.get("entries", []))


def test_a_wrong_secret_is_refused_and_nothing_is_written(node: Node) -> None:
    body = CreateHandleRequest("88.118/WIRE-WRONG", (HandleValue(1, "URL", b"https://x.example/"),))
    refused = as_admin(node, OpCode.CREATE_HANDLE, body, key=hashed_secret_key(b"not the secret"))
    assert refused.response_code == ResponseCode.AUTHENTICATION_FAILED
    assert node.get("/api/handles/88.118/WIRE-WRONG").status == 404


def test_a_certified_session_setup_is_signed_with_the_key_the_site_info_shows(node: Node) -> None:
    (site,) = tcp(node.handle_port, request(OpCode.GET_SITE_INFO, GenericRequest("")))
    assert isinstance(site.body, GetSiteInfoResponse)
    public = decode_public_key(site.body.site.servers[0].public_key)
    exchanges = json.loads((VECTORS / "batch-create-seckey.json").read_text())["exchanges"]
    setup = next(bytes.fromhex(e["hex"]) for e in exchanges if e.get("opcode") == 400 and e.get("response_code") == 0)
    assert decode_message(setup).flags & OpFlag.CERTIFY  # as CNRI 7.3.1's batch tool sends it
    answer = udp(node.handle_port, setup)
    assert answer.response_code == ResponseCode.SUCCESS and isinstance(answer.body, SessionSetupResponse)
    env = answer.envelope
    header_and_body = answer.header_and_body  # as it came off the wire
    prefix = bound_prefix(env.version, env.suggest, env.session_id, env.request_id)
    assert verify_signed_credential(public, answer.credential, header_and_body, prefix)
