"""``idnode import`` and ``idnode export``: records in and out of the store, in bulk.

Import reads its input twice. The first pass checks every item (``registry.bulk.items``, in a pool
of processes, driven from a thread) and spools the rows to write to a temporary file; one bad
item and nothing is written. Meanwhile the first rows that pass (EARLY_CHUNKS chunks) are
copied into one transaction that stays open, so that PostgreSQL copies while the check goes on;
it commits only once every item has passed (and the credentials guard has read the store), and
rolls back otherwise. The second pass writes the rest in chunks, each chunk one transaction
that also records how far the import has got under the input's SHA-256, so a run that was
stopped (Ctrl-C, kill -9) starts again after the last committed chunk (from the beginning when
stopped while checking), and a finished one does nothing when run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import msgpack

from protocol.errors import HandleError
from protocol.identifiers import parse_handle, parse_prefix
from registry.bulk import guard
from registry.bulk import items as bulk
from registry.bulk.rules import Rules
from registry.identity import sealing, secrets
from registry.store import AuditEntry, ImportMarker, Store
from resolver.config import Config

OK, BAD_INPUT, BAD_SETTINGS, STORE_UNAVAILABLE, INTERRUPTED = 0, 1, 2, 3, 130
SHOWN_BAD = 100  # bad items listed; the rest are counted
CHECK_BATCH = 2000  # packed items per task of the checking pool
PACKED_BUFFER = 64 * 1024 * 1024  # the largest packed item read (the size limit refuses it later)
CHECK_BLOCK = 1024 * 1024  # bytes of JSON lines per task (~2,000 exported items)
EXPORT_PAGE = 1000
SPOOL_BYTES = 1024 * 1024
EARLY_CHUNKS = 3  # chunks copied while the rest of the input is being checked, committed once it all passed


class StoreFailed(Exception):
    """The store could not be opened or written."""


@dataclass(frozen=True, slots=True)
class ImportOptions:
    source: str  # a path, or "-" for standard input
    fmt: str
    chunk: int = 50_000  # a COPY of 50,000 rows ran ~1.3x the rate of 10,000 (fewer commits)
    identity: str = "import"
    jobs: int = os.cpu_count() or 1
    restart: bool = False
    prefixes: tuple[str, ...] = ()  # --prefix: items elsewhere are refused
    replace_credentials: bool = False  # existing credentials and the node's prefix handle may change


@dataclass(slots=True)
class Checked:
    """The outcome of the checking pass."""

    digest: str
    items: int  # rows to write
    bad: list[bulk.BadItem]
    bad_count: int
    outside: int = 0  # of them, outside --prefix


# Input ------------------------------------------------------------------------------


@contextlib.contextmanager
def _input(source: str, spool_dir: Path) -> Iterator[BinaryIO]:
    """The input as a seekable file: standard input is copied to ``spool_dir`` first."""
    if source != "-":
        with open(source, "rb") as fh:
            yield fh
        return
    with open(spool_dir / "stdin", "w+b") as fh:
        shutil.copyfileobj(sys.stdin.buffer, fh, SPOOL_BYTES)
        fh.seek(0)
        yield fh


def _digest(fd: int) -> str:
    """SHA-256 of the whole file behind ``fd``, read without moving its position (the check reads it too)."""
    sha = hashlib.sha256()
    at = 0
    while data := os.pread(fd, SPOOL_BYTES, at):
        sha.update(data)  # hashlib lets go of the GIL for large data
        at += len(data)
    return sha.hexdigest()


class _Hashing:
    """A read-only stream that hashes what is read through it."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.sha.update(data)
        return data

    def readline(self, n: int = -1) -> bytes:
        data = self.inner.readline(n)
        self.sha.update(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


def _tasks(stream: IO[bytes], fmt: str) -> Iterator[tuple[int, bytes]]:
    """The checking pool's tasks: (number of the first item, a block of whole items)."""
    return _blocks(stream) if fmt == "jsonl" else _packed_blocks(stream)


def _packed_blocks(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Blocks of CHECK_BATCH whole packed items: the parent only finds where items end (skip
    builds no objects; unpacking and re-packing each item here took ~5 us, more than the
    workers' share). Where the stream breaks, the rest read goes as one block: the worker
    meets the same error at the same item."""
    unpacker = msgpack.Unpacker(max_buffer_size=PACKED_BUFFER)
    pending = bytearray()  # from the first item not yet sent
    sent = first = count = 0
    while data := stream.read(CHECK_BLOCK):
        pending += data
        try:
            unpacker.feed(data)
            while True:
                unpacker.skip()
                count += 1
                if count == CHECK_BATCH:
                    end = unpacker.tell() - sent
                    yield first + 1, bytes(pending[:end])
                    del pending[:end]
                    sent, first, count = sent + end, first + count, 0
        except msgpack.OutOfData:
            continue
        except (ValueError, msgpack.UnpackException):
            break
    if pending:
        yield first + 1, bytes(pending)


def _blocks(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Blocks of whole lines: the parent reads and passes bytes, the workers split the lines."""
    line, pieces = 1, []
    while data := stream.read(CHECK_BLOCK):
        cut = data.rfind(b"\n") + 1
        if not cut:  # a line longer than a block
            pieces.append(data)
            continue
        block = b"".join([*pieces, data[:cut]])
        yield line, block
        line += block.count(b"\n")
        pieces = [data[cut:]]
    if rest := b"".join(pieces):
        yield line, rest


def check(stream: BinaryIO, fmt: str, rules: Rules, spool: IO[bytes], jobs: int) -> Checked:
    """Check every item of ``stream``; spool the rows of the good ones, numbered, in order."""
    with _pool(jobs) as imap:
        return check_in(imap, stream, fmt, rules, spool)


Imap = Callable[..., Iterator[tuple[bytes, int, list[bulk.BadItem]]]]


def check_in(
    imap: Imap, stream: BinaryIO, fmt: str, rules: Rules, spool: IO[bytes], early: _Early | None = None
) -> Checked:
    """check() with the pool's ``imap``; the spooled rows are also handed to ``early`` as they come."""
    hashing: Any = _Hashing(stream)
    result = Checked("", 0, [], 0)
    work = functools.partial(bulk.check_task, fmt=fmt, rules=rules)
    try:
        for rows, count, bad in imap(work, _tasks(hashing, fmt)):
            result.bad_count += len(bad)
            result.outside += sum(1 for item in bad if guard.OUTSIDE in item.reason)
            result.bad.extend(bad[: SHOWN_BAD - len(result.bad)])
            if fmt == "msgpack" and bad and bad[-1].reason.startswith(bulk.BROKEN_REASON):
                break  # a broken msgpack stream: nothing after it can be read
            if result.bad_count:
                continue  # nothing will be written: keep checking, stop spooling
            result.items += count
            if early is not None:
                early.feed(spool.tell(), rows, count)
            spool.write(rows)
        hashing.read()  # a digest of the whole input, past a broken msgpack stream's end too
    finally:
        if early is not None:
            early.close()
    result.digest = hashing.sha.hexdigest()
    return result


@contextlib.contextmanager
def _pool(jobs: int) -> Iterator[Imap]:
    if jobs <= 1:
        yield map
        return
    # fork: the workers start at once, with the modules already imported.
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        yield functools.partial(pool.imap, chunksize=1)


def _spooled(
    spool: IO[bytes], after: int, chunk: int, start: int = 0
) -> Iterator[tuple[int, list[tuple[str, str, bytes]]]]:
    """Chunks of spooled rows past item ``after`` (read from offset ``start``, at or before it):
    (the last item number, distinct-key rows)."""
    spool.seek(start)
    rows: dict[str, tuple[str, str, bytes]] = {}
    last = after
    for line, key, handle, blob in msgpack.Unpacker(spool, raw=False, use_list=False, read_size=SPOOL_BYTES):
        if line <= after:
            continue
        rows[key] = (key, handle, blob)  # a key given twice: the later item wins, as a later PUT would
        last = line
        if len(rows) >= chunk:
            yield last, list(rows.values())
            rows = {}
    if rows:
        yield last, list(rows.values())


class _Early:
    """The first spooled rows, handed from the checking thread to the writer as they come, for
    its first ``count`` chunks of ``chunk`` items; then (or where the input ends or turns bad) an
    end mark."""

    def __init__(self, loop: asyncio.AbstractEventLoop, chunk: int, count: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.chunk, self.count = chunk, count
        self.left = chunk * count
        self.closed = False
        self.last = 0  # the number of the last item the writer took
        self.taken = 0  # rows the writer took (a key given twice in a chunk once)
        self.resume_at = 0  # where in the spool the rows after the last one taken are (or a little before)

    def feed(self, at: int, rows: bytes, count: int) -> None:
        """In the checking thread: a task's rows, spooled at offset ``at``."""
        if not self.closed:
            self.left -= count
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (at, rows))
            if self.left <= 0:
                self.close()

    def close(self) -> None:
        """In the checking thread: no more rows."""
        if not self.closed:
            self.closed = True
            self.loop.call_soon_threadsafe(self.queue.put_nowait, None)

    def stop(self) -> None:
        """In the event loop: no rows wanted (an import to resume)."""
        self.closed = True
        self.queue.put_nowait(None)

    async def chunks(self) -> AsyncIterator[tuple[int, list[tuple[str, str, bytes]]]]:
        """(the last item number, distinct-key rows) of each early chunk; whole chunks only (the rows
        of a last part one are written from the spool, in the chunks they would have had)."""
        pending: list[tuple[int, str, str, bytes]] = []
        left = self.count
        while left and (got := await self.queue.get()) is not None:
            at, block = got
            if not pending:
                self.resume_at = at  # the first row not taken is in this block
            pending.extend(msgpack.Unpacker(io.BytesIO(block), raw=False, use_list=False))
            while left and len(pending) >= self.chunk:
                taken, pending = pending[: self.chunk], pending[self.chunk :]
                self.resume_at = at if pending else at + len(block)
                left -= 1
                yield self._take(taken)

    def _take(self, items: list[tuple[int, str, str, bytes]]) -> tuple[int, list[tuple[str, str, bytes]]]:
        self.last = items[-1][0]
        rows = list({key: (key, handle, blob) for _, key, handle, blob in items}.values())  # the later item wins
        self.taken += len(rows)
        return self.last, rows


# Progress ---------------------------------------------------------------------------


class Progress:
    """A bar on a terminal, one summary line otherwise."""

    def __init__(self, total: int, out: IO[str]) -> None:
        self.total = total
        self.out = out
        self.tty = out.isatty()
        self.started = time.monotonic()
        self.done = self.created = 0

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def add(self, written: int, created: int) -> None:
        self.done += written
        self.created += created
        if self.tty:
            rate = self.rate()
            left = (self.total - self.done) / rate if rate else 0.0
            filled = self.done * 30 // max(self.total, 1)
            bar = "#" * filled + "." * (30 - filled)
            print(
                f"\rimport: [{bar}] {self.done:,}/{self.total:,} ({rate:,.0f}/s, {left:,.0f} s left)  ",
                end="",
                file=self.out,
                flush=True,
            )

    def summary(self, skipped: int) -> str:
        elapsed = time.monotonic() - self.started
        text = (
            f"imported {self.done:,} records ({self.created:,} created, {self.done - self.created:,} replaced) "
            f"in {elapsed:.1f} s, {self.rate():,.0f}/s"
        )
        if skipped:
            text += f"; {skipped:,} items were in already (an earlier run of this input)"
        return text


# Running ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _opened(config: Config) -> AsyncIterator[Store]:
    from resolver.stores import default_store  # the store backends, only once the input is good

    store = default_store(config)
    try:
        await store.open()
    except HandleError as exc:
        raise StoreFailed(exc.message) from None
    try:
        yield store
    finally:
        await store.close()


def _numbered(spool: IO[bytes], after: int, chunk: int, start: int = 0) -> Iterator[list[tuple[int, str, bytes]]]:
    """Chunks of spooled (number, key, blob) past item ``after`` (read from offset ``start``)."""
    spool.seek(start)
    rows: list[tuple[int, str, bytes]] = []
    for line, key, _, blob in msgpack.Unpacker(spool, raw=False, use_list=False, read_size=SPOOL_BYTES):
        if line > after:
            rows.append((line, key, blob))
        if len(rows) >= chunk:
            yield rows
            rows = []
    if rows:
        yield rows


async def _guard(store: Store, config: Config, spool: IO[bytes], after: int, chunk: int, start: int = 0) -> Checked:
    """The items that would change what the store holds of credentials or the node's prefix handle.

    One batched read of the chunk's keys per chunk (not a read per item): the rows the store does
    not hold cost an index probe each, and only those it holds are decoded and compared."""
    refused = Checked("", 0, [], 0)
    node_key = parse_handle(f"0.NA/{config.node_prefix}").key
    for rows in _numbered(spool, after, chunk, start):
        held = await store.get_many((key for _, key, _ in rows), primary=True)
        for line, key, blob in rows:
            reason = guard.refusal(held.get(key), blob, node_key, key)
            if reason is not None:
                refused.bad_count += 1
                if len(refused.bad) < SHOWN_BAD:
                    refused.bad.append(bulk.BadItem(line, reason))
    return refused


async def _run(
    config: Config, options: ImportOptions, rules: Rules, imap: Imap, stream: BinaryIO, spool: IO[bytes], err: IO[str]
) -> int:
    """Check the input in a thread (driving the pool) while the store is opened and the first rows copied."""
    loop = asyncio.get_running_loop()
    early = _Early(loop, options.chunk, EARLY_CHUNKS)
    digest = asyncio.ensure_future(asyncio.to_thread(_digest, stream.fileno()))  # for the progress of earlier runs
    checking = _in_thread(loop, functools.partial(check_in, imap, stream, options.fmt, rules, spool, early))
    try:
        return await _import(config, options, _Settled(digest=digest, checking=checking), early, spool, err)
    except (StoreFailed, HandleError):
        checked = await checking  # bad input is reported first, as when the store was opened only after the check
        if checked.bad_count:
            return _report(checked, err, "bad items")
        raise


def _in_thread(loop: asyncio.AbstractEventLoop, work: Callable[[], Checked]) -> asyncio.Future[Checked]:
    """work() in a daemon thread, its outcome as a future: an interrupted import does not wait for it."""
    future: asyncio.Future[Checked] = loop.create_future()

    def settle(outcome: Checked | BaseException) -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def run() -> None:
        outcome: Checked | BaseException
        try:
            outcome = work()
        except OSError as exc:
            outcome = _Unreadable(exc.strerror or str(exc))
        except Exception as exc:
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: the import was interrupted
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="idnode-import-check", daemon=True).start()
    return future


class _Unreadable(Exception):
    """The input could not be read."""


@dataclass(slots=True)
class _Settled:
    """The check and the digest under way, and what settling the early transaction found."""

    digest: asyncio.Future[str]
    checking: asyncio.Future[Checked]
    checked: Checked | None = None
    refused: Checked | None = None
    after: int = 0  # items of this input committed by earlier runs


async def _import(
    config: Config, options: ImportOptions, found: _Settled, early: _Early, spool: IO[bytes], err: IO[str]
) -> int:
    async with _opened(config) as store:
        found.after = 0 if options.restart else await store.import_progress(await found.digest)
        if found.after:
            early.stop()  # rows the early transaction would copy may be in already: written as before
        entry = AuditEntry(time.time(), options.identity, "cli", "import", "")
        settle = functools.partial(_settle, store, config, options, early, spool, found)
        progress = Progress(0, err)
        created = await store.import_pending(early.chunks(), entry, settle)
        checked = found.checked
        assert checked is not None  # settle() ran, or import_pending raised
        if checked.bad_count:
            return _report(checked, err, "bad items")
        if found.refused is not None:
            return _report(found.refused, err, "items refused")
        progress.total = checked.items - _count_upto(spool, found.after)
        after, start = found.after, 0
        if created is not None:
            after, start = early.last, early.resume_at
            progress.add(early.taken, created)
        for last, rows in _spooled(spool, after, options.chunk, start):
            entry = AuditEntry(time.time(), options.identity, "cli", "import", "")
            created = await store.import_rows(rows, entry, ImportMarker(checked.digest, last))
            progress.add(len(rows), created)
        if progress.tty:
            print(file=err)
        print(progress.summary(found.after and _count_upto(spool, found.after)), file=err)
    return OK


async def _settle(
    store: Store, config: Config, options: ImportOptions, early: _Early, spool: IO[bytes], found: _Settled, fresh: bool
) -> ImportMarker | None:
    """The early transaction's marker once every item passed and none changes credentials unasked,
    or None to roll it back: bad items, refusals, or a run to resume. ``fresh``: the store held none
    of the early rows' keys (the guard reads only the rows after them: one probe a row, ~4 us)."""
    checked = found.checked = await found.checking
    if checked.bad_count:
        return None
    if checked.digest != await found.digest:
        raise _Unreadable("it changed while it was read")
    if not options.replace_credentials:
        after, start = (early.last, early.resume_at) if fresh and early.last > found.after else (found.after, 0)
        refused = await _guard(store, config, spool, after, options.chunk, start)
        if refused.bad_count:
            found.refused = refused
            return None
    return None if found.after else ImportMarker(checked.digest, early.last)


def _count_upto(spool: IO[bytes], after: int) -> int:
    """How many spooled rows are numbered ``after`` or lower."""
    if not after:
        return 0
    spool.seek(0)
    return sum(1 for item in msgpack.Unpacker(spool, raw=False, use_list=False) if item[0] <= after)


def run_import(config: Config, options: ImportOptions, err: IO[str] = sys.stderr) -> int:
    try:
        scope = tuple(parse_prefix(p) for p in options.prefixes)
    except HandleError as exc:
        print(f"idnode import: --prefix: {exc.message}", file=err)
        return BAD_SETTINGS
    rules = Rules(config.node_prefix, config.case_sensitive, config.max_body_bytes, int(time.time()), scope)
    try:
        # Before the checking pool forks: its processes seal the secrets items carry.
        secrets.use_key_file(config.secret_key_path)
    except sealing.SecretKeyError as exc:
        print(f"idnode import: {exc}", file=err)
        return BAD_SETTINGS
    with tempfile.TemporaryDirectory(prefix="idnode-import-") as tmp, open(Path(tmp) / "rows", "w+b") as spool:
        try:
            # The pool forks here, before the event loop and the checking thread start.
            with _input(options.source, Path(tmp)) as stream, _pool(options.jobs) as imap:
                return asyncio.run(_run(config, options, rules, imap, stream, spool, err))
        except (OSError, _Unreadable) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            print(f"idnode import: cannot read {options.source}: {reason}", file=err)
            return BAD_INPUT
        except (StoreFailed, HandleError) as exc:
            print(
                f"idnode import: the store failed: {_reason(exc)}; committed chunks stay, run again to resume", file=err
            )
            return STORE_UNAVAILABLE
        except KeyboardInterrupt:
            print("\nidnode import: interrupted; committed chunks stay, run again to resume", file=err)
            return INTERRUPTED


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, HandleError) else str(exc)


def _report(checked: Checked, err: IO[str], what: str) -> int:
    for item in checked.bad:
        print(f"line {item.line}: {item.reason}", file=err)
    more = checked.bad_count - len(checked.bad)
    if more:
        print(f"... and {more:,} more", file=err)
    outside = f" ({checked.outside:,} outside --prefix)" if checked.outside else ""
    print(f"idnode import: {checked.bad_count:,} {what}{outside}; nothing was written", file=err)
    return BAD_INPUT


# Export -----------------------------------------------------------------------------


async def _export(config: Config, prefix: str | None, fmt: str, out: BinaryIO) -> int:
    written = 0
    async with _opened(config) as store:
        after: str | None = None
        while page := await store.export_after(prefix, after, EXPORT_PAGE):
            out.write(bulk.encode_items((record for _, record in page), fmt))
            written += len(page)
            after = page[-1][0]
    out.flush()
    return written


def run_export(config: Config, target: str, fmt: str, prefix: str | None, err: IO[str] = sys.stderr) -> int:
    try:
        prefix = None if prefix is None else parse_prefix(prefix)
    except HandleError as exc:
        print(f"idnode export: --prefix: {exc.message}", file=err)
        return BAD_SETTINGS
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            out = sys.stdout.buffer if target == "-" else stack.enter_context(open(target, "wb"))
            written = asyncio.run(_export(config, prefix, fmt, out))
    except OSError as exc:
        print(f"idnode export: cannot write {target}: {exc.strerror}", file=err)
        return BAD_SETTINGS
    except (StoreFailed, HandleError) as exc:
        print(f"idnode export: the store failed: {_reason(exc)}", file=err)
        return STORE_UNAVAILABLE
    print(f"exported {written:,} records in {time.monotonic() - started:.1f} s", file=err)
    return OK
