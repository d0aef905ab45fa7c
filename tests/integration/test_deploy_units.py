"""The service units in deploy/: the systemd unit, the Dockerfile and the compose file.

systemd is not PID 1 here and no Docker engine runs, so neither can start what they describe.
What is checked instead: ``systemd-analyze verify`` and ``security --offline``; the node run with
the unit's seccomp, capability, umask and file-limit settings applied (tests/sandbox.py); the
Dockerfile parsed and its build context checked; ``docker compose config`` (or docker-compose);
and the node started with the exact settings the image and the compose file give it, with only
ports, directories, the database and Redis moved to this machine's.
"""

from __future__ import annotations

import fnmatch
import json
import platform
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from protocol.codes import ResponseCode
from resolver import config as config_mod
from resolver.server import FDS_BESIDE_CONNECTIONS, SHUTDOWN_GRACE_SECONDS
from tests.support import handleclient, sandbox
from tests.support.nodeproc import ADMIN, ADMIN_SECRET, Node, child_pids, record, url_value
from tests.support.pgproc import query, temp_database
from tests.support.redisproc import RedisServer

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "deploy" / "systemd"
UNIT, EXAMPLE_TOML, EXAMPLE_ENV = SYSTEMD / "idnode.service", SYSTEMD / "idnode.toml", SYSTEMD / "idnode.env.example"
DOCKER = REPO / "deploy" / "docker"
DOCKERFILE, COMPOSE = DOCKER / "Dockerfile", DOCKER / "compose.yaml"
HEALTHCHECK = DOCKER / "healthcheck.py"
# verify checks that ExecStart's binary exists: the tests point a copy of the unit at this one.
IDNODE = Path(sys.executable).with_name("idnode")

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent (Debian package: systemd)"
)
needs_seccomp_emulation = pytest.mark.skipif(
    platform.machine() != "x86_64" or not sandbox.UNISTD.exists() or shutil.which("systemd-analyze") is None,
    reason="tests/sandbox.py needs x86_64, systemd-analyze and the kernel headers (Debian: linux-libc-dev)",
)


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def _unit_copy(tmp_path: Path, *, edit: tuple[str, str] | None = None) -> Path:
    text = UNIT.read_text()
    changed = text.replace("ExecStart=/usr/local/bin/idnode ", f"ExecStart={IDNODE} ", 1)
    assert changed != text, "ExecStart no longer names /usr/local/bin/idnode: update this test"
    if edit is not None:
        changed = changed.replace(*edit)
    copy = tmp_path / "idnode.service"
    copy.write_text(changed)
    return copy


def _settings() -> dict[str, list[str]]:
    return sandbox.unit_settings(UNIT.read_text())


def _env_file(path: Path) -> dict[str, str]:
    """The assignments of an EnvironmentFile= or .env file (commented-out ones are left out)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")
    return {name.strip(): value.strip() for name, value in pairs}


def _tls(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=idnode.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _registers_and_resolves(node: Node, name: str) -> None:
    """What a user of any deployment does first: register, resolve over HTTP and the Handle protocol."""
    assert node.get("/healthz").status == 200
    assert node.put(f"/api/handles/88.118/{name}", record(url_value(1, "https://d.example/")), auth=ADMIN).status == 201
    assert node.get(f"/api/handles/88.118/{name}").json["values"][0]["data"]["value"] == "https://d.example/"
    ask = handleclient.resolution(f"88.118/{name}")
    assert handleclient.udp(node.handle_port, ask).response_code == ResponseCode.SUCCESS
    assert handleclient.tcp(node.handle_port, ask)[0].response_code == ResponseCode.SUCCESS


def _stops_cleanly(node: Node, timeout: float) -> None:
    assert node.stop(signal.SIGTERM, timeout=timeout) == 0
    log = "".join(node.stderr_lines)
    assert "Traceback" not in log and "not permitted" not in log, log


# -- systemd ---------------------------------------------------------------------------------------


@needs_systemd
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    done = _analyze("verify", str(_unit_copy(tmp_path)))
    # verify exits 0 even when it ignores a line; what it ignored is on stderr, naming the file.
    assert done.returncode == 0 and "idnode.service" not in done.stdout + done.stderr, done.stderr


@needs_systemd
def test_verify_would_report_a_misspelt_setting(tmp_path: Path) -> None:
    """The check above can fail: a directive systemd does not know is reported."""
    done = _analyze("verify", str(_unit_copy(tmp_path, edit=("LockPersonality=", "LockPersonalty="))))
    assert "Unknown key 'LockPersonalty'" in done.stderr


@needs_systemd
def test_unit_exposure_score_is_low(tmp_path: Path) -> None:
    # --threshold counts in tenths of the printed score: 20 is 2.0, "OK" on systemd's scale.
    done = _analyze("security", "--offline=true", "--threshold=20", "--no-pager", str(_unit_copy(tmp_path)))
    if "offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd >= 250 has)")
    found = re.search(r"Overall exposure level for idnode\.service: ([\d.]+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    assert done.returncode == 0 and float(found.group(1)) <= 2.0, found.group(0)


def test_unit_paths_and_limits_agree_with_the_node() -> None:
    s = _settings()
    assert s["Type"] == ["simple"] and s["User"] == ["idnode"] and s["CapabilityBoundingSet"] == [""]
    command = s["ExecStart"][-1].split()
    assert command[1:3] == ["serve", "--config"]
    config_dir = Path("/etc") / s["ConfigurationDirectory"][-1]
    assert Path(command[3]) == config_dir / EXAMPLE_TOML.name
    assert s["EnvironmentFile"] == [f"-{config_dir / 'idnode.env'}"]
    data_dir = Path(tomllib.loads(EXAMPLE_TOML.read_text())["data_dir"])
    assert data_dir == Path("/var/lib") / s["StateDirectory"][-1]
    assert [Path(p) for p in s["ReadWritePaths"]] == [data_dir] and Path(s["WorkingDirectory"][-1]) == data_dir
    assert float(s["TimeoutStopSec"][-1].rstrip("s")) > SHUTDOWN_GRACE_SECONDS
    assert int(s["LimitNOFILE"][-1]) >= config_mod.Config().max_connections + FDS_BESIDE_CONNECTIONS


@needs_seccomp_emulation
def test_sandbox_enforces_the_units_restrictions() -> None:
    """The emulation is not a no-op: what the unit forbids fails inside it."""
    env = {"SANDBOX_UNIT": str(UNIT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.sandbox", "--", sys.executable, "-m", "tests.support.sandbox_probe"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "wx_mmap": 1, "mprotect_exec": 1, "netlink": 97, "ptrace": 1, "cap_eff": "0000000000000000", "umask": 0o077,
    }  # fmt: skip


def _unit_node(tmp_path: Path) -> Node:
    """``idnode serve --config`` with the example file, flags moving the listeners, data and TLS files here."""
    cert, key = _tls(tmp_path)
    env = {k: v for k, v in _env_file(EXAMPLE_ENV).items() if k != "IDNODE_ADMIN_SECRET"}
    env["SANDBOX_UNIT"] = str(UNIT)
    args = ["--config", str(EXAMPLE_TOML), "--tls-cert", str(cert), "--tls-key", str(key)]
    return Node(tmp_path / "data", args=args, env=env, module="tests.support.sandbox")


@needs_seccomp_emulation
def test_node_serves_under_the_units_restrictions(tmp_path: Path) -> None:
    node = _unit_node(tmp_path).start()
    try:
        assert node.tls
        _registers_and_resolves(node, "Unit-1")
        assert node.proc is not None
        for pid in {node.proc.pid, *child_pids(node.proc.pid)}:
            status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            assert status["Seccomp"].strip() == "2" and int(status["CapEff"], 16) == 0
        assert node.get("/metrics").status == 200
    finally:
        stop_timeout = float(_settings()["TimeoutStopSec"][-1].rstrip("s"))
        _stops_cleanly(node, stop_timeout)
    modes = {p.name: p.stat().st_mode & 0o777 for p in node.data_dir.iterdir()}
    assert modes and all(mode == 0o600 for mode in modes.values()), modes


def test_the_example_secrets_file_unchanged_stops_start_up(tmp_path: Path) -> None:
    """Copied without editing, idnode.env's placeholder admin secret is refused, not used, and for good."""
    env = {"PATH": "/usr/bin:/bin", **_env_file(EXAMPLE_ENV)}
    cert, key = _tls(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "resolver.cli", "serve", "--config", str(EXAMPLE_TOML), "--data-dir",
         str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--no-handle", "--tls-cert", str(cert),
         "--tls-key", str(key)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2 and "IDNODE_ADMIN_SECRET" in done.stderr, done.stderr
    assert _settings()["RestartPreventExitStatus"] == ["2"]  # so systemd does not retry it in a loop


# -- Docker ----------------------------------------------------------------------------------------

KNOWN_INSTRUCTIONS = {"FROM", "RUN", "COPY", "ENV", "USER", "WORKDIR", "VOLUME", "EXPOSE", "HEALTHCHECK",
                      "STOPSIGNAL", "ENTRYPOINT", "CMD", "ARG", "LABEL"}  # fmt: skip


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last:]


def image_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in final_stage(instructions):
        if word == "ENV":
            for pair in rest.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _args(instructions: list[tuple[str, str]], word: str) -> list[str]:
    return [rest for w, rest in final_stage(instructions) if w == word]


def test_dockerfile_is_sound() -> None:
    steps = dockerfile(DOCKERFILE)
    assert {word for word, _ in steps} <= KNOWN_INSTRUCTIONS
    for word, rest in steps:
        if word == "FROM":
            image = rest.split()[0]
            assert ":" in image and not image.endswith(":latest"), image
    user = _args(steps, "USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    assert _args(steps, "HEALTHCHECK") and "CMD" in _args(steps, "HEALTHCHECK")[-1]
    assert set(" ".join(_args(steps, "EXPOSE")).split()) == {"8000/tcp", "2641/tcp", "2641/udp"}
    assert _args(steps, "VOLUME") == [image_env(steps)["IDNODE_DATA_DIR"]]
    assert json.loads(_args(steps, "ENTRYPOINT")[-1]) == ["idnode", "serve"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["idnode"] == "resolver.cli:main"  # what the tests run as idnode


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule, near enough: the last pattern matching the path or a parent decides."""
    parts = path.split("/")
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch("/".join(parts[:n]), bare) for n in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_dockerfile_copies_only_what_the_build_context_sends() -> None:
    lines = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    sources = []
    for word, rest in dockerfile(DOCKERFILE):
        if word == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    assert sources
    for source in sources:
        found = REPO / source
        assert found.exists(), source
        files = [found] if found.is_file() else [p for p in found.rglob("*.py") if "__pycache__" not in p.parts]
        assert files and not any(_ignored(str(f.relative_to(REPO)), patterns) for f in files), source


def _healthcheck(env: dict[str, str]) -> int:
    done = subprocess.run([sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, timeout=30)
    return done.returncode


def test_node_starts_with_the_images_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in image_env(dockerfile(DOCKERFILE)).items() if k != "PATH"}
    image = config_mod.load(None, env, {})
    assert (image.listen, image.handle_listen, image.data_dir) == (
        "0.0.0.0:8000",
        "0.0.0.0:2641",
        Path("/var/lib/idnode"),
    )
    # The image's listeners, on ports of their own; its volume, here.
    node = Node(tmp_path / "data", args=["--handle-listen", "0.0.0.0:0"], env=env).start(listen="0.0.0.0:0")
    probe = {"PATH": "/usr/bin:/bin", **env, "IDNODE_LISTEN": f"0.0.0.0:{node.port}"}
    try:
        assert _healthcheck(probe) == 0
        assert node.get("/api/handles/0.NA/88.118").status == 200
        # No TLS: credentials are refused, as the Dockerfile says.
        refused = node.put("/api/handles/88.118/Img-1", record(url_value(1, "https://d.example/")), auth=ADMIN)
        assert refused.status in (401, 403) and "HTTPS" in refused.json["message"]
    finally:
        _stops_cleanly(node, timeout=30)
    assert _healthcheck(probe) == 1


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose")
    return [found] if found else None


def test_compose_file_passes_docker_compose_config(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed (Debian: docker-compose)")
    no_dotenv = tmp_path / "empty.env"  # an operator's deploy/docker/.env must not decide this test
    no_dotenv.write_text("")
    config = [*command, "--env-file", str(no_dotenv), "-f", str(COMPOSE), "config", "-q"]
    base = {"PATH": "/usr/bin:/bin:/usr/local/bin"}
    good = subprocess.run(
        config, cwd=DOCKER, capture_output=True, text=True, env={**base, "POSTGRES_PASSWORD": "t"}, timeout=60
    )
    assert good.returncode == 0, good.stderr
    missing = subprocess.run(config, cwd=DOCKER, capture_output=True, text=True, env=base, timeout=60)
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_services_are_wired_together() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"idnode", "postgres", "redis", "prometheus"}
    for name, service in services.items():
        assert "healthcheck" in service, name
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), image
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in compose["volumes"], (name, source)
    node = services["idnode"]
    assert {k: v["condition"] for k, v in node["depends_on"].items()} == {
        "postgres": "service_healthy", "redis": "service_healthy",
    }  # fmt: skip
    env = node["environment"]
    store = re.fullmatch(r"postgresql://(\w+)@(\w+):5432/(\w+)", env["IDNODE_STORE"])
    assert store is not None and store.group(2) == "postgres"
    pg_env = services["postgres"]["environment"]
    assert (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"]) == (store.group(1), store.group(3))
    assert env["IDNODE_REDIS"].startswith("redis://redis:")
    assert {env["IDNODE_TLS_CERT"], env["IDNODE_TLS_KEY"]} == {f"/run/secrets/{s}" for s in node["secrets"]}
    image = image_env(dockerfile(DOCKERFILE))
    assert f"idnode-data:{image['IDNODE_DATA_DIR']}" in node["volumes"]
    published = {p.split(":", 1)[1] for p in node["ports"]}
    assert published == set(" ".join(_args(dockerfile(DOCKERFILE), "EXPOSE")).split())
    mounts = {v.split(":")[0] for v in services["prometheus"]["volumes"]}
    assert {"./prometheus.yml", "../prometheus/idnode.rules.yml"} <= mounts
    # The node serves HTTPS in compose: Prometheus scrapes it so, checked against the node's certificate.
    scrape = yaml.safe_load((DOCKER / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["scheme"] == "https" and scrape["static_configs"][0]["targets"] == ["idnode:8000"]
    assert scrape["tls_config"]["ca_file"] == env["IDNODE_TLS_CERT"]
    assert "tls_cert" in services["prometheus"]["secrets"]


def test_prometheus_files_the_compose_file_mounts_exist() -> None:
    mounts = [v.split(":")[0] for v in _compose()["services"]["prometheus"]["volumes"] if v.startswith(".")]
    missing = [m for m in mounts if not (DOCKER / m).is_file()]
    if missing and not (REPO / "deploy" / "prometheus").exists():
        pytest.skip("deploy/prometheus/ is written by the monitoring work and is not in this tree yet")
    assert not missing, missing


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


def test_node_starts_with_the_compose_settings(tmp_path: Path, redis_server: RedisServer) -> None:
    """The image's environment with the compose file's on top, as the container gets them; PostgreSQL,
    Redis and the TLS secrets are this machine's."""
    interpolated = {"POSTGRES_PASSWORD": "unused-with-trust", "IDNODE_ADMIN_SECRET": ADMIN_SECRET}
    compose_env = {
        k: re.sub(r"\$\{(\w+)[^}]*\}", lambda m: interpolated[m.group(1)], str(v))
        for k, v in _compose()["services"]["idnode"]["environment"].items()
    }
    env = {k: v for k, v in image_env(dockerfile(DOCKERFILE)).items() if k != "PATH"} | compose_env
    cert, key = _tls(tmp_path)
    with temp_database() as database:
        env |= {"IDNODE_STORE": database, "IDNODE_REDIS": redis_server.url}
        env |= {"IDNODE_TLS_CERT": str(cert), "IDNODE_TLS_KEY": str(key)}
        node = Node(tmp_path / "data", args=["--handle-listen", "0.0.0.0:0"], env=env).start(listen="0.0.0.0:0")
        try:
            assert node.tls
            assert _healthcheck({"PATH": "/usr/bin:/bin", **env, "IDNODE_LISTEN": f"0.0.0.0:{node.port}"}) == 0
            _registers_and_resolves(node, "Compose-1")
            assert query(database, "SELECT count(*) FROM handles WHERE lower(key) = '88.118/compose-1'") == "1"
            assert redis.Redis(port=redis_server.port).keys("idnode:*COMPOSE-1")  # the shared cache holds it
        finally:
            _stops_cleanly(node, timeout=30)
