"""bench.handle_load against a real Handle responder process (tests/handle_responder.py) on loopback.

The responder answers by the handle's name: ``missing`` → HANDLE_NOT_FOUND, ``fail`` →
ERROR, ``drop`` → silence, ``big`` → a reply in several datagrams, anything else → one value.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.handle_load import LoadConfig, main, run_load
from bench.handle_load_base import LoadError, Pace, RequestMix, Tally, parse_target, resolution_request
from bench.handle_load_tcp import TcpLoad
from bench.handle_load_udp import UdpLoad
from bench.proc_cpu import check_exists, process_tree, tree_cpu_seconds, tree_cpu_times
from protocol.codes import ResponseCode
from protocol.wire.message import OpFlag, decode_message

ROOT = Path(__file__).resolve().parents[3]
# CNRI 7.3.1 hdl-qresolver's request for 88.118.8/42, request id 0x2f8f9449, captured on the
# wire (tests/vectors/cnri-7.3.1/resolve-udp.json on branch cnri, 4th exchange).
CNRI_REQUEST = bytes.fromhex(
    "02050000000000002f8f94490000000000000033000000010000000019000000ffff00006b10fb64"
    "000000170000000b38382e3131382e382f3432000000000000000000000000"
)


@pytest.fixture(scope="module")
def responder() -> Iterator[tuple[int, int]]:
    """(port, pid) of a responder process serving UDP and TCP on one loopback port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.handle_responder", "--uvloop"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    yield port, proc.pid
    proc.terminate()
    proc.wait(10)


def _mix(*names: str, keepalive: bool = False) -> RequestMix:
    return RequestMix(list(names), keepalive=keepalive, seed=1)


def _udp(port: int, mix: RequestMix, **pace: float) -> Tally:
    return UdpLoad(("127.0.0.1", port), mix, Pace(**pace)).run()  # type: ignore[arg-type]


def _tcp(port: int, mix: RequestMix, keepalive: bool = False, per_conn: int = 100, **pace: float) -> Tally:
    return TcpLoad(("127.0.0.1", port), mix, Pace(**pace), keepalive=keepalive, per_conn=per_conn).run()  # type: ignore[arg-type]


def test_request_is_what_cnri_731_sends() -> None:
    ours = bytearray(resolution_request("88.118.8/42", expiration=0x6B10FB64))
    ours[8:12] = CNRI_REQUEST[8:12]
    assert bytes(ours) == CNRI_REQUEST


def test_each_request_has_its_own_id() -> None:
    mix = _mix("a/1", "a/2")
    ids = []
    for _ in range(1000):
        rid, buf = mix.next()
        assert decode_message(bytes(buf)).request_id == rid
        ids.append(rid)
    assert len(set(ids)) == 1000


def test_hot_set_draws_only_from_the_first_handles() -> None:
    mix = RequestMix([f"a/{i}" for i in range(100)], hot=3, seed=2)
    handles = {decode_message(bytes(mix.next()[1])).body.handle for _ in range(2000)}  # type: ignore[attr-defined]
    assert handles == {"a/0", "a/1", "a/2"}


def test_udp_counts_success_not_found_and_errors_apart(responder: tuple[int, int]) -> None:
    t = _udp(responder[0], _mix("p/1", "p/missing", "p/fail"), seconds=0.5, concurrency=8)
    assert t.success > 50 and t.not_found > 50 and t.codes[ResponseCode.ERROR] > 50
    assert t.answered == t.success + t.not_found + t.codes[ResponseCode.ERROR] == t.sent
    assert t.timeouts == 0 and t.late == 0
    assert t.errors == t.codes[ResponseCode.ERROR]
    assert len(t.latencies) == t.answered


def test_udp_reply_in_several_datagrams_counts_once(responder: tuple[int, int]) -> None:
    t = _udp(responder[0], _mix("p/big1"), seconds=0.3, concurrency=4)
    assert t.answered == t.success == t.sent > 10
    assert t.late == 0


def test_udp_lost_requests_time_out_and_the_run_ends(responder: tuple[int, int]) -> None:
    t0 = time.monotonic()
    t = _udp(responder[0], _mix("p/drop"), seconds=0.5, concurrency=4, timeout=0.2)
    assert time.monotonic() - t0 < 1.5
    assert t.answered == 0
    assert t.timeouts == t.sent
    assert 4 * 2 <= t.sent <= 4 * 3  # a fresh request for each timed-out one until the end (ticks may run late)


def test_udp_retransmits_are_counted_apart(responder: tuple[int, int]) -> None:
    t = _udp(responder[0], _mix("p/drop"), seconds=0.3, concurrency=2, timeout=0.1, retries=2)
    assert t.timeouts == t.sent == 2 and t.retransmits == 4


def test_udp_open_loop_keeps_the_rate(responder: tuple[int, int]) -> None:
    t = _udp(responder[0], _mix("p/1"), seconds=1.0, rate=400)
    assert 380 <= t.sent <= 401  # a late timer tick loses the requests due after it
    assert t.answered == t.sent and t.timeouts == 0
    assert len(t.send_lag) == t.sent


def test_udp_spreads_requests_over_source_ports() -> None:
    # A server's SO_REUSEPORT group hashes each source port to one worker.
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.5)
    ports: set[int] = set()

    def echo() -> None:
        with contextlib.suppress(TimeoutError):
            while True:
                data, addr = server.recvfrom(600)
                ports.add(addr[1])
                server.sendto(data[:24] + (1).to_bytes(4, "big") + data[28:], addr)  # response code SUCCESS

    thread = threading.Thread(target=echo)
    thread.start()
    try:
        t = UdpLoad(server.getsockname(), _mix("p/1"), Pace(0.3, 10), sockets=5).run()
    finally:
        thread.join()
        server.close()
    assert t.answered == t.success == t.sent > 10
    assert len(ports) == 5


def test_udp_to_a_closed_port_counts_errors(responder: tuple[int, int]) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t = _udp(port, _mix("p/1"), seconds=0.3, concurrency=2, timeout=0.1)
    assert t.answered == 0 and t.errors == t.timeouts == t.sent > 0 and t.unreachable > 0


def test_tcp_one_connection_per_request(responder: tuple[int, int]) -> None:
    t = _tcp(responder[0], _mix("p/1", "p/missing"), seconds=0.5, concurrency=4)
    assert t.answered == t.sent > 50 and t.success > 0 and t.not_found > 0
    assert t.closed_early == t.reconnects == t.connect_errors == t.timeouts == 0


def test_tcp_keepalive_reuses_connections(responder: tuple[int, int]) -> None:
    t = _tcp(responder[0], _mix("p/1", keepalive=True), keepalive=True, per_conn=10, seconds=0.5, concurrency=4)
    assert t.answered == t.sent > 50 and t.reconnects == 0 and t.errors == 0


def test_tcp_keepalive_against_a_server_that_closes_counts_reconnects(responder: tuple[int, int]) -> None:
    # Without the KEEP_ALIVE flag the responder closes after each reply, as CNRI's server does.
    t = _tcp(responder[0], _mix("p/1", keepalive=False), keepalive=True, seconds=0.5, concurrency=4)
    assert t.answered == t.sent > 20 and t.errors == 0
    assert t.reconnects >= t.answered - 4 * 2


def test_tcp_silence_times_out(responder: tuple[int, int]) -> None:
    # With KEEP_ALIVE the responder keeps the connection open and says nothing.
    t = _tcp(responder[0], _mix("p/drop", keepalive=True), keepalive=True, seconds=0.3, concurrency=3, timeout=0.1)
    assert t.answered == 0 and t.timeouts == t.sent >= 3 * 3
    assert t.errors == t.timeouts


def test_tcp_close_without_reply_is_an_error(responder: tuple[int, int]) -> None:
    t = _tcp(responder[0], _mix("p/drop"), seconds=0.2, concurrency=2, timeout=0.1)
    assert t.answered == 0 and t.closed_early == t.sent > 10 and t.timeouts == 0


def test_tcp_refused_connections_are_errors() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t = _tcp(port, _mix("p/1"), seconds=0.2, concurrency=2)
    assert t.answered == 0 and t.connect_errors > 0


@pytest.mark.parametrize(
    "target", ["handle://192.0.2.1:2641", "8.8.8.8:53", "10.0.0.1:2641", "[2001:db8::1]:2641", "127.0.0.1"]
)
def test_refuses_targets_off_loopback(target: str) -> None:
    with pytest.raises(LoadError):
        parse_target(target)


def test_cli_refuses_a_bad_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", "127.0.0.1:9", "--pattern", "{prefix}/{n}"]) == 2
    assert "--pattern" in capsys.readouterr().err


def test_cli_refuses_before_sending(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", "192.0.2.1:2641", "--seconds", "1"]) == 2
    assert "loopback" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["handle://127.0.0.1:2641", "localhost:2641", "[::1]:2641"])
def test_accepts_loopback(target: str) -> None:
    host, port = parse_target(target)
    assert port == 2641 and host in ("127.0.0.1", "::1")


def _burner(seconds: float) -> str:
    return f"import time; t=time.process_time()\nwhile time.process_time() - t < {seconds}: sum(range(5000))"


def _wait_for_tree(pid: int, size: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while len(process_tree([pid])) != size:
        assert time.monotonic() < deadline, f"process tree of {pid} never had {size} processes"
        time.sleep(0.02)


def test_cpu_of_a_process_tree_counts_live_and_reaped_children() -> None:
    # sh is the pid we account; the busy python is its child, reaped by sh (which then execs sleep).
    proc = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "$0"; exec sleep 10', _burner(0.4)])
    try:
        _wait_for_tree(proc.pid, 2)
        t0 = tree_cpu_seconds([proc.pid])
        time.sleep(0.2)
        mid = tree_cpu_seconds([proc.pid])
        _wait_for_tree(proc.pid, 1)
        after = tree_cpu_seconds([proc.pid])
    finally:
        proc.kill()
        proc.wait()
    assert mid - t0 >= 0.05  # a live child counts
    assert 0.3 <= after - t0 <= 1.0  # and still counts once reaped


def test_cpu_of_a_process_group_includes_grandchildren() -> None:
    code = f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {_burner(0.5)!r}]); time.sleep(10)"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        before = tree_cpu_times(pgids=[proc.pid])
        _wait_for_tree(proc.pid, 2)
        _wait_for_tree(proc.pid, 1)
        after = tree_cpu_times(pgids=[proc.pid])
    finally:
        proc.kill()
        proc.wait()
    user, system = after[0] - before[0], after[1] - before[1]
    assert 0.4 <= user + system <= 1.2
    assert user > system  # a busy loop is user time


def test_the_load_generator_never_counts_itself() -> None:
    assert os.getpid() not in process_tree([os.getpid()], [os.getpgid(0)])
    assert os.getpid() not in process_tree([os.getppid()])


def test_unknown_pid_is_refused() -> None:
    with pytest.raises(LookupError):
        check_exists([2**22 + 12345])
    with pytest.raises(LookupError):
        check_exists(pgids=[2**22 + 12345])
    check_exists([os.getpid()], [os.getpgid(0)])


def test_report_has_server_cpu_and_ordered_percentiles(responder: tuple[int, int]) -> None:
    port, pid = responder
    config = LoadConfig(target=("127.0.0.1", port), pace=Pace(1.0, 16), server_pids=(pid,))
    r = run_load(config, _mix("p/1"))
    assert r.answers > 100 and r.answers_per_s > 100
    assert 0 < r.p50_ms <= r.p99_ms <= r.p999_ms <= r.max_ms
    assert r.server_cpu_s is not None and r.server_cpu_s > 0.05
    assert r.server_cpu_us_per_answer is not None and r.server_cpu_us_per_answer > 0
    assert r.client_cpu_s > r.client_sys_s > 0
    assert r.server_sys_s is not None and r.server_cpu_s > r.server_sys_s


def test_cli_json(responder: tuple[int, int], capsys: pytest.CaptureFixture[str]) -> None:
    port, pid = responder
    argv = ["--target", f"handle://127.0.0.1:{port}", "--transport", "tcp", "--keepalive", "--seconds", "0.5"]
    assert main([*argv, "--count", "50", "--pattern", "{prefix}/missing{i}", "--server-pid", str(pid), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "tcp-keepalive"
    assert report["answers"] == report["not_found"] == report["requests"] > 10
    assert report["errors"] == 0 and report["server_cpu_s"] is not None


def test_keepalive_requests_carry_the_flag() -> None:
    assert decode_message(resolution_request("a/1", keepalive=True)).flags & OpFlag.KEEP_ALIVE
    assert not decode_message(resolution_request("a/1")).flags & OpFlag.KEEP_ALIVE
