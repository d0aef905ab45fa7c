"""The captured CNRI vectors are whole, consistent and verifiable with the committed keys.

They are the ground truth for idnode's Handle codec, so these tests pin what we learnt
from them: message framing, how a challenge digests the request, and how CNRI's tools
answer it with HS_SECKEY (7.3.1: SHA-1 over secret, nonce, digest, secret; 9.0.0:
PBKDF2 + HMAC-SHA1) and HS_PUBKEY (SHA1withDSA; SHA1withRSA in 7.3.1, SHA256withRSA in
9.0.0, over nonce and digest). 7.3.1 digests the request with SHA-1, 9.0.0 with SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench.cnri import CLIENT_PROFILES, resolve_request
from bench.cnri_keys import cnri_private_key, cnri_public_key
from protocol.wire.keys import DSAPrivateKey, DSAPublicKey
from tests.vectors.capture import Relay, messages, split_stream

VECTORS = Path(__file__).parents[2] / "vectors"
VERSIONS = sorted(p for p in VECTORS.glob("cnri-*") if p.is_dir())
ALL = [f for d in VERSIONS for f in sorted(d.glob("*.json"))]
OC_CHALLENGE_RESPONSE = 200
RC_AUTH_NEEDED = 402


def load(path: Path) -> dict[str, Any]:
    vector: dict[str, Any] = json.loads(path.read_text())
    return vector


def raw(exchange: dict[str, Any]) -> bytes:
    return bytes.fromhex(exchange["hex"])


def lp(buf: bytes, off: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from(">I", buf, off)
    return buf[off + 4 : off + 4 + n], off + 4 + n


def header_and_body(msg: bytes) -> bytes:
    """What CNRI digests for a challenge: the 24-byte header and the body."""
    (body_len,) = struct.unpack_from(">I", msg, 40)
    return msg[20 : 44 + body_len]


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_message_is_framed_by_its_envelope(path: Path) -> None:
    """A TCP message is exactly its envelope's length; UDP packets of one message add up."""
    vector = load(path)
    assert vector["exchanges"], "a vector without exchanges captured nothing"
    udp: dict[tuple[str, int, int], int] = {}
    for ex in vector["exchanges"]:
        payload = len(raw(ex)) - 20
        if ex["transport"] == "tcp":
            assert payload == ex["message_length"]
        else:
            key = (ex["direction"], ex["flow"], ex["request_id"])
            udp[key] = udp.get(key, 0) + payload
            assert ex["sequence"] == 0 or key in udp
    lengths = {(e["direction"], e["flow"], e["request_id"]): e["message_length"] for e in vector["exchanges"]}
    for key, total in udp.items():
        assert total == lengths[key]


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_request_is_answered(path: Path) -> None:
    exchanges = load(path)["exchanges"]
    asked = {ex["request_id"] for ex in exchanges if ex["direction"] == "request"}
    answered = {ex["request_id"] for ex in exchanges if ex["direction"] == "response"}
    assert asked == answered


@pytest.mark.parametrize("release", sorted(CLIENT_PROFILES))
def test_resolve_request_matches_the_captured_qresolver_bytes(release: str) -> None:
    exchanges = load(VECTORS / f"cnri-{release}" / "resolve-udp.json")["exchanges"]
    captured = raw([ex for ex in exchanges if ex["direction"] == "request"][-1])
    rid, expires = struct.unpack_from(">I", captured, 8)[0], struct.unpack_from(">I", captured, 36)[0]
    assert resolve_request("88.118.8/42", rid, expires, release) == captured


def challenge_flow(path: Path) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """(original request, request digest, nonce, answer's identity, answer's signature)."""
    exchanges = load(path)["exchanges"]
    i = next(i for i, ex in enumerate(exchanges) if ex.get("response_code") == RC_AUTH_NEEDED)
    original = next(raw(ex) for ex in exchanges if ex["request_id"] == exchanges[i]["request_id"])
    challenge = raw(exchanges[i])
    body = challenge[44:]
    algorithm = {1: hashlib.md5, 2: hashlib.sha1, 3: hashlib.sha256}[body[0]]
    digest_len = algorithm().digest_size
    digest, nonce = body[1 : 1 + digest_len], lp(body, 1 + digest_len)[0]
    assert digest == algorithm(header_and_body(original)).digest()
    answer = next(raw(ex) for ex in exchanges if ex.get("opcode") == OC_CHALLENGE_RESPONSE)
    auth_type, off = lp(answer, 44)
    handle, off = lp(answer, off)
    index = struct.unpack_from(">I", answer, off)[0]
    signature, _ = lp(answer, off + 4)
    ident = auth_type + b" " + str(index).encode() + b":" + handle
    return original, digest, nonce, ident, signature


SECKEY_FLOWS = [f for f in ALL if f.stem.endswith("-seckey")]
PUBKEY_FLOWS = [f for f in ALL if "pubkey" in f.stem or f.stem.startswith("list-")]


def expected_seckey_answer(signature: bytes, secret: bytes, nonce: bytes, digest: bytes) -> bytes:
    """What CNRI's SecretKeyAuthenticationInfo sends, by the hash code it chose.

    0x02 (protocol 2.1-2.6): SHA-1 over secret, nonce, digest, secret. 0x22 (2.7 and
    later): HMAC-SHA1 of nonce+digest under a PBKDF2-HMAC-SHA1 key; salt, iterations and
    key bits travel in the answer.
    """
    if signature[0] == 0x02:
        return b"\x02" + hashlib.sha1(secret + nonce + digest + secret).digest()
    assert signature[0] == 0x22, f"unknown hash code {signature[0]:#x}"
    salt, off = lp(signature, 1)
    iterations, bits = struct.unpack_from(">II", signature, off)
    key = hashlib.pbkdf2_hmac("sha1", secret, salt, iterations, bits // 8)
    mac = hmac.new(key, nonce + digest, hashlib.sha1).digest()
    return signature[: off + 8] + struct.pack(">I", len(mac)) + mac


@pytest.mark.parametrize("path", SECKEY_FLOWS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_seckey_answer_is_the_mac_cnri_documents(path: Path) -> None:
    _, digest, nonce, ident, signature = challenge_flow(path)
    secret = (path.parent / "keys" / "secret_key.txt").read_text().strip().encode()
    assert ident == b"HS_SECKEY 300:88.118.8/ADMIN"
    assert signature == expected_seckey_answer(signature, secret, nonce, digest)


@pytest.mark.parametrize("path", PUBKEY_FLOWS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_pubkey_answer_verifies_with_the_committed_key(path: Path) -> None:
    _, digest, nonce, ident, signature = challenge_flow(path)
    alg = "rsa" if ident.startswith(b"HS_PUBKEY 302:") else "dsa"
    pem = (path.parent / "keys" / f"admin_{alg}_priv.pem").read_bytes()
    public = serialization.load_pem_private_key(pem, None).public_key()
    sig_alg, off = lp(signature, 0)
    sig, _ = lp(signature, off)
    hash_alg = {b"SHA1": hashes.SHA1(), b"SHA-256": hashes.SHA256()}[sig_alg]
    if isinstance(public, DSAPublicKey):
        public.verify(sig, nonce + digest, hash_alg)
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(sig, nonce + digest, padding.PKCS1v15(), hash_alg)


def test_split_stream_cuts_at_envelope_lengths() -> None:
    a, b = resolve_request("1/a", 1), resolve_request("2/bb", 2)
    assert split_stream(a + b) == [a, b]
    assert split_stream(a + b[:10]) == [a, b[:10]]


def _udp_echo(sock: socket.socket) -> None:
    data, peer = sock.recvfrom(65535)
    sock.sendto(data[::-1], peer)


def _udp_and_tcp() -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on one free port (the kernel may hand out a UDP port
    whose TCP twin is in use: try again)."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket()
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen()
        return udp, tcp
    raise OSError("no port free for both UDP and TCP")


def _relay(target: tuple[str, int]) -> tuple[Relay, int]:
    for _ in range(50):
        udp, tcp = _udp_and_tcp()
        port = udp.getsockname()[1]
        udp.close()
        tcp.close()
        try:
            return Relay(port, target), port
        except OSError:
            continue
    raise OSError("no port free for the relay")


def test_relay_records_both_directions_of_udp_and_tcp() -> None:
    echo_udp, echo_tcp = _udp_and_tcp()
    port = echo_udp.getsockname()[1]
    threading.Thread(target=_udp_echo, args=(echo_udp,), daemon=True).start()
    relay, relay_port = _relay(("127.0.0.1", port))
    try:
        req = resolve_request("88.118.8/1", 5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(2)
            c.sendto(req, ("127.0.0.1", relay_port))
            assert c.recv(65535) == req[::-1]
        with socket.create_connection(("127.0.0.1", relay_port), 2) as c:
            server, _ = echo_tcp.accept()
            c.sendall(req)
            got = server.recv(65535)
            server.sendall(got)
            assert c.recv(65535) == req
            server.close()
        found = [(e["transport"], e["direction"], e["hex"]) for e in messages(relay.take())]
    finally:
        relay.close()
        echo_udp.close()
        echo_tcp.close()
    assert found == [
        ("udp", "request", req.hex()),
        ("udp", "response", req[::-1].hex()),
        ("tcp", "request", req.hex()),
        ("tcp", "response", req.hex()),
    ]


@pytest.mark.parametrize("keys", [d / "keys" for d in VERSIONS], ids=lambda p: p.parent.name)
@pytest.mark.parametrize("name", ["admin_dsa", "admin_rsa", "server_dsa"])
def test_cnri_key_files_are_the_pem_keys_in_cnri_format(keys: Path, name: str) -> None:
    """The .bin files CNRI's tools read hold exactly the keys the PEM twins hold."""
    private = serialization.load_pem_private_key((keys / f"{name}_priv.pem").read_bytes(), None)
    assert isinstance(private, DSAPrivateKey | rsa.RSAPrivateKey)
    assert cnri_private_key(private) == (keys / f"{name}_priv.bin").read_bytes()
    assert cnri_public_key(private.public_key()) == (keys / f"{name}_pub.bin").read_bytes()
