"""Server signatures on Handle responses (HS_SIGNED credentials), as CNRI's server writes them.

A client that sets CERTIFY on a request (CNRI's client does for session setup) checks the
answer's signature with the public key the server's HS_SITE entry carries. The credential
section holds: version 0, reserved 0, flags 0, an empty signer handle, the session counter,
the type ``HS_SIGNED``, and a section with the hash's name and the signature. What is
signed is the message's header and body, after (from 2.6) the envelope's versions and ids
that CNRI binds in (``AbstractMessage.signMessage``, including 2.6's overlapping writes).
SHA-1 below 2.7, SHA-256 from it.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from protocol.errors import InvalidValue
from protocol.wire.keys import DSAPrivateKey, PublicKey, pack, reader
from protocol.wire.sm2 import SM2PublicKey

CREDENTIAL_SIGNED = b"HS_SIGNED"
_HASH_IDS: dict[bytes, type[hashes.SHA1] | type[hashes.SHA256]] = {
    b"SHA1": hashes.SHA1,
    b"SHA-1": hashes.SHA1,
    b"SHA-256": hashes.SHA256,
    b"SHA256": hashes.SHA256,
}

SigningKey = rsa.RSAPrivateKey | DSAPrivateKey


def credential(kind: bytes, counter: int, section: bytes) -> bytes:
    """A credential section's content: version, reserved and flags (0), an empty signer, the
    session counter, the credential's type (``HS_SIGNED``, ``HS_MAC``) and its section."""
    return b"\0\0\0\0" + pack(b"") + struct.pack(">i", counter) + pack(kind, section)


def read_credential(data: bytes) -> tuple[int, bytes, tuple[bytes, bytes]]:
    """What ``credential`` wrote: the counter, the type, and the section's two fields (the
    hash's name, then the signature or MAC); InvalidValue when it is not that."""
    r = reader(data, "the credential")
    r.take(4, "version, reserved and flags")
    r.blob("signer")
    counter = r.i32("session counter")
    kind = r.blob("credential type")
    section = reader(r.blob("credential section"), "the credential's section")
    return counter, kind, (section.blob("hash id"), section.blob("signature"))


def bound_prefix(
    version: tuple[int, int], suggest: tuple[int, int], session_id: int, request_id: int, counter: int = 0
) -> bytes:
    """The envelope fields CNRI signs before the header and body, by version."""
    if version < (2, 6):
        return b""
    ids = struct.pack(">iii", session_id, request_id, counter)
    if version < (2, 7):  # 2.6 wrote each int at offset 4 of the same 14 bytes
        out = bytearray(14)
        out[0:2] = bytes(version)
        out[2:6] = ids[0:4]
        out[4:8] = ids[4:8]
        out[4:8] = ids[8:12]
        return bytes(out)
    return bytes(version) + (bytes(suggest) if version >= (2, 8) else b"") + ids


def signed_credential(key: SigningKey, header_and_body: bytes, prefix: bytes, version: tuple[int, int]) -> bytes:
    """The credential section's content: ``header_and_body`` signed with the server's key."""
    algorithm: hashes.HashAlgorithm = hashes.SHA256() if version >= (2, 7) else hashes.SHA1()
    hash_id = b"SHA-256" if version >= (2, 7) else b"SHA1"
    message = prefix + header_and_body
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(message, padding.PKCS1v15(), algorithm)
    else:
        signature = key.sign(message, algorithm)
    return credential(CREDENTIAL_SIGNED, 0, pack(hash_id, signature))


def verify_signed_credential(key: PublicKey, credential: bytes, header_and_body: bytes, prefix: bytes) -> bool:
    """True when ``credential`` is a server signature of the message (what a certifying client checks).

    A server signs with RSA or DSA (CNRI's, and this node's key); an SM2 key never verifies here."""
    try:
        _, kind, (hash_id, signature) = read_credential(credential)
        if kind != CREDENTIAL_SIGNED or isinstance(key, SM2PublicKey):
            return False
        algorithm = _HASH_IDS[hash_id]()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, prefix + header_and_body, padding.PKCS1v15(), algorithm)
        else:
            key.verify(signature, prefix + header_and_body, algorithm)
        return True
    except (InvalidValue, KeyError, InvalidSignature):
        return False
