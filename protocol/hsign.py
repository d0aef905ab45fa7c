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
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa

CREDENTIAL_SIGNED = b"HS_SIGNED"
_HASH_IDS: dict[bytes, type[hashes.SHA1] | type[hashes.SHA256]] = {
    b"SHA1": hashes.SHA1,
    b"SHA-1": hashes.SHA1,
    b"SHA-256": hashes.SHA256,
    b"SHA256": hashes.SHA256,
}

SigningKey = rsa.RSAPrivateKey | dsa.DSAPrivateKey


def _pack(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


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
    section = _pack(hash_id) + _pack(signature)
    return b"\0\0\0\0" + _pack(b"") + struct.pack(">i", 0) + _pack(CREDENTIAL_SIGNED) + _pack(section)


def verify_signed_credential(
    key: rsa.RSAPublicKey | dsa.DSAPublicKey, credential: bytes, header_and_body: bytes, prefix: bytes
) -> bool:
    """True when ``credential`` is a server signature of the message (what a certifying client checks)."""
    try:
        pos = 4
        pos += 4 + struct.unpack_from(">i", credential, pos)[0]  # the empty signer
        pos += 4  # session counter
        n = struct.unpack_from(">i", credential, pos)[0]
        if credential[pos + 4 : pos + 4 + n] != CREDENTIAL_SIGNED:
            return False
        pos += 4 + n + 4  # the type, then the section's length
        n = struct.unpack_from(">i", credential, pos)[0]
        algorithm = _HASH_IDS[credential[pos + 4 : pos + 4 + n]]()
        pos += 4 + n
        n = struct.unpack_from(">i", credential, pos)[0]
        signature = credential[pos + 4 : pos + 4 + n]
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, prefix + header_and_body, padding.PKCS1v15(), algorithm)
        else:
            key.verify(signature, prefix + header_and_body, algorithm)
        return True
    except (struct.error, KeyError, InvalidSignature):
        return False
