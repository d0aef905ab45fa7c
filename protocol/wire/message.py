"""The Handle binary protocol (RFC 3652), byte for byte as CNRI's net.handle.hdllib writes it.

A message is a 20-byte envelope, a 24-byte header, a body and a credential section (a
4-byte length and that many bytes; requests CNRI sends carry an empty one). Responses whose
header has RETURN_REQUEST_DIGEST start their body with a digest of the request: one
algorithm byte and the digest. That digest is what a challenge binds an answer to.

``decode_message`` turns one complete message's bytes into a Message or raises WireError,
nothing else; ``encode_message`` writes one. Bodies live in ``protocol.wire.bodies``,
primitives in ``protocol.wire.base``, UDP splitting and reassembly in ``protocol.wire.udp``,
TCP framing in ``protocol.wire.stream``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from enum import IntEnum

from protocol.codes import ResponseCode
from protocol.wire.base import (
    COMPATIBILITY_VERSION,
    DEFAULT_REQUEST_FLAGS,
    ENVELOPE_SIZE,
    HEADER_SIZE,
    MAX_HANDLE,
    MAX_MESSAGE,
    MAX_UDP_DATA,
    MAX_UDP_PACKET,
    PROTOCOL_VERSION,
    Envelope,
    OpCode,
    OpFlag,
    Reader,
    WireError,
    decode_envelope,
    encode_envelope,
    pack_blob,
    version_at_least,
)
from protocol.wire.bodies import (
    REQUEST_BODIES,
    SUCCESS_BODIES,
    AddValueRequest,
    Body,
    ChallengeAnswerRequest,
    ChallengeResponse,
    CreateHandleRequest,
    CreateHandleResponse,
    DeleteHandleRequest,
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
    ModifyValueRequest,
    RemoveValueRequest,
    ResolutionRequest,
    ResolutionResponse,
    ServiceReferralResponse,
    SessionExchangeKeyRequest,
    SessionSetupRequest,
    SessionSetupResponse,
    VerifyAuthRequest,
    VerifyAuthResponse,
)
from protocol.wire.stream import frame
from protocol.wire.udp import Reassembler, ReassemblyStats, split_datagrams

__all__ = [
    "COMPATIBILITY_VERSION",
    "DEFAULT_REQUEST_FLAGS",
    "ENVELOPE_SIZE",
    "HEADER_SIZE",
    "MAX_HANDLE",
    "MAX_MESSAGE",
    "MAX_UDP_DATA",
    "MAX_UDP_PACKET",
    "NO_SITE_SERIAL",
    "PROTOCOL_VERSION",
    "AddValueRequest",
    "Body",
    "ChallengeAnswerRequest",
    "ChallengeResponse",
    "CreateHandleRequest",
    "CreateHandleResponse",
    "DeleteHandleRequest",
    "DigestAlgorithm",
    "Envelope",
    "ErrorResponse",
    "GenericRequest",
    "GenericResponse",
    "GetSiteInfoResponse",
    "ListHandlesRequest",
    "ListHandlesResponse",
    "ListPrefixesRequest",
    "ListPrefixesResponse",
    "LoginIdSystemRequest",
    "LoginRequest",
    "Message",
    "ModifyValueRequest",
    "OpCode",
    "OpFlag",
    "Reassembler",
    "ReassemblyStats",
    "RemoveValueRequest",
    "RequestDigest",
    "ResolutionRequest",
    "ResolutionResponse",
    "ServiceReferralResponse",
    "SessionExchangeKeyRequest",
    "SessionSetupRequest",
    "SessionSetupResponse",
    "VerifyAuthRequest",
    "VerifyAuthResponse",
    "WireError",
    "decode_envelope",
    "decode_message",
    "decode_payload",
    "digest_algorithm_for",
    "encode_envelope",
    "encode_message",
    "encode_payload",
    "request_digest",
    "response_to",
    "response_version",
    "split_datagrams",
]


class DigestAlgorithm(IntEnum):
    """Common.HASH_CODE_*: the byte in front of a request digest."""

    MD5_OLD_FORMAT = 0  # before 2.1: a length-prefixed MD5 digest
    MD5 = 1
    SHA1 = 2
    SHA256 = 3


NO_SITE_SERIAL = 0xFFFF  # CNRI's -1 in the header's 16 bits: the sender knows no site serial

_DIGEST_SIZES = {DigestAlgorithm.MD5: 16, DigestAlgorithm.SHA1: 20, DigestAlgorithm.SHA256: 32}
_HASHES = {0: "md5", 1: "md5", 2: "sha1", 3: "sha256"}


@dataclass(frozen=True, slots=True)
class RequestDigest:
    algorithm: DigestAlgorithm
    digest: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One Handle message. ``response_code`` 0 makes it a request.

    ``request_digest`` belongs to responses: present exactly when the response's header has
    RETURN_REQUEST_DIGEST (which the encoder sets from it). ``credential`` is the credential
    section's content, opaque here. ``header_and_body`` is set by the decoder: the bytes a
    request digest and a signature are computed over.
    """

    op_code: OpCode
    body: Body
    response_code: int = 0
    envelope: Envelope = field(default_factory=Envelope)
    flags: OpFlag = DEFAULT_REQUEST_FLAGS
    site_info_serial: int = NO_SITE_SERIAL
    recursion_count: int = 0
    expiration: int = 0
    request_digest: RequestDigest | None = None
    credential: bytes = b""
    header_and_body: bytes = field(default=b"", compare=False, repr=False)

    @property
    def is_request(self) -> bool:
        return self.response_code == 0

    @property
    def request_id(self) -> int:
        return self.envelope.request_id

    @property
    def version(self) -> tuple[int, int]:
        return self.envelope.version


# Decoding ------------------------------------------------------------------------------

_HEADER = struct.Struct(">iiIHBxII")  # op, response code, flags, site serial, recursion, -, expiration, body length
_Header = tuple[int, int, int, int, int, int, int]
_OP_CODES = frozenset(int(op) for op in OpCode) - {0}


def decode_message(data: bytes) -> Message:
    """One complete message (envelope first) → Message, or WireError."""
    env = decode_envelope(data)
    if len(data) - ENVELOPE_SIZE != env.length:
        raise WireError(
            f"envelope says {env.length} bytes follow, {len(data) - ENVELOPE_SIZE} do",
            request_id=env.request_id,
            envelope=env,
        )
    return decode_payload(env, data[ENVELOPE_SIZE:])


def decode_payload(env: Envelope, payload: bytes) -> Message:
    """The message after its envelope (reassembled or decrypted) → Message, or WireError."""
    if env.encrypted or env.compressed:
        what = "encrypted" if env.encrypted else "compressed"
        raise WireError(f"{what} message cannot be decoded here", request_id=env.request_id, envelope=env)
    if len(payload) < HEADER_SIZE:
        raise WireError(
            f"a message header is {HEADER_SIZE} bytes, got {len(payload)}", request_id=env.request_id, envelope=env
        )
    header: _Header = _HEADER.unpack_from(payload)
    op = header[0]
    try:
        return _decode_after_header(env, payload, header)
    except WireError as exc:
        raise WireError(
            f"{exc.message} (op code {op}, request {env.request_id})",
            request_id=env.request_id,
            op_code=op,
            envelope=env,
            code=exc.code,
        ) from None
    except (ValueError, struct.error, IndexError) as exc:  # a reader gap; say so rather than crash
        raise WireError(f"malformed message: {exc}", request_id=env.request_id, op_code=op, envelope=env) from None


def _decode_after_header(env: Envelope, payload: bytes, header: _Header) -> Message:
    op, rc, flags, serial, recursion, expiration, body_len = header
    end = HEADER_SIZE + body_len
    if body_len > len(payload) - HEADER_SIZE:
        raise WireError(f"body length {body_len} exceeds the {len(payload) - HEADER_SIZE} bytes after the header")
    if op not in _OP_CODES and not (op == OpCode.RESERVED and rc != 0):  # CNRI answers garbage with op 0
        raise WireError(f"unknown op code {op}", code=ResponseCode.OPERATION_NOT_SUPPORTED)
    op_code = OpCode(op)
    r = Reader(payload, HEADER_SIZE, end)
    digest = None
    if rc == 0:
        body = _request_body(op_code, r, env.version)
    else:
        if flags & OpFlag.RETURN_REQUEST_DIGEST:
            digest = _read_digest(r)
        rc, body, digest = _response_body(op_code, rc, r, env.version, digest)
    return Message(
        op_code=op_code,
        body=body,
        response_code=rc,
        envelope=env,
        flags=OpFlag(flags),
        site_info_serial=serial,
        recursion_count=recursion,
        expiration=expiration,
        request_digest=digest,
        credential=_read_credential(payload, end),
        header_and_body=payload[:end],
    )


def _request_body(op_code: OpCode, r: Reader, version: tuple[int, int]) -> Body:
    cls = REQUEST_BODIES.get(op_code)
    if cls is None:
        raise WireError(f"op code {op_code.name} is not supported", code=ResponseCode.OPERATION_NOT_SUPPORTED)
    return cls.decode(r, version)


def _read_digest(r: Reader) -> RequestDigest:
    algorithm = r.data[r.pos] if r.remaining() else -1
    if algorithm == DigestAlgorithm.MD5_OLD_FORMAT:
        return RequestDigest(DigestAlgorithm.MD5_OLD_FORMAT, r.blob("request digest", 1024))
    if algorithm not in _DIGEST_SIZES:
        raise WireError(f"unknown request digest algorithm {algorithm}")
    r.pos += 1
    known = DigestAlgorithm(algorithm)
    return RequestDigest(known, r.take(_DIGEST_SIZES[known], "request digest"))


_ERROR_CODES = frozenset(ResponseCode) - {
    ResponseCode.SUCCESS,
    ResponseCode.SERVICE_REFERRAL,
    ResponseCode.PREFIX_REFERRAL,
    ResponseCode.AUTHENTICATION_NEEDED,
}


def _response_body(
    op_code: OpCode, rc: int, r: Reader, version: tuple[int, int], digest: RequestDigest | None
) -> tuple[int, Body, RequestDigest | None]:
    if rc == ResponseCode.SUCCESS:
        cls = SUCCESS_BODIES.get(op_code)
        if cls is None:
            raise WireError(f"a success response to {op_code.name} is not defined")
        return rc, cls.decode(r, version), digest
    if rc == ResponseCode.PREFIX_REFERRAL and not version_at_least(version, (2, 5)):
        return ResponseCode.SERVER_BACKUP, ErrorResponse.decode(r, version), digest  # 303 meant "backup" then
    if rc in (ResponseCode.SERVICE_REFERRAL, ResponseCode.PREFIX_REFERRAL):
        return rc, ServiceReferralResponse.decode(r, version), digest
    if rc == ResponseCode.AUTHENTICATION_NEEDED:
        challenge = ChallengeResponse.decode(r, version)
        if _old_challenge(version):
            digest = RequestDigest(DigestAlgorithm.MD5_OLD_FORMAT, r.blob("request digest", 1024))
        return rc, challenge, digest
    if rc in _ERROR_CODES:
        return rc, ErrorResponse.decode(r, version), digest
    raise WireError(f"unknown response code {rc}")


def _old_challenge(version: tuple[int, int]) -> bool:
    return not version_at_least(version, (2, 1))


def _read_credential(payload: bytes, pos: int) -> bytes:
    # CNRI reads a credential only when there is room for its length, and ignores what follows it.
    if len(payload) - pos < 4:
        return b""
    r = Reader(payload, pos)
    return r.blob("credential")


# Encoding --------------------------------------------------------------------------------


def encode_payload(msg: Message) -> bytes:
    """Header, body and credential section: the message without its envelope."""
    version = msg.version
    body = msg.body.encode(version)
    flags = int(msg.flags)
    rc = msg.response_code
    if rc != 0:
        flags &= ~int(OpFlag.RETURN_REQUEST_DIGEST) & 0xFFFFFFFF
        body, flags = _with_digest(msg, body, flags)
        rc = _response_code_on_wire(rc, version)
    header = _HEADER.pack(msg.op_code, rc, flags, msg.site_info_serial, msg.recursion_count, msg.expiration, len(body))
    return header + body + pack_blob(msg.credential)


def _with_digest(msg: Message, body: bytes, flags: int) -> tuple[bytes, int]:
    digest = msg.request_digest
    if digest is None:
        return body, flags
    if msg.response_code == ResponseCode.AUTHENTICATION_NEEDED and _old_challenge(msg.version):
        return body + pack_blob(digest.digest), flags
    if not version_at_least(msg.version, (2, 1)):
        return body, flags  # no digest before 2.1 outside a challenge
    if digest.algorithm == DigestAlgorithm.MD5_OLD_FORMAT:
        prefix = pack_blob(digest.digest)
    else:
        prefix = bytes([digest.algorithm]) + digest.digest
    return prefix + body, flags | OpFlag.RETURN_REQUEST_DIGEST


def _response_code_on_wire(rc: int, version: tuple[int, int]) -> int:
    # Before 2.5 these two codes had other numbers (AbstractMessage.writeHeader).
    if not version_at_least(version, (2, 5)):
        if rc == ResponseCode.SERVER_BACKUP:
            return int(ResponseCode.PREFIX_REFERRAL)
        if rc == ResponseCode.INVALID_VALUE:
            return int(ResponseCode.VALUE_ALREADY_EXISTS)
    return rc


def encode_message(msg: Message) -> bytes:
    """Envelope, header, body and credential; the envelope's length is computed."""
    return frame(msg.envelope, encode_payload(msg))


# Request digests and responses ---------------------------------------------------------------


def digest_algorithm_for(version: tuple[int, int]) -> DigestAlgorithm:
    """The request digest CNRI attaches to a response of this version (AbstractResponse.takeDigestOfRequest)."""
    if not version_at_least(version, (2, 1)):
        return DigestAlgorithm.MD5_OLD_FORMAT
    if version_at_least(version, (2, 7)):
        return DigestAlgorithm.SHA256
    return DigestAlgorithm.SHA1


def request_digest(message_bytes: bytes, algorithm: DigestAlgorithm | int) -> bytes:
    """The digest CNRI takes of a request: over its header and body as sent (the 24 header
    bytes and bodyLength bytes after the envelope), without envelope or credential.
    ``message_bytes`` is one whole message, envelope first, as decode_message takes it."""
    if algorithm not in _HASHES:
        raise WireError(f"unknown request digest algorithm {algorithm}")
    if len(message_bytes) < ENVELOPE_SIZE + HEADER_SIZE:
        raise WireError("a message is too short to have a header to digest")
    body_len = struct.unpack_from(">I", message_bytes, ENVELOPE_SIZE + 20)[0]
    end = ENVELOPE_SIZE + HEADER_SIZE + body_len
    if end > len(message_bytes):
        raise WireError(f"body length {body_len} runs past the message's end")
    return hashlib.new(_HASHES[algorithm], message_bytes[ENVELOPE_SIZE:end]).digest()


# What AbstractResponse(req, rc) copies from its request (takeValuesFrom); RECURSIVE is a
# default that is true in every CNRI message.
_COPIED_FLAGS = (
    OpFlag.AUTHORITATIVE
    | OpFlag.CERTIFY
    | OpFlag.ENCRYPT
    | OpFlag.CACHE_CERTIFY
    | OpFlag.PUBLIC_ONLY
    | OpFlag.DO_NOT_REFER
    | OpFlag.RETURN_REQUEST_DIGEST
)


def response_version(request: Message) -> tuple[int, int]:
    """The version CNRI answers in: what the request suggests, capped at ours."""
    suggested = request.envelope.suggest
    return PROTOCOL_VERSION if version_at_least(suggested, PROTOCOL_VERSION) else suggested


def response_to(
    request: Message,
    body: Body,
    response_code: int = ResponseCode.SUCCESS,
    *,
    expiration: int,
    site_info_serial: int = NO_SITE_SERIAL,
    authoritative: bool = False,
) -> Message:
    """A response as CNRI's server builds one for ``request`` (decoded, so its
    header_and_body is known): same op code, ids and the flags it copies, the answer's
    version, and a request digest when the request asked for one or this is a challenge.
    ``expiration`` is CNRI's now + 12 hours; a primary site's server sets ``authoritative``."""
    version = response_version(request)
    flags = (request.flags & _COPIED_FLAGS) | OpFlag.RECURSIVE
    if authoritative:
        flags |= OpFlag.AUTHORITATIVE
    digest = None
    if request.flags & OpFlag.RETURN_REQUEST_DIGEST or response_code == ResponseCode.AUTHENTICATION_NEEDED:
        algorithm = digest_algorithm_for(version)
        digest = RequestDigest(algorithm, hashlib.new(_HASHES[algorithm], request.header_and_body).digest())
    envelope = Envelope(
        request_id=request.envelope.request_id,
        session_id=request.envelope.session_id,
        version=version,
        suggest=PROTOCOL_VERSION,
        truncated=request.envelope.truncated,  # CNRI answers in the request's envelope object
    )
    return Message(
        op_code=request.op_code,
        body=body,
        response_code=response_code,
        envelope=envelope,
        flags=flags,
        site_info_serial=site_info_serial,
        recursion_count=request.recursion_count,
        expiration=expiration,
        request_digest=digest,
    )
