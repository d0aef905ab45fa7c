"""Message bodies of the Handle protocol, one dataclass per body, laid out as CNRI's Encoder does.

A body decodes from a Reader bounded to the header's body length and does not have to use
all of it: CNRI's own session setup messages carry two unused bytes, and CNRI ignores
whatever a body leaves. The request digest that starts some response bodies is not part of
these classes; ``protocol.wire.message`` reads and writes it for every response alike.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from protocol.errors import InvalidValue
from protocol.records import HandleValue
from protocol.valuedata import Site, decode_site, encode_site
from protocol.wire.base import (
    OpCode,
    Reader,
    WireError,
    decode_values,
    encode_values,
    pack_blob,
    pack_text,
)

Version = tuple[int, int]

# Common.KEY_EXCHANGE_*: how a session's key is agreed.
KEY_EXCHANGE_NONE = 0
KEY_EXCHANGE_CIPHER_CLIENT = 1
KEY_EXCHANGE_CIPHER_SERVER = 2
KEY_EXCHANGE_CIPHER_HDL = 3
KEY_EXCHANGE_DH = 4
_KEY_CARRYING_MODES = (KEY_EXCHANGE_CIPHER_CLIENT, KEY_EXCHANGE_DH)


class Body:
    """A message body: ``encode`` gives its bytes, ``decode`` reads them back."""

    __slots__ = ()
    kind: ClassVar[str] = "body"

    def encode(self, version: Version) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        raise NotImplementedError


def _ints(values: tuple[int, ...]) -> bytes:
    return struct.pack(f">I{len(values)}i", len(values), *values)


def _read_ints(r: Reader, what: str) -> tuple[int, ...]:
    return tuple(r.i32(what) for _ in range(r.count(what, 4)))


def _texts(texts: tuple[str, ...]) -> bytes:
    return struct.pack(">I", len(texts)) + b"".join(pack_text(t) for t in texts)


def _read_handles(r: Reader, what: str) -> tuple[str, ...]:
    return tuple(r.handle(what) for _ in range(r.count(what, 4)))


# Requests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolutionRequest(Body):
    """OC_RESOLUTION: empty ``indexes`` and ``types`` ask for every value."""

    handle: str
    indexes: tuple[int, ...] = ()
    types: tuple[str, ...] = ()

    def encode(self, version: Version) -> bytes:
        return pack_text(self.handle) + _ints(self.indexes) + _texts(self.types)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        handle = r.handle()
        indexes = _read_ints(r, "requested indexes")
        types = tuple(r.text("requested type") for _ in range(r.count("requested types", 4)))
        return cls(handle, indexes, types)


@dataclass(frozen=True, slots=True)
class GenericRequest(Body):
    """A request that is only a handle: get site info ("/"), home and unhome a prefix
    (the prefix handle, e.g. "0.NA/88.118"), terminate a session."""

    handle: str

    def encode(self, version: Version) -> bytes:
        return pack_text(self.handle)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls(r.handle())


@dataclass(frozen=True, slots=True)
class DeleteHandleRequest(GenericRequest):
    pass


@dataclass(frozen=True, slots=True)
class ListHandlesRequest(GenericRequest):
    """OC_LIST_HANDLES: ``handle`` is the prefix handle, e.g. "0.NA/88.118"."""


@dataclass(frozen=True, slots=True)
class ListPrefixesRequest(GenericRequest):
    """OC_LIST_HOMED_NAS: ``handle`` names the server's site; CNRI's tools send "/"."""


@dataclass(frozen=True, slots=True)
class HandleAndValues(Body):
    """A handle and a list of values: the body of creations, value changes and resolutions."""

    handle: str
    values: tuple[HandleValue, ...] = ()

    def encode(self, version: Version) -> bytes:
        return pack_text(self.handle) + encode_values(self.values)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls(r.handle(), decode_values(r))


@dataclass(frozen=True, slots=True)
class CreateHandleRequest(HandleAndValues):
    pass


@dataclass(frozen=True, slots=True)
class AddValueRequest(CreateHandleRequest):
    pass


@dataclass(frozen=True, slots=True)
class ModifyValueRequest(CreateHandleRequest):
    pass


@dataclass(frozen=True, slots=True)
class RemoveValueRequest(Body):
    handle: str
    indexes: tuple[int, ...] = ()

    def encode(self, version: Version) -> bytes:
        return pack_text(self.handle) + _ints(self.indexes)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls(r.handle(), _read_ints(r, "value indexes"))


@dataclass(frozen=True, slots=True)
class ChallengeAnswerRequest(Body):
    """OC_RESPONSE_TO_CHALLENGE: who answers (``auth_type`` "HS_SECKEY" or "HS_PUBKEY", the
    identity's handle and index) and the MAC or signature, opaque here (see protocol.wire.auth)."""

    auth_type: str
    user_id_handle: str
    user_id_index: int
    signed_response: bytes

    def encode(self, version: Version) -> bytes:
        return (
            pack_text(self.auth_type)
            + pack_text(self.user_id_handle)
            + struct.pack(">i", self.user_id_index)
            + pack_blob(self.signed_response)
        )

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        auth_type = r.text("authentication type", 256)
        handle = r.handle("identity handle")
        return cls(auth_type, handle, r.i32("identity index"), r.blob("signed response"))


@dataclass(frozen=True, slots=True)
class LoginIdSystemRequest(Body):
    """OC_LOGIN_ID_SYSTEM (2001): the identity that logs in, its handle and index, challenged
    and answered as any administrative request. Both SDKs write it so (CAICT ID-SDK
    ``MsgBytesConvertor.convertLoginIDSystemReqToBytes``, Teleinfo id-pointer-sdk
    ``MsgConverter.convertLoginIDSystemReqToBytes``); Teleinfo's leaves out the credential
    section, which a message may (``protocol.wire.message``)."""

    handle: str
    index: int

    def encode(self, version: Version) -> bytes:
        return pack_text(self.handle) + struct.pack(">i", self.index)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls(r.handle("identity handle"), r.i32("identity index"))


@dataclass(frozen=True, slots=True)
class LoginRequest(ResolutionRequest):
    """OC_LOGIN (2000), CAICT ID-SDK's password login, laid out as a resolution request
    (``MsgBytesConvertor.convertLoginReqToBytes``: handle, requested indexes, requested types)
    and answered, on success, with a resolution response's body.

    The SDK's ``login(username, password, settings)`` (2.0.3's jar, read with ``javap -c``)
    puts the user name where the handle goes, no index (a count of 0) and the password as the
    one requested "type", in clear. So the user is named as an HTTP Basic login names it,
    ``index:handle``, in the handle field; a request that does give an index names the user
    ``index``:``handle`` with the first one.
    """

    @property
    def user(self) -> str:
        """The identity the login claims, as ``index:handle`` (Authenticator.authenticate's user)."""
        return f"{self.indexes[0]}:{self.handle}" if self.indexes else self.handle

    @property
    def secret(self) -> bytes:
        return self.types[0].encode("utf-8") if self.types else b""


_DIGEST_SIZES = {1: 16, 2: 20, 3: 32}  # Common.HASH_CODE_MD5, _SHA1, _SHA256


@dataclass(frozen=True, slots=True)
class VerifyAuthRequest(Body):
    """OC_VERIFY_CHALLENGE: asks an identity's home server whether ``signed_response`` answers
    the challenge (``nonce``, ``request_digest``) for the identity ``handle``:``index``.

    CNRI writes the digest length-prefixed, which its reader takes for algorithm 0 (the
    length's first byte); ``digest_algorithm`` 1-3 is the other form, one algorithm byte
    and a digest of fixed size, which CNRI reads but never writes.
    """

    handle: str
    index: int
    nonce: bytes
    request_digest: bytes
    signed_response: bytes
    digest_algorithm: int = 0

    def encode(self, version: Version) -> bytes:
        if self.digest_algorithm:
            digest = bytes([self.digest_algorithm]) + self.request_digest
        else:
            digest = pack_blob(self.request_digest)
        head = pack_text(self.handle) + struct.pack(">i", self.index) + pack_blob(self.nonce)
        return head + digest + pack_blob(self.signed_response)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        handle, index, nonce = r.handle(), r.i32("identity index"), r.blob("nonce", 1024)
        algorithm = r.data[r.pos] if r.remaining() else -1
        if algorithm == 0:
            digest = r.blob("request digest", 1024)
        elif algorithm in _DIGEST_SIZES:
            r.pos += 1
            digest = r.take(_DIGEST_SIZES[algorithm], "request digest")
        else:
            raise WireError(f"verify request has unknown digest algorithm {algorithm}")
        return cls(handle, index, nonce, digest, r.blob("signed response"), algorithm)


@dataclass(frozen=True, slots=True)
class SessionSetupRequest(Body):
    """OC_SESSION_SETUP. CNRI counts four bytes for the 2-byte mode, so its body ends with
    two zero bytes; they are written here too and ignored on reading, as CNRI does."""

    key_exchange_mode: int
    timeout: int = 86400
    identity_handle: str = ""
    identity_index: int = -1
    public_key: bytes = b""  # CIPHER_CLIENT and DH modes
    exchange_key_handle: str = ""  # CIPHER_HDL mode
    exchange_key_index: int = -1

    def encode(self, version: Version) -> bytes:
        out = struct.pack(">Hi", self.key_exchange_mode, self.timeout) + pack_text(self.identity_handle)
        out += struct.pack(">i", self.identity_index)
        if self.key_exchange_mode in _KEY_CARRYING_MODES:
            out += pack_blob(self.public_key)
        elif self.key_exchange_mode == KEY_EXCHANGE_CIPHER_HDL:
            out += pack_text(self.exchange_key_handle) + struct.pack(">i", self.exchange_key_index)
        return out + b"\0\0"

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        mode, timeout = r.u16("key exchange mode"), r.i32("session timeout")
        identity, identity_index = r.handle("identity handle"), r.i32("identity index")
        if mode in _KEY_CARRYING_MODES:
            return cls(mode, timeout, identity, identity_index, public_key=r.blob("exchange public key"))
        if mode == KEY_EXCHANGE_CIPHER_HDL:
            key_handle = r.handle("exchange key handle")
            return cls(mode, timeout, identity, identity_index, b"", key_handle, r.i32("exchange key index"))
        return cls(mode, timeout, identity, identity_index)


@dataclass(frozen=True, slots=True)
class SessionExchangeKeyRequest(Body):
    """OC_SESSION_EXCHANGEKEY: the session key encrypted for the server; None writes an empty body."""

    encrypted_key: bytes | None

    def encode(self, version: Version) -> bytes:
        return b"" if self.encrypted_key is None else pack_blob(self.encrypted_key)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls(r.blob("encrypted session key") if r.remaining() else None)


# Successful responses --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolutionResponse(HandleAndValues):
    pass


@dataclass(frozen=True, slots=True)
class GetSiteInfoResponse(Body):
    site: Site

    def encode(self, version: Version) -> bytes:
        return encode_site(self.site)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        try:
            return cls(decode_site(r.take(r.remaining(), "site info")))
        except InvalidValue as exc:
            raise WireError(f"site info response: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class ListHandlesResponse(Body):
    handles: tuple[str, ...] = ()

    def encode(self, version: Version) -> bytes:
        return _texts(self.handles)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls(_read_handles(r, "handles"))


@dataclass(frozen=True, slots=True)
class ListPrefixesResponse(ListHandlesResponse):
    pass


@dataclass(frozen=True, slots=True)
class VerifyAuthResponse(Body):
    valid: bool

    def encode(self, version: Version) -> bytes:
        return b"\x01" if self.valid else b"\x00"

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls(bool(r.u8("verification result") & 0x01))


@dataclass(frozen=True, slots=True)
class SessionSetupResponse(Body):
    """Like the request, CNRI's body ends with two unused zero bytes."""

    key_exchange_mode: int
    data: bytes = b""

    def encode(self, version: Version) -> bytes:
        return struct.pack(">H", self.key_exchange_mode) + pack_blob(self.data) + b"\0\0"

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls(r.u16("key exchange mode"), r.blob("session data"))


@dataclass(frozen=True, slots=True)
class CreateHandleResponse(Body):
    """The created handle, which CNRI servers return when they minted its suffix; else empty."""

    handle: str | None = None

    def encode(self, version: Version) -> bytes:
        return b"" if self.handle is None else pack_text(self.handle)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls(r.handle() if r.remaining() else None)


@dataclass(frozen=True, slots=True)
class GenericResponse(Body):
    """A success with nothing to say (delete, add/remove/modify value, home/unhome, session end)."""

    def encode(self, version: Version) -> bytes:
        return b""

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls()


# Other responses ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceReferralResponse(Body):
    """RC_SERVICE_REFERRAL / RC_PREFIX_REFERRAL: the service handle to ask, and optionally its
    HS_SITE/HS_SERV values so the client need not resolve it (None: the count is absent)."""

    handle: str
    values: tuple[HandleValue, ...] | None = None

    def encode(self, version: Version) -> bytes:
        return pack_text(self.handle) + (b"" if self.values is None else encode_values(self.values))

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        handle = r.handle("referral handle")
        return cls(handle, decode_values(r) if r.remaining() else None)


@dataclass(frozen=True, slots=True)
class ChallengeResponse(Body):
    """RC_AUTHENTICATION_NEEDED: the nonce. The digest of the challenged request travels as the
    message's request digest (and, before 2.1, after the nonce; protocol.wire.message handles both)."""

    nonce: bytes

    def encode(self, version: Version) -> bytes:
        return pack_blob(self.nonce)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        return cls(r.blob("nonce", 1024))


@dataclass(frozen=True, slots=True)
class ErrorResponse(Body):
    message: str = ""

    def encode(self, version: Version) -> bytes:
        return pack_text(self.message)

    @classmethod
    def decode(cls, r: Reader, version: Version) -> Self:
        old = version[0] == 5 or version == (2, 0)
        if old and r.remaining() <= 4:  # 2.0 servers could leave the message out
            return cls("")
        return cls(r.blob("error message").decode("utf-8", "replace"))


REQUEST_BODIES: dict[OpCode, type[Body]] = {
    OpCode.RESOLUTION: ResolutionRequest,
    OpCode.GET_SITE_INFO: GenericRequest,
    OpCode.CREATE_HANDLE: CreateHandleRequest,
    OpCode.DELETE_HANDLE: DeleteHandleRequest,
    OpCode.ADD_VALUE: AddValueRequest,
    OpCode.REMOVE_VALUE: RemoveValueRequest,
    OpCode.MODIFY_VALUE: ModifyValueRequest,
    OpCode.LIST_HANDLES: ListHandlesRequest,
    OpCode.CHALLENGE_RESPONSE: ChallengeAnswerRequest,
    OpCode.VERIFY_RESPONSE: VerifyAuthRequest,
    OpCode.HOME_PREFIX: GenericRequest,
    OpCode.UNHOME_PREFIX: GenericRequest,
    OpCode.LIST_HOMED_PREFIXES: ListPrefixesRequest,
    OpCode.SESSION_SETUP: SessionSetupRequest,
    OpCode.SESSION_TERMINATE: GenericRequest,
    OpCode.SESSION_EXCHANGE_KEY: SessionExchangeKeyRequest,
    OpCode.LOGIN: LoginRequest,
    OpCode.LOGIN_ID_SYSTEM: LoginIdSystemRequest,
}

SUCCESS_BODIES: dict[OpCode, type[Body]] = {
    OpCode.RESOLUTION: ResolutionResponse,
    OpCode.GET_SITE_INFO: GetSiteInfoResponse,
    OpCode.CREATE_HANDLE: CreateHandleResponse,
    OpCode.DELETE_HANDLE: GenericResponse,
    OpCode.ADD_VALUE: GenericResponse,
    OpCode.REMOVE_VALUE: GenericResponse,
    OpCode.MODIFY_VALUE: GenericResponse,
    OpCode.LIST_HANDLES: ListHandlesResponse,
    OpCode.VERIFY_RESPONSE: VerifyAuthResponse,
    OpCode.HOME_PREFIX: GenericResponse,
    OpCode.UNHOME_PREFIX: GenericResponse,
    OpCode.LIST_HOMED_PREFIXES: ListPrefixesResponse,
    OpCode.SESSION_SETUP: SessionSetupResponse,
    OpCode.SESSION_TERMINATE: GenericResponse,
    OpCode.SESSION_EXCHANGE_KEY: GenericResponse,
    OpCode.LOGIN: ResolutionResponse,  # the SDK reads a handle and values; the node sends none
    OpCode.LOGIN_ID_SYSTEM: GenericResponse,  # both SDKs ignore the body
}
