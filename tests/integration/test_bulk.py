"""``idnode import`` / ``idnode export`` as operators run them: real subprocesses against a store
of each test's own (a fresh SQLite data directory, or a PostgreSQL database of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest

from bench.load_store import record_for
from protocol.records import HandleRecord
from registry.bootstrap import ensure_node_prefix
from registry.bulk import items as bulk
from registry.identity import sealing, secrets
from registry.postgres.store import PostgresStore
from registry.sqlite.store import SqliteStore
from registry.store import PrefixStats, Store
from resolver.commands import bulk as command
from tests.support.nodeproc import ADMIN_SECRET, Node
from tests.support.pgproc import temp_database
from tests.support.poll import wait_until

STORE_BACKENDS = ("sqlite", "postgresql")
HASH = "fef341f85d87439e7d91a2d465b9871ef66b5e98"  # handle.net's hashed HS_SECKEY of "s3cret"


@dataclass
class Stores:
    """Fresh stores for one test: each ``new()`` is another empty one."""

    backend: str
    tmp: Path
    stack: contextlib.ExitStack
    made: list[list[str]] = field(default_factory=list)

    def new(self) -> list[str]:
        # Each store has a data directory of its own, for the keys beside it (secret_key_file).
        args = ["--data-dir", str(self.tmp / f"data{len(self.made)}")]
        if self.backend != "sqlite":
            args += ["--store", self.stack.enter_context(temp_database())]
        self.made.append(args)
        return args


@pytest.fixture
def stores(backend: str, tmp_path: Path) -> Iterator[Stores]:
    with contextlib.ExitStack() as stack:
        yield Stores(backend, tmp_path, stack)


def idnode(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "resolver.cli", *args], input=stdin, capture_output=True, timeout=300, check=False
    )


def open_store(where: list[str]) -> Store:
    url = store_url_of(where)
    return SqliteStore(data_dir_of(where) / "idnode.sqlite3") if url is None else PostgresStore(url)


def opened_secret(where: list[str], stored: bytes) -> bytes | None:
    """The hashed secret a stored HS_SECKEY seals, opened with that store's own key file."""
    before = secrets.keyring()
    secrets.use_keyring(sealing.load_file(data_dir_of(where) / sealing.KEY_FILE))
    try:
        return secrets.protocol_key(stored)
    finally:
        secrets.use_keyring(before)


def look(where: list[str], fn: Any) -> Any:
    """Run ``fn(store)`` against the store, opened beside the commands, with its own secret key."""

    async def go() -> Any:
        store = open_store(where)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    before = secrets.keyring()
    secrets.use_key_file(data_dir_of(where) / sealing.KEY_FILE)
    try:
        return asyncio.run(go())
    finally:
        secrets.use_keyring(before)


def data_dir_of(where: list[str]) -> Path:
    return Path(dict(zip(where[::2], where[1::2], strict=True))["--data-dir"])


def store_url_of(where: list[str]) -> str | None:
    return dict(zip(where[::2], where[1::2], strict=True)).get("--store")


def write_items(path: Path, items: list[dict[str, Any]], fmt: str = "jsonl") -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    else:
        path.write_bytes(b"".join(msgpack.packb(i) for i in items))
    return path


def synthetic(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [bulk.item_of(record_for(i)) for i in range(start, start + n)]


def varied() -> list[dict[str, Any]]:
    """Records using what the format offers: a prefix handle, a secret hash, binary data, an
    absolute TTL, references, permissions."""
    return [
        *synthetic(20),
        {
            "handle": "0.NA/88.118.77",
            "values": [
                {
                    "index": 100,
                    "type": "HS_ADMIN",
                    "data": {
                        "format": "admin",
                        "value": {"handle": "0.NA/88.118", "index": 300, "permissions": "011111110011"},
                    },
                }
            ],
        },
        {
            "handle": "88.118.77/Mixed-Case/with:colon",
            "values": [
                {"index": 1, "type": "URL", "data": "https://x.example/", "ttl": "2030-01-01T00:00:00Z"},
                {"index": 2, "type": "BLOB", "data": {"format": "base64", "value": "AP8Q"}, "permissions": "1111"},
                {"index": 3, "type": "REF", "data": "r", "references": [{"index": 1, "handle": "88.118/a"}]},
                {"index": 300, "type": "HS_SECKEY", "data": {"format": "hash", "value": HASH}},
            ],
        },
    ]


def refused_import(source: Path, *args: str) -> str:
    """What ``idnode import`` says when it writes nothing (exit 1)."""
    done = idnode("import", str(source), *args)
    assert done.returncode == 1, done.stderr
    return done.stderr.decode()


def lines_of(out: bytes) -> list[str]:
    return sorted(out.decode().splitlines())


def test_export_of_an_import_imports_to_the_same_records(stores: Stores, tmp_path: Path) -> None:
    first, second = stores.new(), stores.new()
    source = write_items(tmp_path / "in.jsonl", varied())
    done = idnode("import", str(source), *first)
    assert done.returncode == 0, done.stderr
    assert b"imported 22 records (22 created, 0 replaced)" in done.stderr
    secret = look(first, lambda s: s.get("88.118.77/MIXED-CASE/WITH:COLON"))
    stored = secret.value_at(300).data
    assert HASH.encode() not in stored and opened_secret(first, stored) == HASH.encode()  # sealed at rest
    assert secret.value_at(300).permissions == 0b1100
    exported = idnode("export", "--format", "msgpack", *first)
    assert exported.returncode == 0, exported.stderr
    # An export is no credential (a backup is): its secret is withheld, and importing that is refused.
    assert HASH.encode() not in exported.stdout
    refused = idnode("import", "-", "--format", "msgpack", *second, stdin=exported.stdout)
    assert refused.returncode != 0 and b"withheld" in refused.stderr, refused.stderr
    without = [
        i
        for i in map(json.loads, lines_of(idnode("export", *first).stdout))
        if not i["handle"].startswith("88.118.77/M")
    ]
    again = idnode("import", str(write_items(tmp_path / "again.jsonl", without)), *second)
    assert again.returncode == 0, again.stderr
    assert lines_of(idnode("export", *second).stdout) == [
        json.dumps(i, ensure_ascii=False, separators=(",", ":"))
        for i in sorted(without, key=lambda i: json.dumps(i, ensure_ascii=False, separators=(",", ":")))
    ]
    only = idnode("export", "--prefix", "88.118.77", *first)
    assert [json.loads(line)["handle"] for line in lines_of(only.stdout)] == ["88.118.77/Mixed-Case/with:colon"]


def test_bad_items_are_reported_by_line_and_nothing_is_written(stores: Stores, tmp_path: Path) -> None:
    where = stores.new()
    items: list[Any] = synthetic(5)
    items[1] = {"handle": "99.7/elsewhere", "values": [{"index": 1, "type": "URL", "data": "x"}]}
    items[3] = {"handle": "88.118/dup", "values": [{"index": 1, "type": "URL", "data": "x"}] * 2}
    source = write_items(tmp_path / "in.jsonl", items)
    with source.open("a") as fh:
        fh.write("{not json\n")
    err = refused_import(source, *where)
    assert "line 2: this node serves prefix 88.118; 99.7/elsewhere is not under it" in err
    assert "line 4: index 1 appears more than once" in err
    assert "line 6: not JSON" in err
    assert "3 bad items; nothing was written" in err
    assert idnode("export", *where).stdout == b""


def test_rows_copied_while_the_rest_is_checked_are_rolled_back_when_a_later_item_is_bad(
    stores: Stores, tmp_path: Path
) -> None:
    where = stores.new()
    items: list[Any] = synthetic(6000)  # ~3.5 MB: the checking pass's first blocks pass before its last one is read
    items[-1] = {"handle": "99.7/elsewhere", "values": [{"index": 1, "type": "URL", "data": "x"}]}
    source = write_items(tmp_path / "in.jsonl", items)
    assert source.stat().st_size > 3 * command.CHECK_BLOCK
    err = refused_import(source, "--chunk", "500", *where)
    assert "line 6000: this node serves prefix 88.118; 99.7/elsewhere is not under it" in err
    assert "1 bad items; nothing was written" in err
    assert idnode("export", *where).stdout == b""
    assert look(where, lambda s: s.stats(None)) == []


def test_a_finished_import_run_again_changes_nothing(stores: Stores, tmp_path: Path) -> None:
    where = stores.new()
    source = write_items(tmp_path / "in.jsonl", synthetic(3000))
    assert idnode("import", str(source), "--chunk", "500", *where).returncode == 0
    before = look(where, lambda s: s.stats(None))
    again = idnode("import", str(source), "--chunk", "500", *where)
    assert again.returncode == 0 and b"imported 0 records" in again.stderr
    assert look(where, lambda s: s.stats(None)) == before
    assert sum(p.handles for p in before) == 3000
    restarted = idnode("import", str(source), "--restart", *where)
    assert b"imported 3,000 records (0 created, 3,000 replaced)" in restarted.stderr
    assert look(where, lambda s: s.stats(None)) == before


def test_existing_records_are_replaced_and_counts_move_by_creations(stores: Stores, tmp_path: Path) -> None:
    where = stores.new()
    assert idnode("import", str(write_items(tmp_path / "a.jsonl", synthetic(100))), *where).returncode == 0
    changed = synthetic(150)
    for item in changed[:50]:
        item["values"][0]["data"]["value"] = "https://moved.example/"
    done = idnode("import", str(write_items(tmp_path / "b.msgpack", changed, "msgpack")), *where)
    assert b"imported 150 records (50 created, 100 replaced)" in done.stderr
    stats: list[PrefixStats] = look(where, lambda s: s.stats(None))
    assert sum(p.handles for p in stats) == 150
    assert sum(sum(p.registrations_per_day.values()) for p in stats) == 150
    moved = look(where, lambda s: s.get(record_for(7).handle.upper()))
    assert moved.value_at(1).data == b"https://moved.example/"
    audit = look(where, lambda s: s.audit_entries(None, 0, 10_000))
    assert {(e.identity, e.operation) for e in audit} == {("import", "import")}
    assert len(audit) == 250


def test_a_prefix_handle_imported_is_queued_for_publishing(stores: Stores, tmp_path: Path) -> None:
    where = stores.new()
    assert idnode("import", str(write_items(tmp_path / "in.jsonl", varied())), *where).returncode == 0
    outbox = look(where, lambda s: s.prefix_outbox())
    assert "88.118.77" in outbox


def _progress(where: list[str], digest: str) -> int:
    """The import's committed progress, read without opening a store (which would queue for
    the writer's lock): the poll must be quick to land between two chunks."""
    name = f"import:{digest}"
    url = store_url_of(where)
    if url is None:
        db = data_dir_of(where) / "idnode.sqlite3"
        with (
            contextlib.suppress(sqlite3.Error),
            contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn,
        ):
            row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
            return 0 if row is None else int(row[0])
        return 0
    query = f"SELECT value FROM idnode_meta WHERE name = '{name}'"
    done = subprocess.run(["psql", url, "-qAtc", query], capture_output=True, check=False)
    return int(done.stdout or 0)


def test_an_import_killed_mid_way_resumes_after_its_last_chunk(stores: Stores, tmp_path: Path) -> None:
    where = stores.new()
    source = write_items(tmp_path / "in.jsonl", synthetic(30_000))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    cmd = [sys.executable, "-m", "resolver.cli", "import", str(source), "--chunk", "200", *where]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(
            lambda: _progress(where, digest) > 0 or proc.poll() is not None,
            what="the import's first chunk",
            timeout=120,
            interval=0.002,  # to land between two chunks
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = _progress(where, digest)
    assert 0 < done_before < 30_000, "the import was not killed between its first and its last chunk"
    assert proc.stderr is not None and proc.stderr.read() == b""
    resumed = idnode("import", str(source), "--chunk", "200", *where)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done_before:,} items were in already".encode() in resumed.stderr
    exported = lines_of(idnode("export", *where).stdout)
    assert len(exported) == len(set(exported)) == 30_000
    stats: list[PrefixStats] = look(where, lambda s: s.stats(None))
    assert sum(p.handles for p in stats) == 30_000
    assert sum(sum(p.registrations_per_day.values()) for p in stats) == 30_000


def test_imported_records_resolve_through_a_node(stores: Stores, tmp_path: Path) -> None:
    where = stores.new()
    assert idnode("import", str(write_items(tmp_path / "in.jsonl", varied())), *where).returncode == 0
    node = Node(data_dir_of(where), store=store_url_of(where))
    node.start()
    try:
        reply = node.get("/api/handles/88.118.5/FAAA2106005-000001")
        assert reply.status == 200
        expected: HandleRecord = record_for(4)
        assert reply.json["values"] == bulk.item_of(expected)["values"]
        assert node.get("/api/handles/88.118.77/mixed-case/with:colon?type=URL").json["values"][0]["ttl"] == (
            "2030-01-01T00:00:00Z"
        )
    finally:
        node.stop()


def test_bad_settings_and_an_unreachable_store_have_their_exit_codes(tmp_path: Path) -> None:
    source = write_items(tmp_path / "in.jsonl", synthetic(3))
    assert idnode("import", str(source), "--store", "mysql://x").returncode == 2
    assert idnode("import", str(source), "--chunk", "0", "--data-dir", str(tmp_path / "d")).returncode == 2
    down = idnode("import", str(source), "--store", "postgresql://postgres@127.0.0.1:1/none")
    assert down.returncode == 3, down.stderr
    assert idnode("export", "--store", "postgresql://postgres@127.0.0.1:1/none").returncode == 3


def _admin_of(handle: str, index: int) -> dict[str, Any]:
    ref = {"handle": handle, "index": index, "permissions": "011111110011"}
    return {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": ref}}


def _identity(handle: str, secret: str) -> dict[str, Any]:
    seckey = {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": secret}}
    return {"handle": handle, "values": [_admin_of(handle, 300), seckey]}


def _node_secret_check(where: list[str], tmp_path: Path, secret: str) -> tuple[int, int]:
    """Statuses of one write as the node admin, with ``secret`` and with the bootstrap one."""
    node = Node(data_dir_of(where), store=store_url_of(where))
    node.start()
    try:
        body = {"values": [{"index": 1, "type": "URL", "data": "https://x.example/"}]}
        given = node.put("/api/handles/88.118/probe-a", body, auth=("300:0.NA/88.118", secret)).status
        old = node.put("/api/handles/88.118/probe-b", body, auth=("300:0.NA/88.118", ADMIN_SECRET)).status
        return given, old
    finally:
        node.stop()


def test_an_import_refuses_to_change_existing_credentials_unless_told(stores: Stores, tmp_path: Path) -> None:
    where = stores.new()
    look(where, lambda s: ensure_node_prefix(s, "88.118", ADMIN_SECRET))
    enterprise = write_items(tmp_path / "enterprise.jsonl", [_identity("0.NA/88.118.5", "enterprise-secret")])
    assert idnode("import", str(enterprise), *where).returncode == 0  # new records may carry credentials
    hostile = [
        _identity("0.NA/88.118", "attacker-secret"),
        {"handle": "0.NA/88.118.5", "values": [_admin_of("88.118.9/evil", 300)]},
        *synthetic(3),
    ]
    source = write_items(tmp_path / "hostile.jsonl", hostile)
    err = refused_import(source, *where)
    assert "line 1: 0.NA/88.118 is this node's prefix handle and would change (--replace-credentials" in err
    assert "line 2: 0.NA/88.118.5: would change its HS_ADMIN, HS_SECKEY (--replace-credentials" in err
    assert "2 items refused; nothing was written" in err
    assert sum(p.handles for p in look(where, lambda s: s.stats(None))) == 0  # not even the harmless items
    assert _node_secret_check(where, tmp_path, "attacker-secret") == (403, 201)  # wrong credentials: 403
    forced = idnode("import", str(source), "--replace-credentials", *where)
    assert forced.returncode == 0, forced.stderr
    assert _node_secret_check(where, tmp_path, "attacker-secret")[0] == 201


@pytest.mark.parametrize("line", [1, 2901], ids=["copied-while-checking", "written-after"])
def test_credentials_are_guarded_in_rows_copied_while_the_rest_is_checked(
    stores: Stores, tmp_path: Path, line: int
) -> None:
    where = stores.new()
    look(where, lambda s: ensure_node_prefix(s, "88.118", ADMIN_SECRET))
    items: list[Any] = synthetic(3000)  # chunks of 100: the first three are copied while the rest is checked
    items.insert(line - 1, _identity("0.NA/88.118", "attacker-secret"))
    err = refused_import(write_items(tmp_path / "in.jsonl", items), "--chunk", "100", *where)
    assert f"line {line}: 0.NA/88.118 is this node's prefix handle and would change (--replace-credentials" in err
    assert "1 items refused; nothing was written" in err
    assert sum(p.handles for p in look(where, lambda s: s.stats(None))) == 0
    assert _node_secret_check(where, tmp_path, "attacker-secret") == (403, 201)


def test_an_import_limited_to_prefixes_refuses_items_outside(stores: Stores, tmp_path: Path) -> None:
    where = stores.new()
    items = [
        _identity("0.NA/88.118.5", "enterprise-secret"),
        *synthetic(1, 4),  # 88.118.5/...
        {"handle": "88.118.5/y", "values": [{"index": 1, "type": "URL", "data": "y"}]},
        _identity("0.NA/88.118", "attacker-secret"),
        {"handle": "88.118.6/x", "values": [{"index": 1, "type": "URL", "data": "x"}]},
    ]
    source = write_items(tmp_path / "in.jsonl", items)
    err = refused_import(source, "--prefix", "88.118.5", "--prefix", "88.118.7", *where)
    assert "line 4: 0.NA/88.118 is outside --prefix 88.118.5, 88.118.7" in err
    assert "line 5: 88.118.6/x is outside --prefix 88.118.5, 88.118.7" in err
    assert "2 bad items (2 outside --prefix); nothing was written" in err
    inside = write_items(tmp_path / "inside.jsonl", items[:3])
    assert idnode("import", str(inside), "--prefix", "88.118.5", *where).returncode == 0
    assert len(lines_of(idnode("export", *where).stdout)) == 3
