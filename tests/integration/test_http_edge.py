"""The HTTP edge against slow, greedy and malformed clients, on a real node process.

Slow clients are real sockets held open from a thread of their own; the node is one
worker, so every connection lands on the process whose answers are measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nodeproc import ADMIN_SECRET, ADMIN_USER, Node, basic, child_pids
from tests.support.poll import wait_until

HEADER_TIMEOUT = 3.0
BODY_TIMEOUT = 4.0
MARGIN = 2.5  # the machine is shared: what "promptly after the deadline" may take


def connect(node: Node) -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.port), timeout=10)


def read_reply(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response read off a raw socket: status, headers, body (b"" if closed early)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closes ``sock`` (reading and dropping what it sends), or None."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < timeout:
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:  # reset: closed too
            return time.monotonic() - started
    return None


@pytest.fixture(scope="module")
def edge_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    args = ["--workers", "1", "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)]
    # The slow crowd comes from one address here, as it would from many: the deadlines are under test.
    args += ["--max-connections-per-address", "1024"]
    node = Node(tmp_path_factory.mktemp("edge") / "data", args=args).start()
    yield node
    node.stop()


class SlowCrowd:
    """Connections that each hold the node in one slow way, fed from a thread of their own."""

    def __init__(self, node: Node, *, dribblers: int, idle: int, slow_bodies: int) -> None:
        self.socks: dict[str, list[socket.socket]] = {"dribble": [], "idle": [], "body": []}
        for _ in range(dribblers):
            self.socks["dribble"].append(connect(node))
        for _ in range(idle):
            self.socks["idle"].append(connect(node))
        for _ in range(slow_bodies):
            sock = connect(node)
            sock.sendall(
                b"PUT /api/handles/88.118/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n["
            )
            self.socks["body"].append(sock)
        self.stop = threading.Event()
        self.header = b"GET /api/handles/88.118/slow HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        position = 0
        while not self.stop.wait(1.0):  # one byte a second on every dribbling connection
            for sock in self.socks["dribble"]:
                self._send(sock, self.header[position : position + 1])
            for sock in self.socks["body"]:
                self._send(sock, b" ")
            position += 1

    @staticmethod
    def _send(sock: socket.socket, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the server closed it: what the test waits for
            sock.send(data)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for socks in self.socks.values():
            for sock in socks:
                sock.close()


def test_200_slow_connections_do_not_stop_the_node_answering_others(edge_node: Node) -> None:
    crowd = SlowCrowd(edge_node, dribblers=70, idle=70, slow_bodies=60)
    try:
        opened = time.monotonic()
        latencies = []
        while time.monotonic() - opened < HEADER_TIMEOUT - 1.0:  # while every slow one is still held
            started = time.monotonic()
            reply = edge_node.get("/api/handles/0.NA/88.118")
            latencies.append(time.monotonic() - started)
            assert reply.status == 200 and reply.code == 1
        assert len(latencies) >= 10
        assert statistics.median(latencies) < 0.25, latencies
        assert max(latencies) < 2.0, latencies
        # Then the node closes every one of them itself: no header or body within its deadline.
        for kind, socks in crowd.socks.items():
            deadline = (HEADER_TIMEOUT if kind != "body" else BODY_TIMEOUT) + MARGIN
            waited = opened + deadline - time.monotonic()
            still_open = [s for s in socks if closed_by_server(s, max(waited, 0.3)) is None]
            assert not still_open, f"{len(still_open)} {kind} connections still open after {deadline} s"
    finally:
        crowd.close()
    assert edge_node.get("/healthz").status == 200
    closed = "idnode_http_connections_closed_total"
    assert edge_node.metric(closed, until=lambda n: n >= 140, reason="header_timeout") >= 140
    assert edge_node.metric(closed, until=lambda n: n >= 60, reason="body_timeout") >= 60


def test_a_half_sent_header_is_closed_after_the_header_timeout(edge_node: Node) -> None:
    sock = connect(edge_node)
    try:
        sock.sendall(b"GET /api/handles/0.NA/88.118 HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
        started = time.monotonic()
        status, _, body = read_reply(sock, timeout=HEADER_TIMEOUT + MARGIN + 5)
        took = time.monotonic() - started
        assert status == 408 and json.loads(body)["responseCode"] == 4, body
        assert HEADER_TIMEOUT - 0.5 < took < HEADER_TIMEOUT + MARGIN
        assert closed_by_server(sock, 2.0) is not None
    finally:
        sock.close()


def test_the_header_deadline_is_not_renewed_by_each_byte(edge_node: Node) -> None:
    sock = connect(edge_node)
    try:
        started = time.monotonic()
        closed = None
        for byte in b"GET /api/handles/0.NA/88.118 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            try:
                sock.send(bytes([byte]))
            except OSError:
                closed = time.monotonic() - started
                break
            if closed_by_server(sock, 0.5) is not None:
                closed = time.monotonic() - started
                break
        assert closed is not None and closed < HEADER_TIMEOUT + MARGIN
    finally:
        sock.close()


def test_a_keep_alive_connection_gets_a_fresh_header_deadline_per_request(edge_node: Node) -> None:
    sock = connect(edge_node)
    try:
        request = b"GET /api/handles/0.NA/88.118 HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(3):  # idle between requests longer than the header timeout allows a header
            time.sleep(1.5)  # kept idle: the time is what is tested
            sock.sendall(request)
            status, _, _ = read_reply(sock)
            assert status == 200
    finally:
        sock.close()


def test_a_slow_body_is_answered_408_after_the_body_timeout(edge_node: Node) -> None:
    sock = connect(edge_node)
    try:
        sock.sendall(
            b"PUT /api/handles/88.118/slowbody HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Basic " + b"eA==" + b"\r\nContent-Length: 1000\r\n\r\n{"
        )
        status, _, body = read_reply(sock, timeout=BODY_TIMEOUT + MARGIN + 5)
        assert status in (403, 408), body  # refused credentials answer before the body is read
        if status == 408:
            assert json.loads(body)["responseCode"] == 4
        assert closed_by_server(sock, BODY_TIMEOUT + MARGIN) is not None
    finally:
        sock.close()


def test_a_slow_body_read_by_its_handler_is_a_clear_408(edge_node: Node) -> None:
    sock = connect(edge_node)
    try:
        started = time.monotonic()
        sock.sendall(
            b"PUT /api/handles/88.118/slowbody HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + basic(ADMIN_USER, ADMIN_SECRET).encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
        )
        status, _, body = read_reply(sock, timeout=BODY_TIMEOUT + MARGIN + 5)
        took = time.monotonic() - started
        assert status == 408, body
        assert json.loads(body) == {
            "responseCode": 4,
            "handle": "88.118/slowbody",
            "message": f"the request body did not arrive within {BODY_TIMEOUT:g} s",
        }
        assert BODY_TIMEOUT - 0.5 < took < BODY_TIMEOUT + MARGIN
        assert closed_by_server(sock, 3.0) is not None
    finally:
        sock.close()
    assert edge_node.get("/api/handles/88.118/slowbody").status == 404  # nothing written


def open_sockets(pid: int) -> int:
    """The sockets process ``pid`` holds open (the connections it accepted, as `ss -p` shows them)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            count += os.readlink(fd).startswith("socket:")
    return count


def test_the_connection_cap_refuses_the_excess_and_the_node_recovers(tmp_path: Path) -> None:
    cap = 40
    node = Node(tmp_path / "data", args=["--workers", "1", "--max-connections", str(cap)]).start()
    assert node.proc is not None
    held: list[socket.socket] = []
    try:
        (worker,) = child_pids(node.proc.pid) or {node.proc.pid}  # one worker: the node's own process serves
        idle = open_sockets(worker)

        def sockets() -> int:
            return open_sockets(worker)

        held = [connect(node) for _ in range(cap)]
        wait_until(sockets, lambda n: n >= idle + cap, what=f"the worker to accept the {cap} held connections")
        refused = [connect(node) for _ in range(5)]
        for sock in refused:
            status, headers, body = read_reply(sock)
            assert status == 503 and headers["connection"] == "close"
            assert json.loads(body)["responseCode"] == 3
            assert closed_by_server(sock, 2.0) is not None
            sock.close()
        for sock in held:
            sock.close()
        held = []
        wait_until(sockets, lambda n: n <= idle, what="the worker to close the connections let go")
        assert node.get("/api/handles/0.NA/88.118").status == 200
        assert node.metric("idnode_http_connections_closed_total", until=lambda n: n >= 5, reason="limit") == 5
    finally:
        for sock in held:
            sock.close()
        node.stop()


MALFORMED = [
    (b"GET /api/handles/\xff\x00x HTTP/1.1\r\nHost: x\r\n\r\n", "url"),
    (b"GET /api/handles/88.118/\x7f HTTP/1.1\r\nHost: x\r\n\r\n", "url"),
    (b"GET /api/handles/a b HTTP/1.1\r\nHost: x\r\n\r\n", "status line"),
    (b"GET http://x\xff/ HTTP/1.1\r\nHost: x\r\n\r\n", "url"),
    (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", "request target"),
    (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", "method"),
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", "version"),
    (
        b"PUT /api/handles/88.118/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "content-length",
    ),
    (b"PUT /api/handles/88.118/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "content-length"),
    (
        b"POST /api/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "transfer-encoding",
    ),
    (b"POST /api/batch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "header"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX\x01: y\r\n\r\n", "header"),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "longer than 8190 bytes"),
    (b"GET /api/handles/88.118?" + b"type=URL&" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "longer than 8190 bytes"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", "longer than 8190 bytes"),
    (b"GET / HTTP/1.1\r\n\r\n", "host"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", "whitespace"),  # obsolete line folding
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", "header value"),
    (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", "content-length"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "https"),  # a TLS hello on the plain port
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "pri"),  # an HTTP/2 preface
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(3000)) + b"\r\n", "128 header"),
]


@pytest.mark.parametrize(("raw", "words"), MALFORMED, ids=[f"case{i}" for i in range(len(MALFORMED))])
def test_malformed_http_is_a_clear_400_without_a_traceback(node: Node, raw: bytes, words: str) -> None:
    logged = len(node.stderr_lines)
    sock = connect(node)
    try:
        sock.sendall(raw)
        status, headers, body = read_reply(sock)
    finally:
        sock.close()
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["responseCode"] == 4
    assert answer["message"].startswith("malformed HTTP request: ")
    assert words.lower() in answer["message"].lower(), answer["message"]
    assert len(answer["message"]) < 300  # the request is not echoed back
    assert node.get("/healthz").status == 200
    time.sleep(0.2)  # an absence: the node's stderr reaches the test through a thread, give it time
    after = "".join(node.stderr_lines[logged:])
    assert "Traceback" not in after and " ERROR " not in after, after


def test_malformed_requests_are_counted(node: Node) -> None:
    before = node.metric("idnode_http_connections_closed_total", reason="malformed")
    for _ in range(3):
        sock = connect(node)
        sock.sendall(MALFORMED[0][0])
        assert read_reply(sock)[0] == 400
        sock.close()
    closed = node.metric("idnode_http_connections_closed_total", until=lambda n: n >= before + 3, reason="malformed")
    assert closed == before + 3


def raw_exchange(node: Node, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    sock = connect(node)
    try:
        sock.sendall(raw)
        return read_reply(sock)
    finally:
        sock.close()


def assert_quiet_since(node: Node, logged: int) -> None:
    time.sleep(0.3)  # an absence: the node's stderr reaches the test through a thread, give it time
    after = "".join(node.stderr_lines[logged:])
    assert "Traceback" not in after and " ERROR " not in after, after


AUTH = b"Authorization: " + basic(ADMIN_USER, ADMIN_SECRET).encode() + b"\r\n"
PUT_HEAD = b"PUT /api/handles/88.118/edge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def test_compressed_request_bodies_are_refused_415(node: Node) -> None:
    logged = len(node.stderr_lines)
    for encoding in (b"gzip", b"deflate", b"br"):
        raw = PUT_HEAD + AUTH + b"Content-Encoding: " + encoding + b"\r\nContent-Length: 4\r\n\r\nJUNK"
        status, _, body = raw_exchange(node, raw)
        assert status == 415, body
        assert json.loads(body)["responseCode"] == 4
        assert "compressed" in json.loads(body)["message"]
    assert node.get("/api/handles/88.118/edge").status == 404
    assert_quiet_since(node, logged)


@pytest.mark.parametrize("auth", [AUTH, b""], ids=["read-by-handler", "drained-after-answer"])
def test_a_chunked_body_broken_midway_is_refused_without_a_traceback(node: Node, auth: bytes) -> None:
    logged = len(node.stderr_lines)
    raw = PUT_HEAD + auth + b'Transfer-Encoding: chunked\r\n\r\n3\r\n{"v\r\nzz\r\n'
    status, _, body = raw_exchange(node, raw)
    assert status in (400, 401), body  # anonymous: refused before its body is read
    assert json.loads(body)["responseCode"] in (4, 402)
    assert node.get("/api/handles/88.118/edge").status == 404
    assert node.get("/healthz").status == 200
    assert_quiet_since(node, logged)


@pytest.mark.parametrize(
    "framing",
    [b'Content-Length: 100\r\n\r\n{"v', b'Transfer-Encoding: chunked\r\n\r\n3\r\n{"v\r\n'],
    ids=["content-length", "chunked"],
)
def test_a_client_leaving_mid_body_is_not_logged_as_an_error(node: Node, framing: bytes) -> None:
    logged = len(node.stderr_lines)
    for _ in range(3):
        sock = connect(node)
        sock.sendall(PUT_HEAD + AUTH + framing)
        sock.shutdown(socket.SHUT_WR)  # the body is cut short
        read_reply(sock)
        sock.close()
    assert node.get("/api/handles/88.118/edge").status == 404
    assert node.get("/healthz").status == 200
    assert_quiet_since(node, logged)


def test_a_long_but_legal_query_is_answered(node: Node) -> None:
    query = "&".join(f"index={i}" for i in range(1, 800))  # about 7,600 bytes: under the line limit
    reply = node.get("/api/handles/0.NA/88.118?" + query)
    assert reply.status == 200 and reply.code == 1
    reply = node.get("/api/handles/0.NA/88.118?" + "&".join(["type=HS_ADMIN"] * 500))
    assert reply.status == 200 and [v["type"] for v in reply.json["values"]] == ["HS_ADMIN"]


def open_file_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit")


def test_workers_lift_the_open_file_limit_the_connection_cap_needs(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2000:
        pytest.skip(f"the hard open-file limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))  # inherited by the node
    try:
        node = Node(tmp_path / "data", args=["--workers", "2", "--max-connections", "1500"]).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert node.proc is not None
        workers = sorted(child_pids(node.proc.pid))
        assert len(workers) == 2
        assert all(open_file_limit(pid) >= 1500 for pid in workers)
        assert node.get("/healthz").status == 200
    finally:
        node.stop()


def test_an_open_file_limit_below_the_cap_is_a_warning_naming_the_setting(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= 1_000_000:
        pytest.skip("no hard open-file limit to exceed")
    node = Node(tmp_path / "data", args=["--workers", "1", "--max-connections", str(hard)]).start()
    try:
        assert node.get("/healthz").status == 200
        log = "".join(node.stderr_lines)
        assert "WARNING" in log and "'max_connections'" in log and "ulimit" in log, log
    finally:
        node.stop()
