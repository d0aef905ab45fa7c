"""Issue 5: delegated resolution against local resolution, in the same run.

Starts on free loopback ports a top-level node (88), node A (88.118, ``--workers 2``, the
node measured) and node B (88.200); registers ``--handles`` identifiers under 88.118.1 on
A and as many under 88.200.1 on B, then:

* warm: wrk (one thread, 50 connections) drives A with its own identifiers (``local``)
  and with B's (``delegated``, every one resolved through A), round after round, the
  order alternating by round, after a warm-up that has both of A's workers cache both
  sets (several wrk runs: each shares its connections between the workers anew). A's
  requests to other nodes are counted (its /metrics) across the measured rounds: warm
  means none;
* cold: ``--cold`` identifiers, each under an enterprise prefix of its own allocated on B
  and published to the top-level node, are resolved through A one by one: the upstream
  round trips per resolution (A's metrics) and the latency, beside the latency of the same
  kind of first resolution of A's own identifiers and of B answering directly.

Writes the table to stdout and bench/results/delegation_summary.md::

    timeout 900 python -m bench.delegation
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench import wrk
from bench.resolve_baseline import ADMIN_SECRET, RESULTS, Target, machine, revision
from protocol.basic_auth import basic_credentials

WORKERS = "2"
UPSTREAM_METRIC = "idnode_upstream_request_duration_seconds"


def call(url: str, method: str = "GET", body: Any = None, user: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = basic_credentials(user, ADMIN_SECRET)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def admin_value(prefix: str) -> dict[str, Any]:
    ref = {"handle": f"0.NA/{prefix}", "index": 300, "permissions": "111111111111"}
    return {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": ref}}


def register(node: Target, prefix: str, count: int, user: str) -> list[str]:
    handles = [f"{prefix}/ITEM-{n:06d}" for n in range(count)]
    for start in range(0, count, 2000):
        operations = [
            {"op": "create", "handle": h, "values": [{"index": 1, "type": "URL", "data": f"https://example.com/{h}"}]}
            for h in handles[start : start + 2000]
        ]
        status, body = call(f"{node.url}/api/batch", "POST", {"atomic": True, "operations": operations}, user)
        if status != 200:
            raise RuntimeError(f"registering under {prefix}: HTTP {status}: {body}")
    return handles


def allocate(node: Target, prefix: str, parent: str) -> None:
    status, body = call(f"{node.url}/api/handles/0.NA/{prefix}", "PUT", [admin_value(parent)], f"300:0.NA/{parent}")
    if status not in (200, 201):
        raise RuntimeError(f"allocating {prefix}: HTTP {status}: {body}")


def wait_published(node: Target, prefixes: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = call(f"{node.url}/api/prefixes")[1]["publication"]
        if all(report.get(p, [{}])[0].get("state") == "published" for p in prefixes):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{node.name}: not all of {len(prefixes)} prefixes were published in {timeout:.0f} s")


def upstream_requests(node: Target, peer: Target | None = None, series: str = "count") -> float:
    """Requests ``node`` has sent to other nodes (to ``peer`` only, when given), or their seconds.

    The top-level node, A's upstream, has a label of its own; B, named by a record, is a "site".
    """
    with urllib.request.urlopen(f"{node.url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    label = "[^}]*" if peer is None else 'peer="site"' if peer.name != "top" else f'peer="127.0.0.1:{peer.port}"'
    name = f"{UPSTREAM_METRIC}_{series}"
    return sum(float(m) for m in re.findall(rf"^{name}{{{label}}} (\S+)$", text, re.MULTILINE))


def timed_get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as reply:
        reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{url}: HTTP {reply.status}")
    return (time.perf_counter() - started) * 1000


def start_nodes(work: Path) -> tuple[Target, Target, Target]:
    idnode = Path(sys.executable).with_name("idnode")
    serve = (
        [str(idnode), "serve", "--handle-listen", "127.0.0.1:0"]
        if idnode.exists()
        else [sys.executable, "-m", "resolver.cli", "serve", "--handle-listen", "127.0.0.1:0"]
    )

    def node(name: str, *args: str) -> list[str]:
        return [*serve, "--listen", "127.0.0.1:0", "--data-dir", str(work / name), *args]

    top = Target("top", "top-level node for 88", node("top", "--role", "top-level", "--node-prefix", "88")).start()
    for prefix in ("88.118", "88.200"):
        secret = {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": ADMIN_SECRET}}
        url = f"{top.url}/api/handles/0.NA/{prefix}?index=100&index=300"
        status, body = call(url, "PUT", [admin_value(prefix), secret], "300:0.NA/88")
        if status not in (200, 201):
            raise RuntimeError(f"granting {prefix}: HTTP {status}: {body}")
    up = ["--upstream", top.url]
    # Every node is on loopback, which delegation refuses by default: allowed explicitly.
    env = {"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET, "IDNODE_DELEGATION_ALLOW": "127.0.0.0/8"}
    a = Target("a", f"node A (88.118), --workers {WORKERS}", node("a", *up, "--workers", WORKERS), env=env).start()
    b = Target("b", "node B (88.200)", node("b", *up, "--node-prefix", "88.200", "--workers", WORKERS), env=env).start()
    return top, a, b


def run_all(args: argparse.Namespace, work: Path) -> None:
    top, a, b = start_nodes(work)
    try:
        allocate(a, "88.118.1", "88.118")
        allocate(b, "88.200.1", "88.200")
        local = register(a, "88.118.1", args.handles, "300:0.NA/88.118")
        remote = register(b, "88.200.1", args.handles, "300:0.NA/88.200")
        cold_prefixes = [f"88.200.{1000 + n}" for n in range(args.cold)]
        for prefix in cold_prefixes:
            allocate(b, prefix, "88.200")
        # Two identifiers per prefix: one resolved through A, the other asked of B directly, each
        # for the first time (so B reads both from its store).
        cold_pairs = [register(b, p, 2, "300:0.NA/88.200") for p in cold_prefixes]
        cold_remote, cold_direct = [pair[0] for pair in cold_pairs], [pair[1] for pair in cold_pairs]
        cold_local = register(a, "88.118.2", args.cold, "300:0.NA/88.118")
        wait_published(b, ["88.200.1", *cold_prefixes])
        paths = {}
        for name, handles in (("local", local), ("delegated", remote)):
            paths[name] = work / f"{name}.txt"
            paths[name].write_text("".join(f"/api/handles/{h}\n" for h in handles))

        # Cold first, while nothing is cached: one at a time, each a first resolution.
        before = [upstream_requests(a, peer, series) for peer in (top, b) for series in ("count", "sum")]
        cold = {
            "delegated: A, referral at the top-level node, query at B": [
                timed_get(f"{a.url}/api/handles/{h}") for h in cold_remote
            ],
            "B directly (one round trip of the kind A makes to B)": [
                timed_get(f"{b.url}/api/handles/{h}") for h in cold_direct
            ],
            "local: A's own identifiers": [timed_get(f"{a.url}/api/handles/{h}") for h in cold_local],
        }
        after = [upstream_requests(a, peer, series) for peer in (top, b) for series in ("count", "sum")]
        spent = [x - y for x, y in zip(after, before, strict=True)]
        trips = (spent[0] + spent[2]) / args.cold
        per_trip_ms = {"top": spent[1] / spent[0] * 1000, "B": spent[3] / spent[2] * 1000}

        # Each worker caches for itself (no Redis here), and each wrk run shares its connections
        # between the workers afresh: several runs, so that both workers have seen every handle.
        for name in ("local", "delegated"):
            for _ in range(args.warmups):
                wrk.run(a.url, paths[name], connections=args.connections, seconds=args.warmup)
        time.sleep(1.0)
        warm_before = upstream_requests(a, top), upstream_requests(a, b)
        runs: dict[str, list[wrk.WrkRun]] = {"local": [], "delegated": []}
        for n in range(1, args.rounds + 1):
            # ABBA: whichever goes first in a round does not always go first.
            for name in ("local", "delegated") if n % 2 else ("delegated", "local"):
                run = wrk.run(a.url, paths[name], connections=args.connections, seconds=args.duration)
                if run.errors or run.bad_status:
                    raise RuntimeError(f"{name}: {run.errors} errors, {run.bad_status} bad statuses\n{run.report}")
                runs[name].append(run)
                (RESULTS / f"delegation-round{n}-{name}.txt").write_text(run.report)
                print(f"round {n} {name:<9} {run.rps:>9,.0f} req/s  p99 {run.p99_ms:6.2f} ms", file=sys.stderr)
        time.sleep(1.0)
        warm_upstream = upstream_requests(a, top) - warm_before[0], upstream_requests(a, b) - warm_before[1]
    finally:
        for node in (a, b, top):
            node.stop()

    def median(name: str, pick: str) -> float:
        return float(statistics.median(getattr(r, pick) for r in runs[name]))

    rows = [
        "| A resolving | req/s (median) | runs | p50 ms | p99 ms |",
        "|---|---:|---|---:|---:|",
    ]
    for name in ("local", "delegated"):
        shown = " / ".join(f"{r.rps:,.0f}" for r in runs[name])
        rows.append(
            f"| {name} (cached) | {median(name, 'rps'):,.0f} | {shown} | {median(name, 'p50_ms'):.2f} | "
            f"{median(name, 'p99_ms'):.2f} |"
        )
    ratio = median("delegated", "rps") / median("local", "rps")
    rows += [
        "",
        f"- warm delegated / local cached (target >= 0.9): **{ratio:.2f}**",
        f"- requests from A to other nodes during the measured warm rounds: **{sum(warm_upstream):.0f}** "
        f"({warm_upstream[0]:.0f} to the top-level node, {warm_upstream[1]:.0f} to B)",
        "",
        "| first resolution, one at a time | median ms | p90 ms | max ms |",
        "|---|---:|---:|---:|",
    ]
    for name, ms in cold.items():
        q = statistics.quantiles(ms, n=10)
        rows.append(f"| {name} | {statistics.median(ms):.2f} | {q[8]:.2f} | {max(ms):.2f} |")
    rows += [
        "",
        f"- upstream round trips per cold delegated resolution (target <= 3): **{trips:.2f}** "
        f"(referral from the top-level node + query to B)",
        f"- mean time of those requests as A saw them: {per_trip_ms['top']:.2f} ms to the top-level node, "
        f"{per_trip_ms['B']:.2f} ms to B",
    ]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = f"{when}; {machine()}; code {revision()}; {args.handles:,} handles per node, {args.cold} cold\n\n"
    summary = header + "\n".join(rows) + "\n"
    (RESULTS / "delegation_summary.md").write_text(summary)
    print(summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delegation", description=__doc__.splitlines()[0])
    parser.add_argument("--handles", type=int, default=10_000, help="identifiers per node for the warm runs")
    parser.add_argument("--cold", type=int, default=100, help="enterprise prefixes (one identifier each), cold")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds per warm-up run")
    parser.add_argument("--warmups", type=int, default=4, help="warm-up runs per set of handles")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="idnode-delegation-bench-") as work:
        run_all(args, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
