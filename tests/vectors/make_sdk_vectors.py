"""Capture China's SDKs, unmodified, talking to idnode: test vectors and a report of what worked.

CAICT's ID-SDK (the 2.0.3 jar as shipped, ``4iot-dev/ID-SDK`` ``ID-SDK-DEMO/lib``) and
Teleinfo's id-pointer-sdk (``teleinfo-dev/id-pointer-sdk``, compiled from its source) are
driven through their public client APIs by our small programs in ``tests/vectors/sdk``
(``IdSdkDriver.java``, ``IdPointerDriver.java``, run by ``java`` from source), against a node
set up by ``tests.vectors.sdk_node``: resolve over TCP (and UDP, which only the ID-SDK
offers), log in with a secret, a DSA key, an RSA key and (id-pointer) an SM2 key, then
create, add, modify, remove and delete, each write checked through the REST API before the
driver goes on. The capture relay (``tests.vectors.capture``) sits between the SDK and the
node and records every message, one scenario per vector file
``tests/vectors/<idsdk-2.0.x|idpointer>/<name>.json``; the test-only keys the SDKs sign with
are in ``keys/`` next to them (made once, then reused, so older captures still verify).

The ID-SDK's UDP client binds the server's port on its own side (``new
DatagramSocket(port)`` in ``IdentifierResolveEngine.sendRequestWithUDP``), so it can never
reach a server on the same host and port, and sends to itself when nothing else holds the
port. It is worked around outside the SDK: the SDK is told port ``--port + 2``, where
nothing listens, and a NAT rule of this private namespace sends its datagrams on to the
relay (and the answers back as if from that port).

Nothing here builds an SDK: ``--classpath`` names the SDK's classes and their dependencies,
made beforehand outside this repository. id-pointer's code calls hutool-crypto 5 and java-jwt;
where those are not to be had, test-only stand-ins of one's own that compute the same bytes
go first on its classpath, and ``--label`` says so (it is written into every vector).

Run as root, only inside a private network namespace (the JVMs, the relay and the node all
on its loopback)::

    unshare -n sh -c 'ip link set lo up; /work/main/.venv/bin/python -m \\
        tests.vectors.make_sdk_vectors --sdk idsdk --classpath "$IDSDK_CLASSPATH" \\
        --label "ID-SDK 2.0.3 (ID-SDK-2.0.3.jar as shipped)"'
    unshare -n sh -c 'ip link set lo up; /work/main/.venv/bin/python -m \\
        tests.vectors.make_sdk_vectors --sdk idpointer --classpath "$IDPOINTER_CLASSPATH" \\
        --label "id-pointer-sdk 2.3.1-SNAPSHOT (commit ...)"'

The report (per scenario, each step: the SDK's answer and what the REST API showed) is
printed and kept in each vector's ``steps``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.cnri import require_netns
from tests.support.nodeproc import Node
from tests.vectors import sdk_node
from tests.vectors.capture import Relay, messages

HERE = Path(__file__).parent
DRIVERS = HERE / "sdk"
DIRS = {"idsdk": "idsdk-2.0.x", "idpointer": "idpointer"}  # the vectors' folders
NAT_TABLE = ["iptables", "-t", "nat"]


@dataclass
class Scenario:
    name: str
    args: list[str]  # the driver's, after host and port
    notes: str
    handle: str = ""  # the handle its writes go to ("": it writes nothing)
    udp: bool = False


@dataclass
class Step:
    name: str
    code: int
    detail: str
    rest: str = ""  # what the REST API showed after a write, and whether that is right

    def to_json(self) -> dict[str, object]:
        return {"step": self.name, "code": self.code, "detail": self.detail, "rest": self.rest}


@dataclass
class Run:
    steps: list[Step] = field(default_factory=list)
    exit: int = 0
    output: str = ""


ID_SDK_WRITES = (
    "createIdentifier, addIdentifierValues, modifyIdentifierValues, removeIdentifierValues, deleteIdentifier"
)
ID_POINTER_WRITES = "createHandle, addHandleValues, updateHandleValues, deleteHandleValues, deleteHandle"
ID_POINTER_LOGIN = "the first write logs the pooled connection in (GET_SITE_INFO, LOGIN_ID_SYSTEM 2001)"


def idsdk_scenarios() -> list[Scenario]:
    admin, index, writes = sdk_node.ADMIN_HANDLE, sdk_node.INDEXES, ID_SDK_WRITES
    password = sdk_node.handle_for("idsdk", "password")
    out = [
        Scenario(
            "resolve-tcp", ["resolve-tcp", sdk_node.EXISTING], "generateChannel TCP (GET_SITE_INFO), lookupIdentifier"
        ),
        Scenario(
            "resolve-udp",
            ["resolve-udp", sdk_node.EXISTING],
            "generateChannel UDP, lookupIdentifier; the SDK binds the server's port itself, so it is "
            "told a port nothing holds and the namespace's NAT sends its datagrams to the relay",
            udp=True,
        ),
        Scenario(
            "login-password",
            ["login-password", f"{index['secret']}:{admin}", sdk_node.SECRET, password],
            f"login(username, password) (OC_LOGIN 2000, the node's handle_password_login on), then {writes}",
            password,
        ),
    ]
    for alg, rd_type in (("dsa", "1"), ("rsa", "3")):
        handle = sdk_node.handle_for("idsdk", alg)
        args = ["login-key", admin, str(index[alg]), f"keys/admin_{alg}_priv.pem", rd_type, handle]
        notes = f"login(identity, {index[alg]}, PEM key, null, rdType {rd_type}) (LOGIN_ID_SYSTEM 2001), then {writes}"
        out.append(Scenario(f"login-{alg}", args, notes, handle))
    return out


def idpointer_scenarios() -> list[Scenario]:
    admin, index, writes = sdk_node.ADMIN_HANDLE, sdk_node.INDEXES, ID_POINTER_WRITES
    secret = sdk_node.handle_for("idpointer", "secret")
    out = [
        Scenario(
            "resolve-tcp",
            ["resolve-tcp", sdk_node.EXISTING],
            "IDClientFactory.newInstance(address), resolveHandle; the SDK offers no UDP client "
            "(v3 DefaultIdClientFactory.createUdpClient returns null)",
        ),
        Scenario(
            "login-secret",
            ["login-secret", admin, str(index["secret"]), sdk_node.SECRET, secret],
            f"SecretKeyAuthenticationInfo(hash=true); {ID_POINTER_LOGIN}, then {writes}",
            secret,
        ),
    ]
    keys = {"dsa": ("handle-net", "admin_dsa_priv.bin"), "rsa": ("pkcs8", "admin_rsa_priv.pem")}
    keys["sm2"] = ("sm2-ec", "admin_sm2_priv.pem")
    for alg, (loader, name) in keys.items():
        handle = sdk_node.handle_for("idpointer", alg)
        args = ["login-key", admin, str(index[alg]), loader, f"keys/{name}", handle]
        notes = f"PublicKeyAuthenticationInfo, the key read by {loader}; {ID_POINTER_LOGIN}, then {writes}"
        out.append(Scenario(f"login-{alg}", args, notes, handle))
    return out


SDKS = {"idsdk": ("IdSdkDriver", idsdk_scenarios), "idpointer": ("IdPointerDriver", idpointer_scenarios)}


def drive(driver: str, classpath: str, port: int, scenario: Scenario, node: Node, cwd: Path) -> Run:
    """One driver run; after each step the REST API is read before the driver may go on."""
    command = ["java", "-cp", classpath, str(DRIVERS / f"{driver}.java"), "127.0.0.1", str(port), *scenario.args]
    proc = subprocess.Popen(
        command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    run, output = Run(), []
    for line in proc.stdout:
        if not line.startswith("STEP "):
            output.append(line)
            continue
        name, code, detail = [*line.rstrip("\n").split(" ", 3)[1:], ""][:3]
        step = Step(name, int(code), detail)
        if name in sdk_node.CHECKS and scenario.handle:
            shown = sdk_node.values(node, scenario.handle)
            step.rest = f"{'as expected' if sdk_node.CHECKS[name](shown) else 'WRONG'}: {shown}"
        run.steps.append(step)
        print(f"  {name}: {code} {detail[:160]}" + (f" | REST {step.rest}" if step.rest else ""))
        proc.stdin.write("\n")
        proc.stdin.flush()
    run.exit = proc.wait(60)
    run.output = "".join(output)[-3000:]
    return run


def nat(action: str, sdk_port: int, relay_port: int) -> None:
    """Send the ID-SDK's UDP datagrams for ``sdk_port`` to the relay (``-A``), or stop (``-D``)."""
    rule = ["OUTPUT", "-o", "lo", "-p", "udp", "-d", "127.0.0.1", "--dport", str(sdk_port)]
    rule += ["-j", "DNAT", "--to-destination", f"127.0.0.1:{relay_port}"]
    subprocess.run([*NAT_TABLE, action, *rule], check=True)


def capture(a: argparse.Namespace, scenario: Scenario, node: Node, relay: Relay, cwd: Path) -> dict[str, object]:
    """One scenario run through the relay, as a vector."""
    driver = SDKS[a.sdk][0]
    port = a.port + 2 if scenario.udp else a.port
    if scenario.udp:
        nat("-A", port, a.port)
    try:
        run = drive(driver, a.classpath, port, scenario, node, cwd)
    finally:
        if scenario.udp:
            nat("-D", port, a.port)
    time.sleep(0.3)
    return {
        "client": f"{a.label}: {driver} {' '.join(scenario.args)}",
        "exchanges": messages(relay.take()),
        "notes": scenario.notes,
        "steps": [s.to_json() for s in run.steps],
        "tool_exit": run.exit,
        "tool_output": run.output,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sdk", choices=sorted(SDKS), required=True)
    p.add_argument("--classpath", required=True, help="the SDK's classes and their dependencies")
    p.add_argument("--label", required=True, help="which SDK build this is, for the vectors")
    p.add_argument("--root", default="/tmp/sdk-vectors")
    p.add_argument("--port", type=int, default=2641, help="the relay's; the node takes the next one")
    p.add_argument("--only", help="capture only scenarios whose name contains this")
    a = p.parse_args()
    require_netns()
    out = HERE / DIRS[a.sdk]
    sdk_node.make_keys(out / "keys")
    root = Path(a.root) / f"{a.sdk}-{int(time.time())}"
    # The drivers run there, the keys at keys/: the ID-SDK's own log4j.properties writes
    # its log files under "d:/temp/" from where it runs.
    shutil.copytree(out / "keys", root / "client" / "keys")
    node = Node(root / "data", env={"IDNODE_LOG_LEVEL": "info"})
    node.args = ["--handle-listen", f"127.0.0.1:{a.port + 1}", "--workers", "2", "--handle-password-login"]
    node.start()
    relay = Relay(a.port, ("127.0.0.1", a.port + 1))
    try:
        sdk_node.prepare(node, out / "keys")
        for scenario in SDKS[a.sdk][1]():
            if not a.only or a.only in scenario.name:
                print(f"{scenario.name}:")
                vector = capture(a, scenario, node, relay, root / "client")
                (out / f"{scenario.name}.json").write_text(json.dumps(vector, indent=1, ensure_ascii=False) + "\n")
    finally:
        relay.close()
        node.stop()
    sys.stdout.write("".join(line for line in node.stderr_lines if "WARNING" in line or "ERROR" in line))


if __name__ == "__main__":
    main()
