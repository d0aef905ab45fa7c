"""The node as a process: configuration, first start, restarts, kill -9, TLS."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.nodeproc import ADMIN, ADMIN_USER, Node, record, url_value

# Run against both store backends (PostgreSQL: a database of this module's own).
STORE_BACKENDS = ("sqlite", "postgresql")


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resolver.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "setting"),
    [
        (["--listen", "nonsense"], "listen"),
        (["--listen", "127.0.0.1:99999"], "listen"),
        (["--node-prefix", "88..1"], "node_prefix"),
        (["--max-body-bytes", "10"], "max_body_bytes"),
        (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], "tls_cert"),
        (["--tls-cert", "/nonexistent.pem"], "tls_key"),
    ],
)
def test_bad_flags_stop_start_up_naming_the_setting(tmp_path: Path, args: list[str], setting: str) -> None:
    result = run_serve("--data-dir", str(tmp_path), *args)
    assert result.returncode == 2
    assert setting in result.stderr
    assert "listening" not in result.stderr


def test_bad_config_file_and_env_name_the_setting(tmp_path: Path) -> None:
    conf = tmp_path / "idnode.toml"
    conf.write_text('listen = "127.0.0.1:0"\nnode_prefx = "88.1"\n')
    result = run_serve("--config", str(conf))
    assert result.returncode == 2 and "node_prefx" in result.stderr
    conf.write_text("listen = [1, 2\n")
    assert run_serve("--config", str(conf)).returncode == 2
    env = {"IDNODE_STORE_READERS": "many", "PATH": "/usr/bin:/bin"}
    result = run_serve("--data-dir", str(tmp_path), env=env)
    assert result.returncode == 2 and "store_readers" in result.stderr


def test_config_file_env_and_flags_layer(tmp_path: Path) -> None:
    conf = tmp_path / "idnode.toml"
    conf.write_text('node_prefix = "88.300"\ncase_sensitive = true\n')
    node = Node(tmp_path / "data", args=["--config", str(conf)], env={"IDNODE_NODE_PREFIX": "88.301"})
    node.args += ["--node-prefix", "88.302"]
    node.start()
    try:
        auth = ("300:0.NA/88.302", node.admin_secret or "")
        assert node.put("/api/handles/88.302/CaSe", record(url_value(1, "https://c.example/")), auth=auth).status == 201
        assert node.get("/api/handles/88.302/case").status == 404  # case_sensitive from the file
        assert node.get("/api/handles/88.302/CaSe").status == 200
        assert node.get("/api/handles/88.300/x").code == 301
    finally:
        node.stop()


def test_first_start_generates_and_shows_the_admin_secret_once(fresh_node: Node) -> None:
    fresh_node.admin_secret = None
    fresh_node.start()
    shown = [line.split()[1] for line in fresh_node.stderr_lines if line.startswith("idnode:     ")]
    assert len(shown) == 1 and len(shown[0]) >= 24
    secret = shown[0]
    reply = fresh_node.put(
        "/api/handles/88.118/first", record(url_value(1, "https://f.example/")), auth=(ADMIN_USER, secret)
    )
    assert reply.status == 201
    fresh_node.restart()
    assert not any(line.startswith("idnode:     ") for line in fresh_node.stderr_lines)
    assert fresh_node.delete("/api/handles/88.118/first", auth=(ADMIN_USER, secret)).status == 200
    if fresh_node.store is None:
        data = b"".join(p.read_bytes() for p in fresh_node.data_dir.iterdir())
    else:
        dump = subprocess.run(["pg_dump", fresh_node.store], check=True, capture_output=True)
        data = dump.stdout
        assert b"COPY public.handles_p" in data  # the dump holds the records
    assert secret.encode() not in data and secret.encode().hex().encode() not in data  # bytea dumps as hex


def test_records_survive_a_restart(fresh_node: Node) -> None:
    fresh_node.start()
    fresh_node.put("/api/handles/88.118/keep", record(url_value(1, "https://k.example/")), auth=ADMIN)
    assert fresh_node.stop() == 0  # SIGTERM is a clean exit
    fresh_node.start()
    assert fresh_node.get("/api/handles/88.118/keep").json["values"][0]["data"]["value"] == "https://k.example/"


def test_acknowledged_writes_survive_kill_9(fresh_node: Node) -> None:
    fresh_node.start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        for i in range(10_000):
            if stop.is_set():
                return
            handle = f"88.118.4/w{worker}-{i}"
            try:
                reply = fresh_node.put("/api/handles/" + handle, record(url_value(1, "https://d.example/")), auth=ADMIN)
            except OSError:
                return  # the server died mid-request: this write was never acknowledged
            if reply.status == 201:
                with lock:
                    acknowledged.append(handle)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    while True:
        with lock:
            if len(acknowledged) >= 300:
                break
        threading.Event().wait(0.01)
    fresh_node.kill()
    stop.set()
    for t in threads:
        t.join(30)
    with lock:
        acked = list(acknowledged)
    fresh_node.start()
    lost = [h for h in acked if fresh_node.get("/api/handles/" + h).status != 200]
    assert len(acked) >= 300
    assert lost == []


def test_credentials_over_plain_http_are_refused_off_loopback(fresh_node: Node) -> None:
    # Bound to every interface; the test still talks to it over 127.0.0.1 only.
    fresh_node.start(listen="0.0.0.0:0")
    reply = fresh_node.put("/api/handles/88.118/x", record(url_value(1, "https://x.example/")), auth=ADMIN)
    assert (reply.status, reply.code) == (403, 403)
    assert "https" in reply.json["message"].lower()
    assert fresh_node.get("/api/handles/88.118/x").status == 404


def test_allow_insecure_auth_lets_the_operator_opt_in(fresh_node: Node) -> None:
    fresh_node.args = ["--allow-insecure-auth"]
    fresh_node.start(listen="0.0.0.0:0")
    reply = fresh_node.put("/api/handles/88.118/x", record(url_value(1, "https://x.example/")), auth=ADMIN)
    assert reply.status == 201


def test_tls_listener_accepts_credentials(fresh_node: Node, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    fresh_node.args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    fresh_node.start(listen="0.0.0.0:0")
    assert fresh_node.tls
    reply = fresh_node.put("/api/handles/88.118/tls", record(url_value(1, "https://t.example/")), auth=ADMIN)
    assert reply.status == 201
    assert fresh_node.get("/api/handles/88.118/tls").status == 200
