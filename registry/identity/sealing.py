"""The node's secret key: protocol key material sealed at rest (AES-256-GCM), kept outside the store.

A stored HS_SECKEY is the Handle protocol's MAC key and a login digest gives SNMS's dated
password, so neither may lie in the store in clear: a copy of the store or a backup would be a
set of credentials. Both are sealed under a key in its own file (``secret_key_file``, default
``data_dir/secret-key``), made 0600 at first start and never copied by ``idnode backup``.

The file holds one key per line in base64, the first the current one; further lines are older
keys, kept to open what they sealed (``idnode rotate-secret-key`` adds a key, reseals, then
drops the old). Each sealed form names its key by an id (8 hex digits of a hash of the key),
so a value sealed under a key this node does not hold is told apart from a damaged one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from registry.datadir import make_private_once, write_private

KEY_FILE = "secret-key"
KEY_BYTES = 32
NONCE_BYTES = 12
SETTING = "secret_key_file"


class SecretKeyError(Exception):
    """The secret key file cannot be made or read; the message names the setting and the path."""


class KeyMissing(Exception):
    """A value sealed under a key this node does not hold (a store moved without its key file)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"sealed under secret key {key_id}, which this node's {SETTING} does not hold "
            "(a store copied or restored without its key file? give the node that file)"
        )
        self.key_id = key_id


def _derive(key: bytes, purpose: bytes) -> bytes:
    return hmac.digest(key, b"idnode-secret-key\0" + purpose, "sha256")


class Keyring:
    """The node's keys by id: the current one seals, any of them opens what it sealed."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys or any(len(k) != KEY_BYTES for k in keys):
            raise ValueError(f"a keyring holds one or more keys of {KEY_BYTES} bytes")
        self.keys = list(keys)
        self._by_id = {self.key_id(k): k for k in keys}
        # Each key's cipher, made once: deriving and keying it cost more than opening a value,
        # which every Basic login does.
        self._aead = {key_id: AESGCM(_derive(k, b"seal")) for key_id, k in self._by_id.items()}
        self.current = self.key_id(keys[0])

    @staticmethod
    def key_id(key: bytes) -> str:
        return _derive(key, b"id")[:4].hex()

    @classmethod
    def generate(cls) -> Keyring:
        return cls([os.urandom(KEY_BYTES)])

    def ids(self) -> list[str]:
        return list(self._by_id)

    def holds(self, key_id: str) -> bool:
        return key_id in self._by_id

    def seal(self, plain: bytes, context: bytes) -> str:
        """``v1.<key id>.<base64 of nonce and ciphertext>``, bound to ``context``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[self.current].encrypt(nonce, plain, context)
        return f"v1.{self.current}.{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, context: bytes) -> bytes:
        """The plain bytes; KeyMissing for an unknown key, ValueError for a damaged value."""
        version, key_id, body = key_of(sealed), sealed[3:11], sealed[12:]
        if version is None:
            raise ValueError("not a sealed value")
        if key_id not in self._by_id:
            raise KeyMissing(key_id)
        try:
            raw = base64.b64decode(body, validate=True)
            return self._aead[key_id].decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context)
        except (binascii.Error, InvalidTag, ValueError):
            raise ValueError(f"a value sealed under key {key_id} does not open: damaged") from None

    def lookup_ids(self, name: bytes) -> list[str]:
        """Keyed names of ``name`` under each key, the current first: found without revealing it."""
        return [self.lookup_id(name, key_id) for key_id in self._by_id]

    def lookup_id(self, name: bytes, key_id: str | None = None) -> str:
        key_id = key_id or self.current
        return f"v1.{key_id}.{hmac.digest(_derive(self._by_id[key_id], b'lookup'), name, 'sha256').hex()}"


def key_of(text: str) -> str | None:
    """The key id a sealed form or lookup id names, or None for anything else."""
    if len(text) > 12 and text.startswith("v1.") and text[11] == ".":
        key_id = text[3:11]
        if all(c in "0123456789abcdef" for c in key_id):
            return key_id
    return None


# The key file ---------------------------------------------------------------------------


def _encode(keys: list[bytes]) -> bytes:
    return b"".join(base64.b64encode(k) + b"\n" for k in keys)


def ensure_file(path: Path) -> bool:
    """Make the key file (random, 0600, atomically) if there is none; True when made now."""
    return make_private_once(path, lambda: _encode([os.urandom(KEY_BYTES)]), SecretKeyError, SETTING)


def load_file(path: Path) -> Keyring:
    try:
        lines = path.read_bytes().split()
    except OSError as exc:
        raise SecretKeyError(f"setting '{SETTING}': cannot read {path}: {exc.strerror or exc}") from None
    try:
        return Keyring([base64.b64decode(line, validate=True) for line in lines])
    except (binascii.Error, ValueError):
        raise SecretKeyError(
            f"setting '{SETTING}': {path} must hold one or more keys of {KEY_BYTES} random bytes in base64, "
            "one a line, the current first"
        ) from None


def write_file(path: Path, keyring: Keyring) -> None:
    try:
        write_private(path, _encode(keyring.keys))
    except OSError as exc:
        raise SecretKeyError(f"setting '{SETTING}': cannot write {path}: {exc.strerror or exc}") from None
