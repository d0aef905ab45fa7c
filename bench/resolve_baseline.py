"""Issue 2: how fast does GET /api/handles/{h} go, against a trivial aiohttp app on the same box?

Loads a store of synthetic records, starts the real node (``idnode serve``), the trivial
baseline (bench.baseline_app) and the node with each store read mode (bench.read_modes),
then drives them in turn with wrk, round after round, so drift on the machine hits every
target alike. Each request asks for a different handle from a fixed sample of the store.
Raw wrk reports go to bench/results/; the medians are printed as a markdown table::

    timeout 600 python -m bench.resolve_baseline
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import wrk
from bench.load_store import handle_for, load

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ADMIN_SECRET = "bench-admin-secret-0123456789"
START_TIMEOUT_S = 30.0
SEED = 2
NOISE_CORES = 0.2  # CPU used by other processes during a run above which the results are flagged


def serve_command(*args: str) -> list[str]:
    """``idnode serve`` from this checkout on free loopback ports (HTTP and the Handle protocol), then ``args``."""
    listen = ["--listen", "127.0.0.1:0", "--handle-listen", "127.0.0.1:0"]
    return [sys.executable, "-m", "resolver.cli", "serve", *listen, *args]


@dataclass
class Target:
    """One HTTP server under test, run as a child process on a free loopback port."""

    name: str
    label: str
    cmd: list[str]
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    handle_port: int = 0  # the Handle protocol's, when the target serves it (announced before HTTP)
    log: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO  # where it runs: `python -m` imports from there first
    last_cpu_us: float = 0.0  # the server's CPU per answer in the last run measured (bench.uncached_ab)

    def start(self) -> Target:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
        env.update(IDNODE_ADMIN_SECRET=ADMIN_SECRET, PYTHONPATH=str(self.cwd))
        env.update(self.env)
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=env, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited during start-up:\n{''.join(self.log)}")
            self.log.append(line)
            if ": listening on handle://" in line:
                self.handle_port = int(line.rsplit(":", 1)[1])
            if ": listening on http://" in line:
                self.port = int(line.rsplit(":", 1)[1])
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()  # not left running behind the error (it outlived a failed run once, idle)
        raise RuntimeError(f"{self.name} did not start within {START_TIMEOUT_S:.0f} s")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    @property
    def proc_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live children (workers), all threads included."""
        assert self.proc is not None
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # the process ended while we looked
            if stat.parent.name == str(self.proc.pid) or fields[1] == str(self.proc.pid):
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores, anything but idle and iowait)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    target: Target
    runs: list[wrk.WrkRun] = field(default_factory=list)
    cores: list[float] = field(default_factory=list)  # CPU of the target during each run, in cores
    others: list[float] = field(default_factory=list)  # CPU of everything but target and wrk: noise

    def median(self, pick: str) -> float:
        return float(statistics.median(float(getattr(r, pick)) for r in self.runs))


def _targets(data_dir: Path, body_file: Path) -> list[Target]:
    idnode = Path(sys.executable).with_name("idnode")
    serve = (
        [str(idnode), "serve", "--handle-listen", "127.0.0.1:0"]
        if idnode.exists()
        else [sys.executable, "-m", "resolver.cli", "serve", "--handle-listen", "127.0.0.1:0"]
    )
    node_args = ["--listen", "127.0.0.1:0", "--data-dir", str(data_dir)]
    modes = [sys.executable, "-m", "bench.read_modes", *node_args, "--reads"]
    return [
        Target("server", "idnode serve (threaded reads, default)", [*serve, *node_args]),
        Target("baseline", "trivial aiohttp + uvloop, fixed body", []),  # cmd set once the body is known
        Target("threads", "bench.read_modes --reads threads", [*modes, "threads"]),
        Target("loop", "bench.read_modes --reads loop", [*modes, "loop"]),
    ]


def _fetch_body(server: Target, handle: str, body_file: Path) -> bytes:
    with urllib.request.urlopen(f"{server.url}/api/handles/{handle}", timeout=10) as reply:
        body: bytes = reply.read()
        if reply.status != 200 or json.loads(body)["responseCode"] != 1:
            raise RuntimeError(f"{handle}: HTTP {reply.status}: {body!r}")
    body_file.write_bytes(body)
    return body


def _write_paths(path: Path, count: int, sample: int) -> list[str]:
    chosen = random.Random(SEED).sample(range(count), min(sample, count))
    paths = [f"/api/handles/{handle_for(i)}" for i in chosen]
    path.write_text("\n".join(paths) + "\n")
    return paths


def _measure(m: Measured, paths_file: Path, args: argparse.Namespace, seconds: int) -> tuple[wrk.WrkRun, float, float]:
    """One wrk run; also the target's CPU and everything else's, in cores."""
    before, busy_before = m.target.cpu_seconds(), busy_seconds()
    run = wrk.run(m.target.url, paths_file, connections=args.connections, seconds=seconds)
    cores = (m.target.cpu_seconds() - before) / run.seconds
    others = (busy_seconds() - busy_before) / run.seconds - cores - run.wrk_cpu_seconds / run.seconds
    if run.bad_status or run.errors:
        raise RuntimeError(f"{m.target.name}: {run.bad_status} bad statuses, {run.errors} errors:\n{run.report}")
    return run, cores, max(0.0, others)  # the clocks are sampled at slightly different moments


def _drive(m: Measured, paths_file: Path, args: argparse.Namespace, raw_name: str) -> None:
    """A recorded run; repeated (at most --retries times) while other processes load the machine."""
    attempt = 1
    run, cores, others = _measure(m, paths_file, args, args.duration)
    while others > NOISE_CORES and args.retries > 0:
        args.retries -= 1  # a budget for the whole benchmark, so its duration stays bounded
        print(f"  {raw_name}: other processes used {others:.2f} cores; running it again", file=sys.stderr)
        time.sleep(5)
        attempt += 1
        run, cores, others = _measure(m, paths_file, args, args.duration)
    m.runs.append(run)
    m.cores.append(cores)
    m.others.append(others)
    header = f"# target {m.target.name}: {m.target.label}\n# {' '.join(m.target.cmd)}\n"
    header += f"# target CPU {cores:.2f} cores, wrk CPU {run.wrk_cpu_seconds / run.seconds:.2f} cores, "
    header += f"rest of the machine {others:.2f} cores; attempt {attempt}\n"
    (RESULTS / raw_name).write_text(header + run.report)
    print(
        f"  {raw_name:<22} {run.rps:>9,.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
        f"  target {cores:.2f} cores  others {others:.2f} cores",
        file=sys.stderr,
        flush=True,
    )


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.platform()}"


def revision() -> str:
    """The commit measured, and whether files outside bench/ differed from it."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return "not a git checkout"
    status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True, check=False)
    dirty = [ln[3:] for ln in status.stdout.splitlines() if not ln[3:].startswith("bench/")]
    return head.stdout.strip() + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else "")


def table(measured: dict[str, Measured]) -> str:
    base = measured["baseline"].median("rps")
    threads = measured["threads"].median("rps")
    rows = [
        "| target | req/s (median) | runs req/s | p50 ms | p99 ms | target CPU (cores) | other load (cores, max) "
        "| vs baseline |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for m in measured.values():
        runs = " / ".join(f"{r.rps:,.0f}" for r in m.runs)
        rps = m.median("rps")
        rows.append(
            f"| {m.target.name}: {m.target.label} | {rps:,.0f} | {runs} | {m.median('p50_ms'):.2f} | "
            f"{m.median('p99_ms'):.2f} | {statistics.median(m.cores):.2f} | {max(m.others):.2f} | {rps / base:.2f} |"
        )
    loop = measured["loop"].median("rps")
    noisy = [o for m in measured.values() for o in m.others if o > NOISE_CORES]
    if noisy:
        rows.append(
            f"\nWARNING: in {len(noisy)} of {sum(len(m.runs) for m in measured.values())} runs other processes used "
            f"more than {NOISE_CORES} cores (up to {max(noisy):.2f}); see the raw reports in bench/results/"
        )
    rows.append("")
    rows.append(f"on-loop reads / threaded reads (same launcher): {loop / threads:.2f}")
    return "\n".join(rows)


def _run_all(args: argparse.Namespace, work: Path) -> dict[str, Measured]:
    data_dir, body_file, paths_file = work / "data", RESULTS / "baseline_body.json", work / "paths.txt"
    started = time.perf_counter()
    load(data_dir, args.count, admin_secret=ADMIN_SECRET)
    print(f"store: {args.count:,} records in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    _write_paths(paths_file, args.count, args.handles)
    targets = _targets(data_dir, body_file)
    measured = {t.name: Measured(t) for t in targets}
    try:
        targets[0].start()
        _fetch_body(targets[0], handle_for(0), body_file)
        targets[1].cmd = [sys.executable, "-m", "bench.baseline_app", "--listen", "127.0.0.1:0"]
        targets[1].cmd += ["--body-file", str(body_file)]
        for t in targets[1:]:
            t.start()
        for m in measured.values():
            _measure(m, paths_file, args, args.warmup)  # page cache, connections, lazy set-up: not recorded
        for n in range(1, args.rounds + 1):
            print(f"round {n}/{args.rounds}", file=sys.stderr, flush=True)
            for m in measured.values():
                _drive(m, paths_file, args, f"round{n}-{m.target.name}.txt")
    finally:
        for t in targets:
            t.stop()
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resolve_baseline", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="records in the store (default 100000)")
    parser.add_argument("--handles", type=int, default=10_000, help="distinct handles requested (default 10000)")
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured wrk run (default 15)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unrecorded warm-up per target (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per target (default 3)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--retries", type=int, default=4, help="re-runs allowed for disturbed runs (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    parser.add_argument("--code", help="what code is measured (default: the checkout's git HEAD and changes)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not on PATH")
    RESULTS.mkdir(exist_ok=True)
    measured_revision = args.code or revision()  # before the servers import the tree
    work = Path(tempfile.mkdtemp(prefix="idnode-bench-"))
    try:
        measured = _run_all(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    wrk_cmd = f"wrk -t1 -c{args.connections} -d{args.duration}s --latency -s bench/handles.lua URL -- PATHS"
    summary = (
        f"machine: {machine()}\n"
        f"code: {measured_revision}\n"
        f"store: {args.count:,} records; {args.handles:,} distinct handles requested; {args.rounds} rounds\n"
        f"driver: {wrk_cmd}\n\n{table(measured)}\n"
    )
    (RESULTS / "summary.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
