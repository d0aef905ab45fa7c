"""Issue 23, item 2: what a single write costs the server, against a cached read under the same load.

Factories register one identifier per request. This measures, in alternating rounds on one
node (``idnode serve``, two workers, SQLite by default or ``--store`` a PostgreSQL URL):

* ``get-16``: cached anonymous ``GET /api/handles/{h}`` over 1,000 handles, wrk -c16 (the baseline);
* ``put-16``: one new identifier per ``PUT /api/handles/{h}`` (a URL and an HS_ADMIN, Basic
  authentication as the enterprise's admin), wrk -c16: concurrent writers, group commit;
* ``put-1``: the same with one request in flight: a factory's script, no group to share.

Reported per series: requests/s, p50/p99, and the server's CPU per request (its whole process
tree, from /proc); the target is CPU per PUT under -c16 <= 5x the CPU per cached GET under the
same load. Every PUT must answer 201 (a new handle). Machine-independent: only the ratios
measured in one run compare::

    python -m bench.write_cost --seconds 10 --rounds 3
    python -m bench.write_cost --store postgresql://postgres@127.0.0.1:5432/test --seconds 10 --rounds 3

With ``--store`` the node's database is made anew beside the one named (and dropped afterwards).
Writes bench/results/write_cost.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import wrk
from bench.load_store import NODE_PREFIX
from bench.resolve_baseline import ADMIN_SECRET, RESULTS, Target, busy_seconds, machine, revision, serve_command
from tests.support.pgproc import temp_database

PREFIX = "88.118.7"  # the enterprise prefix the identifiers go under
HANDLES = 1000  # cached for the GET series
PUT_PATHS = 400_000  # fresh handles for the PUT series: more than any run writes


def admin_value(index: int, permissions: str) -> dict[str, object]:
    """An HS_ADMIN value naming the enterprise's admin, 300:0.NA/<PREFIX>."""
    admin = {"handle": f"0.NA/{PREFIX}", "index": 300, "permissions": permissions}
    return {"index": index, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin}}


URL = {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://trace.e7.example.cn/p/x"}}
BODY = {"values": [URL, admin_value(100, "011111110011")]}


@dataclass
class Run:
    series: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU per request
    others_cores: float  # CPU of everything else on the machine during the run, in cores
    bad: int  # errors and answers that were not 2xx


def authorization(prefix: str = PREFIX) -> str:
    """Basic credentials of 300:0.NA/<prefix> (every admin here has the node admin's secret)."""
    token = base64.b64encode(f"300%3A0.NA%2F{prefix}:{ADMIN_SECRET}".encode()).decode()
    return f"Basic {token}"


def put(node: Target, path: str, body: object, prefix: str = PREFIX) -> int:
    """PUT ``body`` as JSON at ``path``, as the admin of ``prefix``; the HTTP status."""
    headers = {"Content-Type": "application/json", "Authorization": authorization(prefix)}
    req = urllib.request.Request(node.url + path, data=json.dumps(body).encode(), method="PUT", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as reply:
        return int(reply.status)


def prepare(node: Target, work: Path) -> None:
    """The enterprise prefix, its admin (the node admin's secret, for brevity), and the cached handles."""
    secret = {"format": "string", "value": ADMIN_SECRET}
    seckey = {"index": 300, "type": "HS_SECKEY", "data": secret, "permissions": "1100"}
    prefix_body = {"values": [admin_value(100, "111111111111"), seckey]}
    assert put(node, f"/api/handles/0.NA/{PREFIX}", prefix_body, NODE_PREFIX) in (200, 201)
    for n in range(HANDLES):
        assert put(node, f"/api/handles/{PREFIX}/CACHED-{n}", BODY) in (200, 201)
    (work / "get.txt").write_text("".join(f"/api/handles/{PREFIX}/CACHED-{n}\n" for n in range(HANDLES)))
    (work / "body.json").write_text(json.dumps(BODY))


def measure(node: Target, work: Path, series: str, seconds: int) -> Run:
    connections = 1 if series.endswith("-1") else 16
    env = None
    paths = work / "get.txt"
    if series.startswith("put"):
        tag = uuid.uuid4().hex[:8]  # new handles every run: a PUT over an existing one is a replace
        paths = work / f"put-{tag}.txt"
        paths.write_text("".join(f"/api/handles/{PREFIX}/W{tag}-{n}\n" for n in range(PUT_PATHS)))
        env = {"WRK_METHOD": "PUT", "WRK_BODY_FILE": str(work / "body.json"), "WRK_AUTHORIZATION": authorization()}
    cpu0, busy0, t0 = node.cpu_seconds(), busy_seconds(), time.monotonic()
    run = wrk.run(node.url, paths, connections=connections, seconds=seconds, env=env)
    cpu, busy, elapsed = node.cpu_seconds() - cpu0, busy_seconds() - busy0, time.monotonic() - t0
    if series.startswith("put"):
        paths.unlink()
    others = max(0.0, busy - cpu - run.wrk_cpu_seconds) / elapsed
    return Run(
        series,
        run.requests,
        run.rps,
        run.p50_ms,
        run.p99_ms,
        cpu / run.requests * 1e6,
        others,
        run.errors + run.bad_status,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", help="a PostgreSQL URL: the node's database is made beside it (default SQLite)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="idnode-write-cost-") as tmp:
        work = Path(tmp)
        if args.store:
            with temp_database(args.store) as url:
                return run_all(args, work, ["--store", url])
        return run_all(args, work, [])


def run_all(args: argparse.Namespace, work: Path, store: list[str]) -> int:
    node = Target("idnode", "idnode", serve_command("--data-dir", str(work / "data"), "--workers", "2", *store))
    runs: list[Run] = []
    try:
        node.start()
        prepare(node, work)
        measure(node, work, "get-16", 3)  # warm: every worker caches every handle
        for _ in range(args.rounds):
            for series in ("get-16", "put-16", "put-1"):
                run = measure(node, work, series, args.seconds)
                runs.append(run)
                print(
                    f"{series:7s} {run.rps:9,.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
                    f"server {run.cpu_us:7.1f} us/request  others {run.others_cores:.2f} cores  bad {run.bad}",
                    flush=True,
                )
    finally:
        node.stop()
    median = {s: statistics.median(r.cpu_us for r in runs if r.series == s) for s in ("get-16", "put-16", "put-1")}
    ratio = median["put-16"] / median["get-16"]
    print(f"server CPU per PUT (-c16) / per cached GET (-c16): {ratio:.2f} (target <= 5)")
    print(f"server CPU per PUT, one in flight / -c16: {median['put-1'] / median['put-16']:.2f}")
    bad = sum(r.bad for r in runs)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "write_cost.json"
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "revision": revision(),
        "store": "postgresql" if store else "sqlite",
        "runs": [asdict(r) for r in runs],
        "median_cpu_us": median,
        "put16_over_get16": ratio,
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written: {out}")
    if bad:
        print(f"FAIL: {bad} requests failed or were not answered 2xx", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
