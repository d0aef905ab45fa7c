"""SM2 keys in the HS_PUBKEY encodings Teleinfo's id-pointer SDK writes, and its challenge answers.

The encodings (id-pointer-sdk, ``cn.teleinfo.idpointer.sdk``): ``core.Util.getBytesFromPublicKey``
writes ``SM2_PUB_KEY``, two reserved octets and the key's PEM text as one length-prefixed field;
``client.ValueHelper.newIdisPublicKeyValue`` stores the PEM text alone (``KeyConverter.toX509Pem``:
CRLF lines of MIME base64); its ``UtilTest`` puts DER SubjectPublicKeyInfo in the field. The
answer (``core.PublicKeyAuthenticationInfo``): hash id ``SM3``, then a DER SM2 signature of
SM3(nonce || request digest) with the identity's handle as the signer ID.
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import AuthenticationFailed, InvalidValue, ProtocolViolation
from protocol.jsonfmt import data_to_json, value_from_json, value_to_json
from protocol.records import HandleValue
from protocol.wire import auth, der, keys, sm2

VECTORS = Path(__file__).parents[2] / "vectors"

NONCE, DIGEST = bytes(range(16)), bytes(range(100, 132))
HANDLE = "88.888.1/sm2user"

# The public key printed in id-pointer's IDClientSm2UserTest (made by hutool's
# SecureUtil.generateKeyPair("SM2")): its PEM as the SDK's tests hold it, LF lines.
SDK_PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAEHFkjKEdzNBN0dR7KtagCoOOwjz+EOOojoxV95x5O\n"
    b"+UMzIgVCyKWhJhZ/B4jIuCVRgpmqA7R5Pf05r3/TGjkDNQ==\n"
    b"-----END PUBLIC KEY-----"
)


def java_style_value(field: bytes) -> bytes:
    """What ``Util.getBytesFromPublicKey`` lays out for an EC key, written out here by hand."""
    tag = b"SM2_PUB_KEY"
    return len(tag).to_bytes(4, "big") + tag + b"\0\0" + len(field).to_bytes(4, "big") + field


def spki_with_algorithm_sm2(key: sm2.SM2PublicKey) -> bytes:
    """The SubjectPublicKeyInfo some GM tools write: the algorithm is SM2 itself, no curve."""
    return der.sequence(der.sequence(der.oid(keys.OID_SM2)), der.bit_string(key.point_bytes()))


def test_the_sdk_s_own_test_key_reads_as_an_sm2_point() -> None:
    key = keys.decode_public_key(SDK_PEM)
    assert isinstance(key, sm2.SM2PublicKey)
    assert key.point_bytes().hex().startswith("041c5923284773341374751eca")
    assert keys.sm2_spki(key) == base64.b64decode(b"".join(SDK_PEM.splitlines()[1:-1]))  # BouncyCastle's DER


def test_each_encoding_the_sdk_writes_reads_as_the_same_key() -> None:
    public = sm2.generate_private_key().public_key()
    pem = keys.sm2_pem(public)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\r\n") and pem.endswith(b"\r\n-----END PUBLIC KEY-----\r\n")
    assert keys.encode_public_key(public) == java_style_value(pem)
    forms = [
        java_style_value(pem),  # Util.getBytesFromPublicKey
        pem,  # ValueHelper.newIdisPublicKeyValue
        pem.replace(b"\r\n", b"\n").strip(),  # the same pasted with LF line ends
        java_style_value(keys.sm2_spki(public)),  # UtilTest: DER in the field
        java_style_value(public.point_bytes()),  # a bare SEC 1 point
        java_style_value(spki_with_algorithm_sm2(public)),
    ]
    for data in forms:
        assert keys.decode_public_key(data) == public, data[:40]
        assert keys.key_type(data) == "SM2"
        assert keys.claims_sm2(data)
        keys.check_public_key_value(data)


def test_pem_text_may_also_hold_an_rsa_key() -> None:
    private = rsa.generate_private_key(65537, 2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert keys.key_type(pem) == "RSA" and not keys.claims_sm2(pem)
    answer = auth.sign_challenge(private, NONCE, DIGEST)
    assert auth.verify_signature(pem, answer, NONCE, DIGEST)


def test_an_ec_key_on_another_curve_is_named_and_refused() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = p256.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InvalidValue, match=r"curve 1\.2\.840\.10045\.3\.1\.7"):
        keys.decode_public_key(pem)
    assert keys.key_type(pem) is None
    keys.check_public_key_value(pem)  # it does not claim to be SM2: stored as handle.net would


def off_curve_pem() -> bytes:
    public = sm2.generate_private_key().public_key()
    point = bytearray(public.point_bytes())
    point[-1] ^= 1
    algorithm = der.sequence(der.oid(keys.OID_EC_PUBLIC_KEY), der.oid(keys.OID_SM2))
    spki = der.sequence(algorithm, der.bit_string(bytes(point)))
    body = base64.encodebytes(spki)
    return b"-----BEGIN PUBLIC KEY-----\r\n" + body + b"-----END PUBLIC KEY-----\r\n"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (off_curve_pem(), "not a point of the SM2 curve"),
        (java_style_value(off_curve_pem()), "not a point of the SM2 curve"),
        (java_style_value(b"-----BEGIN PUBLIC KEY-----\r\nnot base64!\r\n-----END PUBLIC KEY-----"), "base64"),
        (java_style_value(b"\x04" + bytes(10)), "11 bytes"),
        (java_style_value(b"\x30\x03\x02\x01"), "not valid DER"),
        (b"\0\0\0\x0bSM2_PUB_KEY\0\0\0\0\0", "truncated"),
    ],
)
def test_data_claiming_sm2_that_is_no_sm2_key_is_refused_with_what_is_wrong(data: bytes, says: str) -> None:
    assert keys.claims_sm2(data)
    with pytest.raises(InvalidValue, match=says):
        keys.check_public_key_value(data)
    with pytest.raises(AuthenticationFailed):  # stored before this check: it proves nothing, quietly
        auth.verify_signature(data, auth.sign_challenge(sm2.generate_private_key(), NONCE, DIGEST), NONCE, DIGEST)


def test_data_that_claims_no_sm2_key_is_left_as_handle_net_leaves_it() -> None:
    for data in (b"", b"an ID-SDK key file of its own", b"\0\0\0\x0bRSA_PUB_KEY\0\0garbage", b"-----BEGIN x"):
        assert not keys.claims_sm2(data)
        keys.check_public_key_value(data)


@given(st.binary(max_size=200))
def test_any_bytes_after_the_sm2_tag_decode_or_raise_invalid_value(tail: bytes) -> None:
    for data in (b"\0\0\0\x0bSM2_PUB_KEY\0\0" + tail, b"-----BEGIN PUBLIC KEY-----\n" + tail):
        with contextlib.suppress(InvalidValue):
            assert isinstance(keys.decode_public_key(data), sm2.SM2PublicKey | rsa.RSAPublicKey | keys.DSAPublicKey)


def test_the_json_form_names_the_key_type_beside_the_bytes() -> None:
    pem = keys.sm2_pem(sm2.generate_private_key().public_key())
    shown = data_to_json(HandleValue(300, "HS_PUBKEY", pem))
    assert shown == {"format": "key", "value": base64.b64encode(pem).decode(), "keyType": "SM2"}
    rsa_value = keys.encode_public_key(rsa.generate_private_key(65537, 2048).public_key())
    assert data_to_json(HandleValue(300, "HS_PUBKEY", rsa_value))["keyType"] == "RSA"
    assert "keyType" not in data_to_json(HandleValue(300, "HS_PUBKEY", b"not a key"))
    back = value_from_json(value_to_json(HandleValue(300, "HS_PUBKEY", pem)))
    assert back.value.data == pem and back.format == "key"  # a client sending it back sends the bytes


OIDS = [keys.OID_EC_PUBLIC_KEY, keys.OID_SM2, "1.2.840.113549.1.1.1", "1.2.840.10040.4.1", "1.3.101.112"]


@given(st.sampled_from(OIDS), st.binary(max_size=40), st.binary(max_size=80), st.booleans())
def test_any_spki_shaped_field_decodes_or_raises_invalid_value(oid: str, params: bytes, bits: bytes, pem: bool) -> None:
    spki = der.sequence(der.sequence(der.oid(oid), params), der.bit_string(bits))
    field = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(spki) + b"-----END PUBLIC KEY-----" if pem else spki
    for data in (java_style_value(field), field):
        with contextlib.suppress(InvalidValue):
            keys.decode_public_key(data)
        with contextlib.suppress(InvalidValue):
            keys.check_public_key_value(data)


# Challenge answers ------------------------------------------------------------------------


def sdk_answer(key: sm2.SM2PrivateKey, nonce: bytes, digest: bytes, handle: str) -> bytes:
    """The answer as PublicKeyAuthenticationInfo.authenticate builds it, step by step."""
    data = sm2.sm3(nonce + digest)  # SmUtil.sm3(inputStream), then HexUtil.decodeHex
    signature = sm2.encode_signature(sm2.sign(key, data, handle.encode("utf-8")))  # SM2.signHex(data, id)
    return keys.pack(b"SM3", signature)  # Common.HASH_ALG_SM3, then the signature


def test_an_answer_signed_as_the_sdk_signs_verifies_with_the_identity_s_handle() -> None:
    private = sm2.generate_private_key()
    stored = keys.sm2_pem(private.public_key())
    answer = sdk_answer(private, NONCE, DIGEST, HANDLE)
    assert auth.verify_signature(stored, answer, NONCE, DIGEST, signer=HANDLE)
    assert auth.verify_signature(keys.encode_public_key(private.public_key()), answer, NONCE, DIGEST, signer=HANDLE)
    assert auth.sign_challenge(private, NONCE, DIGEST, signer=HANDLE)[:7] == b"\0\0\0\x03SM3"
    ours = auth.sign_challenge(private, NONCE, DIGEST, signer=HANDLE)
    assert auth.verify_signature(stored, ours, NONCE, DIGEST, signer=HANDLE)
    assert auth.client_signature_hash((2, 10), private) == "SM3"


# Made by tests/vectors/sm2/SdkAnswer.java: the SDK's signing branch run in Java, hutool 4.6.3 (the
# jar in CAICT's ID-SDK repository) over Debian's BouncyCastle 1.72, a key of its own each run:
#   java -cp hutool-all-4.6.3.jar:/usr/share/java/bcprov.jar:. SdkAnswer HANDLE NONCE_HEX DIGEST_HEX
JAVA_NONCE, JAVA_DIGEST = bytes(range(16)), bytes(range(100, 132))
JAVA_ANSWERS = [
    (
        "88.888.1/sm2user",
        "MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAEu3rhn/dR9kaae9/FNdv8dLM5G7BG23jW8yeCEs3+wCyQ/BdyrVR70RFVto82M6AGo9s1iDGaqZGu"
        "wusB58cylw==",
        "304502207c8c878e8caec795860b52fc202d90b2512f5379e0a72173a42fe9105f8af811022100b94a18db05e3028e584f0a96cff4459ea3"
        "adb289f84d35e5d60998f07f6b247e",
    ),
    (
        "0.NA/88.888",
        "MFkwEwYHKoZIzj0CAQYIKoEcz1UBgi0DQgAEHIbW27t1PXtzmMTNiI9xnMyXZEPfXaXDoVptUcrqzcnwQ9azHPLPkJmeP0GlUGGTyCX9K1VCRy3I"
        "ykjDiDzztA==",
        "304402201dadb85f42364af32b283c572099faed9cb943cedd5bcae2c5a74e6dedeb733e02207d3e44d364c4216eaeb74027c10634317f99"
        "459dfda489d7450509c2d1947aba",
    ),
]


@pytest.mark.parametrize(("handle", "spki", "signature"), JAVA_ANSWERS)
def test_answers_signed_by_the_sdk_s_java_code_verify(handle: str, spki: str, signature: str) -> None:
    der_key = base64.b64decode(spki)
    answer = keys.pack(b"SM3", bytes.fromhex(signature))
    pem = b"-----BEGIN PUBLIC KEY-----\r\n" + base64.encodebytes(der_key) + b"-----END PUBLIC KEY-----\r\n"
    for stored in (java_style_value(der_key), java_style_value(pem), pem):
        assert auth.verify_signature(stored, answer, JAVA_NONCE, JAVA_DIGEST, signer=handle)
    assert not auth.verify_signature(pem, answer, JAVA_NONCE, JAVA_DIGEST, signer=f"300:{handle}")  # not index:handle
    assert not auth.verify_signature(pem, answer, JAVA_DIGEST[:16], JAVA_NONCE * 2, signer=handle)


def test_wrong_answers_are_refused() -> None:
    private = sm2.generate_private_key()
    stored = keys.sm2_pem(private.public_key())
    answer = sdk_answer(private, NONCE, DIGEST, HANDLE)
    assert not auth.verify_signature(stored, answer, NONCE, DIGEST, signer="88.888.1/other")
    assert not auth.verify_signature(stored, answer, NONCE, DIGEST)  # the default ID is not the handle
    assert not auth.verify_signature(stored, answer, NONCE[::-1], DIGEST, signer=HANDLE)
    other = keys.sm2_pem(sm2.generate_private_key().public_key())
    assert not auth.verify_signature(other, answer, NONCE, DIGEST, signer=HANDLE)
    # The SM3 answer relabelled SHA-256 (BouncyCastle's form) does not verify; SM3 goes with SM2 keys only.
    signature = answer[7 + 4 :]
    assert not auth.verify_signature(stored, keys.pack(b"SHA-256", signature), NONCE, DIGEST, signer=HANDLE)
    rsa_key = rsa.generate_private_key(65537, 2048)
    rsa_answer = auth.sign_challenge(rsa_key, NONCE, DIGEST)
    rsa_stored = keys.encode_public_key(rsa_key.public_key())
    assert not auth.verify_signature(rsa_stored, keys.pack(b"SM3", rsa_answer[11:]), NONCE, DIGEST)


BC_SHA256_WITH_SM2 = json.loads((VECTORS / "sm2" / "bc-sha256withsm2.json").read_text())["cases"]


@pytest.mark.parametrize("case", BC_SHA256_WITH_SM2)
def test_answers_signed_by_bouncycastles_sha256withsm2_verify(case: dict[str, str]) -> None:
    """id-pointer signs with ``Signature.getInstance("SHA256withSM2")`` when its key reads as
    ``SM2``: the signatures BouncyCastle itself made (tests/vectors/sm2/BcSha256WithSm2.java)."""
    stored, nonce, digest = (
        case["public_key_pem"].encode(),
        bytes.fromhex(case["nonce"]),
        bytes.fromhex(case["request_digest"]),
    )
    answer = keys.pack(b"SHA-256", bytes.fromhex(case["signature"]))
    assert auth.verify_signature(stored, answer, nonce, digest, signer=HANDLE)  # any identity: the default ID
    assert auth.verify_signature(stored, keys.pack(b"SHA256", bytes.fromhex(case["signature"])), nonce, digest)
    assert not auth.verify_signature(stored, answer, nonce, digest[::-1], signer=HANDLE)
    assert not auth.verify_signature(stored, keys.pack(b"SM3", bytes.fromhex(case["signature"])), nonce, digest)
    other = keys.sm2_pem(sm2.generate_private_key().public_key())
    assert not auth.verify_signature(other, answer, nonce, digest)


def test_our_sha256withsm2_answers_verify_and_bind_the_key() -> None:
    private = sm2.generate_private_key()
    answer = auth.sign_challenge(private, NONCE, DIGEST, hash_name="SHA-256")
    assert auth.verify_signature(keys.sm2_pem(private.public_key()), answer, NONCE, DIGEST, signer=HANDLE)
    assert not auth.verify_signature(keys.sm2_pem(private.public_key()), answer, NONCE, DIGEST[::-1])


def test_a_plain_r_s_signature_is_read_too() -> None:
    private = sm2.generate_private_key()
    r, s = sm2.sign(private, sm2.sm3(NONCE + DIGEST), HANDLE.encode())
    answer = keys.pack(b"SM3", r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    assert auth.verify_signature(keys.sm2_pem(private.public_key()), answer, NONCE, DIGEST, signer=HANDLE)


@pytest.mark.parametrize("signature", [b"", b"\x30\x02\x02", bytes(65), b"\x30\x06\x02\x01\x01\x02\x01\xff"])
def test_a_malformed_sm2_signature_is_a_protocol_violation(signature: bytes) -> None:
    stored = keys.sm2_pem(sm2.generate_private_key().public_key())
    with pytest.raises(ProtocolViolation, match="SM2 signature"):
        auth.verify_signature(stored, keys.pack(b"SM3", signature), NONCE, DIGEST, signer=HANDLE)


def test_the_sm3_hash_id_is_named_in_the_refusal_of_an_unknown_one() -> None:
    with pytest.raises(ProtocolViolation, match="SM3 with SM2 keys"):
        auth.split_signed_response(keys.pack(b"SM3withSM2", b"x"))
