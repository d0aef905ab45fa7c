"""The Handle wire codec against byte layouts written out by hand from CNRI's hdllib Encoder.

The vectors below are not produced by our encoder: each field is spelled out as
Encoder.encodeEnvelope / writeHeader / encode*Request write it, so an encoder that drifts
from CNRI fails here even if it still reads its own output.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace

import pytest

from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.valuedata import Interface, Server, Site
from protocol.wire.bodies import KEY_EXCHANGE_CIPHER_HDL, KEY_EXCHANGE_DH
from protocol.wire.message import (
    AddValueRequest,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    CreateHandleResponse,
    DeleteHandleRequest,
    DigestAlgorithm,
    Envelope,
    ErrorResponse,
    GenericRequest,
    GenericResponse,
    GetSiteInfoResponse,
    ListHandlesRequest,
    ListHandlesResponse,
    ListPrefixesRequest,
    ListPrefixesResponse,
    LoginIdSystemRequest,
    LoginRequest,
    Message,
    ModifyValueRequest,
    OpCode,
    OpFlag,
    RemoveValueRequest,
    RequestDigest,
    ResolutionRequest,
    ResolutionResponse,
    ServiceReferralResponse,
    SessionExchangeKeyRequest,
    SessionSetupRequest,
    SessionSetupResponse,
    VerifyAuthRequest,
    VerifyAuthResponse,
    WireError,
    decode_envelope,
    decode_message,
    digest_algorithm_for,
    encode_message,
    request_digest,
    response_to,
)
from protocol.wire.udp import Reassembler, split_datagrams


def s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">I", len(raw)) + raw


def i4(n: int) -> bytes:
    return struct.pack(">i", n)


def envelope(version: tuple[int, int], suggest: tuple[int, int], request_id: int, length: int, flags: int = 0) -> bytes:
    # Encoder.encodeEnvelope: major, minor, flag bits | suggested major, suggested minor, 4 ints
    return bytes([*version, flags | suggest[0], suggest[1]]) + i4(0) + i4(request_id) + i4(0) + i4(length)


def header(op: int, rc: int, flags: int, serial: int, expiration: int, body_len: int, recursion: int = 0) -> bytes:
    # Encoder.writeHeader: opCode, responseCode, opFlags, int2 serial, recursion, 1 reserved, expiration, body length
    return i4(op) + i4(rc) + struct.pack(">IHBBII", flags, serial, recursion, 0, expiration, body_len)


CNRI_RESOLUTION_FLAGS = 0x10000000 | 0x08000000 | 0x01000000  # recursive, cacheCertify, ignoreRestrictedValues
EXPIRES = 1764720000


def cnri_resolution_request(handle: str, request_id: int = 0x1234ABCD) -> bytes:
    """hdl-qresolver 7.3.1 asking a 2.10 site (serial 1) for every value of ``handle``."""
    body = s(handle) + i4(0) + i4(0)  # no indexes, no types
    message = header(1, 0, CNRI_RESOLUTION_FLAGS, 1, EXPIRES, len(body)) + body + i4(0)  # empty credential
    return envelope((2, 10), (2, 10), request_id, len(message)) + message


def test_cnri_resolution_request_decodes() -> None:
    msg = decode_message(cnri_resolution_request("0.NA/88.118"))
    assert msg.is_request and msg.op_code is OpCode.RESOLUTION
    assert msg.body == ResolutionRequest("0.NA/88.118")
    assert msg.envelope.version == (2, 10) and msg.envelope.suggest == (2, 10)
    assert msg.request_id == 0x1234ABCD and msg.site_info_serial == 1 and msg.expiration == EXPIRES
    assert msg.flags == OpFlag.RECURSIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY
    assert msg.credential == b""


def test_cnri_resolution_request_encodes_byte_for_byte() -> None:
    wire = cnri_resolution_request("0.NA/88.118")
    msg = Message(
        OpCode.RESOLUTION,
        ResolutionRequest("0.NA/88.118"),
        envelope=Envelope(request_id=0x1234ABCD, version=(2, 10), suggest=(2, 10)),
        site_info_serial=1,
        expiration=EXPIRES,
    )
    assert encode_message(msg) == wire
    assert encode_message(decode_message(wire)) == wire


def test_resolution_request_datagram_sizes_match_the_measured_74_bytes() -> None:
    # RFC 3652 §2.2: a 20-byte envelope, a 24-byte header, the body, an empty credential. A
    # resolution request is 60 bytes plus the handle: the 74-byte datagram measured for a
    # 14-character handle.
    assert len(cnri_resolution_request("0.NA/88.118")) == 71
    assert len(cnri_resolution_request("86.1000.1/test")) == 74


def test_resolution_request_with_indexes_and_types() -> None:
    body = s("20.500.1/x") + i4(2) + i4(1) + i4(100) + i4(1) + s("URL")
    payload = header(1, 0, CNRI_RESOLUTION_FLAGS, 0xFFFF, 0, len(body)) + body + i4(0)
    msg = decode_message(envelope((2, 11), (2, 11), 5, len(payload)) + payload)
    assert msg.body == ResolutionRequest("20.500.1/x", (1, 100), ("URL",))
    assert msg.site_info_serial == 0xFFFF  # CNRI's -1: no site serial known


URL_VALUE = HandleValue(1, "URL", b"https://example.org/", ttl=86400, timestamp=1700000000)


def cnri_value(index: int, vtype: str, data: bytes, ttl: int, timestamp: int, perms: int = 0x0E) -> bytes:
    # Encoder.encodeHandleValue: index, timestamp, ttl type, ttl, permissions, type, data, references
    return i4(index) + i4(timestamp) + b"\x00" + i4(ttl) + bytes([perms]) + s(vtype) + s(data.decode()) + i4(0)


def test_resolution_response_reads_cnri_values() -> None:
    body = s("0.NA/88.118") + i4(1) + cnri_value(1, "URL", b"https://example.org/", 86400, 1700000000)
    payload = header(1, 1, 0x10000000, 1, EXPIRES, len(body)) + body + i4(0)
    msg = decode_message(envelope((2, 10), (2, 11), 9, len(payload)) + payload)
    assert msg.response_code == ResponseCode.SUCCESS
    assert msg.body == ResolutionResponse("0.NA/88.118", (URL_VALUE,))
    assert encode_message(msg) == envelope((2, 10), (2, 11), 9, len(payload)) + payload


def test_value_with_references_and_absolute_ttl() -> None:
    refs = ((3, "0.NA/1"),)
    value = HandleValue(7, "HS_ALIAS", b"x", ttl=1800000000, ttl_absolute=True, permissions=0x0F, references=refs)
    raw = i4(7) + i4(0) + b"\x01" + i4(1800000000) + b"\x0f" + s("HS_ALIAS") + s("x") + i4(1) + s("0.NA/1") + i4(3)
    msg = Message(OpCode.RESOLUTION, ResolutionResponse("h/1", (value,)), response_code=1)
    wire = encode_message(msg)
    assert raw in wire
    assert decode_message(wire).body == ResolutionResponse("h/1", (value,))


def test_error_response_layout() -> None:
    body = s("Handle not found")
    payload = header(1, 100, 0, 1, EXPIRES, len(body)) + body + i4(0)
    msg = decode_message(envelope((2, 10), (2, 11), 3, len(payload)) + payload)
    assert msg.response_code == ResponseCode.HANDLE_NOT_FOUND
    assert msg.body == ErrorResponse("Handle not found")


def test_challenge_carries_sha256_digest_of_the_request_since_2_7() -> None:
    request = cnri_resolution_request("0.NA/88.118")
    digest = hashlib.sha256(request[20:-4]).digest()  # header and body, no envelope, no credential
    nonce = bytes(range(16))
    body = b"\x03" + digest + i4(16) + nonce
    payload = header(1, 402, CNRI_RESOLUTION_FLAGS | 0x00800000, 1, EXPIRES, len(body)) + body + i4(0)
    wire = envelope((2, 10), (2, 11), 0x1234ABCD, len(payload)) + payload
    msg = decode_message(wire)
    assert msg.body == ChallengeResponse(nonce)
    assert msg.request_digest == RequestDigest(DigestAlgorithm.SHA256, digest)
    assert request_digest(request, DigestAlgorithm.SHA256) == digest

    built = response_to(decode_message(request), ChallengeResponse(nonce), 402, expiration=EXPIRES, site_info_serial=1)
    assert encode_message(built) == wire


def test_request_digest_covers_header_and_body_only() -> None:
    request = cnri_resolution_request("0.NA/88.118")
    signed = request[:-4] + i4(3) + b"sig"  # same header and body, another credential
    signed = signed[:16] + i4(len(signed) - 20) + signed[20:]
    for algorithm, name in [(1, "md5"), (2, "sha1"), (3, "sha256"), (0, "md5")]:
        expected = hashlib.new(name, request[20:-4]).digest()
        assert request_digest(request, algorithm) == expected == request_digest(signed, algorithm)
    assert decode_message(signed).credential == b"sig"


@pytest.mark.parametrize(
    ("version", "algorithm"),
    [
        ((2, 0), DigestAlgorithm.MD5_OLD_FORMAT),
        ((2, 1), DigestAlgorithm.SHA1),
        ((2, 6), DigestAlgorithm.SHA1),
        ((2, 7), DigestAlgorithm.SHA256),
        ((2, 10), DigestAlgorithm.SHA256),
        ((2, 11), DigestAlgorithm.SHA256),
    ],
)
def test_digest_algorithm_by_version(version: tuple[int, int], algorithm: DigestAlgorithm) -> None:
    assert digest_algorithm_for(version) is algorithm


def test_response_answers_in_the_suggested_version_capped_at_ours() -> None:
    request = decode_message(cnri_resolution_request("0.NA/88.118"))
    answer = response_to(request, ResolutionResponse("0.NA/88.118"), expiration=1, authoritative=True)
    assert answer.envelope.version == (2, 10) and answer.envelope.suggest == (2, 11)
    assert answer.flags == OpFlag.RECURSIVE | OpFlag.CACHE_CERTIFY | OpFlag.PUBLIC_ONLY | OpFlag.AUTHORITATIVE
    newer = replace(request, envelope=replace(request.envelope, suggest=(2, 12)))
    assert response_to(newer, GenericResponse(), expiration=1).envelope.version == (2, 11)


def test_envelope_before_2_8_suggests_its_own_version() -> None:
    wire = cnri_resolution_request("0.NA/88.118")
    old = bytes([2, 3, 0, 0]) + wire[4:]
    assert decode_message(old).envelope.suggest == (2, 3)


def test_envelope_flags_share_a_byte_with_the_suggested_major_version() -> None:
    wire = cnri_resolution_request("0.NA/88.118")
    flagged = wire[:2] + bytes([0x20 | 2]) + wire[3:]
    env = decode_message(flagged).envelope
    assert env.truncated and env.suggest == (2, 10)
    encrypted = wire[:2] + bytes([0x40 | 2]) + wire[3:]
    with pytest.raises(WireError, match="encrypted"):
        decode_message(encrypted)


def test_prefix_referral_before_2_5_was_server_backup() -> None:
    body = s("backup")
    payload = header(1, 303, 0, 1, 0, len(body)) + body + i4(0)
    msg = decode_message(envelope((2, 4), (2, 4), 1, len(payload)) + payload)
    assert msg.response_code == ResponseCode.SERVER_BACKUP and msg.body == ErrorResponse("backup")
    assert encode_message(msg) == envelope((2, 4), (2, 4), 1, len(payload)) + payload


def test_invalid_value_was_201_before_2_5() -> None:
    msg = Message(OpCode.ADD_VALUE, ErrorResponse("bad"), ResponseCode.INVALID_VALUE, Envelope(version=(2, 4)))
    assert encode_message(msg)[24:28] == i4(201)


def test_challenge_before_2_1_puts_the_md5_digest_after_the_nonce() -> None:
    digest = hashlib.md5(b"request").digest()
    body = i4(16) + bytes(16) + i4(16) + digest
    payload = header(1, 402, 0, 1, 0, len(body)) + body + i4(0)
    wire = envelope((2, 0), (2, 0), 1, len(payload)) + payload
    msg = decode_message(wire)
    assert msg.body == ChallengeResponse(bytes(16))
    assert msg.request_digest == RequestDigest(DigestAlgorithm.MD5_OLD_FORMAT, digest)
    assert encode_message(msg) == wire


def test_service_referral_with_and_without_values() -> None:
    site_value = HandleValue(1, "HS_SITE", b"\x00\x01", ttl=86400)
    with_values = ServiceReferralResponse("0.NA/88", (site_value,))
    for body in (with_values, ServiceReferralResponse("0.NA/88")):
        msg = Message(OpCode.RESOLUTION, body, ResponseCode.SERVICE_REFERRAL)
        assert decode_message(encode_message(msg)).body == body
    bare = encode_message(Message(OpCode.RESOLUTION, ServiceReferralResponse("0.NA/88"), ResponseCode.PREFIX_REFERRAL))
    assert bare[44:] == s("0.NA/88") + i4(0)  # handle, then the empty credential


def test_session_setup_bodies_end_with_cnris_two_spare_bytes() -> None:
    req = SessionSetupRequest(KEY_EXCHANGE_DH, 3600, "0.NA/88.118", 300, public_key=b"dh")
    body = struct.pack(">H", 4) + i4(3600) + s("0.NA/88.118") + i4(300) + i4(2) + b"dh" + b"\0\0"
    wire = encode_message(Message(OpCode.SESSION_SETUP, req))
    assert wire[44 : 44 + len(body)] == body and wire[40:44] == struct.pack(">I", len(body))
    assert decode_message(wire).body == req
    res = SessionSetupResponse(KEY_EXCHANGE_DH, b"server-dh")
    wire = encode_message(Message(OpCode.SESSION_SETUP, res, ResponseCode.SUCCESS))
    assert wire[44:] == struct.pack(">H", 4) + s("server-dh") + b"\0\0" + i4(0)


def test_verify_auth_request_digest_is_length_prefixed_as_cnri_writes_it() -> None:
    req = VerifyAuthRequest("0.NA/88.118", 300, b"n" * 16, b"d" * 32, b"sig")
    wire = encode_message(Message(OpCode.VERIFY_RESPONSE, req))
    assert wire[44:-4] == s("0.NA/88.118") + i4(300) + i4(16) + b"n" * 16 + i4(32) + b"d" * 32 + i4(3) + b"sig"
    assert decode_message(wire).body == req
    fixed = wire[:44] + s("0.NA/88.118") + i4(300) + i4(16) + b"n" * 16 + b"\x02" + b"d" * 20 + i4(0)
    fixed = fixed[:16] + i4(len(fixed) - 20 + 4) + fixed[20:40] + i4(len(fixed) - 44) + fixed[44:] + i4(0)
    assert decode_message(fixed).body == VerifyAuthRequest("0.NA/88.118", 300, b"n" * 16, b"d" * 20, b"", 2)


SITE = Site(servers=(Server(1, "127.0.0.1", b"pubkey", (Interface("TCP", 2641), Interface("UDP", 2641))),))
ALL_BODIES = [
    (OpCode.RESOLUTION, 0, ResolutionRequest("0.NA/88.118", (1,), ("URL", "HS_ADMIN"))),
    (OpCode.GET_SITE_INFO, 0, GenericRequest("/")),
    (OpCode.CREATE_HANDLE, 0, CreateHandleRequest("88.118/a", (URL_VALUE,))),
    (OpCode.DELETE_HANDLE, 0, DeleteHandleRequest("88.118/a")),
    (OpCode.ADD_VALUE, 0, AddValueRequest("88.118/a", (URL_VALUE,))),
    (OpCode.REMOVE_VALUE, 0, RemoveValueRequest("88.118/a", (1, 2))),
    (OpCode.MODIFY_VALUE, 0, ModifyValueRequest("88.118/a", (URL_VALUE,))),
    (OpCode.LIST_HANDLES, 0, ListHandlesRequest("0.NA/88.118")),
    (OpCode.CHALLENGE_RESPONSE, 0, ChallengeAnswerRequest("HS_SECKEY", "88.118/admin", 300, b"mac")),
    (OpCode.VERIFY_RESPONSE, 0, VerifyAuthRequest("88.118/admin", 300, b"n", b"d", b"s")),
    (OpCode.HOME_PREFIX, 0, GenericRequest("0.NA/88.118")),
    (OpCode.UNHOME_PREFIX, 0, GenericRequest("0.NA/88.118")),
    (OpCode.LIST_HOMED_PREFIXES, 0, ListPrefixesRequest("/")),
    (OpCode.SESSION_SETUP, 0, SessionSetupRequest(KEY_EXCHANGE_CIPHER_HDL, 60, "", -1, b"", "88.118/k", 301)),
    (OpCode.SESSION_TERMINATE, 0, GenericRequest("/")),
    (OpCode.SESSION_EXCHANGE_KEY, 0, SessionExchangeKeyRequest(b"key")),
    (OpCode.SESSION_EXCHANGE_KEY, 0, SessionExchangeKeyRequest(None)),
    (OpCode.LOGIN_ID_SYSTEM, 0, LoginIdSystemRequest("88.118/admin", 300)),
    (OpCode.LOGIN, 0, LoginRequest("88.118/admin", (300,), ("secret",))),
    (OpCode.RESOLUTION, 1, ResolutionResponse("88.118/a", (URL_VALUE,))),
    (OpCode.GET_SITE_INFO, 1, GetSiteInfoResponse(SITE)),
    (OpCode.CREATE_HANDLE, 1, CreateHandleResponse("88.118/minted")),
    (OpCode.CREATE_HANDLE, 1, CreateHandleResponse()),
    (OpCode.DELETE_HANDLE, 1, GenericResponse()),
    (OpCode.LIST_HANDLES, 1, ListHandlesResponse(("88.118/a", "88.118/b"))),
    (OpCode.LIST_HOMED_PREFIXES, 1, ListPrefixesResponse(("0.NA/88.118",))),
    (OpCode.VERIFY_RESPONSE, 1, VerifyAuthResponse(True)),
    (OpCode.SESSION_SETUP, 1, SessionSetupResponse(KEY_EXCHANGE_DH, b"x")),
    (OpCode.LOGIN_ID_SYSTEM, 1, GenericResponse()),
    (OpCode.LOGIN, 1, ResolutionResponse("88.118/admin")),
    (OpCode.LOGIN_ID_SYSTEM, 402, ChallengeResponse(b"nonce")),
    (OpCode.RESOLUTION, 302, ServiceReferralResponse("0.NA/88", (URL_VALUE,))),
    (OpCode.CREATE_HANDLE, 402, ChallengeResponse(b"nonce")),
    (OpCode.RESOLUTION, 100, ErrorResponse("not found")),
    (OpCode.SESSION_SETUP, 501, ErrorResponse("session failed")),
]


@pytest.mark.parametrize(("op", "rc", "body"), ALL_BODIES, ids=[type(b).__name__ for _, _, b in ALL_BODIES])
@pytest.mark.parametrize("digest", [None, RequestDigest(DigestAlgorithm.SHA1, b"s" * 20)])
def test_every_body_round_trips(op: OpCode, rc: int, body: object, digest: RequestDigest | None) -> None:
    if rc == 0 and digest is not None:
        pytest.skip("requests carry no request digest")
    flags = OpFlag.CERTIFY | (OpFlag.RETURN_REQUEST_DIGEST if digest else 0)
    msg = Message(op, body, rc, Envelope(request_id=42, session_id=7), flags, 3, 2, EXPIRES, digest, b"cred")  # type: ignore[arg-type]
    wire = encode_message(msg)
    back = decode_message(wire)
    assert back == replace(msg, envelope=replace(msg.envelope, length=len(wire) - 20))
    assert encode_message(back) == wire


def test_wire_error_names_the_request_when_the_header_was_read() -> None:
    wire = bytearray(cnri_resolution_request("0.NA/88.118"))
    wire[44:48] = i4(4000)  # the handle's length runs past the body
    with pytest.raises(WireError) as caught:
        decode_message(bytes(wire))
    assert caught.value.request_id == 0x1234ABCD and caught.value.op_code == 1
    assert caught.value.code == ResponseCode.PROTOCOL_ERROR


def test_unsupported_op_code_asks_for_operation_not_supported() -> None:
    wire = bytearray(cnri_resolution_request("0.NA/88.118"))
    wire[20:24] = i4(1001)  # replication's RETRIEVE_TXN_LOG
    with pytest.raises(WireError) as caught:
        decode_message(bytes(wire))
    assert caught.value.code == ResponseCode.OPERATION_NOT_SUPPORTED and caught.value.op_code == 1001


def resized(wire: bytes) -> bytes:
    """The message with its envelope's and header's lengths made to fit what follows."""
    body_len = len(wire) - 44 - 4
    return wire[:16] + i4(len(wire) - 20) + wire[20:40] + i4(body_len) + wire[44:]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda w: w[:10], "envelope is 20 bytes"),
        (lambda w: w[:16] + i4(300000) + w[20:], "outside 0..262144"),
        (lambda w: w + b"x", "envelope says"),
        (lambda w: w[:16] + i4(10) + w[20:30], "header is 24 bytes"),
        (lambda w: resized(w[:44] + i4(3000) + b"x" * 3000 + w[-12:]), "more than the 2048"),
        (lambda w: resized(w[:44] + i4(40) + w[48:]), "needs 40 bytes"),
        (lambda w: w[:40] + i4(99) + w[44:], "body length 99 exceeds"),
        (lambda w: resized(w[:48] + b"\xff" + w[49:]), "not UTF-8"),
        (lambda w: resized(w[:59] + i4(2**31 - 1) + w[63:]), "cannot fit"),
        (lambda w: resized(w[:24] + i4(77) + w[28:]), "unknown response code 77"),
    ],
)
def test_malformed_input_is_one_clean_error(mutate: object, message: str) -> None:
    wire = cnri_resolution_request("0.NA/88.118")
    assert callable(mutate)
    with pytest.raises(WireError, match=message):
        decode_message(mutate(wire))


def test_a_message_without_credential_section_is_read_as_cnri_reads_it() -> None:
    wire = cnri_resolution_request("0.NA/88.118")
    bare = wire[:16] + i4(len(wire) - 24) + wire[20:-4]
    assert decode_message(bare).body == ResolutionRequest("0.NA/88.118")


# China's SDKs' logins -----------------------------------------------------------------------

# What CAICT's ID-SDK 2.0 sets on a login: BaseMessage's defaults (recursive, cacheCertify,
# ignoreRestrictedValues) and returnRequestDigest, which IDManageServiceChannelImpl forces.
SDK_LOGIN_FLAGS = CNRI_RESOLUTION_FLAGS | 0x00800000
SDK_SESSION = 123456789  # IdentifierResolveEngine's own random session id, on all its messages


def sdk_message(op: int, body: bytes, *, credential: bool = True) -> bytes:
    """A request as the ID-SDK writes it (MsgBytesConvertor.writeHeader: site serial -1, a
    2.3 envelope suggesting 2.10); Teleinfo's login comes without the credential section."""
    message = header(op, 0, SDK_LOGIN_FLAGS, 0xFFFF, EXPIRES, len(body)) + body + (i4(0) if credential else b"")
    head = bytes([2, 3, 2, 10]) + i4(SDK_SESSION) + i4(77) + i4(0) + i4(len(message))
    return head + message


@pytest.mark.parametrize("credential", [True, False], ids=["id-sdk", "teleinfo"])
def test_login_id_system_is_the_identity_handle_and_index(credential: bool) -> None:
    # convertLoginIDSystemReqToBytes in both SDKs: writeByteArray(handle), write4Bytes(index).
    wire = sdk_message(2001, s("88.118/ADMIN") + i4(301), credential=credential)
    msg = decode_message(wire)
    assert msg.op_code is OpCode.LOGIN_ID_SYSTEM and msg.body == LoginIdSystemRequest("88.118/ADMIN", 301)
    assert msg.envelope.session_id == SDK_SESSION and msg.flags & OpFlag.RETURN_REQUEST_DIGEST
    assert msg.header_and_body == wire[20 : 20 + 24 + 20]  # what the challenge's digest covers
    if credential:
        assert encode_message(msg) == wire


def test_password_login_is_laid_out_as_a_resolution_request() -> None:
    # convertLoginReqToBytes: the handle, the requested indexes, the requested "types".
    wire = sdk_message(2000, s("88.118/ADMIN") + i4(1) + i4(300) + i4(1) + s("the secret"))
    msg = decode_message(wire)
    assert msg.body == LoginRequest("88.118/ADMIN", (300,), ("the secret",))
    assert isinstance(msg.body, LoginRequest)
    assert (msg.body.user, msg.body.secret) == ("300:88.118/ADMIN", b"the secret")
    assert LoginRequest("88.118/ADMIN").user == "88.118/ADMIN" and LoginRequest("88.118/ADMIN").secret == b""


def test_the_sdk_s_password_login_names_its_user_in_the_handle_field() -> None:
    # IDManageServiceChannelImpl.login(username, password, settings) in the 2.0.3 jar: the user
    # name as the handle, no index (a count of 0), the password as the one "type".
    wire = sdk_message(2000, s("300:88.118/ADMIN") + i4(0) + i4(1) + s("the secret"))
    msg = decode_message(wire)
    assert isinstance(msg.body, LoginRequest)
    assert (msg.body.user, msg.body.secret) == ("300:88.118/ADMIN", b"the secret")


def test_a_login_s_success_is_read_as_the_sdks_read_it() -> None:
    # BytesMsgConvertor: a 2001 success is read for nothing past the request digest, a 2000
    # success as a resolution response (a handle and its values).
    digest = RequestDigest(DigestAlgorithm.SHA256, bytes(32))
    flags = OpFlag.RETURN_REQUEST_DIGEST
    done = Message(OpCode.LOGIN_ID_SYSTEM, GenericResponse(), 1, flags=flags, request_digest=digest)
    wire = encode_message(done)
    assert wire[44:] == b"\x03" + bytes(32) + i4(0)  # the digest, an empty body, an empty credential
    body = s("88.118/ADMIN") + i4(0)
    assert encode_message(Message(OpCode.LOGIN, ResolutionResponse("88.118/ADMIN"), 1))[44:] == body + i4(0)


# UDP ------------------------------------------------------------------------------------


def big_response(values: int = 20) -> Message:
    many = tuple(HandleValue(i, "URL", b"https://example.org/" + bytes(40), timestamp=1) for i in range(1, values + 1))
    env = Envelope(request_id=99, version=(2, 10), suggest=(2, 11))
    return Message(OpCode.RESOLUTION, ResolutionResponse("0.NA/88.118", many), 1, env)


def test_split_datagrams_as_cnri_sends_them() -> None:
    msg = big_response()
    payload = encode_message(msg)[20:]
    datagrams = split_datagrams(msg.envelope, payload)
    assert [len(d) for d in datagrams[:-1]] == [512] * (len(datagrams) - 1)
    assert len(datagrams) == -(-len(payload) // 492)
    for n, datagram in enumerate(datagrams):
        env = decode_envelope(datagram)
        assert (env.sequence, env.length, env.request_id, env.truncated) == (n, len(payload), 99, True)
    assert b"".join(d[20:] for d in datagrams) == payload
    single = split_datagrams(msg.envelope, payload[:100])
    assert len(single) == 1 and not decode_envelope(single[0]).truncated
    as_server = split_datagrams(msg.envelope, payload, mark_truncated=False)
    assert not decode_envelope(as_server[1]).truncated


def test_reassembler_gathers_parts_in_any_order() -> None:
    msg = big_response()
    datagrams = split_datagrams(msg.envelope, encode_message(msg)[20:])
    r = Reassembler()
    results = [r.add("10.0.0.1", d, now=0.0) for d in reversed(datagrams)]
    assert results[:-1] == [None] * (len(datagrams) - 1)
    whole = results[-1]
    assert whole is not None and decode_message(whole).body == msg.body
    assert len(r) == 0 and r.stats.completed == 1


def test_reassembler_passes_single_datagrams_through() -> None:
    wire = cnri_resolution_request("0.NA/88.118")
    assert Reassembler().add("a", wire, now=0.0) == wire


def test_reassembler_bounds_and_expiry() -> None:
    msg = big_response()
    first = split_datagrams(msg.envelope, encode_message(msg)[20:])[0]
    r = Reassembler(max_pending=3, max_per_source=2, max_age=5.0)
    for request_id in range(3):
        r.add("a", first[:8] + struct.pack(">i", request_id) + first[12:], now=0.0)
    assert len(r) == 2 and r.stats.evicted == 1  # the source's oldest made room
    r.add("b", first, now=1.0)
    r.add("c", first, now=1.0)
    assert len(r) == 3 and r.stats.evicted == 2  # the oldest overall made room
    r.expire(now=6.5)
    assert len(r) == 0 and r.stats.expired == 3 and r.dropped == 5


def test_reassembler_refuses_parts_of_the_wrong_shape() -> None:
    msg = big_response()
    datagrams = split_datagrams(msg.envelope, encode_message(msg)[20:])
    r = Reassembler()
    with pytest.raises(WireError, match="carries 491 bytes, not 492"):
        r.add("a", datagrams[0][:-1], now=0.0)
    with pytest.raises(WireError, match=r"part 7 of a \d+-byte message, which has 4 parts"):
        r.add("a", datagrams[0][:12] + struct.pack(">i", 7) + datagrams[0][16:], now=0.0)
    r.add("a", datagrams[0], now=0.0)
    assert r.add("a", datagrams[0], now=0.0) is None and r.stats.duplicates == 1
    other_length = datagrams[1][:16] + struct.pack(">i", 5000) + datagrams[1][20:]
    with pytest.raises(WireError):
        r.add("a", other_length, now=0.0)
