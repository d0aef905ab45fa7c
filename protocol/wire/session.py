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

Keys are agreed only in known groups: the 1024-bit group CNRI's clients send (RFC 2409's
second Oakley group) and RFC 3526's 1536- and 2048-bit MODP groups, all safe primes with
g = 2. Larger groups are refused too: the exponentiation runs in Python's ``pow``, which holds
the interpreter lock (a 4096-bit setup stalled resolution on the same worker for up to ~180 ms
under a burst), and no client this node serves uses one. Checking a group a client made up
costs hundreds of milliseconds of CPU (OpenSSL's safe-prime test), which an anonymous client
could ask for again and again; known groups need no check at all. The client's public value
is checked to lie in 1 < y < p - 1, which with a safe prime leaves only the large subgroups.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass, replace

from protocol.errors import InvalidValue, SessionFailed
from protocol.wire.keys import java_bytes, number, pack, reader
from protocol.wire.sign import credential, read_credential

DH_PUBLIC = b"DH_PUB_KEY"
ENCRYPT_ALG_DES = 1  # HdlSecurityProvider.ENCRYPT_ALG_*


# The known groups (RFC 2409 section 6.2, RFC 3526), p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) pi) + k).
_MODP_1024 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)
_MODP_1536 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
    16,
)
_MODP_2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)


@dataclass(frozen=True, slots=True)
class DhGroup:
    name: str
    p: int
    g: int
    exponent_bits: int  # the private exponent's size: at least twice the group's strength


KNOWN_GROUPS = (
    DhGroup("RFC 2409 group 2 (1024-bit, CNRI's)", _MODP_1024, 2, 256),
    DhGroup("RFC 3526 group 5 (1536-bit)", _MODP_1536, 2, 256),
    DhGroup("RFC 3526 group 14 (2048-bit)", _MODP_2048, 2, 256),
)
_BY_NUMBERS = {(group.p, group.g): group for group in KNOWN_GROUPS}


@dataclass(frozen=True, slots=True)
class DhPublic:
    y: int
    p: int
    g: int


def decode_dh_public(data: bytes) -> DhPublic:
    subject = "the DH public key"
    r = reader(data, subject)
    if r.blob("key type") != DH_PUBLIC:
        raise InvalidValue("the session's exchange key is not a DH public key")
    r.take(2, "flags")
    y, p, g = number(r, subject), number(r, subject), number(r, subject)
    return DhPublic(y, p, g)


def encode_dh_public(key: DhPublic) -> bytes:
    return pack(DH_PUBLIC) + b"\0\0" + pack(java_bytes(key.y), java_bytes(key.p), java_bytes(key.g))


def known_group(client: DhPublic) -> DhGroup:
    """The known group ``client``'s key is in, its public value checked to be in range (cheap)."""
    group = _BY_NUMBERS.get((client.p, client.g))
    if group is None:
        accepted = "; ".join(g.name for g in KNOWN_GROUPS)
        raise SessionFailed(
            f"a DH group of {client.p.bit_length()} bits that is not a known one; this node agrees keys only "
            f"in these groups, g = 2: {accepted}"
        )
    if not 1 < client.y < client.p - 1:
        raise SessionFailed("the DH public key is out of its group's range")
    return group


def des_parity(key: bytes) -> bytes:
    """Each byte with its low bit set so that it has an odd number of ones (``DESKey``)."""
    return bytes((b & 0xFE) | (bin(b >> 1).count("1") + 1) % 2 for b in key)


def agree(client: DhPublic) -> tuple[DhPublic, bytes]:
    """The server's public key and the session key (DES) agreed with ``client``.

    Two modular exponentiations of a few milliseconds at most (2048 bits, a 256-bit
    exponent); the caller runs this off the event loop. Call ``known_group`` first: an
    unknown group is refused here too, but only after the caller has paid for a thread."""
    group = known_group(client)
    private = secrets.randbits(group.exponent_bits) | 1 << (group.exponent_bits - 1)
    server = pow(group.g, private, group.p)
    shared = pow(client.y, private, group.p)
    secret = shared.to_bytes((group.p.bit_length() + 7) // 8, "big")
    return DhPublic(server, group.p, group.g), des_parity(secret[:8])


def setup_response_data(server: DhPublic, version: tuple[int, int]) -> bytes:
    """The SessionSetupResponse's data: the key algorithm (from 2.4) and the server's DH key."""
    legacy = version < (2, 4)
    return encode_dh_public(server) if legacy else ENCRYPT_ALG_DES.to_bytes(4, "big") + encode_dh_public(server)


# Session MACs ------------------------------------------------------------------------------
#
# How a message is MACed with the session key depends on its version, as CNRI 9's
# AbstractMessage.signMessage/verifyMessage say:
# - before 2.5, the keyed hash H(key || header and body || key), hash named by a code byte;
# - 2.5 and 2.6, what CNRI 7.3's code computed, which CNRI 9 keeps as
#   ``brokenTwoFiveTwoSixSignature``: it means to bind the version and the session, request
#   and counter ids, but overwrites them (Java's Encoder.writeInt returns 4, not the new
#   offset), so it hashes the key's first 4 bytes, header and body, the key and zeros;
# - from 2.7, HMAC-SHA256 over the version (and from 2.8 the suggested version), the three
#   ids, and header and body.

CREDENTIAL_MAC = b"HS_MAC"
HASH_SHA1 = b"\x02"  # Common.HASH_CODE_SHA1, as one byte
HMAC_SHA256 = b"HMAC-SHA256"
_CODES = {1: "md5", 2: "sha1", 3: "sha256"}
_NAMES = {b"SHA1": "sha1", b"SHA-1": "sha1", b"SHA256": "sha256", b"SHA-256": "sha256", b"MD5": "md5"}
_HMACS = {b"HMACSHA1": "sha1", b"HMACSHA256": "sha256"}


@dataclass(frozen=True, slots=True)
class MacScope:
    """What a session MAC binds besides the header and body: the message's ids and versions."""

    version: tuple[int, int]
    suggest: tuple[int, int]
    session_id: int
    request_id: int
    counter: int


def mac_hash_for(version: tuple[int, int]) -> bytes:
    """The hash id CNRI's sender names for a session MAC of this version."""
    return HMAC_SHA256 if version >= (2, 7) else HASH_SHA1


def _hash_name(hash_id: bytes) -> str | None:
    if len(hash_id) == 1:
        return _CODES.get(hash_id[0])
    return _NAMES.get(hash_id.upper())


def session_mac(key: bytes, header_and_body: bytes, scope: MacScope, hash_id: bytes) -> bytes | None:
    """The MAC of a message with the session key, or None for a hash id CNRI does not define."""
    hmac_name = _HMACS.get(bytes(c for c in hash_id.upper() if c not in b"-_ "))
    if hmac_name is not None:
        bound = bytes(scope.version) + (bytes(scope.suggest) if scope.version >= (2, 8) else b"")
        bound += struct.pack(">iii", scope.session_id, scope.request_id, scope.counter) + header_and_body
        return hmac.digest(key, bound, hmac_name)
    name = _hash_name(hash_id)
    if name is None:
        return None
    if scope.version < (2, 5):
        return hashlib.new(name, key + header_and_body + key).digest()
    broken = key[:4] + header_and_body + key + bytes(len(key) + 10)  # see above: CNRI 7.3's layout
    return hashlib.new(name, broken).digest()


def mac_credential(key: bytes, header_and_body: bytes, scope: MacScope) -> bytes:
    """The credential section's content for a message MACed with the session key."""
    hash_id = mac_hash_for(scope.version)
    mac = session_mac(key, header_and_body, scope, hash_id)
    assert mac is not None
    return credential(CREDENTIAL_MAC, scope.counter, pack(hash_id, mac))


def verify_mac_credential(key: bytes, credential: bytes, header_and_body: bytes, scope: MacScope) -> bool:
    """True when ``credential`` is a session MAC of the message under ``key``; malformed is False.

    The counter is the credential's own (``scope.counter`` is ignored)."""
    try:
        counter, kind, (hash_id, mac) = read_credential(credential)
    except InvalidValue:
        return False
    if kind != CREDENTIAL_MAC:
        return False
    expected = session_mac(key, header_and_body, replace(scope, counter=counter), hash_id)
    return expected is not None and hmac.compare_digest(expected, mac)
