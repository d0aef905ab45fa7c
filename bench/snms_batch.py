"""SNMS's batchCreate against POST /api/batch: the same records, the same node, the same run.

Starts one node (its default workers) on a fresh store, defines the SNMS template ``1.0``
on the node prefix through ``/snms/api/v5/template``, logs in through ``/identity/token``,
then registers records both ways, round after round, the order alternating (ABBA...):

- ``POST /identityv2/data/batchCreate``: SNMS items ``{handle, templateVersion: "1.0", value}``
  with a bearer token;
- ``POST /api/batch``: the same records as create operations, JSON, HTTP Basic, naming the
  same template at 1001 (``{"index": 1001, "type": "TEMPLATE", "data": "1.0"}``), so both
  paths check every record against it.

Each record is ``bench.batch_register``'s (20 enterprise prefixes, four values) with its
values moved to the template's indexes 2000-2003; each way has its own handle range. Before
measuring, it checks that both paths refuse a record breaking the template and store the
same values for the same record. Reports records/s each way (median of the rounds), the
node's CPU per record, and batchCreate / api_batch (target: at least 0.8)::

    timeout 900 python -m bench.snms_batch --count 20000 --rounds 3
    timeout 900 python -m bench.snms_batch --store postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.batch_register import operations, post_all
from bench.resolve_baseline import ADMIN_SECRET, Target, machine, revision, serve_command
from tests.support.nodeproc import basic

ADMIN = "300:0.NA/88.118"
NODE_PREFIX = "88.118"
VERSION = "1.0"
FIRST_FIELD = 2000
API_RANGE = 500_000_000  # /api/batch's handles start here; batchCreate's at 0
TARGET_RATIO = 0.8
ITEMS = [  # the template: batch_register's four values, at 2000-2003
    ("网址", "URL", True),
    ("产品名称", "productName", True),
    ("批次号", "batchNo", False),
    ("生产日期", "productionDate", False),
]
JSON = {"Content-Type": "application/json"}

Record = tuple[str, list[tuple[int, str, str]]]
Poster = Callable[[list[bytes]], tuple[float, list[float], int]]


def records(start: int, count: int) -> list[Record]:
    """batch_register's records ``start`` .. ``start + count - 1``, their values at the template's indexes."""
    out = []
    for op in operations(start, count):
        values = [(FIRST_FIELD - 1 + v["index"], v["type"], v["data"]) for v in op["values"]]
        out.append((op["handle"], values))
    return out


def snms_item(handle: str, values: list[tuple[int, str, str]]) -> dict[str, Any]:
    shown = [{"index": i, "type": t, "data": {"format": "string", "value": d}} for i, t, d in values]
    return {"handle": handle, "templateVersion": VERSION, "value": shown}


def api_operation(handle: str, values: list[tuple[int, str, str]]) -> dict[str, Any]:
    shown = [{"index": 1001, "type": "TEMPLATE", "data": VERSION}]
    shown += [{"index": i, "type": t, "data": d} for i, t, d in values]
    return {"op": "create", "handle": handle, "values": shown}


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def snms_bodies(start: int, count: int, batch: int) -> list[bytes]:
    recs = records(start, count)
    return [_encode([snms_item(*r) for r in recs[n : n + batch]]) for n in range(0, count, batch)]


def api_bodies(start: int, count: int, batch: int) -> list[bytes]:
    recs = records(start, count)
    return [
        _encode({"atomic": False, "operations": [api_operation(*r) for r in recs[n : n + batch]]})
        for n in range(0, count, batch)
    ]


# Talking to the node --------------------------------------------------------------------


def call(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = None if body is None else _encode(body)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, {**JSON, **(headers or {})}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def login_and_define_template(port: int) -> dict[str, str]:
    """A bearer token for the node admin, and template 1.0 on the node prefix; the token's headers."""
    answer = call(port, "POST", "/identity/token", {"username": ADMIN, "password": ADMIN_SECRET})
    if answer.get("status") != 1:
        raise RuntimeError(f"SNMS login refused: {answer}")
    bearer = {"Authorization": "Bearer " + answer["data"]["token"]}
    items = [
        {"name": name, "idType": t, "idIndex": FIRST_FIELD + n, "required": required}
        | {"metadata": {"type": "string", "minLength": 1, "maxLength": 255}}
        for n, (name, t, required) in enumerate(ITEMS)
    ]
    template = {"prefix": NODE_PREFIX, "version": VERSION, "type": 1, "description": "bench", "items": items}
    template |= dict.fromkeys(("industryCategory", "industrySpecific", "industryTrade", "industrySubclass"), "C")
    answer = call(port, "POST", "/snms/api/v5/template", template, bearer)
    if answer.get("status") != 1:
        raise RuntimeError(f"the template was refused: {answer}")
    return bearer


def check_same_work(port: int, bearer: dict[str, str]) -> None:
    """Both paths refuse a record breaking the template, and store the same values for one that keeps it."""
    basic_auth = {"Authorization": basic(ADMIN, ADMIN_SECRET)}
    (handle, values), (other, _) = records(API_RANGE * 2 - 2, 2)
    broken = [v for v in values if v[1] != "URL"]  # URL is required
    answer = call(port, "POST", "/identityv2/data/batchCreate", [snms_item(handle, broken)], bearer)
    if answer["data"][0]["msg"] == "success":
        raise RuntimeError(f"batchCreate took a record without its required URL: {answer}")
    answer = call(port, "POST", "/api/batch", {"operations": [api_operation(other, broken)]}, basic_auth)
    if answer["results"][0]["responseCode"] == 1:
        raise RuntimeError(f"/api/batch took a record without its required URL: {answer}")
    call(port, "POST", "/identityv2/data/batchCreate", [snms_item(handle, values)], bearer)
    call(port, "POST", "/api/batch", {"operations": [api_operation(other, values)]}, basic_auth)
    stored = []
    for h in (handle, other):
        got = call(port, "GET", f"/api/handles/{h}")
        stored.append(sorted((v["index"], v["type"], v["data"]["value"]) for v in got.get("values", [])))
    if stored[0] != stored[1] or len(stored[0]) != len(values) + 1:
        raise RuntimeError(f"the two paths stored different values: {stored}")


def posters(port: int, bearer: dict[str, str], connections: int, batch: int) -> dict[str, Poster]:
    def snms_failed(status: int, raw: bytes) -> int:
        answer = json.loads(raw)
        if status != 200 or answer.get("status") != 1:
            return batch
        return sum(1 for r in answer["data"] if r["msg"] != "success")

    def api_failed(status: int, raw: bytes) -> int:
        answer = json.loads(raw)
        if status != 200:
            return batch
        return sum(1 for r in answer["results"] if r["responseCode"] != 1)

    snms_headers = {**JSON, **bearer}
    api_headers = {**JSON, "Authorization": basic(ADMIN, ADMIN_SECRET)}
    return {
        "batchCreate": lambda bodies: post_all(
            port, "/identityv2/data/batchCreate", bodies, snms_headers, connections, snms_failed
        ),
        "api_batch": lambda bodies: post_all(port, "/api/batch", bodies, api_headers, connections, api_failed),
    }


# The run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def node(store: str) -> Iterator[Target]:
    """A node with its default workers on a fresh store: SQLite in a temporary directory, or a new
    database on the PostgreSQL server ``store`` names."""
    with tempfile.TemporaryDirectory(prefix="idnode-snms-") as work, contextlib.ExitStack() as stack:
        cmd = serve_command("--data-dir", str(Path(work) / "data"))
        if store != "sqlite":
            from tests.support.pgproc import temp_database

            cmd += ["--store", stack.enter_context(temp_database(store))]
        server = Target("server", "idnode serve", cmd).start()
        try:
            yield server
        finally:
            server.stop()


def run(args: argparse.Namespace) -> int:
    ways = ("batchCreate", "api_batch")
    encode = {"batchCreate": snms_bodies, "api_batch": api_bodies}
    first = {"batchCreate": 0, "api_batch": API_RANGE}
    print(f"encoding {args.rounds} x {args.count:,} records each way ...", file=sys.stderr)
    bodies = {
        way: [encode[way](first[way] + n * args.count, args.count, args.batch) for n in range(args.rounds + 1)]
        for way in ways
    }
    rates: dict[str, list[float]] = {way: [] for way in ways}
    cpu_per_record: dict[str, list[float]] = {way: [] for way in ways}
    failed = 0
    with node(args.store) as server:
        bearer = login_and_define_template(server.port)
        check_same_work(server.port, bearer)
        send = posters(server.port, bearer, args.connections, args.batch)
        for way in ways:  # warm-up: one batch each way, from a range the rounds never use
            send[way](bodies[way][args.rounds][:1])
        for n in range(args.rounds):
            for way in ways if n % 2 == 0 else ways[::-1]:
                cpu_before = server.cpu_seconds()
                wall, latencies, bad = send[way](bodies[way][n])
                cpu = server.cpu_seconds() - cpu_before
                failed += bad
                rates[way].append(args.count / wall)
                cpu_per_record[way].append(cpu / args.count)
                print(
                    f"round {n + 1} {way:<11} {args.count / wall:>9,.0f} records/s, p50 batch "
                    f"{statistics.median(latencies) * 1000:.0f} ms, node CPU {cpu / wall:.2f} cores "
                    f"({cpu / args.count * 1e6:.0f} us/record), {bad} failed",
                    flush=True,
                )
    snms, api = (statistics.median(rates[w]) for w in ways)
    snms_cpu, api_cpu = (statistics.median(cpu_per_record[w]) for w in ways)
    verdict = "meets" if snms / api >= TARGET_RATIO else "BELOW"
    print(
        f"batchCreate / api_batch: {snms:,.0f} / {api:,.0f} records/s = {snms / api:.2f} ({verdict} the target "
        f"{TARGET_RATIO}); node CPU per record {snms_cpu * 1e6:.0f} / {api_cpu * 1e6:.0f} us = "
        f"{snms_cpu / api_cpu:.2f}; {failed} failed"
    )
    print(
        f"{args.rounds} rounds x {args.count:,} records each way in batches of {args.batch:,}; store {args.store}; "
        f"node workers default; {args.connections} connections; machine: {machine()}; revision {revision()}"
    )
    return 0 if failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="records each way in each round")
    parser.add_argument("--batch", type=int, default=1000, help="records a request (at most 2,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4, help="concurrent client connections")
    parser.add_argument("--store", default="sqlite", help="sqlite (default) or a PostgreSQL server URL")
    args = parser.parse_args(argv)
    if not 0 < args.batch <= 2000 or args.count < args.batch or args.rounds < 1:
        parser.error("need 0 < --batch <= 2000, --count >= --batch and --rounds >= 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
