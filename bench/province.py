"""Issue 24: a province in a box — N secondary nodes under two top-level nodes, and its faults.

Starts, each on its own loopback address at the standard ports (HTTP 8000, Handle 2641):

* two top-level nodes for 88, a primary (``<net>.251``) and its disaster-recovery twin
  (``<net>.252``), each granted every node prefix;
* ``--nodes`` secondary nodes ``<net>.1`` … ``<net>.N`` (node prefix ``88.<300+i>``, one
  worker each), both top-level nodes in every node's upstreams, each with ``--prefixes``
  enterprise prefixes ``88.<300+i>.<j>`` holding ``--identifiers`` identifiers
  ``88.<300+i>.<j>/<k>``; SQLite by default, ``--postgres URL`` puts every node in one
  PostgreSQL server, a database each.

Then measures, printing one line per figure and per check:

* cold cross-node resolution through a node (recursive), over REST and UDP: upstream round
  trips per handle (≤ 3) and referral fetches per prefix (one per node, not one per handle);
* CNRI's way: the prefix's referral from the top level over UDP, then the holding node asked
  directly at the server its HS_SITE names;
* warm cross-node answers against the node's own cached ones, in answers per server CPU
  second (≥ 0.9), REST under wrk and UDP under bench.handle_load;
* how long a new prefix takes to resolve at every other node; memory per node;
* under a steady cross-node load (every node a client, identifiers drawn uniformly from the
  whole province), the top-level nodes' requests per 1,000 resolutions, then the faults:
  the primary top-level node killed (``kill -9``) — known prefixes must not fail, a prefix
  created meanwhile must resolve through the twin; a secondary node killed — what other
  nodes had cached of it must keep resolving (serve-stale); both top-level nodes down —
  every known prefix must keep resolving. Each fault ends with the node(s) restarted and
  the time until the publications caught up.

``--seconds`` is shared among the phases; 600 gives the issue's 2 minutes of one top-level
node down and 5 minutes of both. Writes bench/results/province_<N>.md and a picture of the
province with its measured traffic (province_<N>.png). Exit status 0 only when every check
held. Stops everything it started, also when interrupted::

    timeout 2400 python -m bench.province --nodes 50 --seconds 600
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench import wrk
from bench.handle_load_base import patch_rid, resolution_request
from bench.resolve_baseline import ADMIN_SECRET, RESULTS, Target, machine, revision
from protocol.basic_auth import basic_credentials
from protocol.records import HandleRecord
from protocol.wire.bodies import ResolutionResponse
from protocol.wire.message import decode_message
from resolver.delegation.sites import handle_target, http_target, sites_of
from tests.support.nodeproc import child_pids

T = TypeVar("T")
R = TypeVar("R")

HTTP_PORT = 8000
HANDLE_PORT = 2641
UPSTREAM_METRIC = "idnode_upstream_request_duration_seconds_count"
REQUESTS_METRIC = "idnode_requests_total"
PHASES = {"steady": 0.1, "top": 0.2, "node": 0.1, "both": 0.5, "after": 0.1}  # shares of --seconds
CLIENT_TIMEOUT = 5.0


# One node ---------------------------------------------------------------------------------


@dataclass
class Node(Target):
    """An idnode process at a fixed loopback address and the standard ports."""

    host: str = "127.0.0.1"
    prefix: str = ""  # its node prefix
    enterprises: list[str] = field(default_factory=list)
    serving: bool = False  # started and listening, not killed since

    @property
    def url(self) -> str:
        return f"http://{self.host}:{HTTP_PORT}"

    @property
    def peer(self) -> str:
        return f"{self.host}:{HTTP_PORT}"

    def kill(self) -> None:
        """``kill -9``, as a crash: the process and any workers it started."""
        self.serving = False
        if self.proc is not None and self.proc.poll() is None:
            for pid in [*child_pids(self.proc.pid), self.proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Node:
        """Started, and marked serving only once it listens: clients are not sent to a node starting up."""
        self.serving = False
        super().start()
        self.serving = True
        return self

    def rss_mib(self) -> float:
        """Resident memory of the process and its children (workers)."""
        assert self.proc is not None
        total = 0
        for pid in [self.proc.pid, *child_pids(self.proc.pid)]:
            with contextlib.suppress(OSError):
                rss = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
                total += int(rss.group(1)) if rss else 0
        return total / 1024

    def metrics(self) -> str:
        with urlopen(f"{self.url}/metrics") as (_status, body):
            return body.decode()


@contextlib.contextmanager
def urlopen(url: str, method: str = "GET", body: Any = None, user: str | None = None) -> Iterator[tuple[int, bytes]]:
    host, _, rest = url.removeprefix("http://").partition("/")
    address, _, port = host.rpartition(":")
    conn = http.client.HTTPConnection(address, int(port), timeout=30)
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = basic_credentials(user, ADMIN_SECRET)
    try:
        conn.request(method, "/" + rest, None if body is None else json.dumps(body), headers)
        reply = conn.getresponse()
        yield reply.status, reply.read()
    finally:
        conn.close()


def call(url: str, method: str = "GET", body: Any = None, user: str | None = None) -> tuple[int, Any]:
    with urlopen(url, method, body, user) as (status, data):
        return status, json.loads(data) if data else None


def metric_sum(text: str, name: str, label: str = "") -> float:
    """The sum of ``name``'s samples whose labels contain ``label``."""
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def admin_value(prefix: str) -> dict[str, Any]:
    ref = {"handle": f"0.NA/{prefix}", "index": 300, "permissions": "111111111111"}
    return {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": ref}}


# UDP, as a client sends it ------------------------------------------------------------------


def udp_resolve(host: str, port: int, handle: str, timeout: float = CLIENT_TIMEOUT) -> tuple[int, HandleRecord | None]:
    """One resolution request (as hdl-qresolver sends it: recursive) and its answer's code and record."""
    request = bytearray(resolution_request(handle))
    rid = random.randrange(1, 1 << 30)
    patch_rid(request, rid)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(request)
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            answer = decode_message(s.recv(65535))
            if answer.request_id == rid:
                break
    body = answer.body
    record = HandleRecord(body.handle, tuple(body.values)) if isinstance(body, ResolutionResponse) else None
    return answer.response_code, record


# The province -----------------------------------------------------------------------------


@dataclass
class Province:
    nodes: int
    prefixes: int
    identifiers: int
    work: Path
    net: str = "127.0.1"
    postgres: str | None = None
    mirrored: bool = True  # the victim of the node fault has a mirror site on a PostgreSQL standby
    tops: list[Node] = field(default_factory=list)
    seconds: list[Node] = field(default_factory=list)
    mirror: Node | None = None
    traffic: Traffic = field(init=False)
    servers: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # the mirrored node's PostgreSQL

    def __post_init__(self) -> None:
        self.traffic = Traffic(self)

    def serve(self, name: str, host: str, label: str, *args: str, env: dict[str, str] | None = None) -> Node:
        idnode = Path(sys.executable).with_name("idnode")
        command = [str(idnode)] if idnode.exists() else [sys.executable, "-m", "resolver.cli"]
        listen = ["--listen", f"{host}:{HTTP_PORT}", "--handle-listen", f"{host}:{HANDLE_PORT}", "--workers", "1"]
        store = ["--data-dir", str(self.work / name)]
        if self.postgres is not None and name.startswith("n") and "--store" not in args:
            # The data directory still holds the node's keys: one each, not ./data shared by all.
            store += ["--store", f"{self.postgres.rstrip('/').rpartition('/')[0]}/province_{name}"]
        return Node(name, label, [*command, "serve", *listen, *store, *args], host=host, env=env or {})

    def start(self) -> None:
        self.tops = [
            self.serve(name, f"{self.net}.{251 + i}", label, "--role", "top-level", "--node-prefix", "88")
            for i, (name, label) in enumerate((("top", "top-level node"), ("twin", "its disaster-recovery twin")))
        ]
        upstreams = [arg for top in self.tops for arg in ("--upstream", top.url)]
        env = {"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET, "IDNODE_DELEGATION_ALLOW": "127.0.0.0/8"}
        for i in range(1, self.nodes + 1):
            node = self.serve(f"n{i}", f"{self.net}.{i}", f"secondary node {i}", *upstreams, env=env)
            node.prefix = f"88.{300 + i}"
            node.cmd += ["--node-prefix", node.prefix, "--source-address", node.host]  # as a node of its own
            node.enterprises = [f"{node.prefix}.{j}" for j in range(1, self.prefixes + 1)]
            self.seconds.append(node)
        if self.postgres is not None:
            asyncio.run(_databases(self.postgres, [n.name for n in self.seconds], create=True))
        standby = self.mirror_databases() if self.mirrored else None
        each(Node.start, self.tops)
        for top in self.tops:
            each(functools.partial(self.grant, top), [n.prefix for n in self.seconds])
        each(Node.start, self.seconds)
        if standby is not None:
            self.start_mirror(standby)
        each(self.populate, self.seconds)
        self.wait_published(self.seconds, timeout=120)

    @property
    def victim(self) -> Node:
        """The secondary node the node fault kills: the one with the mirror site."""
        return self.seconds[len(self.seconds) // 2]

    def mirror_databases(self) -> str:
        """A PostgreSQL server of the victim's own and a synchronous hot standby of it: the standby's URL.

        ``remote_apply``: a write the victim acknowledged has been replayed on the standby, so the
        mirror serves it (deploy/MIRROR.md: without synchronous replication the last ones can be lost)."""
        from tests.support.pgproc import own_server  # PostgreSQL's binaries, run as its user

        primary = self.servers.enter_context(
            own_server(synchronous_standby_names="'*'", synchronous_commit="remote_apply")
        )
        standby = primary.replica(primary.directory.parent / "standby")
        self.servers.callback(standby.remove)
        standby.start()
        standby.wait_ready()
        victim = self.victim
        if "--store" in victim.cmd:  # --postgres: its own server instead of the shared one
            victim.cmd[victim.cmd.index("--store") + 1] = primary.url
        else:
            victim.cmd += ["--store", primary.url]
        victim.cmd += ["--mirror-site", f"{self.net}.253:{HTTP_PORT}/{HANDLE_PORT}"]
        victim.env["IDNODE_SECRET_KEY_FILE"] = str(self.work / "victim-secret-key")
        return standby.url

    def start_mirror(self, standby: str) -> None:
        """The victim's mirror site: an idnode in mirror mode on the standby, with the victim's secret key."""
        victim = self.victim
        key = self.work / "mirror-secret-key"
        shutil.copy(self.work / "victim-secret-key", key)  # as an operator copies it (deploy/MIRROR.md)
        mirror = self.serve("mirror", f"{self.net}.253", f"mirror site of {victim.name}", "--store", standby)
        mirror.cmd += ["--mirror-of", victim.url, "--node-prefix", victim.prefix]
        mirror.env["IDNODE_SECRET_KEY_FILE"] = str(key)
        mirror.start()
        self.mirror = mirror

    def grant(self, top: Node, prefix: str) -> None:
        secret = {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": ADMIN_SECRET}}
        url = f"{top.url}/api/handles/0.NA/{prefix}?index=100&index=300"
        status, body = call(url, "PUT", [admin_value(prefix), secret], "300:0.NA/88")
        if status not in (200, 201):
            raise RuntimeError(f"granting {prefix} at {top.name}: HTTP {status}: {body}")

    def allocate(self, node: Node, enterprise: str, identifiers: int) -> None:
        """An enterprise prefix under ``node`` and its identifiers ``<prefix>/1``…"""
        url = f"{node.url}/api/handles/0.NA/{enterprise}"
        status, body = call(url, "PUT", [admin_value(node.prefix)], f"300:0.NA/{node.prefix}")
        if status not in (200, 201):
            raise RuntimeError(f"allocating {enterprise} at {node.name}: HTTP {status}: {body}")
        for start in range(1, identifiers + 1, 2000):
            operations = [
                {"op": "create", "handle": f"{enterprise}/{k}", "values": [url_value(enterprise, k)]}
                for k in range(start, min(identifiers, start + 1999) + 1)
            ]
            batch = {"atomic": True, "operations": operations}
            status, body = call(f"{node.url}/api/batch", "POST", batch, f"300:0.NA/{node.prefix}")
            if status != 200:
                raise RuntimeError(f"registering under {enterprise} at {node.name}: HTTP {status}: {body}")

    def populate(self, node: Node) -> None:
        for enterprise in node.enterprises:
            self.allocate(node, enterprise, self.identifiers)

    def wait_published(self, nodes: list[Node], timeout: float, upstream: str | None = None) -> float:
        """Seconds until every prefix of ``nodes`` is published at every (or one) upstream."""
        started = time.monotonic()
        pending = list(nodes)
        while pending:
            pending = [n for n in pending if not published(n, upstream)]
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{pending[0].name} and {len(pending) - 1} more: not published in {timeout:.0f} s")
            if pending:
                time.sleep(0.2)
        return time.monotonic() - started

    def kill(self, node: Node) -> None:
        """``kill -9`` ``node``, its counters read first (they die with it)."""
        self.traffic.sample()
        node.kill()

    def everyone(self) -> list[Node]:
        return [*self.tops, *self.seconds, *([self.mirror] if self.mirror else [])]

    def stop(self) -> None:
        for node in self.everyone():  # the counters, for whoever reads a failed run
            with contextlib.suppress(OSError):
                (self.work / f"{node.name}.metrics").write_text(node.metrics() if node.alive() else "")
        each(Node.stop, self.everyone())
        for node in self.everyone():  # for whoever reads a failed run
            (self.work / f"{node.name}.log").write_text("".join(node.log))
        self.servers.close()
        if self.postgres is not None:
            asyncio.run(_databases(self.postgres, [n.name for n in self.seconds], create=False))

    def others(self, node: Node) -> list[Node]:
        return [n for n in self.seconds if n is not node]

    def all_handles(self) -> list[tuple[Node, str]]:
        """Every identifier registered at start-up (not those of prefixes added later), with its node."""
        numbers = range(1, self.identifiers + 1)
        return [(n, f"{e}/{k}") for n in self.seconds for e in n.enterprises[: self.prefixes] for k in numbers]


def url_value(enterprise: str, k: int) -> dict[str, Any]:
    return {"index": 1, "type": "URL", "data": f"https://{enterprise.replace('.', '-')}.example.com/item/{k}"}


def published(node: Node, upstream: str | None) -> bool:
    try:
        status, body = call(f"{node.url}/api/prefixes")
    except OSError:
        return False
    rows = [row for rows in (body or {}).get("publication", {}).values() for row in rows]
    return (
        status == 200
        and bool(rows)
        and all(r["state"] == "published" for r in rows if upstream in (None, r["upstream"]))
        and any(upstream in (None, r["upstream"]) for r in rows)
    )


async def _databases(url: str, names: list[str], *, create: bool) -> None:
    import asyncpg  # the production store's driver: only with --postgres

    conn = await asyncpg.connect(url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "province_{name}" WITH (FORCE)')
            if create:
                await conn.execute(f'CREATE DATABASE "province_{name}"')
    finally:
        await conn.close()


def each(job: Callable[[T], R], items: Iterable[T], workers: int = 8) -> list[R]:
    """``job`` of every item, ``workers`` at a time; the first exception is raised."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(job, items))


# Figures and checks -----------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def figure(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)

    def check(self, ok: bool, text: str) -> None:
        self.figure(f"{'PASS' if ok else 'FAIL'}  {text}")
        if not ok:
            self.failed.append(text)


def upstream_trips(node: Node, tops: list[Node]) -> tuple[float, float]:
    """Requests ``node`` has sent to the top-level nodes, and to other servers (sites)."""
    text = node.metrics()
    to_tops = sum(metric_sum(text, UPSTREAM_METRIC, f'peer="{t.peer}"') for t in tops)
    return to_tops, metric_sum(text, UPSTREAM_METRIC) - to_tops


def cold(province: Province, report: Report, client: Node, transport: str) -> None:
    """Cross-node handles ``client`` has never seen, two per enterprise prefix of every other node."""
    wanted = [(n, f"{e}/{k}") for n in province.others(client) for e in n.enterprises[:1] for k in (1, 2)]
    tops0, sites0 = upstream_trips(client, province.tops)
    latencies, bad = [], 0
    for _node, handle in wanted:
        started = time.perf_counter()
        if transport == "REST":
            status, _ = call(f"{client.url}/api/handles/{handle}")
            bad += status != 200
        else:
            code, _ = udp_resolve(client.host, HANDLE_PORT, handle)
            bad += code != 1
        latencies.append((time.perf_counter() - started) * 1000)
    tops1, sites1 = upstream_trips(client, province.tops)
    prefixes = len({h.split("/")[0] for _n, h in wanted})
    trips = (tops1 - tops0 + sites1 - sites0) / len(wanted)
    report.figure(
        f"cold cross-node {transport} via {client.name}: {len(wanted)} handles under {prefixes} prefixes of "
        f"{len(province.others(client))} nodes, {trips:.2f} upstream trips a handle "
        f"({tops1 - tops0:.0f} to the top level, {sites1 - sites0:.0f} to holding nodes), "
        f"p50 {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms"
    )
    report.check(bad == 0, f"cold {transport}: every cross-node handle resolved ({bad} failed)")
    report.check(trips <= 3, f"cold {transport}: ≤ 3 upstream round trips a handle ({trips:.2f})")
    report.check(
        tops1 - tops0 <= prefixes,
        f"cold {transport}: a prefix's referral fetched once per node ({tops1 - tops0:.0f} for {prefixes} prefixes)",
    )


def cnri_way(province: Province, report: Report, transport: str) -> None:
    """As CNRI's resolver: the prefix handle from the top level over UDP, then its HS_SITE's server."""
    top = province.tops[0]
    sample = [(n, f"{n.enterprises[-1]}/{province.identifiers}") for n in province.seconds]
    ok = 0
    for _node, handle in sample:
        code, prefix_record = udp_resolve(top.host, HANDLE_PORT, "0.NA/" + handle.split("/")[0])
        if code != 1 or prefix_record is None:
            continue
        servers = [s for site in sites_of(prefix_record) for s in site.servers]
        if transport == "UDP":
            targets = [t for t in map(handle_target, servers) if t is not None and t.udp_port]
            if targets:
                ok += udp_resolve(targets[0].address, targets[0].udp_port or 0, handle)[0] == 1
        else:
            http = [t for t in map(http_target, servers) if t is not None]
            if http:
                ok += call(f"{http[0].url}/api/handles/{handle}")[0] == 200
    report.check(
        ok == len(sample),
        f"CNRI's way over {transport} (referral from {top.name}, then the holding node directly): "
        f"{ok}/{len(sample)} resolved",
    )


def warm(province: Province, report: Report, client: Node, seconds: int, rounds: int = 5) -> None:
    """Cached cross-node answers against the node's own cached ones, per server CPU second.

    Rounds alternate which goes first; the figure is the median of each round's ratio, so that
    the machine's drift between rounds (3-4x between days, ±10% within minutes) cancels."""
    remote = province.others(client)[0]
    local_prefix, remote_prefix = client.enterprises[0], remote.enterprises[0]
    count = province.identifiers
    paths = {}
    for name, prefix in (("local", local_prefix), ("cross-node", remote_prefix)):
        paths[name] = province.work / f"paths-{name}.txt"
        paths[name].write_text("".join(f"/api/handles/{prefix}/{k}\n" for k in range(1, count + 1)))
        for k in range(1, count + 1):  # cached before measuring
            call(f"{client.url}/api/handles/{prefix}/{k}")
            udp_resolve(client.host, HANDLE_PORT, f"{prefix}/{k}")
    per_cpu: dict[tuple[str, str], list[float]] = {}
    for round_ in range(rounds):
        order = ["local", "cross-node"] if round_ % 2 == 0 else ["cross-node", "local"]
        for name in order:
            cpu0 = client.cpu_seconds()
            run = wrk.run(client.url, paths[name], connections=16, seconds=seconds)
            cpu = client.cpu_seconds() - cpu0
            if run.errors or run.bad_status:
                report.check(False, f"warm REST {name}: {run.errors} errors, {run.bad_status} bad statuses")
            per_cpu.setdefault(("REST", name), []).append(run.requests / cpu)
            prefix = local_prefix if name == "local" else remote_prefix
            load = subprocess.run(
                [sys.executable, "-m", "bench.handle_load", "--target", f"{client.host}:{HANDLE_PORT}",
                 "--prefix", prefix, "--count", str(count), "--seconds", str(seconds), "--concurrency", "16",
                 "--server-pid", str(client.proc_pid), "--json"],
                capture_output=True, text=True, check=True, timeout=seconds + 60,
            )  # fmt: skip
            udp = json.loads(load.stdout)
            per_cpu.setdefault(("UDP", name), []).append(1e6 / udp["server_cpu_us_per_answer"])
    for transport in ("REST", "UDP"):
        local, cross = per_cpu[(transport, "local")], per_cpu[(transport, "cross-node")]
        ratios = sorted(c / lo for c, lo in zip(cross, local, strict=True))
        ratio = statistics.median(ratios)
        report.figure(
            f"warm {transport} via {client.name}: {statistics.median(cross):,.0f} cross-node answers per server CPU "
            f"second against {statistics.median(local):,.0f} local (medians of {rounds} alternating {seconds} s "
            f"rounds; each round's ratio {ratios[0]:.2f}-{ratios[-1]:.2f})"
        )
        report.check(ratio >= 0.9, f"warm {transport}: cross-node ≥ 0.9× local cached (median ratio {ratio:.2f})")


def propagation(province: Province, report: Report) -> None:
    """A new prefix at one node: seconds until every other node resolves an identifier under it."""
    node = province.seconds[0]
    enterprise = f"{node.prefix}.{province.prefixes + 1}"
    started = time.monotonic()
    province.allocate(node, enterprise, 1)
    node.enterprises.append(enterprise)
    handle = f"{enterprise}/1"
    created = time.monotonic() - started
    resolved: dict[str, float] = {}

    def poll(other: Node) -> None:
        while time.monotonic() - started < 180:
            if call(f"{other.url}/api/handles/{handle}")[0] == 200:
                resolved[other.name] = time.monotonic() - started
                return
            time.sleep(0.25)

    def publication() -> None:
        resolved["at both top-level nodes"] = created + province.wait_published([node], timeout=60)

    jobs: list[Callable[[], None]] = [publication, *[functools.partial(poll, o) for o in province.others(node)]]
    each(lambda job: job(), jobs, 17)
    at_tops = resolved.pop("at both top-level nodes", float("nan"))
    times = sorted(resolved.values())
    nan = float("nan")
    report.figure(
        f"new prefix {enterprise}: created in {created:.2f} s, published at both top-level nodes by {at_tops:.2f} s; "
        f"resolvable at every other node after {times[-1] if times else nan:.2f} s "
        f"(median {statistics.median(times) if times else nan:.2f} s; each node asked every 0.25 s from the start)"
    )
    report.check(len(resolved) == len(province.others(node)), f"new prefix resolved at {len(resolved)} other nodes")


def memory(province: Province, report: Report) -> None:
    rss = {n.name: n.rss_mib() for n in [*province.tops, *province.seconds]}
    node_rss = [rss[n.name] for n in province.seconds]
    report.figure(
        f"memory: secondary node median {statistics.median(node_rss):.0f} MiB, max {max(node_rss):.0f} MiB, "
        f"{sum(node_rss) / 1024:.1f} GiB for {len(node_rss)}; top-level nodes "
        + ", ".join(f"{t.name} {rss[t.name]:.0f} MiB" for t in province.tops)
    )


# Steady load and faults -------------------------------------------------------------------


@dataclass
class Outcome:
    at: float  # when it was asked: a fault's window holds what was asked during it
    client: str
    holder: str
    handle: str
    transport: str
    ok: bool
    answer: str = ""  # the failure: HTTP status and message, Handle response code, or the exception
    seconds: float = 0.0  # how long the answer took


def ask(client: Node, handle: str, transport: str) -> tuple[bool, str]:
    """Resolve ``handle`` through ``client``: whether it was answered, and how it failed if not."""
    try:
        if transport == "REST":
            status, body = call(f"{client.url}/api/handles/{handle}")
            message = body.get("message", "") if isinstance(body, dict) else ""
            return status == 200, "" if status == 200 else f"HTTP {status} {message}"[:200]
        code, _ = udp_resolve(client.host, HANDLE_PORT, handle)
        return code == 1, "" if code == 1 else f"Handle response code {code}"
    except (OSError, ValueError) as exc:
        return False, f"{exc.__class__.__name__}: {exc}"[:200]


def failures(outcomes: list[Outcome]) -> str:
    """The commonest ways ``outcomes`` failed."""
    counted = Counter(f"{o.transport} {o.answer}" for o in outcomes if not o.ok)
    return "; ".join(f"{n}× {answer}" for answer, n in counted.most_common(3))


class Load:
    """Every node a client: uniform draws over the whole province, REST and UDP, in threads."""

    def __init__(self, province: Province, referred: set[tuple[str, str]], threads: int = 4) -> None:
        self.province = province
        self.handles = [(n, h) for n, h in province.all_handles()]
        self.outcomes: list[Outcome] = []
        self.resolved: set[tuple[str, str]] = set()  # (client, handle) answered before
        self.referred = set(referred)  # (client, enterprise prefix): its referral is cached there
        self._lock = threading.Lock()  # the sets change in the load's threads
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, seed: int) -> None:
        draw = random.Random(seed)
        clients = self.province.seconds
        while not self._stop.is_set():
            client = draw.choice(clients)
            if not client.serving:
                continue
            holder, handle = draw.choice(self.handles)
            if holder is client:
                continue
            transport = "UDP" if draw.random() < 0.5 else "REST"
            asked = time.monotonic()
            ok, answer = ask(client, handle, transport)
            took = time.monotonic() - asked
            self.outcomes.append(Outcome(asked, client.name, holder.name, handle, transport, ok, answer, took))
            if ok:
                with self._lock:
                    self.resolved.add((client.name, handle))
                    self.referred.add((client.name, handle.split("/")[0]))

    def known(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """Copies of ``resolved`` and ``referred``."""
        with self._lock:
            return set(self.resolved), set(self.referred)

    def forget(self, client: str) -> None:
        """``client`` restarted: what it had cached is gone."""
        with self._lock:
            self.resolved = {pair for pair in self.resolved if pair[0] != client}
            self.referred = {pair for pair in self.referred if pair[0] != client}

    def since(self, started: float, ended: float | None = None) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.at >= started and (ended is None or o.at < ended)]


def top_requests(province: Province) -> float:
    return sum(metric_sum(t.metrics(), REQUESTS_METRIC) for t in province.tops if t.alive())


def refer_everywhere(province: Province, report: Report) -> set[tuple[str, str]]:
    """Every node resolves one identifier under every other node's prefixes: referrals cached."""
    pairs = [(c, e) for c in province.seconds for n in province.others(c) for e in n.enterprises[: province.prefixes]]
    before, started = top_requests(province), time.monotonic()
    answers = each(lambda pair: ask(pair[0], f"{pair[1]}/1", "REST"), pairs, 8)
    answered = [ok for ok, _ in answers]
    report.figure(
        f"referrals: every node resolved one identifier under each of the {len(pairs) // len(province.seconds)} "
        f"prefixes of the other nodes ({len(pairs):,} resolutions in {time.monotonic() - started:.1f} s; the "
        f"top-level nodes served {top_requests(province) - before:,.0f} requests)"
    )
    how = Counter(answer for ok, answer in answers if not ok).most_common(3)
    report.check(
        all(answered),
        f"referrals: {sum(not a for a in answered)} of {len(pairs)} first resolutions failed"
        + "".join(f"; {n}× {answer}" for answer, n in how),
    )
    return {(c.name, e) for (c, e), ok in zip(pairs, answered, strict=True) if ok}


def steady(province: Province, report: Report, load: Load, seconds: float) -> None:
    before, started = top_requests(province), time.monotonic()
    time.sleep(seconds)
    outcomes = load.since(started)
    per_1000 = (top_requests(province) - before) / max(1, len(outcomes)) * 1000
    failed = sum(not o.ok for o in outcomes)
    report.figure(
        f"steady cross-node load: {len(outcomes) / (time.monotonic() - started):.0f} resolutions/s over "
        f"{len(province.seconds)} nodes, {failed} failed; the top-level nodes served {per_1000:.1f} requests "
        f"per 1,000 resolutions"
    )
    report.check(failed == 0, f"steady load: no resolution failed ({failed} of {len(outcomes)}) {failures(outcomes)}")


def top_outage(province: Province, report: Report, load: Load, seconds: float) -> None:
    top = province.tops[0]
    started = time.monotonic()
    province.kill(top)
    report.figure(f"fault: {top.name} killed (kill -9) for {seconds:.0f} s")
    node = province.seconds[-1]
    enterprise = f"{node.prefix}.{province.prefixes + 1}"
    province.allocate(node, enterprise, 1)
    node.enterprises.append(enterprise)
    twin = province.tops[1].url
    province.wait_published([node], timeout=max(30, seconds / 2), upstream=twin)
    answers = each(lambda o: ask(o, f"{enterprise}/1", "REST"), province.others(node), 16)
    answered = [ok for ok, _ in answers]
    created = time.monotonic() - started
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    outcomes = load.since(started)
    failed = [o for o in outcomes if not o.ok and o.handle.split("/")[0] != enterprise]
    report.check(
        not failed,
        f"{top.name} down: {len(failed)} of {len(outcomes)} resolutions of known prefixes failed"
        + (f" (e.g. {failed[0].handle} via {failed[0].client}: {failures(failed)})" if failed else ""),
    )
    report.check(
        all(answered),
        f"{top.name} down: a prefix created meanwhile resolved through the twin at {sum(answered)}/{len(answered)} "
        f"other nodes ({created:.1f} s after the kill)"
        + "".join(f"; {answer}" for ok, answer in answers[:1] if not ok),
    )
    restarted = time.monotonic()
    top.start()
    caught_up = province.wait_published(province.seconds, timeout=180, upstream=top.url)
    report.figure(
        f"{top.name} back: restarted in {time.monotonic() - restarted - caught_up:.1f} s; every publication made "
        f"meanwhile reached it {caught_up:.1f} s later"
    )


class Writer:
    """Single registrations at ``node``, one after another in a thread; what it acknowledged is kept."""

    def __init__(self, node: Node, enterprise: str) -> None:
        self.node, self.enterprise = node, enterprise
        self.acknowledged: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        user = f"300:0.NA/{self.node.prefix}"
        k = 0
        while not self._stop.is_set():
            k += 1
            handle = f"{self.enterprise}/written-{k}"
            try:
                status, _ = call(f"{self.node.url}/api/handles/{handle}", "PUT", [url_value(self.enterprise, k)], user)
            except OSError:
                time.sleep(0.05)  # the node is down: nothing acknowledged
                continue
            if status == 201:
                self.acknowledged.append(handle)


def node_outage(province: Province, report: Report, load: Load, seconds: float) -> None:
    victim, mirror = province.victim, province.mirror
    cached = {(c, h) for c, h in load.known()[0] if h.startswith(victim.prefix + ".")}
    with Writer(victim, victim.enterprises[0]) as writer:
        time.sleep(1.0)
        started = time.monotonic()
        province.kill(victim)
    report.figure(
        f"fault: secondary node {victim.name} killed (kill -9) for {seconds:.0f} s, "
        f"{len(writer.acknowledged)} single writes acknowledged just before"
        + (f"; its mirror site {mirror.host} serves on" if mirror else " (no mirror site)")
    )
    if mirror is not None:
        lost = [h for h in writer.acknowledged if call(f"{mirror.url}/api/handles/{h}")[0] != 200]
        report.check(
            bool(writer.acknowledged) and not lost,
            f"{victim.name} down: {len(lost)} of the {len(writer.acknowledged)} writes it acknowledged before the kill "
            f"missing at its mirror",
        )
        status, body = call(f"{mirror.url}/api/handles/{victim.enterprises[0]}/refused", "PUT",
                            [url_value(victim.enterprises[0], 0)], f"300:0.NA/{victim.prefix}")  # fmt: skip
        message = (body or {}).get("message", "") if isinstance(body, dict) else ""
        report.check(
            status == 503 and victim.url.removeprefix("http://") in message,
            f"{victim.name}'s mirror refuses a write: HTTP {status} {message[:120]}",
        )
        # Never asked anywhere: through every other node, only the mirror can answer them.
        fresh = writer.acknowledged[-len(province.others(victim)) :]
        pairs = list(zip(province.others(victim), fresh, strict=False))  # fewer when fewer were written
        asked = each(lambda pair: timed(lambda: ask(pair[0], pair[1], "REST")), pairs, 16)
        slowest = max((took for (_ok, _answer), took in asked), default=0.0)
        report.check(
            all(ok for (ok, _answer), _took in asked),
            f"{victim.name} down: {sum(ok for (ok, _), _t in asked)}/{len(asked)} identifiers written just before the "
            f"kill resolved through other nodes from its mirror, the slowest in {slowest:.2f} s",
        )
    time.sleep(max(0.0, seconds - (time.monotonic() - started), CLIENT_TIMEOUT))
    outcomes = load.since(started)
    in_flight = [o for o in load.since(started - CLIENT_TIMEOUT, started) if o.client == victim.name and not o.ok]
    report.figure(f"{victim.name} down: {len(in_flight)} requests in flight through it when it was killed were lost")
    others_failed = [o for o in outcomes if not o.ok and o.holder != victim.name and o.client != victim.name]
    theirs = [o for o in outcomes if o.holder == victim.name and o.client != victim.name]
    cached_failed = [o for o in theirs if (o.client, o.handle) in cached and not o.ok]
    cached_asked = [o for o in theirs if (o.client, o.handle) in cached]
    uncached = [o for o in theirs if (o.client, o.handle) not in cached]
    report.check(
        not others_failed,
        f"{victim.name} down: {len(others_failed)} resolutions of other nodes' identifiers failed "
        + failures(others_failed),
    )
    report.check(
        not cached_failed,
        f"{victim.name} down: {len(cached_asked) - len(cached_failed)}/{len(cached_asked)} of its identifiers "
        f"already cached at the asking node resolved (fresh or stale) " + failures(cached_failed),
    )
    if mirror is not None:
        failed = [o for o in uncached if not o.ok]
        slow = sorted(o.seconds for o in uncached)
        report.check(
            not failed,
            f"{victim.name} down: {len(uncached) - len(failed)}/{len(uncached)} of its identifiers not cached at the "
            f"asking node resolved from its mirror (p50 {statistics.median(slow) if slow else 0:.3f} s, "
            f"max {max(slow, default=0):.2f} s) " + failures(failed),
        )
    else:
        report.figure(f"{victim.name} down: {sum(not o.ok for o in uncached)}/{len(uncached)} uncached ones failed")
    restarted = time.monotonic()
    victim.start()
    load.forget(victim.name)
    status, _ = call(f"{victim.url}/api/handles/{victim.enterprises[0]}/after-restart", "PUT",
                     [url_value(victim.enterprises[0], 0)], f"300:0.NA/{victim.prefix}")  # fmt: skip
    report.check(
        status == 201,
        f"{victim.name} back: serving {time.monotonic() - restarted:.1f} s after the restart, "
        f"writes taken (HTTP {status})",
    )


def timed(job: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = job()
    return result, time.monotonic() - started


def both_tops_outage(province: Province, report: Report, load: Load, seconds: float) -> None:
    referred = load.known()[1]
    started = time.monotonic()
    for top in province.tops:
        province.kill(top)
    report.figure(f"fault: both top-level nodes killed (kill -9) for {seconds:.0f} s")
    time.sleep(seconds)
    outcomes = load.since(started)
    known = [o for o in outcomes if (o.client, o.handle.split("/")[0]) in referred]
    failed = [o for o in known if not o.ok]
    unknown = [o for o in outcomes if (o.client, o.handle.split("/")[0]) not in referred]
    report.check(
        not failed,
        f"both top-level nodes down: {len(failed)} of {len(known)} resolutions under prefixes whose referral the "
        f"asking node had cached failed"
        + (f" (e.g. {failed[0].handle} via {failed[0].client}: {failures(failed)})" if failed else "")
        + f"; {sum(not o.ok for o in unknown)} of {len(unknown)} under prefixes new to the asking node failed",
    )
    restarted = time.monotonic()
    each(Node.start, province.tops)
    report.figure(f"top-level nodes back: serving {time.monotonic() - restarted:.1f} s after the restart")


# The picture ------------------------------------------------------------------------------


class Traffic:
    """Each node's counters summed across its restarts: sampled before every kill and at the end."""

    def __init__(self, province: Province) -> None:
        self.province = province
        self.total: dict[tuple[str, str], float] = {}
        self._last: dict[tuple[str, str], float] = {}

    def sample(self) -> None:
        for node in [*self.province.tops, *self.province.seconds]:
            if not node.alive():
                continue
            try:
                text = node.metrics()
            except OSError:
                continue
            to_tops = {top.name: metric_sum(text, UPSTREAM_METRIC, f'peer="{top.peer}"') for top in self.province.tops}
            counts = {"served": metric_sum(text, REQUESTS_METRIC), **to_tops}
            counts["nodes"] = metric_sum(text, UPSTREAM_METRIC) - sum(to_tops.values())
            for what, value in counts.items():
                last = self._last.get((node.name, what), 0.0)
                self.total[(node.name, what)] = self.total.get((node.name, what), 0.0) + (
                    value - last if value >= last else value  # a restart began the counter again
                )
                self._last[(node.name, what)] = value

    def __call__(self, node: Node, what: str) -> float:
        return self.total.get((node.name, what), 0.0)


def picture(province: Province, traffic: Traffic, path: Path, title: str) -> None:
    """The nodes on a circle, the top-level pair inside, with the requests measured between them."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 10))
    n = len(province.seconds)
    tops_at = [(-0.18, 0.0), (0.18, 0.0)]
    biggest = max([traffic(node, top.name) for node in province.seconds for top in province.tops] + [1.0])
    served = max([traffic(node, "served") for node in province.seconds] + [1.0])
    asked = max([traffic(node, "nodes") for node in province.seconds] + [1.0])
    for i, node in enumerate(province.seconds):
        angle = 2 * math.pi * i / n
        x, y = math.cos(angle), math.sin(angle)
        for (tx, ty), top in zip(tops_at, province.tops, strict=True):
            count = traffic(node, top.name)
            if count:
                ax.plot([x, tx], [y, ty], color="tab:blue", alpha=0.5, linewidth=0.3 + 4 * count / biggest)
        size = 40 + 400 * traffic(node, "served") / served
        shade = plt.get_cmap("Oranges")(0.25 + 0.75 * traffic(node, "nodes") / asked)
        ax.scatter([x], [y], s=size, color=shade, edgecolors="black", linewidths=0.4, zorder=3)
        ax.annotate(node.prefix, (x * 1.09, y * 1.09), ha="center", va="center", fontsize=6)
    for (tx, ty), top in zip(tops_at, province.tops, strict=True):
        ax.scatter([tx], [ty], s=600, color="tab:red", zorder=3)
        label = f"{top.name}\n{top.host}\n{traffic(top, 'served'):,.0f} requests"
        ax.annotate(label, (tx, ty - 0.16), ha="center", fontsize=8)
    total_top = sum(traffic(node, top.name) for node in province.seconds for top in province.tops)
    total_nodes = sum(traffic(node, "nodes") for node in province.seconds)
    ax.set_title(title, fontsize=10)
    ax.text(
        -1.2,
        -1.3,
        f"line width: a node's requests to that top-level node ({total_top:,.0f} in all); node size: requests it "
        f"served;\nnode shade: its requests to other secondary nodes ({total_nodes:,.0f} in all). Counters of "
        f"every process, summed across restarts.",
        fontsize=8,
    )
    ax.set_xlim(-1.25, 1.25)
    ax.set_ylim(-1.25, 1.25)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# The run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path, report: Report) -> None:
    province = Province(args.nodes, args.prefixes, args.identifiers, work, args.net, args.postgres, args.mirror)
    shares = {name: args.seconds * share for name, share in PHASES.items()}
    started = time.monotonic()
    try:
        province.start()
        report.figure(
            f"province: {args.nodes} secondary nodes on {args.net}.1-{args.nodes}, 2 top-level nodes, "
            f"{args.nodes * args.prefixes} enterprise prefixes, {args.nodes * args.prefixes * args.identifiers:,} "
            f"identifiers ({'PostgreSQL' if args.postgres else 'SQLite'}), up in {time.monotonic() - started:.0f} s"
        )
        cold(province, report, province.seconds[0], "REST")
        cold(province, report, province.seconds[1], "UDP")
        cnri_way(province, report, "REST")
        cnri_way(province, report, "UDP")
        if args.warm_seconds:
            warm(province, report, province.seconds[0], args.warm_seconds, args.warm_rounds)
        propagation(province, report)
        memory(province, report)
        referred = refer_everywhere(province, report)
        with Load(province, referred) as load:
            steady(province, report, load, shares["steady"])
            top_outage(province, report, load, shares["top"])
            node_outage(province, report, load, shares["node"])
            both_tops_outage(province, report, load, shares["both"])
            time.sleep(shares["after"])
            after = load.since(time.monotonic() - shares["after"])
            report.check(all(o.ok for o in after), f"after the faults: {sum(not o.ok for o in after)} failed")
        province.traffic.sample()
        if args.picture:
            png = args.out / f"province_{args.nodes}.png"
            title = f"A province of {args.nodes} secondary nodes: {args.seconds:.0f} s of load and faults"
            picture(province, province.traffic, png, title)
            report.figure(f"picture: {png}")
    finally:
        province.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=50, help="secondary nodes")
    p.add_argument("--seconds", type=float, default=600, help="load and faults, shared among the phases")
    p.add_argument("--prefixes", type=int, default=2, help="enterprise prefixes per node")
    p.add_argument("--identifiers", type=int, default=200, help="identifiers per enterprise prefix")
    p.add_argument("--warm-seconds", type=int, default=5, help="per warm run (0: skip the warm figures)")
    p.add_argument("--warm-rounds", type=int, default=5, help="warm rounds, each local and cross-node")
    p.add_argument("--net", default="127.0.1", help="the loopback /24 the nodes take addresses in")
    p.add_argument("--postgres", help="postgresql://USER@HOST:PORT/DB: every node's store there, a database each")
    p.add_argument("--no-mirror", dest="mirror", action="store_false", help="no mirror site for the node fault")
    p.add_argument("--work", type=Path, help="data directories (default: a temporary directory)")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the summary and the picture go")
    p.add_argument("--no-picture", dest="picture", action="store_false", help="no PNG (needs matplotlib)")
    args = p.parse_args(argv)
    if not 1 <= args.nodes <= 250 or args.identifiers < 2 or args.prefixes < 1:
        p.error("--nodes must be within 1..250, --identifiers at least 2, --prefixes at least 1")
    report = Report()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"bench.province at {revision()} on {machine()}", flush=True)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="province-")))
        try:
            run(args, work, report)
        except Exception as exc:  # still write what was measured
            report.check(False, f"the run stopped: {exc.__class__.__name__}: {exc}")
    summary = args.out / f"province_{args.nodes}.md"
    summary.write_text(
        f"# bench.province --nodes {args.nodes} --seconds {args.seconds:g}\n\n"
        f"{revision()} on {machine()}, {time.strftime('%Y-%m-%d')}\n\n"
        + "".join(f"    {line}\n" for line in report.lines)
    )
    print(f"{len(report.failed)} checks failed" if report.failed else "every check held", flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
