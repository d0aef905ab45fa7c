"""Run CNRI's HANDLE.NET server and client tools as a reference and a baseline.

idnode's Handle front-end must interoperate with CNRI's client tools and be measured
against CNRI's server, so this module sets both up without touching the real Global
Handle Registry: it writes a server directory and client configuration whose root is
*our* server, so every prefix lookup ends on loopback. Works with 7.3.1 and 9.0.0.

Every CNRI process must run inside a private network namespace; `require_netns` refuses
to start one when the current namespace has any interface other than ``lo``.

Layout written by `write_dirs` (under ``--root``, default ``/tmp/cnri-run``)::

    svr/config.dct       server: 127.0.0.1, TCP+UDP on --port, HTTP on --http-port,
                         case_sensitive no, allow_recursion, server_admins 300/301/302,
                         server_admin_full_access, allow_list_hdls, log_accesses no
    svr/siteinfo.json    one primary site, one server, protocolVersion = the release's
                         own (2.5 / 2.10), ports = --public-port (a relay) or --port;
                         siteinfo.bin made from it
    svr/privkey.bin      server DSA key, unencrypted (CNRI format: int 1 + key bytes)
    client/.handle/      the tools' config. 7.3.1 reads $user.home/.handle/root_info
                         (binary "global values": int length, int count, one HS_SITE
                         value); 9.0.0 reads -Dnet.handle.configDir/bootstrap_handles
                         (JSON records 0.NA/0.NA with HS_SITE and 0.0/0.0, the trust
                         root). config.dct: auto_update_root_info = no
    server-client/.handle/  the same for the server's own resolver, at its real port
    keys/                secret key text; DSA/RSA private keys in CNRI format and PEM;
                         public keys in CNRI format (HS_PUBKEY data); see bench.cnri_keys

Identities, all on ``<prefix>/ADMIN``: 300 HS_SECKEY, 301 HS_PUBKEY (DSA), 302 HS_PUBKEY
(RSA). ``0.NA/0.NA`` and ``0.NA/<prefix>`` carry HS_SITE and HS_ADMIN and are homed.

Loading: `load_handles` writes records straight into the Berkeley DB JE store with the
server stopped (bench/CnriHelper.java on CNRI's own BDBJEHandleStorage): 100,000
handles in about 3 s, where hdl-genericbatch CREATE manages 500-700/s. Each handle
``<prefix>/<i>`` has 1 URL, 2 EMAIL, 3 INDUSTRY_CATEGORY.

Every JVM gets ``-Djdk.crypto.KeyAgreement.legacyKDF=true``: JDK 17 refuses to derive a
DES key from Diffie-Hellman, and CNRI's session setup (opcode 400) does exactly that.

CNRI tool classes (the hdl-* scripts are ``java -cp 'lib/*' <class>``):
hdl-qresolver/hdl-trace net.handle.apps.simple.HDLTrace, hdl-genericbatch
net.handle.apps.batch.GenericBatch, hdl-list net.handle.apps.simple.HDLList,
hdl-create net.handle.apps.simple.HDLCreate, hdl-home-na net.handle.apps.simple.HomeNA,
hdl-keygen net.handle.apps.tools.KeyGenerator, hdl-getsiteinfo
net.handle.apps.tools.GetSiteInfo, hdl-server net.handle.server.Main,
hdl-bdbje-util net.handle.server.bdbje.BDBJEHandleStorage.

Exact commands (as root, from the repo root; --dist or CNRI_HOME is an unpacked
distribution with lib/; global options go before the subcommand)::

    export CNRI_HOME=/work/cnri/7.3.1 PY=/work/main/.venv/bin/python
    unshare -n sh -c 'ip link set lo up;
      $PY -m bench.cnri --root /tmp/cnri setup;
      $PY -m bench.cnri --root /tmp/cnri load -n 100000;   # offline, server stopped
      $PY -m bench.cnri --root /tmp/cnri resolve 88.118.8/42 --serve;
      $PY -m bench.cnri --root /tmp/cnri batch FILE --serve;
      $PY -m bench.cnri --root /tmp/cnri batch-load -n 3000;
      $PY -m bench.cnri --root /tmp/cnri serve -- $PY -m bench.handle_load --target 127.0.0.1:2641 \
          --prefix 88.118.8 --count 100000 --seconds 10'   # serve prints the server's CPU

For 9.0.0 use CNRI_HOME=/work/cnri/9.0.0. ``serve`` keeps the server up while the command
after ``--`` runs in the same namespace; bench.handle_load is the load generator, and
bench.handle_vs_cnri measures CNRI's server against idnode in one run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.cnri_keys import SECRET_KEY, admin_record, lp, make_keys

HELPER = Path(__file__).with_name("CnriHelper.java")
DEFAULT_PREFIX = "88.118.8"


class CnriError(RuntimeError):
    """A CNRI process could not be set up, started or run as asked."""


@dataclass(frozen=True)
class Layout:
    root: Path
    dist: Path
    prefix: str
    host: str
    port: int
    http_port: int
    public_port: int = 0  # port written into the siteinfo; a capture relay listens there

    @property
    def advertised_port(self) -> int:
        return self.public_port or self.port

    @property
    def server_client_config(self) -> Path:
        """The server's own resolver config: root_info names the server's real port."""
        return self.root / "server-client" / ".handle"

    @property
    def server_dir(self) -> Path:
        return self.root / "svr"

    @property
    def client_home(self) -> Path:
        return self.root / "client"

    @property
    def client_config(self) -> Path:
        return self.client_home / ".handle"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def admin(self) -> str:
        return f"{self.prefix}/ADMIN"


def require_netns() -> None:
    """Refuse to go on unless this process's network namespace has only loopback."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    names = {line.split(":")[0].strip() for line in lines}
    if names - {"lo"}:
        raise CnriError(
            f"network interfaces {sorted(names - {'lo'})} are visible: run CNRI tools only "
            "inside `unshare -n sh -c 'ip link set lo up; ...'`"
        )


# --- directories ---


def _site_json(lay: Layout, server_pub: bytes, port: int, protocol: str) -> dict[str, object]:
    """One primary site, one server, speaking the distribution's own protocol version.

    hdl-setup-server writes Common.MAJOR/MINOR_VERSION (2.5 in 7.3.1, 2.10 in 9.0.0);
    clients send min(their version, the site's), so this decides the vectors' versions.
    """
    iface = [
        {"query": True, "admin": True, "protocol": "TCP", "port": port},
        {"query": True, "admin": False, "protocol": "UDP", "port": port},
        {"query": True, "admin": True, "protocol": "HTTP", "port": lay.http_port},
    ]
    server = {
        "serverId": 1,
        "address": lay.host,
        "publicKey": {"format": "base64", "value": base64.b64encode(server_pub).decode()},
        "interfaces": iface,
    }
    return {
        "version": 1,
        "protocolVersion": protocol,
        "serialNumber": 1,
        "primarySite": True,
        "multiPrimary": False,
        "attributes": [{"name": "desc", "value": "idnode test root"}],
        "servers": [server],
    }


def _server_config(lay: Layout) -> str:
    admins = "\n".join(f'    "{i}:{lay.admin}"' for i in (300, 301, 302))
    iface = (
        f'"bind_address" = "{lay.host}"\n  "bind_port" = "{lay.port}"\n'
        '  "num_threads" = "32"\n  "log_accesses" = "no"\n'
    )
    http = f'"bind_address" = "{lay.host}"\n  "bind_port" = "{lay.http_port}"\n'
    return f"""{{
"server_type" = "server"
"hdl_udp_config" = {{
  {iface}}}
"hdl_tcp_config" = {{
  {iface}  "backlog" = "128"
}}
"hdl_http_config" = {{
  {http}  "num_threads" = "4"
  "backlog" = "16"
  "log_accesses" = "no"
}}
"interfaces" = ( "hdl_udp" "hdl_tcp" "hdl_http" )
"server_config" = {{
  "server_admins" = (
{admins}
  )
  "replication_admins" = ( )
  "backup_admins" = ( )
  "server_admin_full_access" = "yes"
  "allow_recursion" = "yes"
  "allow_list_hdls" = "yes"
  "case_sensitive" = "no"
  "max_session_time" = "86400000"
  "max_auth_time" = "60000"
  "this_server_id" = "1"
  "enable_monitor_daemon" = "no"
  "storage_type" = "bdbje"
}}
}}
"""


def write_dirs(lay: Layout) -> None:
    """Write keys (if missing), the server dir and the client config dir."""
    make_keys(lay.keys)
    for d in (lay.server_dir, lay.client_config):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy(lay.keys / "server_dsa_priv.bin", lay.server_dir / "privkey.bin")
    shutil.copy(lay.keys / "server_dsa_pub.bin", lay.server_dir / "pubkey.bin")
    pub = (lay.keys / "server_dsa_pub.bin").read_bytes()
    protocol = _java_helper(lay, "version").strip()
    site = _site_json(lay, pub, lay.advertised_port, protocol)
    (lay.server_dir / "siteinfo.json").write_text(json.dumps(site, indent=2))
    (lay.server_dir / "config.dct").write_text(_server_config(lay))
    (lay.server_dir / "contactdata.dct").write_text('{ "org_name" = "idnode test" }\n')
    _java_helper(
        lay,
        "site",
        str(lay.server_dir / "siteinfo.json"),
        str(lay.server_dir / "siteinfo.bin"),
        str(lay.client_config / "root_info"),
    )
    write_client_config(lay, lay.client_config)
    _server_resolver_config(lay, _site_json(lay, pub, lay.port, protocol))


def _server_resolver_config(lay: Layout, site: dict[str, object]) -> None:
    """Root info for the server's own resolver that bypasses a capture relay.

    The server resolves through the same library as the tools (root info refresh,
    admin lookups); pointing it at its real port keeps its traffic out of the vectors.
    """
    cfg = lay.server_client_config
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "siteinfo.json").write_text(json.dumps(site))
    _java_helper(lay, "site", str(cfg / "siteinfo.json"), str(cfg / "siteinfo.bin"), str(cfg / "root_info"))
    (cfg / "config.dct").write_text('{\n"auto_update_root_info" = "no"\n}\n')
    (cfg / "bootstrap_handles").write_text(json.dumps(_bootstrap(site)))


def write_client_config(lay: Layout, config_dir: Path, tcp_only: bool = False) -> None:
    """A client config dir that names our server as root and never refreshes it.

    With tcp_only the resolver skips UDP (config.dct "no_udp_resolution"), which is the
    only switch CNRI's resolver offers to force TCP for queries.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    if config_dir != lay.client_config:
        shutil.copy(lay.client_config / "root_info", config_dir / "root_info")
    settings = '"auto_update_root_info" = "no"\n'
    if tcp_only:
        settings += '"no_udp_resolution" = "yes"\n'
    (config_dir / "config.dct").write_text("{\n" + settings + "}\n")
    site = json.loads((lay.server_dir / "siteinfo.json").read_text())
    (config_dir / "bootstrap_handles").write_text(json.dumps(_bootstrap(site)))


def _bootstrap(site: dict[str, object]) -> dict[str, object]:
    """9.x replaces root_info by bootstrap_handles (JSON handle records).

    0.NA/0.NA's HS_SITE names the root; 0.0/0.0 (the trust root, whose HS_PUBKEYs
    would sign the root's records) must exist, and without keys nothing is pinned.
    """
    site_value = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": site}}
    desc = {"index": 1, "type": "DESC", "data": {"format": "string", "value": "idnode test trust root"}}
    handles = {
        "0.NA/0.NA": {"handle": "0.NA/0.NA", "values": [site_value]},
        "0.0/0.0": {"handle": "0.0/0.0", "values": [desc]},
    }
    return {"lastUpdate": int(time.time() * 1000), "handles": handles}


# --- java processes ---


def classpath(dist: Path) -> str:
    jars = sorted(dist.glob("lib/*.jar")) + sorted(dist.glob("lib/*/*.jar"))
    if not jars:
        raise CnriError(f"no jars under {dist}/lib: --dist must be an unpacked distribution")
    return ":".join(str(j) for j in jars)


def java(lay: Layout, main: str, *args: str, heap: str = "", config_dir: Path | None = None) -> list[str]:
    """The command line an hdl-* script would run, with our client config dir.

    7.x reads $user.home/.handle, 9.x -Dnet.handle.configDir; both are set.
    """
    cfg = config_dir or lay.client_config
    opts = [
        f"-Duser.home={cfg.parent}",
        f"-Dnet.handle.configDir={cfg}",
        # JDK 17 refuses DH-derived DES keys, which CNRI's session setup (opcode 400) uses
        "-Djdk.crypto.KeyAgreement.legacyKDF=true",
    ]
    if heap:
        opts.append(f"-Xmx{heap}")
    return ["java", *opts, "-cp", classpath(lay.dist), main, *args]


def _java_helper(lay: Layout, *args: str, stdin: bytes | None = None) -> str:
    """Run CnriHelper; it loads CNRI's classes, so it too stays inside the namespace."""
    require_netns()
    cmd = ["java", "-cp", classpath(lay.dist), str(HELPER), *args]
    done = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise CnriError(f"{' '.join(args[:1])} failed: {done.stderr.decode()[-2000:]}")
    return done.stdout.decode()


def _hexval(index: int, type_: str, data: bytes | str, perms: str = "1110") -> str:
    hexdata = data if isinstance(data, str) else data.hex()
    return f"{index}:{type_}:{perms}:{hexdata}"


def bootstrap_records(lay: Layout) -> list[str]:
    """The prefix handle (homed, with HS_SITE) and the admin identity handle."""
    k = lay.keys
    na = f"0.NA/{lay.prefix}"
    admin_vals = [
        _hexval(100, "HS_ADMIN", admin_record(lay.admin, 300)),
        _hexval(300, "HS_SECKEY", SECRET_KEY.encode(), "1100"),
        _hexval(301, "HS_PUBKEY", (k / "admin_dsa_pub.bin").read_bytes()),
        _hexval(302, "HS_PUBKEY", (k / "admin_rsa_pub.bin").read_bytes()),
    ]
    na_vals = [_hexval(1, "HS_SITE", "@site"), _hexval(100, "HS_ADMIN", admin_record(lay.admin, 300))]
    root_vals = [_hexval(1, "HS_SITE", "@site"), _hexval(100, "HS_ADMIN", admin_record(lay.admin, 300))]
    return [
        "#home 0.NA/0.NA",
        f"#home {na}",
        "\t".join(["0.NA/0.NA", *root_vals]),
        "\t".join([na, *na_vals]),
        "\t".join([lay.admin, *admin_vals]),
    ]


def bench_record(prefix: str, i: int) -> str:
    vals = [
        _hexval(1, "URL", f"https://example.org/item/{i}".encode()),
        _hexval(2, "EMAIL", f"owner{i}@example.org".encode()),
        _hexval(3, "INDUSTRY_CATEGORY", f"C{i % 97:02d}-{i}".encode()),
    ]
    return "\t".join([f"{prefix}/{i}", *vals])


def load_handles(lay: Layout, n: int, start: int = 1) -> tuple[int, float]:
    """Write the bootstrap records and n bench handles offline; server must be stopped."""
    lines = bootstrap_records(lay) if start == 1 else []
    lines += (bench_record(lay.prefix, i) for i in range(start, start + n))
    t0 = time.perf_counter()
    _java_helper(
        lay,
        "load",
        str(lay.server_dir),
        str(lay.server_dir / "siteinfo.json"),
        stdin=("\n".join(lines) + "\n").encode(),
    )
    return n, time.perf_counter() - t0


class Server:
    """A running CNRI hdl-server (net.handle.server.Main) on the layout's server dir."""

    def __init__(self, lay: Layout, heap: str = "1g") -> None:
        require_netns()
        self.lay = lay
        log = (lay.root / "server.log").open("ab")
        cmd = java(
            lay,
            "net.handle.server.Main",
            str(lay.server_dir),
            heap=heap,
            config_dir=lay.server_client_config,
        )
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._wait_ready(60.0)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CnriError(f"hdl-server exited {self.proc.returncode}; see server.log")
            try:
                socket.create_connection((self.lay.host, self.lay.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        raise CnriError(f"hdl-server did not listen on {self.lay.port} in {timeout}s")

    def cpu_seconds(self) -> float:
        """utime+stime of the JVM from /proc/<pid>/stat."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_tool(
    lay: Layout, main: str, *args: str, timeout: float = 120, config_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    require_netns()
    cmd = java(lay, main, *args, config_dir=config_dir)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def qresolver(lay: Layout, handle: str, config_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    """hdl-qresolver: HDLTrace prints each message it sends and receives."""
    return run_tool(lay, "net.handle.apps.simple.HDLTrace", handle, config_dir=config_dir)


def genericbatch(lay: Layout, batch: Path, *opts: str) -> subprocess.CompletedProcess[str]:
    """hdl-genericbatch; its log (one ==>SUCCESS/FAILURE line per command) is on stdout."""
    return run_tool(lay, "net.handle.apps.batch.GenericBatch", str(batch), *opts)


def batch_tool(lay: Layout, name: str, text: str) -> Callable[[], subprocess.CompletedProcess[str]]:
    """hdl-genericbatch on the batch ``text``, written to ``<root>/batch/<name>.txt``, to run later."""
    path = lay.root / "batch" / f"{name}.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return lambda: genericbatch(lay, path)


def batch_auth_seckey(lay: Layout) -> str:
    return f"AUTHENTICATE SECKEY:300:{lay.admin}\n{SECRET_KEY}\n"


def batch_auth_pubkey(lay: Layout, alg: str = "dsa") -> str:
    index = 301 if alg == "dsa" else 302
    return f"AUTHENTICATE PUBKEY:{index}:{lay.admin}\n{lay.keys / f'admin_{alg}_priv.bin'}\n"


def write_create_batch(lay: Layout, path: Path, n: int, start: int = 1, auth: str = "") -> Path:
    """A genericbatch file creating n bench handles through the admin protocol.

    The slow but "honest" path (one session, then challenge/response per CREATE); use
    load_handles for bulk. Handles get the same 3 values plus an HS_ADMIN, which CREATE
    needs.
    """
    admin = f"100 HS_ADMIN 86400 1110 ADMIN 300:111111111111:{lay.admin}"
    with path.open("w") as f:
        f.write(auth or batch_auth_seckey(lay))
        for i in range(start, start + n):
            f.write(f"\nCREATE {lay.prefix}/B{i}\n{admin}\n")
            f.write(f"1 URL 86400 1110 UTF8 https://example.org/item/{i}\n")
            f.write(f"2 EMAIL 86400 1110 UTF8 owner{i}@example.org\n")
            f.write(f"3 INDUSTRY_CATEGORY 86400 1110 UTF8 C{i % 97:02d}-{i}\n")
    return path


# --- requests as CNRI clients write them ---


@dataclass(frozen=True)
class ClientProfile:
    """What a CNRI resolver puts around a resolution request, per release.

    version is what the client speaks to a site advertising the release's own protocol
    version; 9.x also fills envelope bytes 2-3 with a suggested version and sends the
    site-info serial it knows instead of 0xffff.
    """

    version: tuple[int, int]
    suggest: tuple[int, int]
    site_serial: int


CLIENT_PROFILES = {
    "7.3.1": ClientProfile((2, 5), (0, 0), 0xFFFF),
    "9.0.0": ClientProfile((2, 10), (2, 10), 1),
}


def resolve_request(handle: str, rid: int = 1, expires: int | None = None, profile: str = "7.3.1") -> bytes:
    """A resolution request byte for byte as hdl-qresolver sends it to the handle's site.

    opFlag REC|CA|PO (0x19000000), recursion count 0, expiration 12 h ahead, no index
    or type list, empty credential; only the request id and the expiration differ from
    tests/vectors/cnri-<release>/resolve-udp.json.
    """
    p = CLIENT_PROFILES[profile]
    body = lp(handle.encode()) + struct.pack(">II", 0, 0)
    exp = int(time.time()) + 43200 if expires is None else expires
    header = struct.pack(">IIIHBBII", 1, 0, 0x19000000, p.site_serial, 0, 0, exp, len(body))
    credential = struct.pack(">I", 0)  # empty signature section (RFC 3652 2.2.4)
    length = len(header) + len(body) + len(credential)
    envelope = struct.pack(">BBBBIIII", *p.version, *p.suggest, 0, rid, 0, length)
    return envelope + header + body + credential


# --- CLI ---


def _layout(a: argparse.Namespace) -> Layout:
    dist = a.dist or os.environ.get("CNRI_HOME")
    if not dist:
        raise CnriError("give --dist or set CNRI_HOME to an unpacked CNRI distribution")
    return Layout(Path(a.root), Path(dist), a.prefix, "127.0.0.1", a.port, a.http_port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cnri", description=__doc__.split("\n")[0])
    p.add_argument("--dist")
    p.add_argument("--root", default="/tmp/cnri-run")
    p.add_argument("--prefix", default=DEFAULT_PREFIX)
    p.add_argument("--port", type=int, default=2641)
    p.add_argument("--http-port", type=int, default=8000)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup")
    ld = sub.add_parser("load")
    ld.add_argument("-n", type=int, default=100_000)
    ld.add_argument("--start", type=int, default=1)
    sv = sub.add_parser("serve")
    sv.add_argument("command", nargs=argparse.REMAINDER)
    rs = sub.add_parser("resolve")
    rs.add_argument("handle")
    rs.add_argument("--serve", action="store_true")
    bt = sub.add_parser("batch")
    bt.add_argument("file")
    bt.add_argument("--serve", action="store_true")
    bl = sub.add_parser("batch-load", help="create handles B<i> through hdl-genericbatch, timed")
    bl.add_argument("-n", type=int, default=2000)
    bl.add_argument("--start", type=int, default=1)
    a = p.parse_args(argv)
    lay = _layout(a)
    if a.cmd == "setup":
        write_dirs(lay)
        print(f"wrote {lay.server_dir} and {lay.client_config}")
    elif a.cmd == "load":
        n, secs = load_handles(lay, a.n, a.start)
        print(f"loaded {n} handles in {secs:.1f} s ({n / secs:.0f}/s, JVM start included)")
    elif a.cmd == "serve":
        return _serve(lay, [c for c in a.command if c != "--"])
    elif a.cmd in ("resolve", "batch"):
        server = Server(lay) if a.serve else None
        try:
            done = qresolver(lay, a.handle) if a.cmd == "resolve" else genericbatch(lay, Path(a.file))
        finally:
            if server:
                server.stop()
        print(done.stdout + done.stderr)
        return done.returncode
    elif a.cmd == "batch-load":
        return _batch_load(lay, a.n, a.start)
    return 0


def _batch_load(lay: Layout, n: int, start: int) -> int:
    batch = write_create_batch(lay, lay.root / f"create-{start}-{n}.txt", n, start)
    server = Server(lay)
    try:
        t0 = time.perf_counter()
        done = genericbatch(lay, batch)
        secs = time.perf_counter() - t0
    finally:
        server.stop()
    ok = done.stdout.count("==>SUCCESS")
    print(f"genericbatch created {ok}/{n} handles in {secs:.1f} s ({ok / secs:.0f}/s, JVM start included)")
    return 0 if ok == n else 1


def _serve(lay: Layout, command: list[str]) -> int:
    server = Server(lay)
    try:
        cpu0 = server.cpu_seconds()
        rc = subprocess.call(command) if command else _wait_forever()
        print(f"server cpu seconds during command: {server.cpu_seconds() - cpu0:.2f}")
        return rc
    finally:
        server.stop()


def _wait_forever() -> int:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
