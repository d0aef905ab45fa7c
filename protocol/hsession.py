"""Diffie-Hellman session keys of the Handle protocol, as CNRI's server agrees them.

A client that sets a session up in mode KEY_EXCHANGE_DH sends its DH public key in
handle.net's encoding (``"DH_PUB_KEY"``, two reserved bytes, then y, p and g as
length-prefixed big-endian numbers). The server makes a key pair over the same group and
answers with a 4-byte key algorithm and its own public key (before protocol 2.4 the key
alone, and DES implied). Both derive the session key from the shared secret as Java's
``KeyAgreement.generateSecret(algorithm)`` does: the secret is big-endian, as long as p,
and a DES key is its first 8 bytes with odd parity (``DESKeySpec`` / ``DESKey``).

Only DES keys are made here, which is what CNRI 7.3's server chose in the captures; the
session key only ever MACs session messages, never encrypts them on this node.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import warnings
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import dh
from cryptography.utils import CryptographyDeprecationWarning

from protocol.errors import InvalidValue, SessionFailed
from protocol.hskeys import Reader, java_bytes, pack

DH_PUBLIC = b"DH_PUB_KEY"
ENCRYPT_ALG_DES = 1  # HdlSecurityProvider.ENCRYPT_ALG_*
MIN_GROUP_BITS = 1024  # CNRI's clients use RFC 2409's 1024-bit group
MAX_GROUP_BITS = 4096  # a larger group is no client's, and makes every setup slow


@dataclass(frozen=True, slots=True)
class DhPublic:
    y: int
    p: int
    g: int


def decode_dh_public(data: bytes) -> DhPublic:
    r = Reader(data, "the DH public key")
    if r.bytes() != DH_PUBLIC:
        raise InvalidValue("the session's exchange key is not a DH public key")
    r.take(2)
    y, p, g = r.number(), r.number(), r.number()
    return DhPublic(y, p, g)


def encode_dh_public(key: DhPublic) -> bytes:
    return pack(DH_PUBLIC) + b"\0\0" + pack(java_bytes(key.y), java_bytes(key.p), java_bytes(key.g))


def _checked(client: DhPublic) -> None:
    if not MIN_GROUP_BITS <= client.p.bit_length() <= MAX_GROUP_BITS or client.p % 2 == 0:
        raise SessionFailed(f"a DH group of {client.p.bit_length()} bits is not one this node agrees keys in")
    if not 1 < client.g < client.p - 1 or not 1 < client.y < client.p - 1:
        raise SessionFailed("the DH public key is out of its group's range")


def des_parity(key: bytes) -> bytes:
    """Each byte with its low bit set so that it has an odd number of ones (``DESKey``)."""
    return bytes((b & 0xFE) | (bin(b >> 1).count("1") + 1) % 2 for b in key)


def agree(client: DhPublic) -> tuple[DhPublic, bytes]:
    """The server's public key and the session key (DES) agreed with ``client``."""
    _checked(client)
    # Finite-field DH is what the protocol defines; cryptography's advice to move off it is
    # for those who can choose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            group = dh.DHParameterNumbers(client.p, client.g)
            private = group.parameters().generate_private_key()
            shared = private.exchange(dh.DHPublicNumbers(client.y, group).public_key())
        except ValueError as exc:
            raise SessionFailed(f"cannot agree a DH key: {exc}") from None
    secret = int.from_bytes(shared, "big").to_bytes((client.p.bit_length() + 7) // 8, "big")
    server = private.public_key().public_numbers().y
    return DhPublic(server, client.p, client.g), des_parity(secret[:8])


def setup_response_data(server: DhPublic, version: tuple[int, int]) -> bytes:
    """The SessionSetupResponse's data: the key algorithm (from 2.4) and the server's DH key."""
    legacy = version < (2, 4)
    return encode_dh_public(server) if legacy else ENCRYPT_ALG_DES.to_bytes(4, "big") + encode_dh_public(server)


# Session MACs ------------------------------------------------------------------------------

CREDENTIAL_MAC = b"HS_MAC"
MAC_HASH_SHA1 = 2  # Common.DEFAULT_HASH_CODE: what CNRI MACs with; its reader takes any of these
_MAC_HASHES = {1: "md5", 2: "sha1", 3: "sha256"}


def session_mac(
    key: bytes, header_and_body: bytes, *, version: tuple[int, int], session_id: int, request_id: int, counter: int,
    hash_code: int = MAC_HASH_SHA1,
) -> bytes:  # fmt: skip
    """``AbstractMessage.signMessage(secretKey)``'s digest: from 2.5 it binds the version, the
    session, request and counter ids as well as the message's header and body."""
    if version >= (2, 5):
        bound = bytes(version) + struct.pack(">iii", session_id, request_id, counter) + header_and_body
    else:
        bound = header_and_body
    return hashlib.new(_MAC_HASHES[hash_code], key + bound + key).digest()


def mac_credential(
    key: bytes, header_and_body: bytes, *, version: tuple[int, int], session_id: int, request_id: int, counter: int
) -> bytes:
    """The credential section's content for a message MACed with the session key."""
    mac = session_mac(
        key, header_and_body, version=version, session_id=session_id, request_id=request_id, counter=counter
    )
    section = pack(bytes([MAC_HASH_SHA1]), mac)
    return b"\0\0\0\0" + pack(b"") + struct.pack(">i", counter) + pack(CREDENTIAL_MAC, section)


def verify_mac_credential(
    key: bytes, credential: bytes, header_and_body: bytes, *, version: tuple[int, int], session_id: int, request_id: int
) -> bool:
    """True when ``credential`` is a session MAC of the message under ``key``; malformed is False."""
    r = Reader(credential, "the credential")
    try:
        r.take(4)
        r.bytes()
        counter = r.int4()
        if r.bytes() != CREDENTIAL_MAC:
            return False
        section = Reader(r.bytes(), "the MAC")
        hash_code, mac = section.bytes(), section.bytes()
    except InvalidValue:
        return False
    if len(hash_code) != 1 or hash_code[0] not in _MAC_HASHES:
        return False
    expected = session_mac(
        key, header_and_body, version=version, session_id=session_id, request_id=request_id, counter=counter,
        hash_code=hash_code[0],
    )  # fmt: skip
    return hmac.compare_digest(expected, mac)
