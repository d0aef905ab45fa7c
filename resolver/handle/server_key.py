"""This node's Handle server key: made at first start, kept in the data directory.

CNRI's clients check a certified answer (session setup, for one) against the public key
that this server's entry in its HS_SITE carries, as every Handle server's does. One RSA
key of 2048 bits per node, in PKCS#8 PEM, readable by the node's user only.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from protocol.wire.keys import encode_public_key
from registry.datadir import make_private_once

KEY_FILE = "handle-server-key.pem"


class ServerKeyError(Exception):
    """The key file cannot be made or read; the message names the setting and the path."""


def _new_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ensure_key(data_dir: Path) -> Path:
    """The key file, made now if there is none (atomically, mode 0600)."""
    path = data_dir / KEY_FILE
    make_private_once(path, _new_pem, ServerKeyError, "data_dir", "the Handle server key ")
    return path


def load_key(data_dir: Path) -> rsa.RSAPrivateKey:
    path = ensure_key(data_dir)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ServerKeyError(f"setting 'data_dir': cannot read the Handle server key {path}: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ServerKeyError(f"setting 'data_dir': {path} does not hold an RSA private key")
    return key


def public_key_bytes(key: rsa.RSAPrivateKey) -> bytes:
    """The public key in handle.net's encoding, as an HS_SITE server entry carries it."""
    return encode_public_key(key.public_key())
