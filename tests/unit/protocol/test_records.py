"""Handle values and records, and the versioned msgpack form stores and caches keep."""

from __future__ import annotations

import msgpack
import pytest

from protocol.errors import ProtocolViolation
from protocol.records import (
    DEFAULT_PERMISSIONS,
    DEFAULT_TTL,
    SECRET_PERMISSIONS,
    HandleRecord,
    HandleValue,
    decode_record,
    encode_record,
)

URL_VALUE = HandleValue(index=1, type="URL", data=b"https://example.com/p/1", timestamp=1_795_000_000)


def _row(**changes: object) -> list[object]:
    row: dict[str, object] = {
        "index": 1,
        "type": "URL",
        "data": b"x",
        "ttl": 60,
        "timestamp": 0,
        "permissions": 14,
        "refs": [],
    }
    row.update(changes)
    return list(row.values())


def _blob(*rows: list[object], version: object = 1, handle: object = "88.1/x") -> bytes:
    return msgpack.packb([version, handle, list(rows)], use_bin_type=True)  # type: ignore[no-any-return]


# Values and records -------------------------------------------------------------------


def test_value_defaults() -> None:
    v = HandleValue(index=1, type="URL", data=b"")
    assert (v.ttl, v.ttl_absolute, v.permissions, v.references) == (DEFAULT_TTL, False, DEFAULT_PERMISSIONS, ())
    assert v.public_read and v.admin_read


def test_secret_permissions_are_not_publicly_readable() -> None:
    v = HandleValue(index=300, type="HS_SECKEY", data=b"s", permissions=SECRET_PERMISSIONS)
    assert v.admin_read
    assert not v.public_read


@pytest.mark.parametrize(
    ("vtype", "wanted", "expected"),
    [
        ("URL", "url", True),
        ("URL", "URL.", True),
        ("URL.mirror", "URL.", True),
        ("URL.mirror", "URL", False),
        ("URLX", "URL.", False),
        ("HS_SITE.PREFIX", "hs_site.", True),
    ],
)
def test_type_filter(vtype: str, wanted: str, expected: bool) -> None:
    assert HandleValue(index=1, type=vtype, data=b"").type_matches(wanted) is expected


def test_record_orders_values_by_index() -> None:
    values = (HandleValue(100, "HS_ADMIN", b"a"), HandleValue(1, "URL", b"u"), HandleValue(2, "EMAIL", b"e"))
    record = HandleRecord("88.1/x", values)
    assert [v.index for v in record.values] == [1, 2, 100]
    assert record.indexes() == {1, 2, 100}
    assert record.value_at(2) == values[2]
    assert record.value_at(3) is None
    assert [v.index for v in record.with_values([values[0], values[2]]).values] == [2, 100]


# msgpack encoding ---------------------------------------------------------------------


def test_record_round_trip_keeps_every_field() -> None:
    values = (
        URL_VALUE,
        HandleValue(
            index=2,
            type="EMAIL",
            data=b"\x00\xffbinary",
            ttl=1_900_000_000,
            ttl_absolute=True,
            timestamp=1_795_000_001,
            permissions=SECRET_PERMISSIONS,
            references=((100, "0.NA/88.1"), (300, "88.1/admin")),
        ),
        HandleValue(index=2**31 - 1, type="标识", data=b"", ttl=0, permissions=0b1111),
    )
    record = HandleRecord("88.1/Mixed-Case", values)
    assert decode_record(encode_record(record)) == record


@pytest.mark.parametrize("ttl", [0, 1, 86400, 2**31 - 1])
@pytest.mark.parametrize("absolute", [False, True])
def test_ttl_type_survives_the_round_trip(ttl: int, absolute: bool) -> None:
    value = HandleValue(index=1, type="URL", data=b"u", ttl=ttl, ttl_absolute=absolute)
    (back,) = decode_record(encode_record(HandleRecord("88.1/x", (value,)))).values
    assert (back.ttl, back.ttl_absolute) == (ttl, absolute)


def test_empty_record_round_trip() -> None:
    assert decode_record(encode_record(HandleRecord("88.1/x"))) == HandleRecord("88.1/x")


def test_encoding_starts_with_the_format_version() -> None:
    assert msgpack.unpackb(encode_record(HandleRecord("88.1/x", (URL_VALUE,))))[0] == 1


def test_unknown_format_version_is_refused() -> None:
    with pytest.raises(ProtocolViolation, match="unknown record format version 2"):
        decode_record(_blob(_row(), version=2))


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"\x93\x01",  # array of 3, truncated
        msgpack.packb(7),
        msgpack.packb([1, "88.1/x"]),
        msgpack.packb([1, "88.1/x", [[1, 2, 3]]]),
        msgpack.packb([1, "88.1/x", []]) + b"\x00",  # trailing data
        msgpack.packb([1, "88.1/x", "abcdefg"]),  # a 7-character string is not a row
        b"\x91" * 5000,  # nesting deeper than the unpacker allows
    ],
)
def test_garbage_is_a_protocol_violation(blob: bytes) -> None:
    with pytest.raises(ProtocolViolation, match="undecodable stored record"):
        decode_record(blob)


@pytest.mark.parametrize(
    "row",
    [
        _row(index="1"),
        _row(index=1.5),
        _row(index=True),
        _row(type=b"URL"),
        _row(data="x"),
        _row(ttl=1.5),
        _row(ttl=None),
        _row(timestamp="now"),
        _row(permissions=[1]),
        _row(refs={"a": 1}),
        _row(refs=[[float("inf"), "88.1/x"]]),
        _row(refs=[["1", "88.1/x"]]),
        _row(refs=[[1, 2]]),
    ],
)
def test_rows_with_fields_of_the_wrong_type_are_a_protocol_violation(row: list[object]) -> None:
    with pytest.raises(ProtocolViolation):
        decode_record(_blob(row))


def test_record_whose_handle_is_not_text_is_a_protocol_violation() -> None:
    with pytest.raises(ProtocolViolation):
        decode_record(_blob(_row(), handle=5))


def test_protocol_violation_maps_to_code_4() -> None:
    assert int(ProtocolViolation.code) == 4
