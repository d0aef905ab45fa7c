"""The node China's SDKs were captured against, and their test-only keys.

tests.vectors.make_sdk_vectors runs CAICT's ID-SDK and Teleinfo's id-pointer-sdk against a
node set up here, and tests/integration/test_sdk_replay.py replays the captures against a
fresh node set up the same way, so both read the records from one place.

The node prefix is 88.118 (tests.support.nodeproc). Through the REST API, as the node admin,
it gets the enterprise prefix ``0.NA/88.118.22`` whose HS_ADMIN grants everything to the
group ``200:88.118.22/ADMIN``, and that identity handle: HS_SECKEY at 300, a DSA HS_PUBKEY at
301, an RSA one at 302 (handle.net's key encoding) and an SM2 one at 303 (the PEM text
id-pointer's ``ValueHelper.newIdisPublicKeyValue`` stores), listed in its HS_VLIST at 200.
``88.118.22/42`` is the handle the SDKs resolve.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.cnri_keys import cnri_private_key, cnri_public_key
from protocol.wire import der, sm2
from protocol.wire.keys import OID_EC_PUBLIC_KEY, OID_SM2, generate_dsa_key, sm2_pem
from tests.support.nodeproc import ADMIN, Node

PREFIX = "88.118.22"
ADMIN_HANDLE = f"{PREFIX}/ADMIN"
EXISTING = f"{PREFIX}/42"
SECRET = "idnode-sdk-test-secret"  # HS_SECKEY at 300, test-only
INDEXES = {"secret": 300, "dsa": 301, "rsa": 302, "sm2": 303}
ALL_PERMS = "111111111111"
OCTET_STRING = 0x04


def handle_for(sdk: str, login: str) -> str:
    """The handle a scenario writes: one per SDK and login, so scenarios never meet."""
    return f"{PREFIX}/{sdk.upper()}-{login.upper()}"


def sm2_private_pem(key: sm2.SM2PrivateKey) -> bytes:
    """PKCS#8 as BouncyCastle writes an SM2 key (hutool's ``SecureUtil.generateKeyPair("SM2")``):
    id-ecPublicKey on sm2p256v1, an ECPrivateKey with its public point and no parameters."""
    point = key.public_key().point_bytes()
    ec_private = der.sequence(
        der.integer(1), der.tlv(OCTET_STRING, key.d.to_bytes(32, "big")), der.tlv(0xA1, der.bit_string(point))
    )
    algorithm = der.sequence(der.oid(OID_EC_PUBLIC_KEY), der.oid(OID_SM2))
    pkcs8 = der.sequence(der.integer(0), algorithm, der.tlv(OCTET_STRING, ec_private))
    body = base64.encodebytes(pkcs8).decode()
    return f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n".encode()


def sm2_private_key(pem: bytes) -> sm2.SM2PrivateKey:
    """The key ``sm2_private_pem`` wrote (its d is the only 32-byte OCTET STRING after the OIDs)."""
    pkcs8 = base64.b64decode(b"".join(line for line in pem.splitlines() if not line.startswith(b"-----")))
    at = pkcs8.index(der.oid(OID_SM2)) + len(der.oid(OID_SM2))
    at = pkcs8.index(bytes([OCTET_STRING, 32]), at) + 2
    return sm2.SM2PrivateKey(int.from_bytes(pkcs8[at : at + 32], "big"))


def make_keys(keys: Path) -> None:
    """Create the test-only keys once; later captures reuse them, so old vectors still verify."""
    keys.mkdir(parents=True, exist_ok=True)
    if (keys / "secret_key.txt").exists():
        return
    (keys / "secret_key.txt").write_text(SECRET + "\n")
    for name, key in (("admin_dsa", generate_dsa_key(1024)), ("admin_rsa", rsa.generate_private_key(65537, 2048))):
        (keys / f"{name}_priv.bin").write_bytes(cnri_private_key(key))
        (keys / f"{name}_pub.bin").write_bytes(cnri_public_key(key.public_key()))
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (keys / f"{name}_priv.pem").write_bytes(pem)
    sm2_key = sm2.generate_private_key()
    (keys / "admin_sm2_priv.pem").write_bytes(sm2_private_pem(sm2_key))
    (keys / "admin_sm2_pub.pem").write_bytes(sm2_pem(sm2_key.public_key()))


def _admin(index: int, who: int) -> dict[str, Any]:
    value = {"handle": ADMIN_HANDLE, "index": who, "permissions": ALL_PERMS}
    return {"index": index, "type": "HS_ADMIN", "data": {"format": "admin", "value": value}}


def _key(index: int, data: bytes) -> dict[str, Any]:
    return {"index": index, "type": "HS_PUBKEY", "data": {"format": "key", "value": base64.b64encode(data).decode()}}


def records(keys: Path) -> dict[str, list[dict[str, Any]]]:
    """The records, in idnode's REST form, with the public halves of the keys in ``keys``."""
    group = [{"handle": ADMIN_HANDLE, "index": i} for i in INDEXES.values()]
    return {
        f"0.NA/{PREFIX}": [_admin(100, 200)],
        ADMIN_HANDLE: [
            _admin(100, INDEXES["secret"]),
            {"index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": group}},
            {"index": INDEXES["secret"], "type": "HS_SECKEY", "data": SECRET, "permissions": "1100"},
            _key(INDEXES["dsa"], (keys / "admin_dsa_pub.bin").read_bytes()),
            _key(INDEXES["rsa"], (keys / "admin_rsa_pub.bin").read_bytes()),
            {"index": INDEXES["sm2"], "type": "HS_PUBKEY", "data": (keys / "admin_sm2_pub.pem").read_text()},
        ],
        EXISTING: [
            {"index": 1, "type": "URL", "data": "https://example.org/item/42"},
            {"index": 2, "type": "EMAIL", "data": "owner42@example.org"},
        ],
    }


def prepare(node: Node, keys: Path) -> None:
    """``records`` written through the REST API as the node admin."""
    for handle, values in records(keys).items():
        reply = node.put(f"/api/handles/{handle}", {"values": values}, auth=ADMIN)
        if reply.status not in (200, 201):
            raise RuntimeError(f"PUT {handle}: {reply.status} {reply.body[:300]!r}")


def values(node: Node, handle: str) -> dict[int, str] | None:
    """The string values of ``handle`` as the REST API shows them (None: no such handle)."""
    reply = node.get(f"/api/handles/{handle}", auth=ADMIN)
    if reply.status == 404:
        return None
    if reply.status != 200:
        raise RuntimeError(f"GET {handle}: {reply.status} {reply.body[:300]!r}")
    shown = reply.json["values"]
    return {v["index"]: v["data"]["value"] for v in shown if isinstance(v["data"].get("value"), str)}


Shown = dict[int, str] | None
CHECKS: dict[str, Callable[[Shown], bool]] = {  # what the REST API must show after each write of a scenario
    "create": lambda got: got is not None and got.get(1) == "https://example.org/v1",
    "add": lambda got: got is not None and got.get(2) == "vec@example.org",
    "modify": lambda got: got is not None and got.get(1) == "https://example.org/v2",
    "remove": lambda got: got is not None and 2 not in got and 1 in got,
    "delete": lambda got: got is None,
}
