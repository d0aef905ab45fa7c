"""The fast path of the bulk item check accepts and refuses exactly what the general path does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.load_store import record_for
from protocol.errors import HandleError
from protocol.records import HS_SECKEY, decode_record, encode_record
from registry.bulk import fast as bulkfast
from registry.bulk import items as bulk
from registry.bulk.rules import Rules

GOOD_HANDLES = ["88.118.1/Abc", "88.118/x", "88.118.1/产品-1", "88.118.1/a b", "88.118/" + "x" * 248, "88.118.1/a/b"]
BAD_HANDLES = [
    "99.1/x",
    "88.1180/x",
    "0.NA/88.118.1",
    "0.na/88.118",
    "88.118",
    "88.118/",
    "88.118./x",
    "88..118/x",
    "88.118/a\x01",
    "88.118/a\x85",
    "88.118/a\x7f",
    "88.118/\ud800",
    "88.118 /x",
    "88.118/" + "x" * 249,
    5,
    None,
]
GOOD_ADMIN = {"handle": "0.NA/88.118.1", "index": 300, "permissions": "011111110011"}
GOOD_DATA = st.sampled_from(
    ["https://x/", "", "产品", {"format": "string", "value": "x"}, {"format": "admin", "value": GOOD_ADMIN}]
)
BAD_DATA = [
    "\ud800",
    {"format": "string", "value": "\ud800"},
    {"format": "string"},
    {"format": "hex", "value": "00"},
    {"format": "hash", "value": "x"},
    {"format": 1, "value": "x"},
    {"format": "base64", "value": "AAA="},
    {"format": "admin", "value": {**GOOD_ADMIN, "extra": 1}},
    *(
        {"format": "admin", "value": {**GOOD_ADMIN, k: v}}
        for k in GOOD_ADMIN
        for v in ("bad", "0.NA/", 7, -1, 2**31, True, "300", "0111", None)
    ),
    5,
    None,
    b"raw",
    ["x"],
]
GOOD_VALUE = st.fixed_dictionaries(
    {
        "index": st.sampled_from([1, 2, 100, 2**31 - 1]),
        "type": st.sampled_from(["URL", "HS_ADMIN", "类型"]),
        "data": GOOD_DATA,
    },
    optional={
        "ttl": st.sampled_from([86400, 0, 2**31 - 1]),
        "timestamp": st.sampled_from(["2025-11-27T00:00:00Z", "2025-11-27T08:00:00+08:00"]),
        "permissions": st.sampled_from(["1110", "0110", None]),
    },
)
BAD_FIELDS: dict[str, list[Any]] = {
    "index": [0, -1, 2**31, True, "1", 1.0, None],
    "type": ["HS_SECKEY", "hs_seckey", "", "a\x01", "x" * 129, "\ud800", 5],
    "data": BAD_DATA,
    "ttl": [-1, 2**32, "86400", None, True, "2030-01-01T00:00:00Z", 1.5],
    "timestamp": ["yesterday", 5, None, "1900-01-01T00:00:00Z"],
    "permissions": ["111", "1112", 5, ["1110"]],
    "references": [[], [{"index": 1, "handle": "88.118/x"}], "no"],
    "extra": [1],
}


@st.composite
def value(draw: st.DrawFn) -> dict[str, Any]:
    """A good value, or one with one field made odd."""
    item = draw(GOOD_VALUE)
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(BAD_FIELDS)))
        item[name] = draw(st.sampled_from(BAD_FIELDS[name]))
    return item


ITEM = st.one_of(
    st.fixed_dictionaries(
        {
            "handle": st.sampled_from(GOOD_HANDLES) | st.sampled_from(BAD_HANDLES),
            "values": st.lists(value(), max_size=4),
        },
        optional={"responseCode": st.just(1)},
    ),
    st.sampled_from([[], "x", {"handle": "88.118/x"}, {"handle": "88.118/x", "values": "v"}]),
)
RULES = st.builds(
    Rules,
    st.sampled_from(["88.118", "88.118.1", "88"]),
    st.booleans(),
    st.sampled_from([1024 * 1024, 120]),
    st.just(1_800_000_000),
)


def outcome(check: Any, obj: Any, rules: Rules) -> tuple[Any, ...]:
    """A row (secrets' salted hashes blanked) or the refusal."""
    try:
        key, handle, blob = check(obj, rules)
    except HandleError as exc:
        return (type(exc), exc.message)
    record = decode_record(blob)
    if any(v.type.upper() == HS_SECKEY for v in record.values):
        blob = encode_record(record.with_values([v._replace(data=b"") for v in record.values]))
    return ("row", key, handle, blob)


@settings(max_examples=2000, deadline=None)  # secrets are hashed slowly on purpose
@given(ITEM, RULES)
def test_the_fast_path_accepts_and_refuses_what_the_general_path_does(obj: Any, rules: Rules) -> None:
    fast = bulkfast.fast_row(obj, rules)
    assert fast is None or ("row", *fast) == outcome(bulk.general_row, obj, rules)
    assert fast is None or HS_SECKEY.encode() not in fast[2].upper()
    assert outcome(bulk.row_from_item, obj, rules) == outcome(bulk.general_row, obj, rules)


def test_an_exported_record_takes_the_fast_path() -> None:
    rules = Rules("88.118", now=1_800_000_000)
    for i in (0, 1, 7_000):
        item = bulk.item_of(record_for(i))
        assert bulkfast.fast_row(item, rules) == tuple(bulk.general_row(item, rules))


@pytest.mark.parametrize(("name", "odd"), [(name, odd) for name, odds in BAD_FIELDS.items() for odd in odds], ids=repr)
def test_each_odd_field_of_a_value_is_judged_as_the_general_path_judges_it(name: str, odd: Any) -> None:
    rules = Rules("88.118", now=1_800_000_000)
    obj = {"handle": "88.118/x", "values": [{"index": 1, "type": "URL", "data": "x", name: odd}]}
    fast = bulkfast.fast_row(obj, rules)
    assert fast is None or ("row", *fast) == outcome(bulk.general_row, obj, rules)
    assert outcome(bulk.row_from_item, obj, rules) == outcome(bulk.general_row, obj, rules)
