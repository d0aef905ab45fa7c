"""Capture CNRI client/server exchanges as test vectors for idnode's Handle codec.

Runs CNRI's server behind the capture relay (server on --port+1, relay on --port, the
siteinfo advertising the relay) and drives CNRI's own tools through it, one scenario per
vector file ``tests/vectors/cnri-<version>/<name>.json``. The keys the tools sign with
are test-only and kept in ``keys/`` next to the vectors, so a test can check MACs and
signatures; existing keys are reused so re-captures stay verifiable with them.

Run as root, only inside a private network namespace::

    unshare -n sh -c 'ip link set lo up; /work/main/.venv/bin/python -m \\
        tests.vectors.make_vectors --dist /work/cnri/7.3.1 --version 7.3.1'
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench import cnri
from bench.cnri_keys import make_keys
from tests.vectors.capture import Relay, messages

HERE = Path(__file__).parent
Tool = Callable[[], subprocess.CompletedProcess[str]]


def _auths(lay: cnri.Layout) -> dict[str, str]:
    return {
        "seckey": cnri.batch_auth_seckey(lay),
        "pubkey-dsa": cnri.batch_auth_pubkey(lay, "dsa"),
        "pubkey-rsa": cnri.batch_auth_pubkey(lay, "rsa"),
    }


def _admin_ops(lay: cnri.Layout, auth_name: str, auth: str) -> list[tuple[str, str]]:
    h = f"{lay.prefix}/VEC-{auth_name.upper()}"
    admin = f"100 HS_ADMIN 86400 1110 ADMIN 300:111111111111:{lay.admin}"
    return [
        ("create", f"{auth}\nCREATE {h}\n{admin}\n1 URL 86400 1110 UTF8 https://example.org/v1\n\n"),
        ("add", f"{auth}\nADD {h}\n2 EMAIL 86400 1110 UTF8 vec@example.org\n\n"),
        ("modify", f"{auth}\nMODIFY {h}\n1 URL 86400 1110 UTF8 https://example.org/v2\n\n"),
        ("remove", f"{auth}\nREMOVE 2:{h}\n\n"),
        ("delete", f"{auth}\nDELETE {h}\n\n"),
    ]


def scenarios(lay: cnri.Layout) -> list[tuple[str, str, Tool, str]]:
    """(vector name, client description, tool run, notes), in the order they must run."""
    tcp_cfg = lay.root / "client-tcp" / ".handle"
    cnri.write_client_config(lay, tcp_cfg, tcp_only=True)
    existing = f"{lay.prefix}/42"
    out: list[tuple[str, str, Tool, str]] = [
        (
            "resolve-udp",
            f"hdl-qresolver {existing}",
            lambda: cnri.qresolver(lay, existing),
            "prefix lookup 0.NA/<prefix> at the root, then the handle; default client config",
        ),
        (
            "resolve-tcp",
            f"hdl-qresolver {existing} (no_udp_resolution)",
            lambda: cnri.qresolver(lay, existing, config_dir=tcp_cfg),
            "client config.dct no_udp_resolution=yes forces TCP",
        ),
        (
            "resolve-missing",
            f"hdl-qresolver {lay.prefix}/NO-SUCH",
            lambda: cnri.qresolver(lay, f"{lay.prefix}/NO-SUCH"),
            "handle not found (rc 100). A certified (CT) 0.NA/<prefix> lookup between the request "
            "and its reply, if present, is the server's own (it looks for an HS_NAMESPACE template "
            "before answering 100), not the client's",
        ),
        (
            "resolve-missing-prefix",
            "hdl-qresolver 99.999/X",
            lambda: cnri.qresolver(lay, "99.999/X"),
            "prefix unknown at the root",
        ),
        (
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
        ),
    ]
    for auth_name, auth in _auths(lay).items():
        for op, text in _admin_ops(lay, auth_name, auth):
            name = f"batch-{op}-{auth_name}"
            out.append(
                (
                    name,
                    f"hdl-genericbatch ({op.upper()}, AUTHENTICATE {auth_name})",
                    cnri.batch_tool(lay, name, text),
                    f"batch file:\n{text}",
                )
            )
    home = f"{cnri.batch_auth_seckey(lay)}\nHOME {lay.host}:{lay.advertised_port}:TCP\n0.NA/88.118.9\n\n"
    out.append(
        (
            "batch-home-seckey",
            "hdl-genericbatch (HOME, AUTHENTICATE seckey)",
            cnri.batch_tool(lay, "batch-home-seckey", home),
            f"batch file:\n{home}",
        )
    )
    for alg, index in (("dsa", 301), ("rsa", 302)):
        key = str(lay.keys / f"admin_{alg}_priv.bin")
        out.append(
            (
                f"list-{alg}",
                f"hdl-list {lay.admin} {index} admin_{alg}_priv.bin {lay.prefix}",
                lambda key=key, index=index: cnri.run_tool(  # type: ignore[misc]
                    lay, "net.handle.apps.simple.HDLList", lay.admin, str(index), key, lay.prefix
                ),
                "list handles (opcode 105) authenticated by a public key",
            )
        )
    return out


def _keys(lay: cnri.Layout, out: Path) -> None:
    committed = out / "keys"
    if committed.exists():
        shutil.copytree(committed, lay.keys, dirs_exist_ok=True)
    make_keys(lay.keys)
    shutil.copytree(lay.keys, committed, dirs_exist_ok=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dist", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--root", default="/tmp/cnri-vectors")
    p.add_argument("--port", type=int, default=2641)
    p.add_argument("--only", help="capture only vectors whose name contains this")
    a = p.parse_args()
    cnri.require_netns()
    out = HERE / f"cnri-{a.version}"
    root = Path(a.root) / a.version
    shutil.rmtree(root, ignore_errors=True)
    lay = cnri.Layout(root, Path(a.dist), cnri.DEFAULT_PREFIX, "127.0.0.1", a.port + 1, 8000, public_port=a.port)
    _keys(lay, out)
    cnri.write_dirs(lay)
    cnri.load_handles(lay, 100)
    server = cnri.Server(lay)
    relay = Relay(a.port, (lay.host, lay.port))
    try:
        for name, client, run, notes in scenarios(lay):
            if a.only and a.only not in name:
                continue
            done = run()
            time.sleep(0.3)
            exchanges = messages(relay.take())
            vector = {
                "client": f"CNRI {a.version} {client}",
                "exchanges": exchanges,
                "notes": notes,
                "tool_exit": done.returncode,
                "tool_output": (done.stdout + done.stderr)[-4000:],
            }
            (out / f"{name}.json").write_text(json.dumps(vector, indent=1) + "\n")
            print(f"{name}: rc={done.returncode} {len(exchanges)} messages")
    finally:
        relay.close()
        server.stop()


if __name__ == "__main__":
    main()
