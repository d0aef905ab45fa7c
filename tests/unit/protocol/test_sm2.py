"""SM2 signatures against GB/T 32918's published examples, and what malformed input gets.

The examples: GB/T 32918.2 Annex A (its test curve, signer ALICE123@YAHOO.COM, with Z_A and e
as the standard prints them), and the recommended curve's example with the default signer ID
1234567812345678 (GM/T 0003.2; OpenSSL's and Tongsuo's SM2 tests use it).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import InvalidValue
from protocol.wire import der, sm2

EXAMPLE_CURVE = sm2.Curve(
    p=0x8542D69E_4C044F18_E8B92435_BF6FF7DE_45728391_5C45517D_722EDB8B_08F1DFC3,
    a=0x787968B4_FA32C3FD_2417842E_73BBFEFF_2F3C848B_6831D7E0_EC65228B_3937E498,
    b=0x63E4C6D3_B23B0C84_9CF84241_484BFE48_F61D59A5_B16BA06E_6E12D1DA_27C5249A,
    n=0x8542D69E_4C044F18_E8B92435_BF6FF7DD_29772063_0485628D_5AE74EE7_C32E79B7,
    gx=0x421DEBD6_1B62EAB6_746434EB_C3CC315E_32220B3B_ADD50BDC_4C4E6C14_7FEDD43D,
    gy=0x0680512B_CBB42C07_D47349D2_153B70C4_E5D7FDFC_BFA36EA1_A85841B9_E46E09A2,
)
ALICE = b"ALICE123@YAHOO.COM"
MESSAGE = b"message digest"


def test_the_standard_s_example_on_its_test_curve() -> None:
    key = sm2.SM2PrivateKey(0x128B2FA8_BD433C6C_068C8D80_3DFF7979_2A519A55_171B1B65_0C23661D_15897263, EXAMPLE_CURVE)
    public = key.public_key()
    assert public.x == 0x0AE4C779_8AA0F119_471BEE11_825BE462_02BB79E2_A5844495_E97C04FF_4DF2548A
    assert public.y == 0x7C0240F8_8F1CD4E1_6352A73C_17B7F16F_07353E53_A176D684_A9FE0C6B_B798E857
    assert sm2.z_value(public, ALICE).hex().upper() == (
        "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
    )
    e = sm2.message_digest(public, ALICE, MESSAGE)
    assert e == 0xB524F552_CD82B8B0_28476E00_5C377FB1_9A87E6FC_682D48BB_5D42E3D9_B9EFFE76
    k = 0x6CB28D99_385C175C_94F94E93_4817663F_C176D925_DD72B727_260DBAAE_1FB2F96F
    signature = sm2.sign(key, MESSAGE, ALICE, k=k)
    assert signature == (
        0x40F1EC59_F793D9F4_9E09DCEF_49130D41_94F79FB1_EED2CAA5_5BACDB49_C4E755D1,
        0x6FC6DAC3_2C5D5CF1_0C77DFB2_0F7C2EB6_67A45787_2FB09EC5_6327A67E_C7DEEBE7,
    )
    assert sm2.verify(public, signature, MESSAGE, ALICE)
    assert not sm2.verify(public, signature, MESSAGE, b"BILL456@YAHOO.COM")
    assert not sm2.verify(public, signature, MESSAGE + b".", ALICE)


RECOMMENDED_D = 0x3945208F_7B2144B1_3F36E38A_C6D39F95_88939369_2860B51A_42FB81EF_4DF7C5B8
RECOMMENDED_POINT = bytes.fromhex(
    "04 09F9DF31 1E5421A1 50DD7D16 1E4BC5C6 72179FAD 1833FC07 6BB08FF3 56F35020"
    "CCEA490C E26775A5 2DC6EA71 8CC1AA60 0AED05FB F35E084A 6632F607 2DA9AD13"
)
RECOMMENDED_SIGNATURE = (
    0xF5A03B06_48D2C463_0EEAC513_E1BB81A1_5944DA38_27D5B741_43AC7EAC_EEE720B3,
    0xB1B6AA29_DF212FD8_763182BC_0D421CA1_BB9038FD_1F7F42D4_840B69C4_85BBC1AA,
)


def test_the_example_on_the_recommended_curve_with_the_default_signer_id() -> None:
    key = sm2.SM2PrivateKey(RECOMMENDED_D)
    public = sm2.decode_point(RECOMMENDED_POINT)
    assert key.public_key() == public
    k = 0x59276E27_D506861A_16680F3A_D9C02DCC_EF3CC1FA_3CDBE4CE_6D54B80D_EAC1BC21
    assert sm2.sign(key, MESSAGE, k=k) == RECOMMENDED_SIGNATURE
    assert sm2.verify(public, RECOMMENDED_SIGNATURE, MESSAGE)  # signer ID 1234567812345678
    assert not sm2.verify(public, RECOMMENDED_SIGNATURE, MESSAGE, ALICE)


def test_keys_made_here_sign_and_verify_and_nothing_else_does() -> None:
    key, other = sm2.generate_private_key(), sm2.generate_private_key()
    public, handle = key.public_key(), b"88.118/SM2-USER"
    r, s = sm2.sign(key, MESSAGE, handle)
    assert sm2.verify(public, (r, s), MESSAGE, handle)
    assert not sm2.verify(other.public_key(), (r, s), MESSAGE, handle)
    assert not sm2.verify(public, (r, s), MESSAGE, b"88.118/sm2-user")  # the ID is bytes, case and all
    n = public.curve.n
    for bad in ((r, (s + 1) % n), (0, s), (r, 0), (r + n, s), (r, n), (n - s, s)):  # last: t = 0
        assert not sm2.verify(public, bad, MESSAGE, handle)


def test_signatures_read_from_der_and_from_the_plain_64_bytes() -> None:
    pair = RECOMMENDED_SIGNATURE
    encoded = sm2.encode_signature(pair)
    assert encoded[:2] == b"\x30\x46" and sm2.decode_signature(encoded) == pair  # both halves need a 00
    assert sm2.decode_signature(b"".join(v.to_bytes(32, "big") for v in pair)) == pair
    plain_looking_like_der = b"\x30" + bytes(31) + (5).to_bytes(32, "big")  # r's first byte is 0x30
    assert sm2.decode_signature(plain_looking_like_der) == (0x30 << 248, 5)
    small = (1, 0x7F)
    assert sm2.encode_signature(small) == bytes.fromhex("3006020101 02017F".replace(" ", ""))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30",
        b"\x30\x06\x02\x01\x01\x02\x01",  # cut short
        b"\x30\x06\x02\x01\x01\x02\x01\x7f\x00",  # a byte after the sequence
        b"\x30\x06\x02\x01\x01\x02\x01\xff",  # a negative s
        b"\x30\x03\x02\x01\x01",  # no s
        b"\x30\x80\x02\x01\x01\x02\x01\x01\x00\x00",  # indefinite length
        b"\x31\x06\x02\x01\x01\x02\x01\x01",  # a SET
        bytes(63),
    ],
)
def test_malformed_signatures_are_invalid_values(data: bytes) -> None:
    with pytest.raises(InvalidValue):
        sm2.decode_signature(data)


@given(st.binary(max_size=80))
def test_any_signature_bytes_decode_or_raise_invalid_value(data: bytes) -> None:
    try:
        r, s = sm2.decode_signature(data)
    except InvalidValue:
        return
    assert r >= 0 and s >= 0


def test_points_must_be_on_the_curve() -> None:
    public = sm2.decode_point(RECOMMENDED_POINT)
    size = 32
    compressed = bytes([2 + (public.y & 1)]) + public.x.to_bytes(size, "big")
    assert sm2.decode_point(compressed) == public
    off_curve = RECOMMENDED_POINT[:-1] + bytes([RECOMMENDED_POINT[-1] ^ 1])
    for bad in (off_curve, RECOMMENDED_POINT[:-1], b"\x05" + RECOMMENDED_POINT[1:], b"\x04" + bytes(64), b""):
        with pytest.raises(InvalidValue):
            sm2.decode_point(bad)
    p = sm2.SM2P256V1.p
    with pytest.raises(InvalidValue):  # x beyond the field
        sm2.decode_point(b"\x04" + (public.x + p).to_bytes(33, "big")[1:] + public.y.to_bytes(size, "big"))
    with pytest.raises(InvalidValue, match="not a point"):
        sm2.public_key(public.x, public.y + 1)


@given(st.binary(max_size=70))
def test_any_point_bytes_decode_or_raise_invalid_value(data: bytes) -> None:
    try:
        public = sm2.decode_point(data)
    except InvalidValue:
        return
    assert public.curve.contains(public.x, public.y)


def test_a_signer_id_too_long_for_its_length_field_is_refused() -> None:
    public = sm2.decode_point(RECOMMENDED_POINT)
    with pytest.raises(InvalidValue):
        sm2.z_value(public, bytes(8192))


def test_object_identifiers_round_trip() -> None:
    for dotted in ("1.2.156.10197.1.301", "1.2.840.10045.2.1", "2.999.3"):
        assert der.Reader(der.oid(dotted), "an OID").oid() == dotted
    assert der.oid("1.2.156.10197.1.301").hex() == "06082a811ccf5501822d"
