"""The checking pass in blocks (``resolver.commands.bulk.check``) judges every item as the item-by-item
reading (``raw_items`` + ``check_batch``) does, wherever the blocks happen to be cut."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.bulk import items as bulk
from registry.bulk.rules import Rules
from resolver.commands import bulk as command

RULES = Rules("88.118", max_bytes=400, now=1_800_000_000)
GOOD = [
    {"handle": "88.118/a", "values": [{"index": 1, "type": "URL", "data": "x"}]},
    {"handle": "88.118/A", "values": [{"index": 1, "type": "URL", "data": {"format": "hex", "value": "00"}}]},
    {"handle": "88.118/b", "values": [{"index": 2, "type": "URL", "data": "y", "ttl": 5}], "responseCode": 1},
]
BAD = [
    {"handle": "99/x", "values": [{"index": 1, "type": "URL", "data": "x"}]},
    {"handle": "88.118/c", "values": []},
    {"handle": "88.118/big", "values": [{"index": 1, "type": "URL", "data": "x" * 500}]},
    [1, 2],
]
PACKED_ODD = [
    b"\xc1",  # never used by msgpack: the stream breaks here
    b"\xa2\xff\xfe",  # a string that is not UTF-8
    b"\xca\x3f\x80\x00\x00",  # a float32: 8 bytes when re-packed
    msgpack.packb({"handle": "88.118/f", "values": [{"index": 1, "type": "URL", "data": "x", "ttl": 1.5}]}),
]
LINES_ODD = [b"\n", b"   \n", b"{broken\n", b"NaN\n", b'{"handle": "88.118/\\ud800"}\n']


def item_by_item(data: bytes, fmt: str) -> tuple[list[Any], list[bulk.BadItem]]:
    rows, bad = bulk.check_batch(list(enumerate(bulk.raw_items(io.BytesIO(data), fmt), 1)), fmt, RULES)
    return [(line, *row) for line, row in rows], bad


def in_blocks(data: bytes, fmt: str) -> tuple[list[Any], list[bulk.BadItem]]:
    spool = io.BytesIO()
    checked = command.check(io.BytesIO(data), fmt, RULES, spool, jobs=1)
    spool.seek(0)
    return [tuple(r) for r in msgpack.Unpacker(spool, raw=False)], checked.bad


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(GOOD + BAD) | st.integers(0, len(PACKED_ODD) - 1), max_size=12),
    st.integers(1, 4),
    st.integers(1, 64),
)
def test_packed_items_are_judged_alike_in_blocks(items: list[Any], batch: int, block: int) -> None:
    data = b"".join(PACKED_ODD[i] if isinstance(i, int) else msgpack.packb(i) for i in items)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(command, "CHECK_BATCH", batch)
        patch.setattr(command, "CHECK_BLOCK", block)
        old_rows, old_bad = item_by_item(data, "msgpack")
        new_rows, new_bad = in_blocks(data, "msgpack")
    assert new_bad == old_bad
    assert old_bad or new_rows == old_rows


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(GOOD + BAD) | st.integers(0, len(LINES_ODD) - 1), max_size=12),
    st.booleans(),
    st.integers(1, 64),
)
def test_lines_are_judged_alike_in_blocks(items: list[Any], last_newline: bool, block: int) -> None:
    data = b"".join(LINES_ODD[i] if isinstance(i, int) else json.dumps(i).encode() + b"\n" for i in items)
    data = data if last_newline else data.rstrip(b"\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(command, "CHECK_BLOCK", block)
        old_rows, old_bad = item_by_item(data, "jsonl")
        new_rows, new_bad = in_blocks(data, "jsonl")
    assert new_bad == old_bad
    assert old_bad or new_rows == old_rows


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=8), st.integers(1, 10), st.integers(1, 4), st.booleans())
def test_the_early_chunks_and_the_spool_after_them_hold_every_row_once(
    blocks: list[int], chunk: int, count: int, repeat: bool
) -> None:
    """What the check hands over while it goes on (``_Early``) and what is read from the spool
    after it (from the offset it says) are every spooled row, once, in order."""
    loop = asyncio.new_event_loop()
    try:
        early = command._Early(loop, chunk, count)
        spool, line = io.BytesIO(), 0
        for n in blocks:
            entries = []
            for _ in range(n):
                line += 1
                key = f"K{line % 3 if repeat else line}"  # repeat: keys given again, the later item wins
                entries.append(msgpack.packb((line, key, f"h{line}", b"r%d" % line), use_bin_type=True))
            early.feed(spool.tell(), b"".join(entries), n)
            spool.write(b"".join(entries))
        early.close()

        async def taken() -> list[tuple[int, list[tuple[str, str, bytes]]]]:
            return [chunk async for chunk in early.chunks()]

        chunks = loop.run_until_complete(taken())
    finally:
        loop.close()
    rest = list(command._spooled(spool, early.last, chunk, early.resume_at))
    assert len(chunks) <= count
    assert all(len(rows) == chunk for _, rows in chunks) or repeat  # whole chunks only
    written = [row for _, rows in [*chunks, *rest] for row in rows]
    if not repeat:
        assert [h for _, h, _ in written] == [f"h{n}" for n in range(1, line + 1)]
    final = {key: handle for key, handle, _ in written}  # as the chunks are written, one after the other
    assert final == {f"K{n % 3 if repeat else n}": f"h{n}" for n in range(1, line + 1)}
    assert [last for last, _ in chunks] == sorted({last for last, _ in chunks})
