"""handle.net v9 JSON forms of values (as its JSON REST API shows them): request bodies in, value objects out."""

from __future__ import annotations

import base64
import calendar
from typing import Any

import pytest

from protocol import valuedata as vd
from protocol.errors import InvalidValue
from protocol.jsonfmt import IncomingValue, data_to_json, value_from_json, value_to_json, values_from_body
from protocol.records import DEFAULT_TTL, SECRET_PERMISSIONS, HandleValue

_DROP = object()
NOV_27_2026 = calendar.timegm((2026, 11, 27, 8, 0, 0))


def _value(**fields: Any) -> dict[str, Any]:
    """A valid value object with some fields replaced (or dropped with _DROP)."""
    obj: dict[str, Any] = {"index": 1, "type": "URL", "data": "https://example.com/p/1"}
    obj.update(fields)
    return {k: v for k, v in obj.items() if v is not _DROP}


def _one(obj: Any) -> IncomingValue:
    (incoming,) = values_from_body(obj)
    return incoming


def _data(fmt: str, value: Any, vtype: str = "URL") -> IncomingValue:
    return _one(_value(type=vtype, data={"format": fmt, "value": value}))


ADMIN_JSON = {"handle": "0.NA/88.118", "index": 200, "permissions": "011111110011"}
ADMIN_BYTES = vd.encode_admin(vd.AdminRef("0.NA/88.118", 200, 0b011111110011))
SITE_JSON: dict[str, Any] = {
    "version": 1,
    "protocolVersion": "2.10",
    "serialNumber": 3,
    "primaryMask": {"isPrimary": True, "isMultiPrimary": False},
    "hashOption": "BY_SUFFIX",
    "hashFilter": "",
    "attributes": [{"name": "desc", "value": "二级节点"}],
    "servers": [
        {
            "serverId": 1,
            "address": "192.0.2.7",
            "publicKey": {"format": "base64", "value": "AAFrZXk="},
            "interfaces": [
                {"query": True, "admin": True, "protocol": "TCP", "port": 2641},
                {"query": True, "admin": False, "protocol": "HTTP", "port": 8000},
            ],
        }
    ],
}
SITE = vd.Site(
    servers=(
        vd.Server(
            1,
            "192.0.2.7",
            b"\x00\x01key",
            (vd.Interface("TCP", 2641, query=True, admin=True), vd.Interface("HTTP", 8000, query=True, admin=False)),
        ),
    ),
    serial_number=3,
    hash_option=vd.HASH_OPTIONS["BY_SUFFIX"],
    attributes=(("desc", "二级节点"),),
)


# Body shapes --------------------------------------------------------------------------


def test_the_three_body_shapes_parse_alike() -> None:
    values = [_value(index=1), _value(index=2, type="EMAIL", data="a@example.com")]
    wrapped = values_from_body({"values": values})
    assert values_from_body(values) == wrapped
    assert [v.value.index for v in wrapped] == [1, 2]
    assert values_from_body(values[1]) == [wrapped[1]]


@pytest.mark.parametrize("body", [[], {"values": []}])
def test_a_body_without_values_is_refused(body: Any) -> None:
    with pytest.raises(InvalidValue, match="carries no values"):
        values_from_body(body)


@pytest.mark.parametrize("body", [None, 5, "x", [None], {"values": ["x"]}, [[_value()]]])
def test_a_body_whose_values_are_not_objects_is_refused(body: Any) -> None:
    with pytest.raises(InvalidValue, match=r"values\[0\] must be an object"):
        values_from_body(body)


def test_duplicate_indexes_are_refused() -> None:
    with pytest.raises(InvalidValue, match="index 7 appears more than once"):
        values_from_body([_value(index=7), _value(index=8), _value(index=7, data="other")])


# Value fields -------------------------------------------------------------------------


def test_a_minimal_value_gets_the_defaults() -> None:
    incoming = _one(_value())
    assert incoming == IncomingValue(HandleValue(1, "URL", b"https://example.com/p/1"), "string")
    assert incoming.value.ttl == DEFAULT_TTL
    assert not incoming.value.ttl_absolute


@pytest.mark.parametrize(("ttl", "expected"), [(0, 0), (3600, 3600), ("3600", 3600), (2**31 - 1, 2**31 - 1)])
def test_relative_ttl(ttl: Any, expected: int) -> None:
    value = _one(_value(ttl=ttl)).value
    assert (value.ttl, value.ttl_absolute) == (expected, False)


@pytest.mark.parametrize(
    "ttl", ["2026-11-27T08:00:00Z", "2026-11-27T08:00:00", "2026-11-27T09:00:00+01:00", "2026-11-27T08:00:00.000Z"]
)
def test_absolute_ttl_is_an_expiry_in_epoch_seconds(ttl: str) -> None:
    value = _one(_value(ttl=ttl)).value
    assert (value.ttl, value.ttl_absolute) == (NOV_27_2026, True)


@pytest.mark.parametrize(("text", "bits"), [("1110", 0b1110), ("1100", 0b1100), ("0000", 0), ("1111", 0b1111)])
def test_value_permissions(text: str, bits: int) -> None:
    assert _one(_value(permissions=text)).value.permissions == bits


def test_references() -> None:
    refs = [{"index": 100, "handle": "0.NA/88.1"}, {"index": 0, "handle": "88.1/other"}]
    assert _one(_value(references=refs)).value.references == ((100, "0.NA/88.1"), (0, "88.1/other"))


def test_the_client_cannot_set_the_timestamp() -> None:
    assert _one(_value(timestamp="2026-11-27T08:00:00Z")).value.timestamp == 0


# Data formats -------------------------------------------------------------------------


def test_bare_string_data_is_the_string_format() -> None:
    incoming = _one(_value(data="标识 ✓"))
    assert (incoming.value.data, incoming.format) == ("标识 ✓".encode(), "string")


@pytest.mark.parametrize(
    ("fmt", "raw", "expected"),
    [
        ("string", "héllo", "héllo".encode()),
        ("string", "", b""),
        ("base64", "AAEC/w==", b"\x00\x01\x02\xff"),
        ("base64", "", b""),
        ("hex", "0001ff", b"\x00\x01\xff"),
        ("hex", "00FF", b"\x00\xff"),
        ("key", "AAEC/w==", b"\x00\x01\x02\xff"),
        ("hash", "secret-or-hash", b"secret-or-hash"),
    ],
)
def test_byte_formats(fmt: str, raw: str, expected: bytes) -> None:
    incoming = _data(fmt, raw)
    assert (incoming.value.data, incoming.format) == (expected, fmt)


@pytest.mark.parametrize("index", [200, "200"])
def test_admin_format_accepts_the_index_as_a_number_or_digit_string(index: Any) -> None:
    incoming = _data("admin", {**ADMIN_JSON, "index": index}, "HS_ADMIN")
    assert (incoming.value.data, incoming.format) == (ADMIN_BYTES, "admin")


def test_vlist_format() -> None:
    members = [{"handle": "0.NA/88.1", "index": 200}, {"handle": "88.1/admins", "index": "300"}]
    incoming = _data("vlist", members, "HS_VLIST")
    assert incoming.value.data == vd.encode_vlist([("0.NA/88.1", 200), ("88.1/admins", 300)])
    assert incoming.format == "vlist"


def test_site_format() -> None:
    incoming = _data("site", SITE_JSON, "HS_SITE")
    assert vd.decode_site(incoming.value.data) == SITE
    assert incoming.format == "site"


def test_site_format_defaults() -> None:
    minimal = {"servers": [{"address": "::1", "interfaces": [{"protocol": "tcp", "port": 2641}]}]}
    site = vd.decode_site(_data("site", minimal, "HS_SITE").value.data)
    assert (site.version, site.protocol_version, site.serial_number) == (1, (2, 10), 1)
    assert (site.is_primary, site.is_multi_primary, site.hash_option) == (True, False, vd.HASH_OPTIONS["BY_ALL"])
    (server,) = site.servers
    assert (server.server_id, server.public_key) == (1, b"")
    assert server.interfaces == (vd.Interface("TCP", 2641, query=True, admin=False),)


@pytest.mark.parametrize(("option", "expected"), [("by_prefix", 0), ("BY_ALL", 2), (1, 1), (200, 200)])
def test_site_hash_option_by_name_or_number(option: Any, expected: int) -> None:
    site = vd.decode_site(_data("site", {**SITE_JSON, "hashOption": option}, "HS_SITE").value.data)
    assert site.hash_option == expected


# Output -------------------------------------------------------------------------------


def test_value_to_json_of_a_plain_value() -> None:
    value = HandleValue(1, "URL", b"https://example.com/p/1", timestamp=NOV_27_2026)
    assert value_to_json(value) == {
        "index": 1,
        "type": "URL",
        "data": {"format": "string", "value": "https://example.com/p/1"},
        "ttl": 86400,
        "timestamp": "2026-11-27T08:00:00Z",
    }


def test_value_to_json_shows_unusual_permissions_absolute_ttl_and_references() -> None:
    value = HandleValue(
        300,
        "HS_SECKEY",
        b"s3cret",
        ttl=NOV_27_2026,
        ttl_absolute=True,
        permissions=SECRET_PERMISSIONS,
        references=((100, "0.NA/88.1"),),
    )
    out = value_to_json(value)
    assert out["permissions"] == "1100"
    assert out["ttl"] == "2026-11-27T08:00:00Z"
    assert out["timestamp"] == "1970-01-01T00:00:00Z"
    assert out["references"] == [{"index": 100, "handle": "0.NA/88.1"}]
    assert out["data"] == {"format": "hash", "value": "s3cret"}


@pytest.mark.parametrize(
    ("vtype", "data", "shown"),
    [
        ("HS_ADMIN", ADMIN_BYTES, {"format": "admin", "value": ADMIN_JSON}),
        ("hs_admin", ADMIN_BYTES, {"format": "admin", "value": ADMIN_JSON}),
        (
            "HS_VLIST",
            vd.encode_vlist([("0.NA/88.1", 200)]),
            {"format": "vlist", "value": [{"handle": "0.NA/88.1", "index": 200}]},
        ),
        ("HS_PUBKEY", b"\x00\x01\xff", {"format": "key", "value": "AAH/"}),
        ("HS_SECKEY", b"secret", {"format": "hash", "value": "secret"}),
        ("HS_SECKEY", b"\xff\x00", {"format": "base64", "value": "/wA="}),  # not text: shown losslessly
        ("URL", b"\xff\xfe", {"format": "base64", "value": "//4="}),
        ("HS_ADMIN", b"not an admin record", {"format": "string", "value": "not an admin record"}),
        ("HS_SITE", b"\x00\x01", {"format": "string", "value": "\x00\x01"}),
    ],
)
def test_data_format_is_chosen_by_type(vtype: str, data: bytes, shown: dict[str, Any]) -> None:
    assert data_to_json(HandleValue(1, vtype, data)) == shown


@pytest.mark.parametrize("vtype", ["HS_SITE", "HS_SITE.PREFIX"])
def test_site_values_are_shown_as_sites(vtype: str) -> None:
    shown = data_to_json(HandleValue(1, vtype, vd.encode_site(SITE)))
    assert shown == {"format": "site", "value": SITE_JSON}


# Round trips --------------------------------------------------------------------------

ROUND_TRIP_BODIES = [
    _value(),
    _value(data={"format": "base64", "value": base64.b64encode(b"\x00\xff\x10").decode()}),
    _value(data={"format": "hex", "value": "deadbeef"}),
    _value(index=100, type="HS_ADMIN", data={"format": "admin", "value": ADMIN_JSON}),
    _value(index=200, type="HS_VLIST", data={"format": "vlist", "value": [{"handle": "88.1/a", "index": 300}]}),
    _value(index=1, type="HS_SITE", data={"format": "site", "value": SITE_JSON}),
    _value(index=300, type="HS_PUBKEY", data={"format": "key", "value": "AAEC"}),
    _value(index=300, type="HS_SECKEY", data={"format": "hash", "value": "pw"}, permissions="1100"),
    _value(index=300, type="HS_SECKEY", data={"format": "base64", "value": "/wA="}, permissions="1100"),
    _value(ttl="2026-11-27T08:00:00Z", references=[{"index": 1, "handle": "88.1/b"}], permissions="1111"),
]


@pytest.mark.parametrize("body", ROUND_TRIP_BODIES)
def test_json_value_json_value_round_trip(body: dict[str, Any]) -> None:
    first = _one(body).value
    shown = value_to_json(first)
    second = value_from_json(shown).value
    assert second == first
    assert value_to_json(second) == shown


# Refusals -----------------------------------------------------------------------------

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    # index
    (_value(index=_DROP), r"values\[0\]\.index must be an integer"),
    (_value(index="1"), "index must be an integer"),
    (_value(index=1.0), "index must be an integer"),
    (_value(index=True), "index must be an integer"),
    (_value(index=None), "index must be an integer"),
    (_value(index=0), "index must be between 1 and 2147483647"),
    (_value(index=-5), "index must be between 1 and 2147483647"),
    (_value(index=2**31), "index must be between 1 and 2147483647"),
    # type
    (_value(type=_DROP), "value 1: type must be a string"),
    (_value(type=5), "value 1: type must be a string"),
    (_value(type="T" * 129), "type is longer than 128 characters"),
    (_value(type="UR\nL"), "type contains control characters"),
    (_value(type="UR\ud800L"), "type is not valid UTF-8"),
    # data
    (_value(data=_DROP), "value 1 has no data"),
    (_value(data=5), "value 1: data must be an object"),
    (_value(data=["x"]), "value 1: data must be an object"),
    (_value(data={"value": "x"}), r"data\.format must be a string"),
    (_value(data={"format": "string"}), "data has no 'value'"),
    (_value(data={"format": "xml", "value": "x"}), "format 'xml' is unknown; use one of string, base64, hex"),
    (_value(data={"format": "STRING", "value": "x"}), "format 'STRING' is unknown"),
    (_value(data={"format": "string", "value": 5}), r"data\.value must be a string"),
    (_value(data="\ud800"), "data is not valid UTF-8 text"),
    (_value(data={"format": "string", "value": "a\udfffb"}), "data.value is not valid UTF-8 text"),
    (_value(data={"format": "hash", "value": "\ud800"}), "data.value is not valid UTF-8 text"),
    (_value(data={"format": "base64", "value": "not base64!"}), "data.value is not valid base64"),
    (_value(data={"format": "base64", "value": "QQ="}), "not valid base64"),
    (_value(data={"format": "base64", "value": "QUFB\u00e9"}), "not valid base64"),
    (_value(data={"format": "key", "value": "%%%%"}), "not valid base64"),
    (_value(data={"format": "base64", "value": None}), "must be a string"),
    (_value(data={"format": "hex", "value": "0g"}), "data.value is not valid hex"),
    (_value(data={"format": "hex", "value": "abc"}), "not valid hex"),
    (_value(data={"format": "hex", "value": "\u0660\u0661"}), "not valid hex"),
    # ttl
    (_value(ttl=-1), "ttl must be between 0 and 2147483647"),
    (_value(ttl=2**31), "ttl must be between 0 and 2147483647"),
    (_value(ttl=1.5), "ttl must be an integer"),
    (_value(ttl=True), "ttl must be an integer"),
    (_value(ttl=[]), "ttl must be an integer"),
    (_value(ttl="soon"), "ttl: 'soon' is not an ISO-8601 time"),
    (_value(ttl=""), "is not an ISO-8601 time"),
    (_value(ttl="9" * 5000), "ttl must be between 0 and 2147483647"),
    (_value(ttl="\u0661\u0662"), "ttl must be an integer"),
    (_value(ttl="1969-12-31T23:59:59Z"), "ttl: '1969-12-31T23:59:59Z' is not between 1970 and 2038"),
    (_value(ttl="9999-12-31T23:59:59-23:00"), "is not between 1970 and 2038"),
    # permissions
    (_value(permissions="111"), "permissions must be 4 characters of 0 and 1, e.g. '1110'"),
    (_value(permissions="11100"), "4 characters of 0 and 1"),
    (_value(permissions="11a0"), "4 characters of 0 and 1"),
    (_value(permissions=1110), "permissions must be a string"),
    # references
    (_value(references={"index": 1}), "references must be an array"),
    (_value(references=["88.1/x"]), r"references\[0\] must be an object"),
    (_value(references=[{"handle": "88.1/x"}]), r"references\[0\]\.index must be an integer"),
    (_value(references=[{"index": "1", "handle": "88.1/x"}]), r"references\[0\]\.index must be an integer"),
    (_value(references=[{"index": 1, "handle": "nohandle"}]), r"references\[0\]\.handle: handle 'nohandle' has no"),
]


ADMIN_BAD: list[tuple[Any, str]] = [
    ("x", "data.value must be an object"),
    ({**ADMIN_JSON, "handle": "nohandle"}, r"data\.value\.handle: handle 'nohandle' has no '/'"),
    ({**ADMIN_JSON, "handle": "88.1/\ud800"}, "not valid UTF-8"),
    ({**ADMIN_JSON, "handle": None}, r"data\.value\.handle must be a string"),
    ({**ADMIN_JSON, "index": -1}, r"data\.value\.index must be between 0 and 2147483647"),
    ({**ADMIN_JSON, "index": "abc"}, r"data\.value\.index must be an integer"),
    ({**ADMIN_JSON, "index": "9" * 5000}, r"data\.value\.index must be between 0 and 2147483647"),
    ({**ADMIN_JSON, "index": "²"}, r"data\.value\.index must be an integer"),
    ({**ADMIN_JSON, "permissions": None}, r"data\.value\.permissions must be a string"),
    ({**ADMIN_JSON, "permissions": "0111"}, "12 characters of 0 and 1"),
]
VLIST_BAD: list[tuple[Any, str]] = [
    ({"handle": "88.1/a", "index": 1}, "data.value must be an array"),
    (["88.1/a"], r"data\.value\[0\] must be an object"),
    ([{"handle": "88.1/a", "index": 1}, {"handle": "a", "index": 1}], r"data\.value\[1\]\.handle: handle 'a'"),
    ([{"handle": "88.1/a", "index": 2**31}], r"data\.value\[0\]\.index must be between"),
]
SITE_BAD: list[tuple[Any, str]] = [
    ({}, r"data\.value\.servers must be an array"),
    ({**SITE_JSON, "servers": ["x"]}, r"servers\[0\] must be an object"),
    ({**SITE_JSON, "servers": [{"address": "example.org"}]}, "address 'example.org' is not an IP address"),
    ({**SITE_JSON, "servers": [{"address": None}]}, r"servers\[0\]\.address must be a string"),
    ({**SITE_JSON, "servers": [{"address": "::1", "serverId": -1}]}, r"serverId must be between"),
    ({**SITE_JSON, "servers": [{"address": "::1", "publicKey": "AAEC"}]}, r"publicKey must be an object"),
    (
        {**SITE_JSON, "servers": [{"address": "::1", "publicKey": {"value": "@@"}}]},
        "publicKey.value is not valid base64",
    ),
    ({**SITE_JSON, "servers": [{"address": "::1", "interfaces": {}}]}, r"interfaces must be an array"),
    (
        {**SITE_JSON, "servers": [{"address": "::1", "interfaces": [{"protocol": "SCTP", "port": 1}]}]},
        r"interfaces\[0\]\.protocol must be one of UDP, TCP, HTTP, HTTPS",
    ),
    (
        {**SITE_JSON, "servers": [{"address": "::1", "interfaces": [{"protocol": "TCP", "port": 65536}]}]},
        r"interfaces\[0\]\.port must be between 0 and 65535",
    ),
    ({**SITE_JSON, "hashOption": "BY_NOTHING"}, "hashOption must be one of BY_PREFIX, BY_SUFFIX, BY_ALL"),
    ({**SITE_JSON, "hashOption": 256}, "hashOption must be between 0 and 255"),
    ({**SITE_JSON, "protocolVersion": "2"}, "protocolVersion must look like '2.10'"),
    ({**SITE_JSON, "protocolVersion": "2.x"}, "protocolVersion must look like '2.10'"),
    ({**SITE_JSON, "protocolVersion": "².1"}, "protocolVersion must look like '2.10'"),
    ({**SITE_JSON, "protocolVersion": "9" * 5000 + ".1"}, "protocolVersion must be between 0 and 255"),
    ({**SITE_JSON, "protocolVersion": "256.1"}, "protocolVersion must be between 0 and 255"),
    ({**SITE_JSON, "version": 70000}, "version must be between 0 and 65535"),
    ({**SITE_JSON, "serialNumber": "1"}, "serialNumber must be an integer"),
    ({**SITE_JSON, "primaryMask": True}, "primaryMask must be an object"),
    ({**SITE_JSON, "hashFilter": 1}, "hashFilter must be a string"),
    ({**SITE_JSON, "hashFilter": "\ud800"}, "hashFilter is not valid UTF-8 text"),
    ({**SITE_JSON, "attributes": {}}, "attributes must be an array"),
    ({**SITE_JSON, "attributes": ["x"]}, r"attributes\[0\] must be an object"),
    ({**SITE_JSON, "attributes": [{"name": "n"}]}, r"attributes\[0\]\.value must be a string"),
    ({**SITE_JSON, "attributes": [{"name": "\udc80", "value": "v"}]}, r"attributes\[0\]\.name is not valid UTF-8"),
    ({**SITE_JSON, "attributes": [{"name": "n", "value": "\udc80"}]}, r"attributes\[0\]\.value is not valid UTF-8"),
]


@pytest.mark.parametrize(("body", "match"), BAD_VALUES)
def test_bad_values_are_refused_with_a_clear_message(body: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidValue, match=match):
        values_from_body(body)


@pytest.mark.parametrize(
    ("fmt", "raw", "match"),
    [("admin", raw, match) for raw, match in ADMIN_BAD]
    + [("vlist", raw, match) for raw, match in VLIST_BAD]
    + [("site", raw, match) for raw, match in SITE_BAD],
)
def test_bad_structured_data_is_refused_with_a_clear_message(fmt: str, raw: Any, match: str) -> None:
    with pytest.raises(InvalidValue, match=match):
        values_from_body({"values": [_value(index=9, type="X", data={"format": fmt, "value": raw})]})


def test_a_bad_value_later_in_the_body_is_named_by_its_index() -> None:
    with pytest.raises(InvalidValue, match="value 2: type is longer than 128 characters"):
        values_from_body([_value(index=1), _value(index=2, type="T" * 129)])


def test_type_of_exactly_128_characters_is_accepted() -> None:
    assert _one(_value(type="T" * 128)).value.type == "T" * 128
