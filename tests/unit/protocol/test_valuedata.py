"""Binary value data (RFC 3651 §3.2 and its errata): HS_ADMIN, HS_VLIST, HS_SITE both ways."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from protocol import valuedata as vd
from protocol.errors import InvalidValue

# HS_ADMIN -----------------------------------------------------------------------------

# handle.net's wire bits (Encoder.PERM_*), which other Handle software reads and writes.
HANDLE_NET_PERMISSION_BITS = {
    "add_handle": 0x0001,
    "delete_handle": 0x0002,
    "add_prefix": 0x0004,
    "delete_prefix": 0x0008,
    "modify_value": 0x0010,
    "remove_value": 0x0020,
    "add_value": 0x0040,
    "modify_admin": 0x0080,
    "remove_admin": 0x0100,
    "add_admin": 0x0200,
    "read_value": 0x0400,
    "list_handles": 0x0800,
}


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">I", len(raw)) + raw


def test_admin_wire_layout() -> None:
    ref = vd.AdminRef("0.NA/88.118", 300, 0x0FF3)
    assert vd.encode_admin(ref) == b"\x0f\xf3" + _str("0.NA/88.118") + struct.pack(">I", 300)


def test_admin_round_trip() -> None:
    ref = vd.AdminRef("88.1/组", 2**32 - 1, 0x0ABC)
    assert vd.decode_admin(vd.encode_admin(ref)) == ref


@pytest.mark.parametrize(("name", "bit"), HANDLE_NET_PERMISSION_BITS.items())
def test_admin_permission_bits_match_handle_net(name: str, bit: int) -> None:
    ref = vd.AdminRef("0.NA/88.1", 200, bit)
    assert ref.allows(name)
    assert [n for n in vd.ADMIN_PERMISSION_NAMES if ref.allows(n)] == [name]


def test_admin_permission_string_is_most_significant_bit_first() -> None:
    # handle.net prints perms[11] (list handles) first and perms[0] (add handle) last.
    assert vd.AdminRef("x/y", 1, HANDLE_NET_PERMISSION_BITS["list_handles"]).permission_string() == "100000000000"
    assert vd.AdminRef("x/y", 1, HANDLE_NET_PERMISSION_BITS["read_value"]).permission_string() == "010000000000"
    assert vd.AdminRef("x/y", 1, HANDLE_NET_PERMISSION_BITS["add_handle"]).permission_string() == "000000000001"


def test_typical_handle_admin_string_grants_what_handle_net_grants() -> None:
    ref = vd.AdminRef("0.NA/88.1", 200, vd.AdminRef.parse_permissions("011111110011"))
    granted = {n for n in vd.ADMIN_PERMISSION_NAMES if ref.allows(n)}
    assert granted == set(HANDLE_NET_PERMISSION_BITS) - {"add_prefix", "delete_prefix", "list_handles"}
    assert ref.permission_string() == "011111110011"


def test_read_only_admin_string_grants_read_and_nothing_else() -> None:
    ref = vd.AdminRef("0.NA/88.1", 200, vd.AdminRef.parse_permissions("010000000000"))
    assert [n for n in vd.ADMIN_PERMISSION_NAMES if ref.allows(n)] == ["read_value"]


@pytest.mark.parametrize(
    "text", ["", "01111111001", "0111111100111", "01111111001x", "1111 1111111", "１１１１１１１１１１１１"]
)
def test_bad_admin_permission_strings_are_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="12 characters of 0 and 1"):
        vd.AdminRef.parse_permissions(text)


def test_decode_admin_ignores_reserved_high_bits() -> None:
    data = b"\xff\xff" + _str("0.NA/88.1") + struct.pack(">I", 1)
    assert vd.decode_admin(data).permissions == 0x0FFF


# HS_VLIST -----------------------------------------------------------------------------


def test_vlist_wire_layout() -> None:
    data = vd.encode_vlist([("0.NA/88.1", 200), ("88.1/a", 300)])
    assert data == (
        struct.pack(">I", 2) + _str("0.NA/88.1") + struct.pack(">I", 200) + _str("88.1/a") + struct.pack(">I", 300)
    )


@pytest.mark.parametrize("members", [[], [("88.1/a", 1)], [("88.1/é", 0), ("0.NA/88.1", 2**32 - 1), ("88.1/a", 1)]])
def test_vlist_round_trip(members: list[tuple[str, int]]) -> None:
    assert vd.decode_vlist(vd.encode_vlist(members)) == members


def test_vlist_with_an_impossible_member_count_is_refused_quickly() -> None:
    with pytest.raises(InvalidValue, match="truncated"):
        vd.decode_vlist(b"\xff\xff\xff\xff")


# HS_SITE ------------------------------------------------------------------------------

SITE = vd.Site(
    servers=(
        vd.Server(
            1,
            "192.0.2.7",
            b"\x00\x01key",
            (vd.Interface("TCP", 2641, query=True, admin=True), vd.Interface("HTTP", 8000, query=True, admin=False)),
        ),
        vd.Server(2, "2001:db8::1", b"", (vd.Interface("UDP", 2641, query=True, admin=False),)),
        vd.Server(3, "2001:db8::2", b"k", (vd.Interface("HTTPS", 443, query=False, admin=True),)),
    ),
    version=1,
    protocol_version=(2, 10),
    serial_number=7,
    is_primary=False,
    is_multi_primary=True,
    hash_option=vd.HASH_OPTIONS["BY_SUFFIX"],
    hash_filter="filter",
    attributes=(("desc", "二级节点"), ("", "")),
)


def test_site_round_trip() -> None:
    assert vd.decode_site(vd.encode_site(SITE)) == SITE


def test_site_wire_layout_of_a_minimal_site() -> None:
    site = vd.Site(servers=(vd.Server(9, "127.0.0.1", b"", (vd.Interface("TCP", 2641, query=True, admin=True),)),))
    expected = (
        struct.pack(">HBBHBB", 1, 2, 10, 1, 0x80, 2)  # version, protocol 2.10, serial, primary, BY_ALL
        + _str("")  # hash filter
        + struct.pack(">I", 0)  # attributes
        + struct.pack(">I", 1)  # servers
        + struct.pack(">I", 9)
        + bytes(12)
        + bytes([127, 0, 0, 1])  # errata: IPv4 is ::xxxx:xxxx, not ::ffff:xxxx:xxxx
        + struct.pack(">I", 0)  # public key
        + struct.pack(">I", 1)
        + bytes([3, 1])  # service: admin (1) + query (2); protocol TCP
        + struct.pack(">I", 2641)
    )
    assert vd.encode_site(site) == expected
    assert vd.decode_site(expected) == site


def test_site_with_a_non_ip_address_cannot_be_encoded() -> None:
    site = vd.Site(servers=(vd.Server(1, "handle.example", b"", ()),))
    with pytest.raises(InvalidValue, match="not an IP address"):
        vd.encode_site(site)


def test_site_interface_with_an_unknown_protocol_is_refused() -> None:
    data = bytearray(vd.encode_site(vd.Site(servers=(vd.Server(1, "127.0.0.1", b"", (vd.Interface("TCP", 1),)),))))
    data[-5] = 9  # the protocol byte of the last interface
    with pytest.raises(InvalidValue, match="unknown protocol 9"):
        vd.decode_site(bytes(data))


@pytest.mark.parametrize("offset", [8, 12, 16])
def test_site_with_impossible_lengths_and_counts_is_refused_quickly(offset: int) -> None:
    # after the 8-byte header: hash filter length, attribute count, server count
    data = bytearray(vd.encode_site(vd.Site(servers=())))
    data[offset : offset + 4] = b"\xff\xff\xff\xff"
    with pytest.raises(InvalidValue, match="truncated"):
        vd.decode_site(bytes(data))


# Malformed input ----------------------------------------------------------------------

ENCODINGS = [
    ("admin", vd.decode_admin, vd.encode_admin(vd.AdminRef("0.NA/88.1", 200, 0x0FF3))),
    ("vlist", vd.decode_vlist, vd.encode_vlist([("0.NA/88.1", 200), ("88.1/b", 300)])),
    ("site", vd.decode_site, vd.encode_site(SITE)),
]


@pytest.mark.parametrize(("what", "decode", "data"), ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_every_truncation_is_an_invalid_value(what: str, decode: Callable[[bytes], object], data: bytes) -> None:
    for end in range(len(data)):
        with pytest.raises(InvalidValue):
            decode(data[:end])


@pytest.mark.parametrize(("what", "decode", "data"), ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_trailing_bytes_are_an_invalid_value(what: str, decode: Callable[[bytes], object], data: bytes) -> None:
    with pytest.raises(InvalidValue, match="1 trailing bytes"):
        decode(data + b"\x00")


def test_string_that_is_not_utf8_is_an_invalid_value() -> None:
    data = b"\x00\x01" + struct.pack(">I", 2) + b"\xff\xfe" + struct.pack(">I", 1)
    with pytest.raises(InvalidValue, match="not UTF-8"):
        vd.decode_admin(data)


def test_length_prefix_beyond_the_data_is_an_invalid_value() -> None:
    data = b"\x00\x01" + struct.pack(">I", 2**32 - 1) + b"abc"
    with pytest.raises(InvalidValue, match="HS_ADMIN data is truncated"):
        vd.decode_admin(data)
