"""CNRI HANDLE.NET key encodings, and the test-only keys the CNRI harness uses.

CNRI stores keys in its own length-prefixed format (net.handle.hdllib.Util
getBytesFromPrivateKey / getBytesFromPublicKey); HS_PUBKEY values carry the public
form on the wire, so idnode needs it too. Writing the keys here, rather than with
hdl-keygen, keeps the setup non-interactive and gives a PEM twin of every key that
Python tests can verify signatures with.
"""

from __future__ import annotations

import struct
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from protocol.wire.keys import DSAPrivateKey, DSAPublicKey, generate_dsa_key

SECRET_KEY = "idnode-test-secret"
PERM_ALL = 0x0FFF


def _jint(n: int) -> bytes:
    """BigInteger.toByteArray: minimal two's complement, so a sign byte when needed."""
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def cnri_private_key(key: DSAPrivateKey | rsa.RSAPrivateKey) -> bytes:
    """The unencrypted private key file: int ENCRYPT_NONE (1) then the key encoding."""
    if isinstance(key, DSAPrivateKey):
        nums = key.private_numbers()
        p = nums.public_numbers.parameter_numbers
        body = b"".join(lp(x) for x in (b"DSA_PRIV_KEY", *map(_jint, (nums.x, p.p, p.q, p.g))))
    else:
        r = key.private_numbers()
        ints = (r.public_numbers.n, r.public_numbers.e, r.d, r.p, r.q, r.dmp1, r.dmq1, r.iqmp)
        body = b"".join(lp(x) for x in (b"RSA_PRIVCRT_KEY", *map(_jint, ints)))
    return struct.pack(">I", 1) + body


def cnri_public_key(key: DSAPublicKey | rsa.RSAPublicKey) -> bytes:
    """The HS_PUBKEY value data (and pubkey.bin): type, 2 reserved bytes, numbers."""
    if isinstance(key, DSAPublicKey):
        n = key.public_numbers()
        p = n.parameter_numbers
        ints = (p.q, p.p, p.g, n.y)
        return lp(b"DSA_PUB_KEY") + b"\0\0" + b"".join(lp(_jint(i)) for i in ints)
    r = key.public_numbers()
    return lp(b"RSA_PUB_KEY") + b"\0\0" + lp(_jint(r.e)) + lp(_jint(r.n))


def admin_record(handle: str, index: int, perms: int = PERM_ALL) -> bytes:
    """HS_ADMIN value data: int2 permissions, the admin handle, its index."""
    return struct.pack(">H", perms) + lp(handle.encode()) + struct.pack(">I", index)


def make_keys(keys: Path) -> None:
    """Create test-only keys once; later runs (and committed vectors) reuse them."""
    keys.mkdir(parents=True, exist_ok=True)
    if (keys / "server_dsa_priv.bin").exists():
        return
    (keys / "secret_key.txt").write_text(SECRET_KEY + "\n")
    pairs: dict[str, DSAPrivateKey | rsa.RSAPrivateKey] = {
        "server_dsa": generate_dsa_key(1024),
        "admin_dsa": generate_dsa_key(1024),
        "admin_rsa": rsa.generate_private_key(65537, 2048),
    }
    for name, key in pairs.items():
        (keys / f"{name}_priv.bin").write_bytes(cnri_private_key(key))
        (keys / f"{name}_pub.bin").write_bytes(cnri_public_key(key.public_key()))
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (keys / f"{name}_priv.pem").write_bytes(pem)
