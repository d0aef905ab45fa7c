"""Property-based tests: hostile input gives a clean error or a valid result; valid data round-trips."""

from __future__ import annotations

import base64
import string
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import valuedata as vd
from protocol.errors import InvalidHandle, InvalidValue, ProtocolViolation
from protocol.identifiers import MAX_HANDLE_BYTES, NA_PREFIX, Handle, ascii_upper, parse_handle
from protocol.jsonfmt import DATA_FORMATS, IncomingValue, value_from_json, value_to_json, values_from_body
from protocol.records import (
    HS_ADMIN,
    HS_PUBKEY,
    HS_SECKEY,
    HS_SITE,
    HS_VLIST,
    MAX_INDEX,
    MAX_TYPE_CHARS,
    HandleRecord,
    HandleValue,
    decode_record,
    encode_record,
)

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# Text that reaches the awkward corners: controls (C0, DEL, C1), lone surrogates, non-ASCII letters.
awkward_chars = st.one_of(
    st.characters(codec="utf-8"),
    st.characters(max_codepoint=0xA0),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.sampled_from("ßıﬀéÉ标/.:"),
)
awkward_text = st.text(awkward_chars, max_size=12)

# Valid handles ------------------------------------------------------------------------

segment = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=5)
prefixes = st.lists(segment, min_size=1, max_size=4).map(".".join).filter(lambda p: ascii_upper(p) != NA_PREFIX)
suffix_chars = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))
suffixes = st.text(suffix_chars, min_size=1, max_size=20)
handles = st.builds(lambda p, s: f"{p}/{s}", prefixes, suffixes)
prefix_handles = prefixes.map(lambda p: f"{NA_PREFIX}/{p}")
any_valid_handle = st.one_of(handles, prefix_handles, prefixes.map(lambda p: f"0.na/{p}"))


# (1) JSON bodies ----------------------------------------------------------------------

KEYS = (
    "index",
    "type",
    "data",
    "format",
    "value",
    "values",
    "ttl",
    "permissions",
    "references",
    "handle",
    "servers",
    "address",
    "interfaces",
    "protocol",
    "port",
    "publicKey",
    "serverId",
    "attributes",
    "name",
    "hashOption",
    "hashFilter",
    "protocolVersion",
    "primaryMask",
    "version",
    "serialNumber",
)
MEANINGFUL_STRINGS = (
    *DATA_FORMATS,
    "1110",
    "1100",
    "011111110011",
    "88.1/x",
    "0.NA/88.1",
    "nohandle",
    "2026-11-27T08:00:00Z",
    "1969-01-01T00:00:00Z",
    "9999-12-31T23:59:59-23:00",
    "HS_ADMIN",
    "HS_SITE",
    "HS_VLIST",
    "HS_SECKEY",
    "TCP",
    "BY_ALL",
    "2.10",
    "².1",
    "127.0.0.1",
    "::1",
    "AAEC",
    "zz",
    "200",
    "9" * 5000,
    "\ud800",
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**33), max_value=2**33),
    st.sampled_from([0, 1, 200, 65535, 2**31 - 1, 2**31, 2**32, 2**64]),
    st.floats(),
    awkward_text,
    st.sampled_from(MEANINGFUL_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), awkward_text), children, max_size=6),
    ),
    max_leaves=25,
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly well-formed, sometimes anything: so the parser gets deep before it meets the junk."""
    return st.one_of(strategy, strategy, strategy, json_values)


interface_shaped = st.fixed_dictionaries(
    {"protocol": _maybe(st.sampled_from(["TCP", "udp", "HTTP", "SCTP"])), "port": _maybe(st.integers(0, 70000))},
    optional={"query": json_values, "admin": json_values},
)
server_shaped = st.fixed_dictionaries(
    {"address": _maybe(st.sampled_from(["127.0.0.1", "::1", "2001:db8::5", "host"]))},
    optional={
        "interfaces": _maybe(st.lists(interface_shaped, max_size=2)),
        "publicKey": _maybe(st.fixed_dictionaries({"value": _maybe(st.sampled_from(["", "AAEC", "@@"]))})),
        "serverId": _maybe(st.integers(0, 2**32)),
    },
)
site_shaped = st.fixed_dictionaries(
    {"servers": _maybe(st.lists(server_shaped, max_size=2))},
    optional={
        "hashFilter": _maybe(awkward_text),
        "attributes": _maybe(
            st.lists(st.fixed_dictionaries({"name": _maybe(awkward_text), "value": _maybe(awkward_text)}), max_size=2)
        ),
        "protocolVersion": _maybe(st.sampled_from(["2.10", "2", "².1", "9" * 5000 + ".1", "300.1"])),
        "hashOption": _maybe(st.sampled_from(["BY_ALL", "by_prefix", "BY_X", 1, 256])),
        "primaryMask": _maybe(st.fixed_dictionaries({}, optional={"isPrimary": json_values})),
    },
)
digit_strings = st.sampled_from(["0", "200", "2147483648", "9" * 5000, "²", "-1"])
ref_shaped = st.fixed_dictionaries(
    {"handle": _maybe(any_valid_handle), "index": _maybe(st.one_of(st.integers(-1, 2**32), digit_strings))}
)
admin_shaped = st.fixed_dictionaries(
    {
        "handle": _maybe(any_valid_handle),
        "index": _maybe(st.one_of(st.integers(-1, 2**32), digit_strings)),
        "permissions": _maybe(st.text("01", min_size=11, max_size=13)),
    },
)


def _data_of(fmt: str, value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"format": st.just(fmt), "value": value})


data_shaped = st.one_of(
    awkward_text,
    _data_of("admin", _maybe(admin_shaped)),
    _data_of("vlist", _maybe(st.lists(ref_shaped, max_size=3))),
    _data_of("site", _maybe(site_shaped)),
    st.fixed_dictionaries({"format": _maybe(st.sampled_from(DATA_FORMATS))}, optional={"value": _maybe(awkward_text)}),
)
ttls = st.one_of(
    st.integers(-1, 2**31),
    digit_strings,
    st.sampled_from(["2026-11-27T08:00:00Z", "1969-01-01T00:00:00Z", "9999-12-31T23:59:59-23:00", "soon"]),
)
value_shaped = st.fixed_dictionaries(
    {
        "index": _maybe(st.integers(-1, 2**31)),
        "type": _maybe(st.text(suffix_chars, max_size=130)),
        "data": _maybe(data_shaped),
    },
    optional={
        "ttl": _maybe(ttls),
        "permissions": _maybe(st.text("01", min_size=3, max_size=5)),
        "references": _maybe(st.lists(ref_shaped, max_size=2)),
    },
)
bodies = st.one_of(
    json_values,
    value_shaped,
    st.lists(value_shaped, max_size=3),
    st.fixed_dictionaries({"values": _maybe(st.lists(value_shaped, max_size=3))}),
)


@FAST
@given(bodies)
def test_any_json_body_gives_values_or_invalid_value(body: Any) -> None:
    try:
        parsed = values_from_body(body)
    except InvalidValue as exc:
        assert exc.message
        return
    assert parsed
    assert all(isinstance(p, IncomingValue) and isinstance(p.value, HandleValue) for p in parsed)
    assert len({p.value.index for p in parsed}) == len(parsed)
    for p in parsed:
        assert 1 <= p.value.index <= MAX_INDEX
        assert isinstance(p.value.data, bytes)
        value_to_json(p.value)  # whatever was accepted can be shown


# (2) Bytes to the binary codecs -------------------------------------------------------


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """A valid encoding truncated, extended, or with one byte changed."""
    n = len(valid)
    return st.one_of(
        st.integers(0, n).map(lambda end: valid[:end]),
        st.binary(min_size=1, max_size=8).map(lambda extra: valid + extra),
        st.tuples(st.integers(0, n - 1), st.integers(0, 255)).map(
            lambda p: valid[: p[0]] + bytes([p[1]]) + valid[p[0] + 1 :]
        ),
    )


SAMPLE_SITE = vd.Site(
    servers=(vd.Server(1, "127.0.0.1", b"key", (vd.Interface("TCP", 2641), vd.Interface("HTTP", 8000, admin=True))),),
    attributes=(("desc", "x"),),
)


@FAST
@given(st.one_of(st.binary(max_size=64), _mutations(vd.encode_admin(vd.AdminRef("0.NA/88.1", 200, 0x0FF3)))))
def test_any_bytes_decode_as_admin_or_raise_invalid_value(data: bytes) -> None:
    try:
        ref = vd.decode_admin(data)
    except InvalidValue:
        return
    assert ref.permissions == int.from_bytes(data[:2], "big") & 0x0FFF  # reserved high bits are dropped
    assert vd.encode_admin(ref)[2:] == data[2:]


@FAST
@given(st.one_of(st.binary(max_size=64), _mutations(vd.encode_vlist([("0.NA/88.1", 200), ("88.1/a", 1)]))))
def test_any_bytes_decode_as_vlist_or_raise_invalid_value(data: bytes) -> None:
    try:
        members = vd.decode_vlist(data)
    except InvalidValue:
        return
    assert vd.encode_vlist(members) == data


@FAST
@given(st.one_of(st.binary(max_size=128), _mutations(vd.encode_site(SAMPLE_SITE))))
def test_any_bytes_decode_as_site_or_raise_invalid_value(data: bytes) -> None:
    try:
        site = vd.decode_site(data)
    except InvalidValue:
        return
    assert vd.decode_site(vd.encode_site(site)) == site


msgpack_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(),
        st.text(max_size=8),
        st.binary(max_size=8),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=8), st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=20,
)
GOOD_BLOB = encode_record(
    HandleRecord("88.1/x", (HandleValue(1, "URL", b"u", references=((100, "0.NA/88.1"),)), HandleValue(2, "T", b"")))
)


@FAST
@given(
    st.one_of(
        st.binary(max_size=64),
        _mutations(GOOD_BLOB),
        msgpack_values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
        st.lists(msgpack_values, min_size=7, max_size=7).map(
            lambda row: msgpack.packb([1, "88.1/x", [row]], use_bin_type=True)
        ),
    )
)
def test_any_bytes_decode_as_a_record_or_raise_protocol_violation(blob: bytes) -> None:
    try:
        record = decode_record(blob)
    except ProtocolViolation:
        return
    assert isinstance(record.handle, str)
    for v in record.values:
        assert type(v.index) is int and type(v.ttl) is int and type(v.timestamp) is int
        assert type(v.permissions) is int and isinstance(v.type, str) and isinstance(v.data, bytes)
        assert all(type(i) is int and isinstance(h, str) for i, h in v.references)
    assert decode_record(encode_record(record)) == record


# (3) Handle text ----------------------------------------------------------------------


@FAST
@given(
    st.one_of(
        awkward_text, st.text(max_size=40), any_valid_handle, st.builds("{}/{}".format, awkward_text, awkward_text)
    )
)
def test_any_text_parses_as_a_handle_or_raises_invalid_handle(text: str) -> None:
    try:
        h = parse_handle(text)
    except InvalidHandle as exc:
        assert exc.message
        return
    assert isinstance(h, Handle)
    assert h.key.startswith(h.prefix + "/")
    assert len(text.encode("utf-8")) <= MAX_HANDLE_BYTES


@FAST
@given(any_valid_handle)
def test_valid_handles_parse(text: str) -> None:
    h = parse_handle(text)
    assert h.prefix == ascii_upper(text.partition("/")[0])
    if not h.is_prefix_handle:
        assert h.suffix == text.partition("/")[2]


@FAST
@given(any_valid_handle)
def test_case_insensitive_key_is_the_same_for_ascii_case_variants(text: str) -> None:
    key = parse_handle(text).key
    assert parse_handle(ascii_upper(text)).key == key
    assert parse_handle(text.translate(_ASCII_LOWER)).key == key
    assert parse_handle(text.swapcase() if text.isascii() else text).key == key
    assert parse_handle(key).key == key  # the key is itself a handle that keys to itself


@FAST
@given(prefixes, suffixes)
def test_case_sensitive_key_ignores_prefix_case_only(prefix: str, suffix: str) -> None:
    key = parse_handle(f"{prefix}/{suffix}", case_sensitive=True).key
    assert key == f"{ascii_upper(prefix)}/{suffix}"
    assert parse_handle(f"{prefix.translate(_ASCII_LOWER)}/{suffix}", case_sensitive=True).key == key
    assert parse_handle(key, case_sensitive=True).key == key


@FAST
@given(any_valid_handle)
def test_only_ascii_letters_are_folded(text: str) -> None:
    key = parse_handle(text).key
    assert len(key) == len(text)
    for before, after in zip(text, key, strict=True):
        assert after == before or (before in string.ascii_lowercase and after == before.upper())


# (4) Round trips of valid values ------------------------------------------------------

plain_types = st.text(suffix_chars, min_size=1, max_size=MAX_TYPE_CHARS).filter(
    lambda t: (
        t.upper() not in {HS_ADMIN, HS_VLIST, HS_SITE, HS_PUBKEY, HS_SECKEY} and not t.upper().startswith("HS_SITE.")
    )
)
u32 = st.integers(0, 2**32 - 1)
json_index = st.integers(0, MAX_INDEX)
utf8_text = st.text(st.characters(codec="utf-8"), max_size=10)
addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
interfaces = st.builds(
    vd.Interface, st.sampled_from(sorted(vd.PROTOCOLS)), st.integers(0, 65535), st.booleans(), st.booleans()
)
servers = st.builds(vd.Server, u32, addresses, st.binary(max_size=16), st.lists(interfaces, max_size=3).map(tuple))
sites = st.builds(
    vd.Site,
    servers=st.lists(servers, max_size=3).map(tuple),
    version=st.integers(0, 65535),
    protocol_version=st.tuples(st.integers(0, 255), st.integers(0, 255)),
    serial_number=st.integers(0, 65535),
    is_primary=st.booleans(),
    is_multi_primary=st.booleans(),
    hash_option=st.integers(0, 255),
    hash_filter=utf8_text,
    attributes=st.lists(st.tuples(utf8_text, utf8_text), max_size=3).map(tuple),
)
admin_refs = st.builds(vd.AdminRef, any_valid_handle, json_index, st.integers(0, 0x0FFF))
typed_data = st.one_of(
    st.tuples(plain_types, st.binary(max_size=40)),
    st.tuples(plain_types, st.text(suffix_chars, max_size=20).map(str.encode)),
    st.tuples(st.sampled_from([HS_ADMIN, "hs_admin"]), admin_refs.map(vd.encode_admin)),
    st.tuples(st.just(HS_VLIST), st.lists(st.tuples(any_valid_handle, json_index), max_size=3).map(vd.encode_vlist)),
    st.tuples(st.sampled_from([HS_SITE, "HS_SITE.PREFIX"]), sites.map(vd.encode_site)),
    st.tuples(st.sampled_from([HS_PUBKEY, HS_SECKEY]), st.binary(max_size=40)),
    st.tuples(st.just(HS_SECKEY), st.text(suffix_chars, max_size=20).map(str.encode)),
)


@st.composite
def handle_values(draw: st.DrawFn) -> HandleValue:
    vtype, data = draw(typed_data)
    return HandleValue(
        index=draw(st.integers(1, MAX_INDEX)),
        type=vtype,
        data=data,
        ttl=draw(st.integers(0, MAX_INDEX)),
        ttl_absolute=draw(st.booleans()),
        timestamp=draw(st.integers(0, 2**32 - 1)),
        permissions=draw(st.integers(0, 15)),
        references=tuple(draw(st.lists(st.tuples(json_index, any_valid_handle), max_size=2))),
    )


@FAST
@given(handle_values())
def test_valid_values_round_trip_through_json(value: HandleValue) -> None:
    shown = value_to_json(value)
    back = value_from_json(shown).value
    assert back == value._replace(timestamp=0)  # the server, not the client, sets timestamps
    assert value_to_json(back._replace(timestamp=value.timestamp)) == shown


@FAST
@given(st.lists(handle_values(), min_size=1, max_size=4, unique_by=lambda v: v.index))
def test_valid_values_round_trip_through_a_json_body(values: list[HandleValue]) -> None:
    parsed = values_from_body({"values": [value_to_json(v) for v in values]})
    assert [p.value for p in parsed] == [v._replace(timestamp=0) for v in values]


@FAST
@given(any_valid_handle, st.lists(handle_values(), max_size=4, unique_by=lambda v: v.index))
def test_valid_records_round_trip_through_msgpack(handle: str, values: list[HandleValue]) -> None:
    record = HandleRecord(handle, tuple(values))
    assert decode_record(encode_record(record)) == record


@FAST
@given(st.binary(max_size=64))
def test_base64_data_round_trips_any_bytes(data: bytes) -> None:
    incoming = value_from_json(
        {"index": 1, "type": "X", "data": {"format": "base64", "value": base64.b64encode(data).decode()}}
    )
    assert incoming.value.data == data
    assert value_from_json(value_to_json(incoming.value)).value.data == data
