"""The pure side of bulk import: each item checked as a registration, turned into a store row."""

from __future__ import annotations

import io
import json
from typing import Any

import msgpack
import pytest

from protocol.errors import HandleError, InvalidHandle, InvalidValue, NotResponsible
from protocol.records import decode_record
from registry.bulk import items as bulk
from registry.bulk.rules import Rules
from registry.identity import secrets

RULES = Rules("88.118", now=1_800_000_000)


def item(handle: str = "88.118.1/Abc", *values: dict[str, Any]) -> dict[str, Any]:
    return {"handle": handle, "values": list(values) or [{"index": 1, "type": "URL", "data": "https://x/"}]}


def test_a_good_item_becomes_its_key_handle_and_packed_record() -> None:
    row = bulk.row_from_item({"responseCode": 1, **item()}, RULES)
    assert (row.key, row.handle) == ("88.118.1/ABC", "88.118.1/Abc")
    (value,) = decode_record(row.blob).values
    assert (value.data, value.timestamp) == (b"https://x/", RULES.now)


def test_timestamps_given_are_kept() -> None:
    row = bulk.row_from_item(
        item("88.118/a", {"index": 1, "type": "URL", "data": "x", "timestamp": "2025-11-27T00:00:00Z"}), RULES
    )
    assert decode_record(row.blob).values[0].timestamp == 1_764_201_600


@pytest.mark.parametrize(
    ("obj", "error", "text"),
    [
        (item("99.1/x"), NotResponsible, "not under it"),
        (item("88.1180/x"), NotResponsible, "not under it"),
        (item("88.118"), InvalidHandle, "no '/'"),
        (item("88.118/" + "x" * 300), InvalidHandle, "longer than 255"),
        ({"handle": "88.118/x", "values": []}, InvalidValue, "no values"),
        ({"values": []}, InvalidValue, "no 'handle'"),
        ([], InvalidValue, "must be an object"),
        (
            item("88.118/x", {"index": 1, "type": "URL", "data": "a"}, {"index": 1, "type": "URL", "data": "b"}),
            InvalidValue,
            "more than once",
        ),
        (item("88.118/x", {"index": 0, "type": "URL", "data": "a"}), InvalidValue, "index"),
        (
            item("88.118/x", {"index": 1, "type": "HS_SECKEY", "data": {"format": "hash", "value": "plain"}}),
            InvalidValue,
            "format hash",
        ),
    ],
)
def test_bad_items_are_refused_with_the_reason(obj: Any, error: type[HandleError], text: str) -> None:
    with pytest.raises(error, match=text):
        bulk.row_from_item(obj, RULES)


def test_a_secret_in_clear_is_hashed_and_never_public() -> None:
    row = bulk.row_from_item(
        item("88.118/s", {"index": 300, "type": "HS_SECKEY", "data": "pw", "permissions": "1111"}), RULES
    )
    (value,) = decode_record(row.blob).values
    assert value.permissions == 0b1100
    assert secrets.is_current(value.data) and secrets.Verifier.verify(value.data, b"pw")


def test_the_record_size_limit_is_the_put_body_limit() -> None:
    big = item("88.118/big", {"index": 1, "type": "URL", "data": "x" * 5000})
    with pytest.raises(InvalidValue, match="over the limit"):
        bulk.row_from_item(big, Rules("88.118", max_bytes=4096))


def test_check_batch_numbers_every_refusal_and_skips_blank_lines() -> None:
    lines = [json.dumps(item("88.118/a")).encode(), b"\n", b"{broken", json.dumps(item("77/x")).encode()]
    rows, bad = bulk.check_batch(list(enumerate(lines, 1)), "jsonl", RULES)
    assert [line for line, _ in rows] == [1]
    assert [b.line for b in bad] == [3, 4] and bad[0].reason.startswith("not JSON")


def test_a_msgpack_stream_is_read_item_by_item_and_a_broken_tail_is_one_bad_item() -> None:

    stream = io.BytesIO(msgpack.packb(item("88.118/a")) + msgpack.packb(item("88.118/b")) + b"\xc1\xc1")
    raws = list(bulk.raw_items(stream, "msgpack"))
    rows, bad = bulk.check_batch(list(enumerate(raws, 1)), "msgpack", RULES)
    assert [r.key for _, r in rows] == ["88.118/A", "88.118/B"]
    assert [b.line for b in bad] == [3] and "broken msgpack stream" in bad[0].reason


def test_export_items_read_back_to_the_same_rows() -> None:
    row = bulk.row_from_item(
        item(
            "88.118/r",
            {"index": 2, "type": "BIN", "data": {"format": "hex", "value": "00ff"}, "ttl": "2030-01-01T00:00:00Z"},
        ),
        RULES,
    )
    for fmt in bulk.FORMATS:
        (raw,) = bulk.raw_items(io.BytesIO(bulk.encode_items([decode_record(row.blob)], fmt)), fmt)
        assert bulk.check_raw(raw, fmt, RULES) == row


def test_the_format_follows_the_extension_unless_told() -> None:
    assert bulk.format_of("x.msgpack", None) == "msgpack"
    assert bulk.format_of("x.jsonl", None) == bulk.format_of("-", None) == "jsonl"
    assert bulk.format_of("-", "msgpack") == "msgpack"
