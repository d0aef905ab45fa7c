"""A cached answer over a large key set asked uniformly, also after idle time, against the
same answer over a small hot set: server CPU per answer, Handle UDP and REST, in one run.

    python -m bench.long_tail --work /tmp/long-tail [--count 1000000] [--hot 1000] \\
        [--seconds 10] [--idle 70] [--rounds 2]

It fills (or reuses, in ``--work``) a SQLite store of ``--count`` records (bench.load_store)
and starts ``idnode serve`` on it with the default settings (a worker per core) on free
loopback ports. Each worker caches for itself, so every key is first asked once of every
worker, over UDP and over REST (bench.worker_lanes maps client sockets to the workers that
serve them), every answer checked; then ``--idle`` seconds of silence, so that the packing
of what the warm pass left hot is not charged to the first runs. Then, each round,
``--seconds`` each:

* UDP (bench.handle_load, 16 source ports, 32 in flight): the first ``--hot`` keys; all keys
  uniformly; the same again with one request in flight; REST (wrk, one thread, 16 keep-alive
  connections, bench/handles.lua): the hot keys, then all keys in a shuffled order;
* after ``--idle`` seconds in which nothing is sent to the node (so its sweeper has packed
  every entry into the cold form): all keys uniformly over UDP, one in flight then 32;
  after another idle, all keys over REST.

Reported for each run: answers/s seen by the client, the server's CPU per answer (its
whole process tree, from /proc), each worker's CPU seconds (both must be loaded), the
node's cache misses and store reads during the run (``/metrics``, scraped outside the
measured window; none are expected), and the CPU the rest of the machine used. Then the
ratios uniform / hot and after idle / hot of the CPU per answer (target <= 1.3; medians
over rounds), and each worker's resident memory after the warm pass and after the first
idle, per million entries. Everything goes to bench/results/long_tail.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import wrk
from bench.handle_load import LoadConfig, run_load
from bench.handle_load_base import LoadError, Pace, RequestMix
from bench.handle_vs_cnri import metric
from bench.load_store import NODE_PREFIX, handle_for, load
from bench.proc_cpu import children, cpu_seconds_each, rss_bytes, tree_cpu_seconds
from bench.resolve_baseline import ADMIN_SECRET, RESULTS, Target, busy_seconds, machine, revision, serve_command
from bench.worker_lanes import HttpLane, Lane, UdpLane, drive, map_sockets
from resolver.config import DEFAULTS

API = "/api/handles/"
UDP_SOCKETS = 16
UDP_CONCURRENCY = 32
HTTP_CONNECTIONS = 16
MAPPED_CONNECTIONS = 4  # at least; more until every worker has one
BURST = 3000  # requests for one key through a socket, to see whose CPU grows
HOT_WARMUP_S = 1.0  # hot runs only: the hot keys come out of their cold form first
METRICS_LAG_S = 0.7  # workers hand their counts to /metrics twice a second
TARGET = 1.3
SEED = 7


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured run: what the client saw and what the server spent."""

    name: str  # transport, shape (hot, uniform, idle: uniform after idle) and requests in flight
    round: int
    answers: int
    answers_per_s: float
    server_cpu_s: float
    cpu_us_per_answer: float
    worker_cpu_s: dict[str, float]
    cache_misses: float
    store_reads: float
    failures: int  # UDP: errors, timeouts, not found; REST: socket errors and statuses not 2xx/3xx
    client_cpu_s: float
    others_cores: float  # CPU of the rest of the machine during the run, in cores

    def line(self) -> str:
        workers = " + ".join(f"{s:.2f}" for s in self.worker_cpu_s.values())
        return (
            f"round {self.round} {self.name:<18} {self.answers_per_s:>9,.0f} answers/s, "
            f"{self.cpu_us_per_answer:6.1f} server CPU µs/answer (workers {workers} s), "
            f"{self.cache_misses:.0f} misses, {self.store_reads:.0f} store reads, {self.failures} failures, "
            f"others {self.others_cores:.2f} cores"
        )


@dataclass(frozen=True, slots=True)
class Run:
    """What a driver reports of one run."""

    answers: int
    answers_per_s: float
    failures: int
    client_cpu_s: float


def store(work: Path, count: int) -> Path:
    """A data directory holding ``count`` records, made once per count in ``work``."""
    data = work / f"store-{count}"
    if not (data / "loaded").exists():
        shutil.rmtree(data, ignore_errors=True)  # a load cut short
        load(data, count, NODE_PREFIX, ADMIN_SECRET)
        (data / "loaded").write_text(f"{count}\n")
    return data


def write_paths(path: Path, names: Sequence[str], order: Sequence[int]) -> Path:
    """A wrk paths file (bench/handles.lua): the REST path of ``names[i]`` for each ``i`` in ``order``."""
    with path.open("w") as out:
        out.writelines(f"{API}{names[i]}\n" for i in order)
    return path


def workers_of(node: Target, timeout: float = 15.0) -> list[int]:
    """The node's worker processes, once all ``DEFAULTS.workers`` of them are up."""
    deadline = time.monotonic() + timeout
    while len(found := children(node.proc_pid)) < DEFAULTS.workers:
        if time.monotonic() > deadline:
            raise LoadError(f"the node has {len(found)} workers, not {DEFAULTS.workers}")
        time.sleep(0.1)
    return found


class LongTail:
    """The node under test, its workers, the requests, and the figures measured so far."""

    def __init__(self, args: argparse.Namespace, node: Target, work: Path) -> None:
        self.args, self.node = args, node
        self.workers = workers_of(node)
        self.names = [handle_for(i) for i in range(args.count)]
        print(f"encoding {args.count:,} requests", file=sys.stderr, flush=True)
        self.uniform = RequestMix(self.names, seed=SEED)
        self.hot = RequestMix(self.names[: args.hot], seed=SEED)
        shuffled = list(range(args.count))
        random.Random(SEED).shuffle(shuffled)
        self.hot_paths = write_paths(work / "hot-paths.txt", self.names, range(args.hot))
        self.uniform_paths = write_paths(work / "uniform-paths.txt", self.names, shuffled)
        self.figures: list[Figure] = []
        self.memory: dict[str, dict[str, int]] = {"start": self.rss()}

    def rss(self) -> dict[str, int]:
        return {str(pid): rss_bytes(pid) for pid in self.workers}

    def counters(self) -> tuple[float, float]:
        return metric(self.node, "idnode_cache_misses_total"), metric(self.node, "idnode_store_reads_total")

    # Warm pass -------------------------------------------------------------------------

    def _udp_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", self.node.handle_port))
        return sock

    def _http_socket(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.node.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def warm(self) -> dict[str, Any]:
        """Every key asked once of every worker, over UDP and over REST, every answer a success."""
        started = time.monotonic()
        templates = self.uniform.templates
        udp = map_sockets(self.workers, self._udp_socket, lambda s: UdpLane(s, templates, [0] * BURST), UDP_SOCKETS, 64)
        http = map_sockets(
            self.workers, self._http_socket, lambda s: HttpLane(s, self.names, [0] * BURST, API), MAPPED_CONNECTIONS, 96
        )
        mapped = time.monotonic() - started
        order = range(self.args.count)
        lanes: list[Lane] = [UdpLane(udp[pid][0], templates, order) for pid in self.workers]
        lanes += [HttpLane(http[pid][0], self.names, order, API) for pid in self.workers]
        try:
            drive(lanes, "warm", every=15.0)
        finally:
            for sock in [s for socks in (*udp.values(), *http.values()) for s in socks]:
                sock.close()
        failures = {str(code): n for lane in lanes for code, n in lane.failures.items()}
        if failures:
            raise LoadError(f"warm pass: answers that were not a success, by code or status: {failures}")
        self.memory["warm"] = self.rss()
        return {
            "udp_sockets": {str(pid): len(s) for pid, s in udp.items()},
            "http_connections": {str(pid): len(s) for pid, s in http.items()},
            "mapping_s": mapped,
            "seconds": time.monotonic() - started,
            "answers": sum(lane.ok for lane in lanes),
            "settle_server_cpu_s": self.settle(),
        }

    def settle(self) -> float:
        """Wait ``--idle`` seconds, sending nothing: the sweeper packs what the warm pass left hot
        (about 30 µs an entry), work the first measured runs would otherwise be charged with.
        Returns the server's CPU seconds meanwhile."""
        print(f"  settle {self.args.idle:.0f} s", file=sys.stderr, flush=True)
        before = tree_cpu_seconds((self.node.proc_pid,))
        time.sleep(self.args.idle)
        self.memory["idle"] = self.rss()
        return tree_cpu_seconds((self.node.proc_pid,)) - before

    # Measured runs ---------------------------------------------------------------------

    def measure(self, name: str, round_: int, run: Callable[[], Run], idle: float = 0.0) -> Figure:
        """One run of ``run``, after ``idle`` seconds in which nothing is sent to the node."""
        misses0, reads0 = self.counters()
        if idle:
            print(f"  idle {idle:.0f} s", file=sys.stderr, flush=True)
            time.sleep(idle)
        each0, tree0, busy0 = cpu_seconds_each(self.workers), tree_cpu_seconds((self.node.proc_pid,)), busy_seconds()
        started = time.monotonic()
        done = run()
        elapsed = time.monotonic() - started
        each1, tree1, busy1 = cpu_seconds_each(self.workers), tree_cpu_seconds((self.node.proc_pid,)), busy_seconds()
        time.sleep(METRICS_LAG_S)
        misses1, reads1 = self.counters()
        server = tree1 - tree0
        figure = Figure(
            name=name,
            round=round_,
            answers=done.answers,
            answers_per_s=done.answers_per_s,
            server_cpu_s=server,
            cpu_us_per_answer=1e6 * server / max(done.answers, 1),
            worker_cpu_s={str(pid): each1[pid] - each0[pid] for pid in self.workers},
            cache_misses=misses1 - misses0,
            store_reads=reads1 - reads0,
            failures=done.failures,
            client_cpu_s=done.client_cpu_s,
            others_cores=max(0.0, (busy1 - busy0 - server - done.client_cpu_s) / elapsed),
        )
        self.figures.append(figure)
        print(figure.line(), flush=True)
        return figure

    def udp(self, mix: RequestMix, concurrency: int, warmup: float = 0.0) -> Callable[[], Run]:
        def run() -> Run:
            config = LoadConfig(
                ("127.0.0.1", self.node.handle_port), Pace(self.args.seconds, concurrency), udp_sockets=UDP_SOCKETS
            )
            report = run_load(config, mix)
            failures = report.errors + report.timeouts + report.not_found
            return Run(report.answers, report.answers_per_s, failures, report.client_cpu_s)

        if warmup:
            run_load(LoadConfig(("127.0.0.1", self.node.handle_port), Pace(warmup, concurrency)), mix)
        return run

    def http(self, paths: Path, warmup: float = 0.0) -> Callable[[], Run]:
        def run() -> Run:
            seconds = max(1, round(self.args.seconds))
            done = wrk.run(self.node.url, paths, threads=1, connections=HTTP_CONNECTIONS, seconds=seconds)
            return Run(done.requests, done.rps, done.errors + done.bad_status, done.wrk_cpu_seconds)

        if warmup:
            wrk.run(self.node.url, paths, threads=1, connections=HTTP_CONNECTIONS, seconds=max(1, round(warmup)))
        return run

    def round(self, n: int) -> None:
        print(f"round {n}/{self.args.rounds}", file=sys.stderr, flush=True)
        idle = self.args.idle
        self.measure("udp hot", n, self.udp(self.hot, UDP_CONCURRENCY, HOT_WARMUP_S))
        self.measure("udp uniform", n, self.udp(self.uniform, UDP_CONCURRENCY))
        self.measure("udp hot c1", n, self.udp(self.hot, 1, HOT_WARMUP_S))
        self.measure("udp uniform c1", n, self.udp(self.uniform, 1))
        self.measure("rest hot", n, self.http(self.hot_paths, HOT_WARMUP_S))
        self.measure("rest uniform", n, self.http(self.uniform_paths))
        # One in flight first: it touches few keys, so the run of 32 after it still finds nearly all cold.
        self.measure("udp idle c1", n, self.udp(self.uniform, 1), idle=idle)
        self.measure("udp idle", n, self.udp(self.uniform, UDP_CONCURRENCY))
        self.measure("rest idle", n, self.http(self.uniform_paths), idle=idle)


def ratios(figures: Sequence[Figure]) -> dict[str, float]:
    """Server CPU per answer of each uniform run over its hot run, the median over rounds."""
    pairs = {
        "udp uniform / hot": ("udp uniform", "udp hot"),
        "udp after idle / hot": ("udp idle", "udp hot"),
        "udp uniform / hot, 1 in flight": ("udp uniform c1", "udp hot c1"),
        "udp after idle / hot, 1 in flight": ("udp idle c1", "udp hot c1"),
        "rest uniform / hot": ("rest uniform", "rest hot"),
        "rest after idle / hot": ("rest idle", "rest hot"),
    }
    cost = {(f.name, f.round): f.cpu_us_per_answer for f in figures}
    rounds = sorted({f.round for f in figures})
    return {
        label: statistics.median(cost[(top, r)] / cost[(bottom, r)] for r in rounds)
        for label, (top, bottom) in pairs.items()
    }


def per_million(memory: dict[str, dict[str, int]], count: int) -> dict[str, dict[str, float]]:
    """Each worker's resident MB beyond its start, per million entries, after the warm pass and after idle."""
    start = memory["start"]
    return {
        when: {pid: (rss - start[pid]) / 2**20 * 1e6 / count for pid, rss in by_pid.items()}
        for when, by_pid in memory.items()
        if when != "start"
    }


def report(bench: LongTail, warm: dict[str, Any], elapsed: float) -> dict[str, Any]:
    args = bench.args
    found = ratios(bench.figures)
    memory = per_million(bench.memory, args.count)
    for label, value in found.items():
        print(f"{label}, server CPU per answer: {value:.2f} (target <= {TARGET})")
    for when, by_pid in memory.items():
        print(
            f"resident memory after {when}, MB per million entries: {', '.join(f'{v:,.0f}' for v in by_pid.values())}"
        )
    print(
        f"warm pass: {warm['answers']:,} answers in {warm['seconds']:.0f} s, then the server spent "
        f"{warm['settle_server_cpu_s']:.1f} CPU s in {args.idle:.0f} s of silence; whole run {elapsed:.0f} s"
    )
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "code": revision(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "workers": bench.workers,
        "warm": warm,
        "figures": [asdict(f) for f in bench.figures],
        "ratios": found,
        "target": TARGET,
        "memory_bytes": bench.memory,
        "memory_mb_per_million_entries": memory,
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.long_tail", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="keeps the store (one per --count) and paths files")
    parser.add_argument("--count", type=int, default=1_000_000, help="distinct keys (default 1000000)")
    parser.add_argument("--hot", type=int, default=1000, help="keys of the hot set (default 1000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--idle", type=float, default=70.0, help="seconds of silence before the after-idle runs")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if not 1 <= args.hot <= args.count or args.seconds <= 0 or args.idle < 0 or args.rounds < 1:
        parser.error("need 1 <= --hot <= --count, --seconds > 0, --idle >= 0 and --rounds >= 1")
    started = time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    node = Target(
        "idnode", "idnode serve (default settings)", serve_command("--data-dir", str(store(args.work, args.count)))
    )
    try:
        bench = LongTail(args, node.start(), args.work)
        warm = bench.warm()
        for n in range(1, args.rounds + 1):
            bench.round(n)
    finally:
        node.stop()
    result = report(bench, warm, time.monotonic() - started)
    out = RESULTS / "long_tail.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
