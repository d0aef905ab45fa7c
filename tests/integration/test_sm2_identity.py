"""An identity whose HS_PUBKEY is an SM2 key, as Teleinfo's id-pointer SDK registers and uses it.

The node admin registers the identity over REST with the PEM text the SDK's
``ValueHelper.newIdisPublicKeyValue`` stores, and grants it the prefix; the identity then
creates a handle over the Handle protocol, answering the challenge as the SDK's
``PublicKeyAuthenticationInfo`` does (hash id SM3, a DER SM2 signature of SM3(nonce || digest)
with its handle as the signer ID). A value that claims to be SM2 and is not a point of the
curve is refused on write.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives import hashes

from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.wire import der, keys, sm2
from protocol.wire.message import (
    Body,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    Envelope,
    Message,
    OpCode,
    OpFlag,
    encode_message,
)
from tests.conftest import LIMITS_OFF
from tests.support.handleclient import tcp
from tests.support.nodeproc import ADMIN, Node, record, url_value
from tests.support.snmsclient import NODE_ARGS, Snms, enterprise, envelope, identifier, item, logged_in, template, value

PREFIX = "88.118.52"
IDENTITY = f"{PREFIX}/sm2admin"  # the case the SDK is configured with, as registered
KEY = sm2.generate_private_key()


@pytest.fixture(scope="module")
def sm2_node(node: Node) -> Iterator[Node]:
    grant = {"handle": IDENTITY, "index": 300, "permissions": "111111111111"}
    prefix = record({"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": grant}})
    pem = keys.sm2_pem(KEY.public_key()).decode()
    identity = record({"index": 300, "type": "HS_PUBKEY", "data": pem})  # the SDK's PEM text, as a string
    made = [
        node.put(f"/api/handles/0.NA/{PREFIX}", prefix, auth=ADMIN),
        node.put(f"/api/handles/{IDENTITY}", identity, auth=ADMIN),
    ]
    assert [r.status for r in made] == [201, 201], [r.body for r in made]
    yield node


def request(op: OpCode, body: Body, *, session_id: int = 0, rid: int = 7) -> bytes:
    envelope = Envelope(request_id=rid, session_id=session_id, version=(2, 10), suggest=(2, 10))
    return encode_message(Message(op, body, envelope=envelope, flags=OpFlag(0x19000000)))


def sdk_answer(key: sm2.SM2PrivateKey, handle: str, nonce: bytes, digest: bytes) -> bytes:
    signature = sm2.sign(key, sm2.sm3(nonce + digest), handle.encode("utf-8"))
    return keys.pack(b"SM3", sm2.encode_signature(signature))


def bc_answer(key: sm2.SM2PrivateKey, handle: str, nonce: bytes, digest: bytes) -> bytes:
    """As id-pointer signs with a key its KeyConverter read (BouncyCastle's SHA256withSM2)."""
    signature = sm2.sign(key, nonce + digest, sm2.DEFAULT_USER_ID, algorithm=hashes.SHA256())
    return keys.pack(b"SHA-256", sm2.encode_signature(signature))


def create_as(
    node: Node, handle: str, key: sm2.SM2PrivateKey, rid: int, answer_with: Callable[..., bytes] = sdk_answer
) -> Message:
    body = CreateHandleRequest(handle, (HandleValue(1, "URL", b"https://sm2.example/"),))
    (challenge,) = tcp(node.handle_port, request(OpCode.CREATE_HANDLE, body, rid=rid))
    assert challenge.response_code == ResponseCode.AUTHENTICATION_NEEDED, challenge
    assert isinstance(challenge.body, ChallengeResponse) and challenge.request_digest is not None
    signed = answer_with(key, IDENTITY, challenge.body.nonce, challenge.request_digest.digest)
    answer = ChallengeAnswerRequest("HS_PUBKEY", IDENTITY, 300, signed)
    session = challenge.envelope.session_id
    (done,) = tcp(node.handle_port, request(OpCode.CHALLENGE_RESPONSE, answer, session_id=session, rid=rid + 1))
    return done


def test_the_identity_shows_its_key_as_sm2(sm2_node: Node) -> None:
    shown = sm2_node.get(f"/api/handles/{IDENTITY}").json["values"][0]
    assert shown["type"] == "HS_PUBKEY" and shown["data"]["format"] == "key"
    assert shown["data"]["keyType"] == "SM2"
    assert keys.decode_public_key(base64.b64decode(shown["data"]["value"])) == KEY.public_key()


def test_an_sm2_identity_answers_the_challenge_and_creates_a_handle(sm2_node: Node) -> None:
    created = create_as(sm2_node, f"{PREFIX}/made-with-sm2", KEY, rid=31)
    assert created.response_code == ResponseCode.SUCCESS, created.body
    made = sm2_node.get(f"/api/handles/{PREFIX}/made-with-sm2")
    assert made.status == 200 and made.json["values"][0]["data"]["value"] == "https://sm2.example/"
    audit = sm2_node.get(f"/api/audit?prefix={PREFIX}", auth=ADMIN)
    assert any(e.get("identity") == f"300:{PREFIX}/SM2ADMIN" for e in audit.json.get("entries", [])), audit.json


def test_an_answer_signed_as_bouncycastles_sha256withsm2_is_accepted(sm2_node: Node) -> None:
    created = create_as(sm2_node, f"{PREFIX}/made-with-sha256", KEY, rid=51, answer_with=bc_answer)
    assert created.response_code == ResponseCode.SUCCESS, created.body
    assert sm2_node.get(f"/api/handles/{PREFIX}/made-with-sha256").status == 200


@pytest.mark.parametrize("answer_with", [sdk_answer, bc_answer])
def test_an_answer_signed_with_another_key_is_refused_and_nothing_is_written(
    sm2_node: Node, answer_with: Callable[..., bytes]
) -> None:
    refused = create_as(sm2_node, f"{PREFIX}/not-made", sm2.generate_private_key(), rid=41, answer_with=answer_with)
    assert refused.response_code == ResponseCode.AUTHENTICATION_FAILED
    assert sm2_node.get(f"/api/handles/{PREFIX}/not-made").status == 404


def off_curve_pem() -> str:
    point = bytearray(sm2.generate_private_key().public_key().point_bytes())
    point[-1] ^= 1
    algorithm = der.sequence(der.oid(keys.OID_EC_PUBLIC_KEY), der.oid(keys.OID_SM2))
    body = base64.b64encode(der.sequence(algorithm, der.bit_string(bytes(point)))).decode()
    return f"-----BEGIN PUBLIC KEY-----\r\n{body}\r\n-----END PUBLIC KEY-----\r\n"


@pytest.mark.parametrize(
    "data",
    [
        off_curve_pem(),  # PEM text, as a string
        {"format": "key", "value": base64.b64encode(b"\0\0\0\x0bSM2_PUB_KEY\0\0\0\0\0\x03abc").decode()},
    ],
)
def test_a_value_claiming_sm2_that_is_no_sm2_key_is_refused_with_400(sm2_node: Node, data: object) -> None:
    body = record(url_value(1, "https://x.example/"), {"index": 300, "type": "HS_PUBKEY", "data": data})
    refused = sm2_node.put(f"/api/handles/{PREFIX}/bad-key", body, auth=ADMIN)
    assert refused.status == 400, refused.body
    assert "value 300" in refused.json["message"] and "SM2" in refused.json["message"], refused.json
    assert sm2_node.get(f"/api/handles/{PREFIX}/bad-key").status == 404


# SNMS: its template items are typed; an item of type HS_PUBKEY takes the SDK's PEM text --------

SNMS_PREFIX = "88.777.1"


@pytest.fixture(scope="module")
def snms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snms]:
    node = Node(tmp_path_factory.mktemp("sm2-snms") / "data", args=NODE_ARGS, env=LIMITS_OFF).start()
    enterprise(node, SNMS_PREFIX)
    client = logged_in(node, SNMS_PREFIX)
    key_item = item("公钥", "HS_PUBKEY", 2000, 1, 1024)
    assert envelope(client.call("POST", "/snms/api/v5/template", template(SNMS_PREFIX, "1.0", key_item)))[0] == 1
    yield client
    node.stop()


def test_snms_takes_an_sm2_pem_and_refuses_one_off_the_curve(snms: Snms) -> None:
    good = identifier(f"{SNMS_PREFIX}/key-1", "1.0", value(2000, "HS_PUBKEY", keys.sm2_pem(KEY.public_key()).decode()))
    assert envelope(snms.call("POST", "/identityv2/data", good))[0] == 1
    status, _, data = envelope(snms.detail(f"{SNMS_PREFIX}/key-1"))
    shown = next(v["data"] for v in data["value"] if v["index"] == 2000)
    assert status == 1 and set(shown) == {"format", "value"}  # SNMS's documented shape
    assert keys.decode_public_key(base64.b64decode(shown["value"])) == KEY.public_key()
    bad = identifier(f"{SNMS_PREFIX}/key-2", "1.0", value(2000, "HS_PUBKEY", off_curve_pem()))
    status, message, _ = envelope(snms.call("POST", "/identityv2/data", bad))
    assert status != 1 and "not a point of the SM2 curve" in message, message
    assert envelope(snms.detail(f"{SNMS_PREFIX}/key-2"))[0] != 1
