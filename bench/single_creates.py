"""Issue 22: identifiers created one request at a time over the Handle protocol, against CNRI.

Factories register one identifier per request. Three ways, each creating ``--count`` handles
with the same four values (HS_ADMIN, URL, EMAIL, INDUSTRY_CATEGORY), one request in flight:

* ``cnri``: CNRI 7.3.1's ``hdl-genericbatch`` against CNRI 7.3.1's server (HS_SECKEY, its
  session: one authentication, then a challenge answered per request);
* ``idnode-genericbatch``: the same tool and batch file against idnode;
* ``idnode-login``: the requests China's SDKs send on their one connection
  (tests/vectors/idsdk-2.0.x: LOGIN_ID_SYSTEM answered once, then CREATE_HANDLE without
  credentials and without challenges), written by this script, one at a time.

Inside a private network namespace (``bench.cnri.require_netns``)::

    unshare -n sh -c 'ip link set lo up; .venv/bin/python -m bench.single_creates \\
        --dist /work/cnri/7.3.1 --count 100000'

Reported: creates/s (wall clock, the client's start-up included for genericbatch) and the
server's CPU per create (its process tree, from /proc). Every create is checked: the tool's
==>SUCCESS lines, the SDK-shaped client's response codes, and the count the node's REST API
lists under the prefix. Writes bench/results/single_creates.md.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import cnri
from bench.cnri_idnode import (
    ADMIN_HANDLE,
    HASHED_SECRET,
    PREFIX,
    VECTORS,
    node_public_key,
    prepare_records,
    start_node,
    write_client_dirs,
)
from bench.handle_vs_cnri import _free_port
from bench.proc_cpu import tree_cpu_seconds
from bench.resolve_baseline import RESULTS, machine, revision
from protocol.codes import ResponseCode
from protocol.records import HandleValue
from protocol.valuedata import AdminRef, encode_admin
from protocol.wire.message import CreateHandleRequest, OpCode
from tests.support.handleauth import Who, encoded, login
from tests.support.handleclient import Connection
from tests.support.nodeproc import ADMIN, Node

ALL = (1 << 12) - 1  # every admin permission, as the batch's 111111111111


@dataclass
class Run:
    name: str
    label: str
    created: int
    seconds: float
    server_cpu: float

    def row(self) -> str:
        rate = self.created / self.seconds if self.seconds else 0.0
        per = self.server_cpu / self.created * 1e6 if self.created else 0.0
        return f"| {self.label} | {self.created:,} | {rate:,.0f} | {per:,.0f} |"


def values(i: int) -> tuple[HandleValue, ...]:
    """What write_create_batch gives handle B<i>."""
    admin = encode_admin(AdminRef(ADMIN_HANDLE, 300, ALL))
    return (
        HandleValue(100, "HS_ADMIN", admin),
        HandleValue(1, "URL", f"https://example.org/item/{i}".encode()),
        HandleValue(2, "EMAIL", f"owner{i}@example.org".encode()),
        HandleValue(3, "INDUSTRY_CATEGORY", f"C{i % 97:02d}-{i}".encode()),
    )


def genericbatch(lay: cnri.Layout, batch: Path, pid: int, name: str, label: str, count: int) -> Run:
    before, t0 = tree_cpu_seconds([pid]), time.perf_counter()
    done = cnri.run_tool(lay, "net.handle.apps.batch.GenericBatch", str(batch), timeout=7200)
    seconds, cpu = time.perf_counter() - t0, tree_cpu_seconds([pid]) - before
    created = done.stdout.count("==>SUCCESS")
    if created != count:
        tail = (done.stdout + done.stderr)[-2000:]
        raise cnri.CnriError(f"{name}: {created} of {count} created; the tool said: {tail}")
    return Run(name, label, created, seconds, cpu)


def logged_in(port: int, pid: int, count: int, start: int) -> Run:
    """Log in once on one connection, then one CREATE_HANDLE at a time, as the SDKs do."""
    who = Who(ADMIN_HANDLE, 300, HASHED_SECRET.encode())
    before, t0 = tree_cpu_seconds([pid]), time.perf_counter()
    with Connection(port, timeout=30) as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reply = login(conn.ask, who)
        if reply.response_code != ResponseCode.SUCCESS:
            raise cnri.CnriError(f"login: {reply.response_code!r}")
        for i in range(start, start + count):
            request = encoded(OpCode.CREATE_HANDLE, CreateHandleRequest(f"{PREFIX}/S{i}", values(i)))
            answer = conn.ask(request)
            if answer.response_code != ResponseCode.SUCCESS:
                raise cnri.CnriError(f"create {PREFIX}/S{i}: {answer.response_code!r}")
    seconds, cpu = time.perf_counter() - t0, tree_cpu_seconds([pid]) - before
    return Run("idnode-login", "idnode, logged in on one connection (the SDKs' requests)", count, seconds, cpu)


def listed(node: Node) -> int:
    """How many handles the node's REST API counts under the prefix."""
    reply = node.get(f"/api/handles?prefix={PREFIX}&page=0&pageSize=1", auth=ADMIN)
    if reply.status != 200:
        raise cnri.CnriError(f"listing {PREFIX}: {reply.status}")
    return int(reply.json["totalCount"])


def run(args: argparse.Namespace, work: Path) -> list[Run]:
    runs: list[Run] = []
    # CNRI's server and its tool, as bench.cnri's batch-load.
    lay = cnri.Layout(work / "cnri", args.dist.resolve(), PREFIX, "127.0.0.1", _free_port(), _free_port())
    cnri.write_dirs(lay)
    cnri.load_handles(lay, 10)
    batch = cnri.write_create_batch(lay, work / "cnri-creates.txt", args.count)
    server = cnri.Server(lay)
    try:
        runs.append(genericbatch(lay, batch, server.proc.pid, "cnri", "CNRI 7.3.1, hdl-genericbatch", args.count))
    finally:
        server.stop()
    print(runs[-1].row(), file=sys.stderr, flush=True)
    # idnode, the same tool and the same batch (authenticated as the enterprise's admin).
    client = cnri.Layout(work / "client", args.dist.resolve(), PREFIX, "127.0.0.1", _free_port(), 0)
    shutil.copytree(VECTORS / "cnri-7.3.1" / "keys", client.keys)
    node = start_node(work / "idnode", client.port)
    try:
        prepare_records(node, client.keys)
        write_client_dirs(client, node_public_key(node.data_dir))
        auth = f"AUTHENTICATE SECKEY:300:{ADMIN_HANDLE}\n{HASHED_SECRET}\n"
        batch = cnri.write_create_batch(client, work / "idnode-creates.txt", args.count, auth=auth)
        assert node.proc is not None
        pid = node.proc.pid
        runs.append(genericbatch(client, batch, pid, "idnode-genericbatch", "idnode, hdl-genericbatch", args.count))
        print(runs[-1].row(), file=sys.stderr, flush=True)
        runs.append(logged_in(client.port, pid, args.count, 1))
        print(runs[-1].row(), file=sys.stderr, flush=True)
        total = listed(node)  # the prepared records' ADMIN, 42 and BIG, and what was created
        if total != 2 * args.count + 3:
            raise cnri.CnriError(f"the node lists {total} handles under {PREFIX}, expected {2 * args.count + 3}")
    finally:
        node.stop()
    return runs


def table(runs: list[Run]) -> str:
    rows = [
        "| how | created | creates/s | server CPU µs/create |",
        "|---|---:|---:|---:|",
        *(r.row() for r in runs),
        "",
    ]
    by = {r.name: r for r in runs}
    cnri_per = by["cnri"].server_cpu / by["cnri"].created
    for name in ("idnode-genericbatch", "idnode-login"):
        ours = by[name].server_cpu / by[name].created
        rows.append(f"- {by[name].label}: idnode / CNRI, creates per server CPU second: **{cnri_per / ours:.2f}**")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.single_creates", description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, required=True, help="an unpacked CNRI distribution (bin/, lib/)")
    parser.add_argument("--count", type=int, default=100_000, help="handles created each way")
    args = parser.parse_args(argv)
    cnri.require_netns()
    with tempfile.TemporaryDirectory(prefix="idnode-single-creates-") as work:
        runs = run(args, Path(work))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = f"{when}; {machine()}; code {revision()}; CNRI {args.dist.name}; {args.count:,} creates each way\n\n"
    text = header + table(runs) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "single_creates.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
