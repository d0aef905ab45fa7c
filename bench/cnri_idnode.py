"""CNRI's own Handle client tools, unmodified, against an idnode node.

idnode claims to speak the Handle protocol to handle.net's clients; this runs them and
says, per tool, release and operation, whether that is so: hdl-qresolver (UDP and TCP;
an existing handle, a missing one, a missing prefix), hdl-getsiteinfo, hdl-genericbatch
CREATE / ADD / MODIFY / REMOVE / DELETE / HOME authenticated by HS_SECKEY, DSA and RSA
HS_PUBKEY, and hdl-list. The bytes both ways are read off ``lo`` (tests.vectors.sniff: the
node's answers name its own port, so a relay in front would miss the second hop) and
become vectors ``tests/vectors/idnode-<release>/<name>.json`` (same format as the
``cnri-<release>`` ones captured against CNRI's server), and each admin operation is
checked through idnode's REST API: the record really was created, changed or deleted.

The node: a fresh SQLite store, node prefix 88.118, the Handle protocol on --port, which
the clients' root_info names. Through the REST
API, as the node admin, it gets the enterprise prefix ``0.NA/88.118.8`` whose HS_ADMIN
values grant everything to ``300:``, ``301:`` and ``302:88.118.8/ADMIN``, that identity
handle (HS_SECKEY at 300, DSA HS_PUBKEY at 301, RSA at 302, the committed test keys of
tests/vectors/cnri-<release>/keys) and ``88.118.8/42``. idnode stores HS_SECKEY hashed
(registry.identity.secrets): genericbatch has no hashed-secret option (GenericBatch.java reads the
password line and MACs with its bytes), so it is given the 40 hex digits as the secret.

Run as root, only inside a private network namespace (every JVM and the node)::

    unshare -n sh -c 'ip link set lo up; /work/main/.venv/bin/python -m bench.cnri_idnode \\
        --dist /work/cnri/7.3.1 --version 7.3.1 --write-vectors'

The report (one line per scenario: worked, or the client's error and idnode's log) is
printed and written to ``<root>/report.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cnri
from bench.cnri_keys import SECRET_KEY
from protocol.wire.auth import hashed_secret_key
from resolver.handle import server_key
from tests.support.nodeproc import ADMIN, ADMIN_SECRET, ADMIN_USER, Node
from tests.vectors.capture import messages
from tests.vectors.sniff import Sniffer

VECTORS = Path(__file__).parents[1] / "tests" / "vectors"
PREFIX = "88.118.8"
ADMIN_HANDLE = f"{PREFIX}/ADMIN"
NODE_ADMIN = ADMIN_USER  # 300:0.NA/88.118
EXISTING = f"{PREFIX}/42"
HOMED = PREFIX  # idnode homes a prefix whose handle it holds (the cnri-* captures homed 88.118.9)
LARGE = f"{PREFIX}/BIG"  # an answer of more than one 512-byte datagram
HASHED_SECRET = hashed_secret_key(SECRET_KEY.encode()).decode()
ALL_PERMS = "111111111111"

Check = Callable[[Node], str]  # "" when the REST API shows what the operation should have done


@dataclass
class Scenario:
    name: str
    client: str
    run: Callable[[], subprocess.CompletedProcess[str]]
    notes: str
    check: Check | None = None
    expect_output: str = ""  # a tool output that says it worked
    produces: Path | None = None  # a file the tool must write


@dataclass
class Outcome:
    name: str
    worked: bool
    detail: str
    tool_exit: int
    idnode_log: list[str] = field(default_factory=list)


# --- the node and its records ---


def _admin_value(index: int, who: int) -> dict[str, Any]:
    value = {"handle": ADMIN_HANDLE, "index": who, "permissions": ALL_PERMS}
    return {"index": index, "type": "HS_ADMIN", "data": {"format": "admin", "value": value}}


def _key_value(index: int, path: Path) -> dict[str, Any]:
    data = {"format": "key", "value": base64.b64encode(path.read_bytes()).decode()}
    return {"index": index, "type": "HS_PUBKEY", "data": data, "permissions": "1110"}


def records(keys: Path) -> dict[str, list[dict[str, Any]]]:
    """The records the CNRI captures were made against, in idnode's REST form.

    As in bench.cnri.bootstrap_records, except that the prefix's one HS_ADMIN names the
    group ``200:88.118.8/ADMIN`` (HS_VLIST of 300, 301, 302) where CNRI's server made all
    three server admins: the prefix handle then answers the same values as CNRI's
    (HS_SITE 1, HS_ADMIN 100) and every key of the identity may administer the prefix.
    """
    group = [{"handle": ADMIN_HANDLE, "index": i} for i in (300, 301, 302)]
    big = [{"index": n, "type": "URL", "data": f"https://big.example/{'x' * 150}/{n}"} for n in range(1, 6)]
    return {
        f"0.NA/{PREFIX}": [_admin_value(100, 200)],
        ADMIN_HANDLE: [
            _admin_value(100, 300),
            {"index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": group}},
            {"index": 300, "type": "HS_SECKEY", "data": SECRET_KEY, "permissions": "1100"},
            _key_value(301, keys / "admin_dsa_pub.bin"),
            _key_value(302, keys / "admin_rsa_pub.bin"),
        ],
        EXISTING: [  # bench.cnri.bench_record(PREFIX, 42)
            {"index": 1, "type": "URL", "data": "https://example.org/item/42"},
            {"index": 2, "type": "EMAIL", "data": "owner42@example.org"},
            {"index": 3, "type": "INDUSTRY_CATEGORY", "data": "C42-42"},
        ],
        LARGE: big,
    }


def prepare_records(node: Node, keys: Path) -> None:
    """``records`` written through the REST API as the node admin."""
    for handle, values in records(keys).items():
        reply = node.put(f"/api/handles/{handle}", {"values": values}, auth=ADMIN)
        if reply.status not in (200, 201):
            raise cnri.CnriError(f"PUT {handle}: {reply.status} {reply.body[:300]!r}")


def start_node(data_dir: Path, handle_port: int) -> Node:
    node = Node(data_dir, args=["--handle-listen", f"127.0.0.1:{handle_port}", "--workers", "2"])
    node.env = {"IDNODE_LOG_LEVEL": "info"}
    return node.start()


# --- the clients' configuration ---


def node_public_key(data_dir: Path) -> bytes:
    """The node's server key (resolver.handle.server_key) in HS_PUBKEY form, as its HS_SITE carries it."""
    return server_key.public_key_bytes(server_key.load_key(data_dir))


def write_client_dirs(lay: cnri.Layout, pub: bytes) -> Path:
    """root_info / bootstrap_handles naming the node; returns the TCP-only config dir.

    The site advertises the release's own protocol version, as the cnri-* vectors' did, so
    the two sets of requests are comparable byte for byte, and the node's own public key.
    """
    lay.server_dir.mkdir(parents=True, exist_ok=True)
    lay.client_config.mkdir(parents=True, exist_ok=True)
    protocol = cnri._java_helper(lay, "version").strip()
    site = cnri._site_json(lay, pub, lay.advertised_port, protocol)
    site["servers"][0]["interfaces"] = site["servers"][0]["interfaces"][:2]  # type: ignore[index]
    (lay.server_dir / "siteinfo.json").write_text(json.dumps(site, indent=2))
    cnri._java_helper(
        lay,
        "site",
        str(lay.server_dir / "siteinfo.json"),
        str(lay.server_dir / "siteinfo.bin"),
        str(lay.client_config / "root_info"),
    )
    cnri.write_client_config(lay, lay.client_config)
    tcp_cfg = lay.root / "client-tcp" / ".handle"
    cnri.write_client_config(lay, tcp_cfg, tcp_only=True)
    return tcp_cfg


# --- scenarios ---


def _auths(lay: cnri.Layout) -> dict[str, str]:
    return {
        "seckey": f"AUTHENTICATE SECKEY:300:{ADMIN_HANDLE}\n{HASHED_SECRET}\n",
        "pubkey-dsa": cnri.batch_auth_pubkey(lay, "dsa"),
        "pubkey-rsa": cnri.batch_auth_pubkey(lay, "rsa"),
    }


def _values(node: Node, handle: str) -> dict[int, str] | None:
    reply = node.get(f"/api/handles/{handle}", auth=ADMIN)
    if reply.status == 404:
        return None
    if reply.status != 200:
        return {-1: f"GET {handle}: {reply.status}"}
    out = {}
    for v in reply.json["values"]:
        data = v["data"]
        out[v["index"]] = data["value"] if isinstance(data.get("value"), str) else json.dumps(data["value"])
    return out


def _expect(handle: str, want: Callable[[dict[int, str] | None], bool], what: str) -> Check:
    def check(node: Node) -> str:
        got = _values(node, handle)
        return "" if want(got) else f"REST shows {handle} as {got}, expected {what}"

    return check


def _admin_ops(lay: cnri.Layout, auth_name: str, auth: str) -> list[tuple[str, str, Check]]:
    h = f"{PREFIX}/VEC-{auth_name.upper()}"
    admin = f"100 HS_ADMIN 86400 1110 ADMIN 300:111111111111:{ADMIN_HANDLE}"
    v1, v2 = "https://example.org/v1", "https://example.org/v2"
    return [
        (
            "create",
            f"{auth}\nCREATE {h}\n{admin}\n1 URL 86400 1110 UTF8 {v1}\n\n",
            _expect(h, lambda g: g is not None and g.get(1) == v1, f"created with 1 URL {v1}"),
        ),
        (
            "add",
            f"{auth}\nADD {h}\n2 EMAIL 86400 1110 UTF8 vec@example.org\n\n",
            _expect(h, lambda g: g is not None and g.get(2) == "vec@example.org", "2 EMAIL added"),
        ),
        (
            "modify",
            f"{auth}\nMODIFY {h}\n1 URL 86400 1110 UTF8 {v2}\n\n",
            _expect(h, lambda g: g is not None and g.get(1) == v2, f"1 URL {v2}"),
        ),
        (
            "remove",
            f"{auth}\nREMOVE 2:{h}\n\n",
            _expect(h, lambda g: g is not None and 2 not in g and 1 in g, "index 2 removed"),
        ),
        ("delete", f"{auth}\nDELETE {h}\n\n", _expect(h, lambda g: g is None, "deleted (404)")),
    ]


def scenarios(lay: cnri.Layout, tcp_cfg: Path) -> list[Scenario]:
    """The same scenarios, with the same vector names, as tests/vectors/make_vectors.py."""
    missing = f"{PREFIX}/NO-SUCH"
    out = [
        Scenario(
            "resolve-udp",
            f"hdl-qresolver {EXISTING}",
            lambda: cnri.qresolver(lay, EXISTING),
            "prefix lookup 0.NA/<prefix> at the root, then the handle; default client config",
            expect_output="https://example.org/item/42",
        ),
        Scenario(
            "resolve-tcp",
            f"hdl-qresolver {EXISTING} (no_udp_resolution)",
            lambda: cnri.qresolver(lay, EXISTING, config_dir=tcp_cfg),
            "client config.dct no_udp_resolution=yes forces TCP",
            expect_output="https://example.org/item/42",
        ),
        Scenario(
            "resolve-large-udp",
            f"hdl-qresolver {LARGE}",
            lambda: cnri.qresolver(lay, LARGE),
            "five 170-byte URLs: an answer of more than 512 bytes to a UDP request",
            expect_output="https://big.example/",
        ),
        Scenario(
            "resolve-missing",
            f"hdl-qresolver {missing}",
            lambda: cnri.qresolver(lay, missing),
            "handle not found (rc 100)",
            expect_output="HANDLE NOT FOUND",
        ),
        Scenario(
            "resolve-missing-prefix",
            "hdl-qresolver 99.999/X",
            lambda: cnri.qresolver(lay, "99.999/X"),
            "prefix unknown at the root",
            expect_output="Unable to find service for prefix 0.NA/99.999",
        ),
        Scenario(
            "get-site-info",
            f"hdl-getsiteinfo {lay.host} {lay.advertised_port}",
            lambda: cnri.run_tool(
                lay,
                "net.handle.apps.tools.GetSiteInfo",
                lay.host,
                str(lay.advertised_port),
                str(lay.root / "got-siteinfo.bin"),
            ),
            "GetSiteInfo sends OC_GET_SITE_INFO over TCP",
            produces=lay.root / "got-siteinfo.bin",
        ),
    ]
    for auth_name, auth in _auths(lay).items():
        for op, text, check in _admin_ops(lay, auth_name, auth):
            name = f"batch-{op}-{auth_name}"
            out.append(
                Scenario(
                    name,
                    f"hdl-genericbatch ({op.upper()}, AUTHENTICATE {auth_name})",
                    cnri.batch_tool(lay, name, text),
                    f"batch file:\n{text}",
                    check,
                    "==>SUCCESS",
                )
            )
    # HOME is a server admin's in CNRI, the node admin's here (resolver.handle.ops)
    node_admin = f"AUTHENTICATE SECKEY:{NODE_ADMIN}\n{hashed_secret_key(ADMIN_SECRET.encode()).decode()}\n"
    home = f"{node_admin}\nHOME {lay.host}:{lay.advertised_port}:TCP\n0.NA/{HOMED}\n\n"
    out.append(
        Scenario(
            "batch-home-seckey",
            "hdl-genericbatch (HOME, AUTHENTICATE seckey as the node admin)",
            cnri.batch_tool(lay, "batch-home-seckey", home),
            f"batch file:\n{home}",
            _expect(f"0.NA/{HOMED}", lambda g: g is not None, f"0.NA/{HOMED} to exist"),
            "==>SUCCESS",
        )
    )
    for alg, index in (("dsa", 301), ("rsa", 302)):
        key = str(lay.keys / f"admin_{alg}_priv.bin")

        def run(key: str = key, index: int = index) -> subprocess.CompletedProcess[str]:
            return cnri.run_tool(lay, "net.handle.apps.simple.HDLList", ADMIN_HANDLE, str(index), key, PREFIX)

        out.append(
            Scenario(
                f"list-{alg}",
                f"hdl-list {ADMIN_HANDLE} {index} admin_{alg}_priv.bin {PREFIX}",
                run,
                "list handles (opcode 105) authenticated by a public key",
                expect_output=EXISTING,
            )
        )
    return out


# --- running and judging ---

_FAILURE = re.compile(r"(==>FAILURE.*|Error.*|.*Exception.*|.*HANDLE NOT FOUND.*|.*SERVER NOT RESPONSIBLE.*)")


def judge(sc: Scenario, done: subprocess.CompletedProcess[str], node: Node) -> tuple[bool, str]:
    output = done.stdout + done.stderr
    if sc.expect_output and sc.expect_output not in output:
        lines = [m.group(0).strip() for m in _FAILURE.finditer(output)]
        return False, f"exit {done.returncode}; " + " | ".join(lines[:4] or [output.strip()[-400:]])
    if sc.expect_output == "==>SUCCESS" and "==>FAILURE" in output:
        return False, " | ".join(m.group(0) for m in _FAILURE.finditer(output))[:600]
    if not sc.expect_output and done.returncode != 0:
        return False, f"exit {done.returncode}; {output.strip()[-600:]}"
    if sc.produces is not None and not (sc.produces.exists() and sc.produces.stat().st_size > 0):
        return False, f"exit {done.returncode} but {sc.produces.name} was not written; {output.strip()[-400:]}"
    if sc.check is not None:
        wrong = sc.check(node)
        if wrong:
            return False, f"the tool said it worked, but {wrong}"
    return True, "worked"


def run_all(
    lay: cnri.Layout, node: Node, sniffer: Sniffer, only: str, out_dir: Path | None, version: str
) -> list[Outcome]:
    tcp_cfg = write_client_dirs(lay, node_public_key(node.data_dir))
    results = []
    for sc in scenarios(lay, tcp_cfg):
        if only and only not in sc.name:
            continue
        log_from = len(node.stderr_lines)
        done = sc.run()
        time.sleep(0.3)
        exchanges = messages(sniffer.take())
        worked, detail = judge(sc, done, node)
        log = [line.rstrip() for line in node.stderr_lines[log_from:]]
        results.append(Outcome(sc.name, worked, detail, done.returncode, log[-20:]))
        print(f"{sc.name:26} {'worked' if worked else 'FAILED'}  {'' if worked else detail}", flush=True)
        if out_dir is not None:
            vector = {
                "client": f"CNRI {version} {sc.client}",
                "server": "idnode",
                "exchanges": exchanges,
                "notes": sc.notes,
                "worked": worked,
                "result": detail,
                "tool_exit": done.returncode,
                "tool_output": (done.stdout + done.stderr)[-4000:],
                "idnode_log": log[-20:],
            }
            (out_dir / f"{sc.name}.json").write_text(json.dumps(vector, indent=1) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cnri_idnode", description=__doc__.split("\n")[0])
    p.add_argument("--dist", required=True, help="an unpacked CNRI distribution (with lib/)")
    p.add_argument("--version", required=True, help="its release: 7.3.1 or 9.0.0")
    p.add_argument("--root", default="/tmp/cnri-idnode")
    p.add_argument("--port", type=int, default=2641, help="idnode's Handle port (TCP and UDP)")
    p.add_argument("--only", default="", help="run only scenarios whose name contains this")
    p.add_argument("--write-vectors", action="store_true", help="write tests/vectors/idnode-<version>/")
    a = p.parse_args(argv)
    cnri.require_netns()
    root = Path(a.root) / a.version
    shutil.rmtree(root, ignore_errors=True)
    lay = cnri.Layout(root, Path(a.dist), PREFIX, "127.0.0.1", a.port, 0)
    shutil.copytree(VECTORS / f"cnri-{a.version}" / "keys", lay.keys)
    out_dir = VECTORS / f"idnode-{a.version}" if a.write_vectors else None
    if out_dir is not None:
        out_dir.mkdir(exist_ok=True)
    node = start_node(root / "idnode", lay.port)
    sniffer = Sniffer(lay.port)
    try:
        prepare_records(node, lay.keys)
        results = run_all(lay, node, sniffer, a.only, out_dir, a.version)
    finally:
        sniffer.close()
        node.stop()
    (root / "report.json").write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 0 if all(r.worked for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
