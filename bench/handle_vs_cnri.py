"""Issue 12: the Handle protocol front-end against CNRI's HANDLE.NET server, in one run.

Everything runs inside a private network namespace, so that the CNRI server and tools can
never reach the real Global Handle Registry (``bench.cnri.require_netns`` checks)::

    unshare -n sh -c 'ip link set lo up; timeout 3600 .venv/bin/python -m bench.handle_vs_cnri \\
        --dist /work/cnri/7.3.1'

Targets, started once and driven in turn, round after round, so drift on the machine hits
every one alike (bench.handle_load is the driver: closed loop, one process, cheap per
request; its UDP side spreads requests over several sockets, as many clients would):

* ``cnri``: CNRI's server (``--dist``), 100,000 records ``88.118.8/<i>`` loaded offline,
  each with URL, EMAIL and INDUSTRY_CATEGORY values;
* ``idnode``: ``idnode serve --workers 2`` on SQLite with the same 100,000 records;
* ``uncached``: ``idnode serve --workers 2 --cache-entries 1`` on 1,000,000 such records,
  asked uniformly, so every answer reads the store;
* ``delegating``: ``idnode serve --workers 2`` holding none of them, only the prefix handle
  ``0.NA/88.118.8`` whose HS_SITE names the CNRI server's UDP and TCP interfaces: it
  resolves them over the Handle protocol (delegated down) and caches them.

Cached runs ask 10,000 of the records, warmed first; every measured run follows one second
of the same load, unreported (a node packs entries unused for 30 s, and the targets wait
their turn longer than that). Reported: answers/s, p50/p99, and the
server's CPU seconds per answer (its whole process tree, from /proc), for UDP and for TCP
(a connection per request, which is how CNRI's clients use TCP and CNRI's server closes
after each answer); then each idnode target at 70% of its own maximum (open loop) for p99;
the cached HTTP figure of the ``idnode`` node (wrk, same handles); and the upstream round
trips a cold delegated resolution costs. Writes the table to stdout and
bench/results/handle_summary.md, the raw reports to bench/results/handle_runs.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import cnri, wrk
from bench.handle_load import LoadConfig, Report, run_load
from bench.handle_load_base import Pace, RequestMix
from bench.load_store import load
from bench.resolve_baseline import ADMIN_SECRET, RESULTS, Target, machine, revision, serve_command
from protocol.records import HandleRecord, HandleValue

PREFIX = "88.118.8"
NODE_PREFIX = "88.118"
WORKERS = "2"
HOT = 10_000
COLD_PROBES = 200


def cnri_record(i: int, node_prefix: str) -> HandleRecord:
    """Record ``i + 1`` as bench.cnri loads it into CNRI's server: the same bytes on both sides."""
    n = i + 1
    when = 1_780_000_000
    return HandleRecord(
        f"{PREFIX}/{n}",
        (
            HandleValue(1, "URL", f"https://example.org/item/{n}".encode(), timestamp=when),
            HandleValue(2, "EMAIL", f"owner{n}@example.org".encode(), timestamp=when),
            HandleValue(3, "INDUSTRY_CATEGORY", f"C{n % 97:02d}-{n}".encode(), timestamp=when),
        ),
    )


def idnode_cmd(data: Path, *extra: str) -> list[str]:
    return serve_command("--data-dir", str(data), "--workers", WORKERS, *extra)


def handle_site(port: int) -> dict[str, Any]:
    interfaces = [{"protocol": "UDP", "port": port}, {"protocol": "TCP", "port": port}]
    server = {"serverId": 1, "address": "127.0.0.1", "interfaces": interfaces}
    return {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"servers": [server]}}}


def put(target: Target, path: str, values: list[dict[str, Any]]) -> None:
    import base64

    request = urllib.request.Request(target.url + path, data=json.dumps({"values": values}).encode(), method="PUT")
    token = base64.b64encode(f"300%3A0.NA/{NODE_PREFIX}:{ADMIN_SECRET}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as reply:
        if reply.status not in (200, 201):
            raise RuntimeError(f"PUT {path}: HTTP {reply.status}")


def metric(target: Target, name: str, **labels: str) -> float:
    with urllib.request.urlopen(target.url + "/metrics", timeout=10) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Series:
    def __init__(
        self, name: str, label: str, port: int, pid: int, mix: RequestMix, transport: str, *, kept: bool = False
    ) -> None:
        self.name, self.label, self.port, self.pid, self.mix, self.transport = name, label, port, pid, mix, transport
        self.kept = kept  # TCP: 100 requests a connection (the mix says whether they carry KEEP_ALIVE)
        self.runs: list[Report] = []

    def run(self, seconds: float, concurrency: int, rate: float = 0.0, warmup: float = 1.0) -> Report:
        config = LoadConfig(
            target=("127.0.0.1", self.port),
            pace=Pace(seconds, concurrency, rate, 1.0),
            transport=self.transport,
            keepalive=self.kept,
            warmup=warmup,
            server_pids=(self.pid,),
        )
        report = run_load(config, self.mix)
        if report.errors or report.timeouts or report.not_found:
            raise RuntimeError(f"{self.name}: {report.line()}")
        return report

    def median(self, pick: str) -> float:
        return float(statistics.median(float(getattr(r, pick)) for r in self.runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handle_vs_cnri", description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, required=True, help="an unpacked CNRI distribution (bin/, lib/)")
    parser.add_argument("--count", type=int, default=100_000, help="records in the cached stores (default 100000)")
    parser.add_argument("--uncached-count", type=int, default=1_000_000, help="records of the uncached node")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--udp-concurrency", type=int, default=32)
    parser.add_argument("--tcp-concurrency", type=int, default=16)
    parser.add_argument("--work", type=Path, help="keep stores here (default: a temporary directory)")
    return in_work(parser.parse_args(argv), run_all, "idnode-handle-bench-")


def in_work(args: argparse.Namespace, run: Callable[[argparse.Namespace, Path], int], prefix: str) -> int:
    """``run`` inside this private network namespace, on ``--work`` (kept) or a temporary directory."""
    cnri.require_netns()
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        return run(args, args.work)
    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        return run(args, Path(work))


def cnri_layout(args: argparse.Namespace, work: Path) -> cnri.Layout:
    """CNRI's server in ``work`` with ``args.count`` records (``args.dist``), written once: a kept
    ``--work`` reuses it, its ports included."""
    ports_file = work / "cnri-ports.json"
    if not ports_file.exists():
        ports_file.write_text(json.dumps([_free_port(), _free_port()]))
    port, http_port = json.loads(ports_file.read_text())
    lay = cnri.Layout(work / "cnri", args.dist.resolve(), PREFIX, "127.0.0.1", port, http_port)
    if not (lay.server_dir / "config.dct").exists():
        cnri.write_dirs(lay)
        cnri.load_handles(lay, args.count)
    return lay


def run_all(args: argparse.Namespace, work: Path) -> int:
    cached_data, uncached_data, delegating_data = work / "cached", work / "uncached", work / "delegating"
    if not (cached_data / "idnode.sqlite3").exists():
        load(cached_data, args.count, NODE_PREFIX, ADMIN_SECRET, cnri_record)
    if not (uncached_data / "idnode.sqlite3").exists():
        load(uncached_data, args.uncached_count, NODE_PREFIX, ADMIN_SECRET, cnri_record)
    lay = cnri_layout(args, work)
    rng = random.Random(12)
    hot = [f"{PREFIX}/{n}" for n in rng.sample(range(1, args.count + 1), min(HOT, args.count))]
    uniform = [f"{PREFIX}/{n}" for n in range(1, args.uncached_count + 1)]
    server = cnri.Server(lay)
    targets: list[Target] = []
    try:
        idnode = Target("idnode", "idnode --workers 2", idnode_cmd(cached_data)).start()
        targets.append(idnode)
        uncached = Target("uncached", "idnode --cache-entries 1", idnode_cmd(uncached_data, "--cache-entries", "1"))
        targets.append(uncached.start())
        delegating = Target(
            "delegating",
            "idnode --workers 2, records at the CNRI server",
            idnode_cmd(delegating_data, "--delegation-allow", "127.0.0.0/8"),
        ).start()
        targets.append(delegating)
        put(delegating, f"/api/handles/0.NA/{PREFIX}", [handle_site(lay.port)])
        cold = cold_round_trips(delegating, hot[:COLD_PROBES], args)
        return measure(args, lay, server, idnode, uncached, delegating, hot, uniform, cold, work)
    finally:
        for target in targets:
            target.stop()
        server.stop()


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        port: int = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))
        return port


def cold_round_trips(delegating: Target, handles: list[str], args: argparse.Namespace) -> float:
    """Upstream requests per first resolution of a handle held at the CNRI server."""
    before = metric(delegating, "idnode_upstream_request_duration_seconds_count")
    mix = RequestMix(handles, seed=3)
    series = Series("cold", "", delegating.handle_port, _pid(delegating), mix, "udp")
    series.run(seconds=max(1.0, len(handles) / 200), concurrency=1)
    after = metric(delegating, "idnode_upstream_request_duration_seconds_count")
    return (after - before) / len(handles)


def _pid(target: Target) -> int:
    assert target.proc is not None
    return target.proc.pid


def measure(
    args: argparse.Namespace,
    lay: cnri.Layout,
    server: cnri.Server,
    idnode: Target,
    uncached: Target,
    delegating: Target,
    hot: list[str],
    uniform: list[str],
    cold: float,
    work: Path,
) -> int:
    cnri_pid = server.proc.pid
    series = [
        Series("cnri-udp", "CNRI 7.3.1 server, UDP", lay.port, cnri_pid, RequestMix(hot, seed=1), "udp"),
        Series("idnode-udp", "idnode, UDP", idnode.handle_port, _pid(idnode), RequestMix(hot, seed=1), "udp"),
        Series("cnri-tcp", "CNRI 7.3.1 server, TCP", lay.port, cnri_pid, RequestMix(hot, seed=2), "tcp"),
        Series("idnode-tcp", "idnode, TCP", idnode.handle_port, _pid(idnode), RequestMix(hot, seed=2), "tcp"),
        Series(
            "uncached-udp",
            "idnode uncached, UDP",
            uncached.handle_port,
            _pid(uncached),
            RequestMix(uniform, seed=4),
            "udp",
        ),
        Series(
            "delegated-udp",
            "idnode delegating to CNRI, warm, UDP",
            delegating.handle_port,
            _pid(delegating),
            RequestMix(hot, seed=1),
            "udp",
        ),
    ]
    for s in series:  # JIT, page cache, every worker's cache
        concurrency = args.tcp_concurrency if s.transport == "tcp" else args.udp_concurrency
        s.run(seconds=4.0 if s.name != "uncached-udp" else 2.0, concurrency=concurrency, warmup=2.0)
    http_paths = work / "http-paths.txt"
    http_paths.write_text("".join(f"/api/handles/{h}\n" for h in hot))
    http_runs: list[wrk.WrkRun] = []
    http_cpu: list[float] = []
    wrk.run(idnode.url, http_paths, connections=50, seconds=3)
    for n in range(1, args.rounds + 1):
        print(f"round {n}/{args.rounds}", file=sys.stderr, flush=True)
        for s in series:
            concurrency = args.tcp_concurrency if s.transport == "tcp" else args.udp_concurrency
            report = s.run(args.seconds, concurrency)
            s.runs.append(report)
            print(f"  {s.name:<14} {report.line()}", file=sys.stderr, flush=True)
        before = idnode.cpu_seconds()
        run = wrk.run(idnode.url, http_paths, connections=50, seconds=int(args.seconds))
        http_cpu.append((idnode.cpu_seconds() - before) / max(run.requests, 1) * 1e6)
        http_runs.append(run)
        print(f"  {'idnode-http':<14} {run.rps:,.0f} req/s, {http_cpu[-1]:.0f} µs/answer", file=sys.stderr)
    at70 = {}
    for s in series:
        if s.name.startswith("idnode") or s.name == "delegated-udp":
            concurrency = args.tcp_concurrency if s.transport == "tcp" else args.udp_concurrency
            at70[s.name] = s.run(args.seconds, concurrency * 4, rate=0.7 * s.median("answers_per_s"))
            print(f"  70% {s.name:<10} {at70[s.name].line()}", file=sys.stderr, flush=True)
    summary = table(series, http_runs, http_cpu, at70, cold)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = f"{when}; {machine()}; code {revision()}; CNRI {args.dist.name}; {args.count:,} records\n\n"
    (RESULTS / "handle_summary.md").write_text(header + summary + "\n")
    raw = {s.name: [asdict(r) for r in s.runs] for s in series}
    raw["at70"] = [asdict(r) for r in at70.values()]
    (RESULTS / "handle_runs.json").write_text(json.dumps(raw, indent=1))
    print(header + summary)
    return 0


def series_rows(series: list[Series]) -> list[str]:
    """A Markdown table of the series: medians of answers/s, p50, p99 and server CPU per answer."""
    rows = [
        "| target | answers/s (median) | runs | p50 ms | p99 ms | server CPU µs/answer |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for s in series:
        runs = " / ".join(f"{r.answers_per_s:,.0f}" for r in s.runs)
        rows.append(
            f"| {s.name}: {s.label} | {s.median('answers_per_s'):,.0f} | {runs} | {s.median('p50_ms'):.2f} | "
            f"{s.median('p99_ms'):.2f} | {s.median('server_cpu_us_per_answer'):.1f} |"
        )
    return rows


def table(
    series: list[Series], http: list[wrk.WrkRun], http_cpu: list[float], at70: dict[str, Report], cold: float
) -> str:
    by = {s.name: s for s in series}
    rows = series_rows(series)
    http_rps = statistics.median(r.rps for r in http)
    rows.append(
        f"| idnode-http: same node, REST API (wrk -c50) | {http_rps:,.0f} | | | | {statistics.median(http_cpu):.1f} |"
    )

    def per_cpu(name: str) -> float:
        return 1e6 / by[name].median("server_cpu_us_per_answer")

    udp = by["idnode-udp"].median("answers_per_s")
    http_per_udp_cpu = statistics.median(http_cpu) / by["idnode-udp"].median("server_cpu_us_per_answer")
    uncached = by["uncached-udp"].median("answers_per_s")
    rows += [
        "",
        f"- answers per server CPU second, idnode / CNRI, UDP (target >= 1.5): "
        f"**{per_cpu('idnode-udp') / per_cpu('cnri-udp'):.2f}**",
        f"- answers per server CPU second, idnode / CNRI, TCP (target >= 1.5): "
        f"**{per_cpu('idnode-tcp') / per_cpu('cnri-tcp'):.2f}**",
        f"- uncached / cached, UDP answers/s (target >= 0.5): **{uncached / udp:.2f}**"
        f" (per server CPU second: {per_cpu('uncached-udp') / per_cpu('idnode-udp'):.2f})",
        f"- cached UDP / cached HTTP, answers/s (target >= 2): **{udp / http_rps:.2f}**"
        f" (per server CPU second: {http_per_udp_cpu:.2f})",
        f"- warm delegated / local cached, UDP answers/s (target >= 0.9): "
        f"**{by['delegated-udp'].median('answers_per_s') / udp:.2f}**",
        f"- cold delegated resolution: **{cold:.2f}** upstream round trips (target <= 3)",
    ]
    for name, report in at70.items():
        rows.append(
            f"- {name} at 70% of its maximum ({report.rate:,.0f}/s offered): p99 **{report.p99_ms:.2f} ms** "
            f"(target < 2 ms), {report.answers_per_s:,.0f} answers/s"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
