"""Issue 23: Locust on every front-end, one command: each scenario in turn, its CSVs and a plot.

For each scenario, ``locust --headless`` (a subprocess, bounded) drives bench/locustfile.py's
users against one node and writes Locust's CSVs with the full history
(``OUT/<scenario>_stats.csv``, ``_stats_history.csv``, ``_failures.csv``,
``_exceptions.csv``) and its log (``OUT/<scenario>.log``); then this plots requests/s and
p50/p99 over time from the history (``OUT/<scenario>.png``), prints a table of every
scenario, with the CPU Locust, the node (when started here) and the rest of the machine
took, and writes it to ``OUT/summary.md``::

    IDNODE_ADMIN_SECRET=... python -m bench.locust_run --host 127.0.0.1 --http-port 8000 \\
        --handle-port 2641 --count 1000000 --seconds 60 --users 20 --out bench/results/locust
    timeout 900 python -m bench.locust_run --serve --count 20000 --seconds 10

Scenarios: ``rest`` (ResolveUser), ``udp`` (HandleUdpUser), ``tcp`` (HandleTcpUser),
``snms`` (SnmsUser), ``register`` (RegisterUser: 2,000-item batches), ``mixed`` (all of
them by weight, with exactly one RegisterUser). The node is named by ``--host``,
``--http-port`` and ``--handle-port`` (loopback only); ``--count`` (default
``IDNODE_BENCH_COUNT``) is the population the Zipf-like draws come from and the admin secret
is ``IDNODE_ADMIN_SECRET``, as the locustfile reads them. With ``--serve`` it starts a node
itself (``idnode serve --workers 2``) on a store of ``--count`` bench.load_store records
(in ``--data-dir``, else a temporary directory) and stops it at the end.

Locust records response times in whole milliseconds below 100 ms: on loopback a cached
answer's p50 shows as 0 or 1 ms. bench.handle_load and wrk measure finer.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.handle_load_base import LoadError, loopback_target
from bench.load_store import load
from bench.resolve_baseline import (
    ADMIN_SECRET,
    NOISE_CORES,
    REPO,
    Target,
    busy_seconds,
    machine,
    revision,
    serve_command,
)

LOCUSTFILE = REPO / "bench" / "locustfile.py"
SCENARIOS = {
    "rest": ["ResolveUser"],
    "udp": ["HandleUdpUser"],
    "tcp": ["HandleTcpUser"],
    "snms": ["SnmsUser"],
    "register": ["RegisterUser"],
    "mixed": ["ResolveUser", "HandleUdpUser", "HandleTcpUser", "SnmsUser", "RegisterUser"],
}
DEFAULT_SCENARIOS = "rest,udp,tcp,snms,mixed"
# In the mixed load one factory registers batches whatever --users is (by weight alone it
# would get none of 20 users: 50 : 50 : 50 : 10 : 1).
MIXED_USERS = [{"user_class_name": "RegisterUser", "fixed_count": 1}]
GRACE_S = 60  # beyond --seconds before a Locust run is stopped: start-up, spawning, stopping, the CSVs
WORKERS = "2"


@dataclass(frozen=True)
class Node:
    """Where the scenarios are sent."""

    host: str
    http_port: int
    handle_port: int
    secret: str
    cpu_seconds: Callable[[], float] | None = None  # of the node's processes, when started here


@dataclass(frozen=True)
class Cores:
    """Where the machine's CPU went during one scenario, in cores: Locust, the node (when
    started here), and everything else, which should be near zero for figures to compare."""

    scenario: str
    locust: float
    node: float | None
    others: float

    def line(self) -> str:
        node = "?" if self.node is None else f"{self.node:.2f}"
        return f"| {self.scenario} | {self.locust:.2f} | {node} | {self.others:.2f} |"


@dataclass(frozen=True)
class Row:
    """One line of a Locust ``_stats.csv``: a request type and name, or ``Aggregated``."""

    scenario: str
    type: str
    name: str
    requests: int
    failures: int
    rate: float
    p50: str
    p99: str

    @classmethod
    def of(cls, scenario: str, line: dict[str, str]) -> Row:
        return cls(
            scenario,
            line["Type"],
            line["Name"],
            int(line["Request Count"]),
            int(line["Failure Count"]),
            float(line["Requests/s"]),
            line["50%"],
            line["99%"],
        )


def locust_command(node: Node, scenario: str, args: argparse.Namespace, prefix: Path) -> list[str]:
    users = str(args.users)
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    cmd += ["-H", f"http://{node.host}:{node.http_port}", "-u", users, "-r", str(args.spawn_rate or users)]
    cmd += ["-t", f"{args.seconds}s", "--stop-timeout", "5", "--csv", str(prefix), "--csv-full-history"]
    if args.processes > 1:
        cmd += ["--processes", str(args.processes)]
    if scenario == "mixed":
        cmd.append(f"--config-users={json.dumps(MIXED_USERS)}")  # "=": the option takes any number of values
    return cmd + SCENARIOS[scenario]


def run_scenario(node: Node, scenario: str, args: argparse.Namespace) -> tuple[list[Row], Cores]:
    """One Locust run: its rows of ``_stats.csv`` and the CPU it took. Failed requests are
    results, not errors: only a run that wrote no statistics raises."""
    prefix = args.out / scenario
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env |= {"IDNODE_BENCH_COUNT": str(args.count), "IDNODE_ADMIN_SECRET": node.secret}
    env |= {"IDNODE_BENCH_HANDLE_PORT": str(node.handle_port), "PYTHONPATH": str(REPO)}
    cmd = locust_command(node, scenario, args, prefix)
    print(f"locust_run: {scenario}: {args.users} users, {args.seconds} s ...", file=sys.stderr, flush=True)
    before = _cpu(node)
    with open(args.out / f"{scenario}.log", "w") as log:
        returncode = bounded(cmd, env, log, args.seconds + GRACE_S)
    cores = _cores(scenario, before, _cpu(node))
    if returncode is None:
        raise LoadError(f"{scenario}: Locust did not finish within {args.seconds + GRACE_S} s; stopped")
    stats = prefix.parent / f"{prefix.name}_stats.csv"
    if not stats.exists():
        raise LoadError(f"{scenario}: Locust exited with {returncode} and wrote no statistics; see {log.name}")
    with open(stats, newline="") as f:
        rows = [Row.of(scenario, line) for line in csv.DictReader(f)]
    plot(scenario, prefix.parent / f"{prefix.name}_stats_history.csv", args.out / f"{scenario}.png", args)
    return rows, cores


Snapshot = tuple[float, float, float, float | None]


def _cpu(node: Node) -> Snapshot:
    """Now: the wall clock, the machine's busy CPU seconds, this process's finished children's
    (Locust and what it forked), the node's."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    node_cpu = node.cpu_seconds() if node.cpu_seconds else None
    return time.monotonic(), busy_seconds(), children.ru_utime + children.ru_stime, node_cpu


def _cores(scenario: str, before: Snapshot, after: Snapshot) -> Cores:
    wall = after[0] - before[0]
    machine_cores = (after[1] - before[1]) / wall
    locust = (after[2] - before[2]) / wall
    node = None if before[3] is None or after[3] is None else (after[3] - before[3]) / wall
    return Cores(scenario, locust, node, max(0.0, machine_cores - locust - (node or 0.0)))


def bounded(cmd: list[str], env: dict[str, str], log: IO[str], limit: float) -> int | None:
    """Run ``cmd``; its exit code, or None when it ran past ``limit`` seconds and was killed
    with everything it started (Locust's --processes forks workers: its own session)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return proc.wait(limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "N/A" before the first request
        return float("nan")


def plot(scenario: str, history: Path, out: Path, args: argparse.Namespace) -> None:
    """Requests/s (each request type and all) and the aggregated p50/p99 (Locust's last
    ~10 s window) over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image  # matplotlib's own dependency

    with open(history, newline="") as f:
        lines = list(csv.DictReader(f))
    if not lines:
        return
    start = int(lines[0]["Timestamp"])
    series: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for line in lines:
        key = "all" if line["Name"] == "Aggregated" else f"{line['Type']} {line['Name']}"
        series.setdefault(key, []).append((int(line["Timestamp"]) - start, line))
    total = series.pop("all")
    fig, (rate, latency) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    for key, points in sorted(series.items()) if len(series) > 1 else []:
        rate.plot([t for t, _ in points], [_number(p["Requests/s"]) for _, p in points], label=key, linewidth=1)
    times = [t for t, _ in total]
    rate.plot(times, [_number(p["Requests/s"]) for _, p in total], label="all", color="black", linewidth=2)
    failing = [_number(p["Failures/s"]) for _, p in total]
    if any(f > 0 for f in failing):
        rate.plot(times, failing, label="failures", color="red", linestyle="--")
    rate.set_ylabel("requests/s")
    rate.legend(fontsize="small")
    latency.plot(times, [_number(p["50%"]) for _, p in total], label="p50")
    latency.plot(times, [_number(p["99%"]) for _, p in total], label="p99")
    latency.set_ylabel("response time, ms (whole ms)")
    latency.set_xlabel("seconds")
    latency.legend(fontsize="small")
    fig.suptitle(f"idnode under Locust: {scenario} ({args.users} users, {args.count:,} records)")
    fig.tight_layout()
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=80)
    plt.close(fig)
    # 64 colours: a quarter of the bytes, so a run's plots can be kept beside its CSVs.
    Image.open(rendered).convert("RGB").quantize(colors=64).save(out, optimize=True)


def table(rows: list[Row]) -> list[str]:
    out = [
        "| scenario | type | name | requests | failures | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = "**all**" if r.name == "Aggregated" else f"`{r.name}`"
        counts = f"{r.requests:,} | {r.failures:,} | {r.rate:,.0f}"
        out.append(f"| {r.scenario} | {r.type} | {name} | {counts} | {r.p50} | {r.p99} |")
    return out


def cpu_table(cores: list[Cores]) -> list[str]:
    head = ["| scenario | Locust, cores | node, cores | rest of the machine, cores |", "|---|---:|---:|---:|"]
    return head + [c.line() for c in cores]


@contextlib.contextmanager
def served(args: argparse.Namespace) -> Iterator[Node]:
    """The node named by the flags, or with ``--serve`` one started here and stopped after."""
    if not args.serve:
        host, _ = loopback_target(args.host, args.http_port)
        secret = os.environ.get("IDNODE_ADMIN_SECRET", "")
        yield Node(args.host if ":" not in host else f"[{host}]", args.http_port, args.handle_port, secret)
        return
    with contextlib.ExitStack() as stack:
        data = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="locust-run-")))
        load(data, args.count, admin_secret=ADMIN_SECRET)
        target = Target(
            "idnode", f"idnode serve --workers {WORKERS}", serve_command("--data-dir", str(data), "--workers", WORKERS)
        )
        stack.callback(target.stop)
        target.start()
        yield Node("127.0.0.1", target.port, target.handle_port, ADMIN_SECRET, target.cpu_seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    cores: list[Cores] = []
    started = time.time()
    try:
        with served(args) as node:
            for scenario in args.scenarios:
                scenario_rows, scenario_cores = run_scenario(node, scenario, args)
                rows += scenario_rows
                cores.append(scenario_cores)
    except LoadError as exc:
        print(f"locust_run: {exc}", file=sys.stderr)
        return 1
    lines = [*table(rows), "", *cpu_table(cores)]
    print("\n".join(lines))
    header = [
        f"# Locust on every front-end ({time.strftime('%Y-%m-%d %H:%M', time.localtime(started))})",
        "",
        f"`python -m bench.locust_run {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"- {args.count:,} records, {args.users} users, {args.seconds} s a scenario, {args.processes} Locust process",
        f"- {machine()}; revision {revision()}",
        "- p50/p99 in whole milliseconds, as Locust records them; the node's CPU is known only with --serve",
        f"- the rest of the machine above {NOISE_CORES} cores means other processes took CPU: the figures are low",
        "",
    ]
    (args.out / "summary.md").write_text("\n".join(header + lines) + "\n")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.locust_run", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="the node's address (loopback; default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=8000, help="its HTTP port (REST, SNMS; default 8000)")
    parser.add_argument("--handle-port", type=int, default=2641, help="its Handle port, TCP and UDP (default 2641)")
    parser.add_argument("--serve", action="store_true", help="start a node here on --count records, and stop it after")
    parser.add_argument("--data-dir", type=Path, help="with --serve: the store's directory (default: a temporary one)")
    default_count = os.environ.get("IDNODE_BENCH_COUNT")
    parser.add_argument(
        "--count",
        type=int,
        default=int(default_count) if default_count else None,
        required=not default_count,
        help="records loaded with bench.load_store: the population of the Zipf-like draws (IDNODE_BENCH_COUNT)",
    )
    parser.add_argument("--seconds", type=int, default=60, help="each scenario's run time (default 60)")
    parser.add_argument("--users", type=int, default=20, help="Locust users (default 20)")
    parser.add_argument("--spawn-rate", type=float, help="users started a second (default: all at once)")
    parser.add_argument(
        "--processes", type=int, default=1, help="Locust processes (default 1; the node needs cores too)"
    )
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS, help=f"comma-separated (default {DEFAULT_SCENARIOS})")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "locust", help="where the files go")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown or not args.scenarios:
        parser.error(f"--scenarios: {', '.join(unknown) or 'none'}; choose from {', '.join(SCENARIOS)}")
    if args.count < 1 or args.seconds < 1 or args.users < 1:
        parser.error("--count, --seconds and --users must be at least 1")
    if not args.serve and not os.environ.get("IDNODE_ADMIN_SECRET"):
        print("locust_run: IDNODE_ADMIN_SECRET is not set: SNMS logins and registrations will fail", file=sys.stderr)
    return args


if __name__ == "__main__":
    sys.exit(main())
