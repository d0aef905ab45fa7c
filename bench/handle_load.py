"""Load generator for the Handle binary protocol (RFC 3652) on loopback, UDP or TCP.

It sends RESOLUTION requests as CNRI 7.3.1's hdl-qresolver does, to idnode or to CNRI's
HANDLE.NET server, and reports throughput, latency percentiles, errors, its own CPU and
the server's CPU per answer (the server's process tree, read from /proc before and after).
The machine it is meant for has 2 cores, so the client is one process, one event loop
(uvloop for UDP, raw epoll for TCP: each measured cheaper for its transport) and
precomputed request bytes; the report says what one answer cost the client. Closed loop
with ``--concurrency`` outstanding, or open loop at ``--rate`` for latency under a known load.

    python -m bench.handle_load --target handle://127.0.0.1:2641 --prefix 88.118.8 \\
        --count 100000 --seconds 10 --concurrency 64 --server-pid 1234 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from dataclasses import asdict, dataclass, field, replace

from bench.handle_load_base import (
    LoadError,
    Pace,
    RequestMix,
    Tally,
    handle_names,
    parse_target,
    percentile,
)
from bench.handle_load_tcp import TcpLoad
from bench.handle_load_udp import UdpLoad
from bench.proc_cpu import check_exists, tree_cpu_times


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """One run: where, how, and whose CPU to account. ``per_conn`` applies to keepalive."""

    target: tuple[str, int]
    pace: Pace
    transport: str = "udp"  # "udp" or "tcp"
    keepalive: bool = False
    per_conn: int = 100
    udp_sockets: int = 16  # source ports the UDP requests are spread over
    warmup: float = 0.0  # seconds of the same load first, not reported (CNRI's JIT needs it)
    server_pids: tuple[int, ...] = ()
    server_pgids: tuple[int, ...] = ()

    @property
    def mode(self) -> str:
        return "tcp-keepalive" if self.transport == "tcp" and self.keepalive else self.transport


@dataclass(frozen=True, slots=True)
class Report:
    """What one run measured; latencies in milliseconds, CPU per answer in microseconds."""

    mode: str
    target: str
    rate: float  # offered requests/s; 0 for closed loop
    concurrency: int
    seconds: float
    requests: int
    answers: int
    answers_per_s: float
    success: int
    not_found: int
    errors: int
    timeouts: int
    error_codes: dict[str, int] = field(default_factory=dict)
    retransmits: int = 0
    late: int = 0
    malformed: int = 0
    connect_errors: int = 0
    unreachable: int = 0
    closed_early: int = 0
    reconnects: int = 0
    skipped: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    send_lag_p99_ms: float = 0.0
    client_cpu_s: float = 0.0
    client_sys_s: float = 0.0  # the kernel's part of client_cpu_s
    client_cpu_us_per_answer: float = 0.0
    server_cpu_s: float | None = None
    server_sys_s: float | None = None
    server_cpu_us_per_answer: float | None = None

    def line(self) -> str:
        server = (
            f" server {self.server_cpu_s:.2f} cpu-s = {self.server_cpu_us_per_answer:.0f} µs/answer"
            if self.server_cpu_s is not None and self.server_cpu_us_per_answer is not None
            else ""
        )
        return (
            f"{self.mode} {self.target}: {self.answers_per_s:.0f} answers/s, {self.answers}/{self.requests} answered "
            f"({self.success} ok, {self.not_found} not found, {self.errors} errors, {self.timeouts} timeouts"
            f"{f', {self.retransmits} retransmits' if self.retransmits else ''}"
            f"{f', {self.reconnects} reconnects' if self.reconnects else ''}), "
            f"p50 {self.p50_ms:.2f} p99 {self.p99_ms:.2f} p99.9 {self.p999_ms:.2f} ms; "
            f"client {self.client_cpu_s:.2f} cpu-s = {self.client_cpu_us_per_answer:.1f} µs/answer;{server}"
        )


def _engine(config: LoadConfig, mix: RequestMix, pace: Pace) -> Tally:
    if config.transport == "udp":
        return UdpLoad(config.target, mix, pace, sockets=config.udp_sockets).run()
    if config.transport == "tcp":
        return TcpLoad(config.target, mix, pace, keepalive=config.keepalive, per_conn=config.per_conn).run()
    raise LoadError(f"transport must be udp or tcp, not {config.transport!r}")


def _server_cpu(config: LoadConfig) -> tuple[float, float] | None:
    if not (config.server_pids or config.server_pgids):
        return None
    return tree_cpu_times(config.server_pids, config.server_pgids)


def _client_cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _spent(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
    return after[0] - before[0], after[1] - before[1]


def run_load(config: LoadConfig, mix: RequestMix) -> Report:
    """Warm up if asked, then one measured run; ``mix`` must have been built with the
    config's ``keepalive`` for TCP keepalive runs to carry the KEEP_ALIVE flag."""
    if config.warmup > 0:
        _engine(config, mix, replace(config.pace, seconds=config.warmup))
    server0 = _server_cpu(config)
    client0 = _client_cpu()
    tally = _engine(config, mix, config.pace)
    client = _spent(client0, _client_cpu())
    server1 = _server_cpu(config)
    server = None if server0 is None or server1 is None else _spent(server0, server1)
    return _report(config, tally, client, server)


def _report(config: LoadConfig, t: Tally, client: tuple[float, float], server: tuple[float, float] | None) -> Report:
    lat = sorted(t.latencies)
    lag = sorted(t.send_lag)
    per = max(t.answered, 1)
    host, port = config.target
    return Report(
        mode=config.mode,
        target=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        rate=config.pace.rate,
        concurrency=config.pace.concurrency,
        seconds=config.pace.seconds,
        requests=t.sent,
        answers=t.answered,
        answers_per_s=t.answered_in_window / config.pace.seconds,
        success=t.success,
        not_found=t.not_found,
        errors=t.errors,
        timeouts=t.timeouts,
        error_codes={str(code): n for code, n in sorted(t.codes.items())},
        retransmits=t.retransmits,
        late=t.late,
        malformed=t.malformed,
        connect_errors=t.connect_errors,
        unreachable=t.unreachable,
        closed_early=t.closed_early,
        reconnects=t.reconnects,
        skipped=t.skipped,
        p50_ms=1000 * percentile(lat, 0.5),
        p99_ms=1000 * percentile(lat, 0.99),
        p999_ms=1000 * percentile(lat, 0.999),
        max_ms=1000 * (lat[-1] if lat else 0.0),
        send_lag_p99_ms=1000 * percentile(lag, 0.99),
        client_cpu_s=sum(client),
        client_sys_s=client[1],
        client_cpu_us_per_answer=1e6 * sum(client) / per,
        server_cpu_s=None if server is None else sum(server),
        server_sys_s=None if server is None else server[1],
        server_cpu_us_per_answer=None if server is None else 1e6 * sum(server) / per,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.handle_load", description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="handle://HOST:PORT or HOST:PORT, loopback only")
    p.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    p.add_argument("--keepalive", action="store_true", help="TCP: several requests per connection, KEEP_ALIVE set")
    p.add_argument("--per-conn", type=int, default=100, help="TCP keepalive: requests per connection")
    p.add_argument(
        "--udp-sockets", type=int, default=16, help="UDP: source ports to spread requests over (SO_REUSEPORT workers)"
    )
    p.add_argument("--prefix", default="88.118.8")
    p.add_argument("--count", type=int, default=100000, help="how many distinct handles")
    p.add_argument("--start", type=int, default=1, help="first i in the pattern")
    p.add_argument("--pattern", default="{prefix}/{i}")
    p.add_argument("--hot", type=int, default=0, help="draw from the first N handles ...")
    p.add_argument("--hot-share", type=float, default=1.0, help="... with this probability (else uniform)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=0.0, help="seconds of unreported load first")
    p.add_argument("--concurrency", type=int, default=32, help="outstanding requests (TCP: connections)")
    p.add_argument("--rate", type=float, default=0.0, help="open loop at this many requests/s (0: closed loop)")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds per attempt")
    p.add_argument("--retries", type=int, default=0, help="UDP: retransmits before a request counts as timed out")
    p.add_argument("--server-pid", type=int, action="append", default=[], help="account this process tree's CPU")
    p.add_argument("--server-pgid", type=int, action="append", default=[], help="account this process group's CPU")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return p


def config_from_args(a: argparse.Namespace) -> LoadConfig:
    if min(a.seconds, a.timeout) <= 0 or min(a.concurrency, a.per_conn, a.udp_sockets) < 1:
        raise LoadError("--seconds, --timeout, --concurrency, --per-conn and --udp-sockets must be positive")
    if a.rate < 0 or a.retries < 0 or a.warmup < 0:
        raise LoadError("--rate, --retries and --warmup cannot be negative")
    try:
        check_exists(a.server_pid, a.server_pgid)
    except LookupError as exc:
        raise LoadError(str(exc)) from None
    return LoadConfig(
        target=parse_target(a.target),
        pace=Pace(a.seconds, a.concurrency, a.rate, a.timeout, a.retries),
        transport=a.transport,
        keepalive=a.keepalive,
        per_conn=a.per_conn,
        udp_sockets=a.udp_sockets,
        warmup=a.warmup,
        server_pids=tuple(a.server_pid),
        server_pgids=tuple(a.server_pgid),
    )


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        config = config_from_args(a)
        names = handle_names(a.prefix, a.count, a.pattern, a.start)
        mix = RequestMix(names, hot=a.hot, hot_share=a.hot_share, keepalive=a.keepalive, seed=a.seed)
        report = run_load(config, mix)
    except LoadError as exc:
        print(f"handle_load: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(report)) if a.json else report.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
