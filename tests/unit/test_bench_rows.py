"""bench.load_store's RowMaker: the stored rows of the synthetic records, made fast, exactly."""

from __future__ import annotations

import random

import pytest

from bench.load_store import ENTERPRISES, RowMaker, record_for
from protocol.identifiers import parse_handle
from protocol.records import decode_record, encode_record


def test_rows_are_the_records_record_for_makes() -> None:
    maker = RowMaker()
    rng = random.Random(23)
    for i in [0, 5999, 6000, 1_234_567, *(rng.randrange(RowMaker.MAX_COUNT) for _ in range(300))]:
        ((key, handle, blob),) = maker.rows(i, i + 1)
        record = record_for(i)
        assert (key, handle, blob) == (parse_handle(record.handle).key, record.handle, encode_record(record))
        assert decode_record(blob) == record


def test_a_run_of_rows_is_in_order_and_the_range_is_bounded() -> None:
    maker = RowMaker(node_prefix="86.100")
    rows = maker.rows(ENTERPRISES - 2, ENTERPRISES + 2)
    assert [h for _, h, _ in rows] == [record_for(i, "86.100").handle for i in range(ENTERPRISES - 2, ENTERPRISES + 2)]
    with pytest.raises(ValueError):
        maker.rows(RowMaker.MAX_COUNT - 1, RowMaker.MAX_COUNT + 1)
