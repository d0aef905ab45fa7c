"""The admin commands as operators run them: ``python -m resolver.cli`` subprocesses against a
real node, with credentials from the environment or a file, and ``idnode check`` against real
and unreachable stores, Redis and upstreams.

Every run goes through ``idnode()``, which fails the test if a known secret shows in the
command line or in any output: the only secrets printed are those a command generated."""

from __future__ import annotations

import http.server
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodeproc import ADMIN, ADMIN_SECRET, ADMIN_USER, Auth, Node, record, url_value
from tests.support.redisproc import free_port

REPO = Path(__file__).resolve().parents[2]
ENT_SECRET = "enterprise-secret-from-a-file-01"
KNOWN_SECRETS = {ADMIN_SECRET, ENT_SECRET}
_prefixes = itertools.count(300)


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def idnode(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Run:
    """One CLI run with only ``env``'s IDNODE_* variables (none of the test runner's)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    cmd = [sys.executable, "-m", "resolver.cli", *args]
    done = subprocess.run(
        cmd, env={**base, **(env or {})}, input=stdin, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    for secret in KNOWN_SECRETS:
        assert secret not in " ".join(cmd), "a secret on the command line"
        assert secret not in done.stdout + done.stderr, f"a secret in the output of {args}"
    return Run(done.returncode, done.stdout, done.stderr)


def admin_env(node: Node, secret: str = ADMIN_SECRET) -> dict[str, str]:
    return {
        "IDNODE_NODE_URL": f"http://127.0.0.1:{node.port}",
        "IDNODE_CLIENT_IDENTITY": ADMIN_USER,
        "IDNODE_CLIENT_SECRET": secret,
    }


def credentials_file(path: Path, identity: str, secret: str, mode: int = 0o600) -> Path:
    path.write_text(f'identity = "{identity}"\nsecret = "{secret}"\n')
    path.chmod(mode)
    return path


def new_prefix() -> str:
    return f"88.118.{next(_prefixes)}"


def shown_secret(out: str) -> str:
    found: list[str] = re.findall(r"^secret: (\S+)$", out, re.M)
    assert len(found) == 1, out
    return found[0]


def can_list(node: Node, prefix: str, auth: Auth) -> int:
    return node.get(f"/api/handles?prefix={prefix}&pageSize=0", auth=auth).status


@pytest.fixture
def enterprise(node: Node, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A prefix made by ``prefix create`` with ENT_SECRET, and a credentials file for its admin."""
    prefix = new_prefix()
    secret_file = tmp_path / "secret"
    secret_file.write_text(ENT_SECRET + "\n")
    made = idnode("prefix", "create", prefix, "--secret-file", str(secret_file), env=admin_env(node))
    assert made.code == 0, made.err
    yield prefix, credentials_file(tmp_path / "ent.toml", f"300:0.NA/{prefix}", ENT_SECRET)


# Prefixes --------------------------------------------------------------------------


def test_prefix_create_shows_a_generated_secret_once(node: Node) -> None:
    prefix = new_prefix()
    made = idnode("prefix", "create", prefix, env=admin_env(node))
    assert made.code == 0, made.err
    secret = shown_secret(made.out)
    assert f"300:0.NA/{prefix}" in made.out
    assert can_list(node, prefix, (f"300:0.NA/{prefix}", secret)) == 200
    shown = idnode("prefix", "show", prefix, env=admin_env(node))
    assert shown.code == 0 and secret not in shown.out
    again = idnode("prefix", "create", prefix, env=admin_env(node))
    assert again.code == 1 and "responseCode 101" in again.err
    assert can_list(node, prefix, (f"300:0.NA/{prefix}", secret)) == 200  # not overwritten


def test_prefix_create_json_and_chosen_secrets(node: Node, tmp_path: Path) -> None:
    prefix = new_prefix()
    made = idnode("prefix", "create", prefix, "--json", env=admin_env(node))
    assert made.code == 0
    assert made.json["identity"] == f"300:0.NA/{prefix}" and made.json["handle"] == f"0.NA/{prefix}"
    assert can_list(node, prefix, (made.json["identity"], made.json["secret"])) == 200
    chosen = "chosen-on-standard-input-123"
    from_stdin = new_prefix()
    piped = idnode("prefix", "create", from_stdin, "--secret-file", "-", "--json", env=admin_env(node), stdin=chosen)
    assert piped.code == 0 and "secret" not in piped.json and chosen not in piped.out + piped.err
    assert can_list(node, from_stdin, (f"300:0.NA/{from_stdin}", chosen)) == 200
    short = tmp_path / "short"
    short.write_text("too-short\n")
    refused = idnode("prefix", "create", new_prefix(), "--secret-file", str(short), env=admin_env(node))
    assert refused.code == 2 and "at least 16 characters" in refused.err


def test_prefix_list_and_show(node: Node, enterprise: tuple[str, Path]) -> None:
    prefix, _ = enterprise
    for n in range(2):
        assert node.put(f"/api/handles/{prefix}/item{n}", record(url_value(1, "https://x/")), auth=ADMIN).status == 201
    template = {"version": "1.0", "fields": [{"index": 2000, "type": "productName", "dataType": "string"}]}
    assert node.put(f"/api/templates/{prefix}/motor", template, auth=ADMIN).status == 201
    listed = idnode("prefix", "list", env=admin_env(node))
    assert listed.code == 0 and prefix in listed.out.splitlines()
    assert prefix in idnode("prefix", "list", "--json", env=admin_env(node)).json["prefixes"]
    shown = idnode("prefix", "show", prefix, "--json", env=admin_env(node)).json
    assert shown["identifiers"] == 2
    assert [t["name"] for t in shown["templates"]] == ["motor"]
    assert {(v["index"], v["type"]) for v in shown["values"]} == {(100, "HS_ADMIN"), (300, "HS_SECKEY")}
    human = idnode("prefix", "show", prefix, env=admin_env(node)).out
    assert "identifiers: 2" in human and "templates: motor@1.0" in human


def test_prefix_delete_refuses_a_prefix_in_use_unless_forced(node: Node, enterprise: tuple[str, Path]) -> None:
    prefix, _ = enterprise
    assert node.put(f"/api/handles/{prefix}/kept", record(url_value(1, "https://x/")), auth=ADMIN).status == 201
    refused = idnode("prefix", "delete", prefix, env=admin_env(node))
    assert refused.code == 1 and "responseCode 202" in refused.err
    assert node.get(f"/api/handles/0.NA/{prefix}").status == 200
    forced = idnode("prefix", "delete", prefix, "--force", "--json", env=admin_env(node))
    assert forced.code == 0 and forced.json["responseCode"] == 1
    assert node.get(f"/api/handles/0.NA/{prefix}").status == 404
    assert prefix not in idnode("prefix", "list", "--json", env=admin_env(node)).json["prefixes"]


# Identities ------------------------------------------------------------------------


def test_set_secret_replaces_the_secret_and_keeps_its_permissions(
    node: Node, enterprise: tuple[str, Path], tmp_path: Path
) -> None:
    prefix, _ = enterprise
    identity = f"300:0.NA/{prefix}"

    def seckey() -> dict[str, Any]:
        value: dict[str, Any] = node.get(f"/api/handles/0.NA/{prefix}?index=300", auth=ADMIN).json["values"][0]
        return value

    before = seckey()
    changed = idnode("identity", "set-secret", identity, env=admin_env(node))
    assert changed.code == 0, changed.err
    secret = shown_secret(changed.out)
    assert can_list(node, prefix, (identity, ENT_SECRET)) == 403
    assert can_list(node, prefix, (identity, secret)) == 200
    after = seckey()
    assert (after["permissions"], after["ttl"], after["type"]) == (before["permissions"], before["ttl"], "HS_SECKEY")
    # The enterprise admin rotates its own secret with the one it holds, choosing the new one.
    own = credentials_file(tmp_path / "own.toml", identity, secret)
    rotated = idnode("identity", "set-secret", identity, "--credentials", str(own), "--secret-file", "-",
                     "--json", env={"IDNODE_NODE_URL": f"http://127.0.0.1:{node.port}"}, stdin=ENT_SECRET)  # fmt: skip
    assert rotated.code == 0 and "secret" not in rotated.json
    assert can_list(node, prefix, (identity, ENT_SECRET)) == 200
    assert can_list(node, prefix, (identity, secret)) == 403
    # A second identity on the handle, whose value only the node admin may change, cached for 10 minutes.
    other = {"index": 301, "type": "HS_SECKEY", "data": "second-identity-secret", "permissions": "1000", "ttl": 600}
    assert node.put(f"/api/handles/0.NA/{prefix}?index=301", other, auth=ADMIN).status == 200
    second = idnode("identity", "set-secret", f"301:0.NA/{prefix}", "--json", env=admin_env(node)).json
    listing = f"/api/handles?prefix={prefix}&pageSize=0"
    assert node.get(listing, auth=(f"301:0.NA/{prefix}", "second-identity-secret")).code == 403  # authentication failed
    assert node.get(listing, auth=(f"301:0.NA/{prefix}", second["secret"])).code == 401  # authenticated, no grant
    kept = node.get(f"/api/handles/0.NA/{prefix}?index=301", auth=ADMIN).json["values"][0]
    assert (kept["permissions"], kept["ttl"]) == ("1000", 600)
    not_a_secret = idnode("identity", "set-secret", f"100:0.NA/{prefix}", env=admin_env(node))
    assert not_a_secret.code == 2 and "HS_ADMIN, not HS_SECKEY" in not_a_secret.err
    missing = idnode("identity", "set-secret", f"302:0.NA/{prefix}", env=admin_env(node))
    assert missing.code == 2 and "no value at index 302" in missing.err
    assert idnode("identity", "set-secret", "0.NA/88.118", env=admin_env(node)).code == 2


# Handles ---------------------------------------------------------------------------


def test_handle_put_get_delete(node: Node, enterprise: tuple[str, Path], tmp_path: Path) -> None:
    prefix, creds = enterprise
    handle = f"{prefix}/JX-1"
    body = tmp_path / "record.json"
    body.write_text(json.dumps(record(url_value(1, "https://one/"), {"index": 2, "type": "EMAIL", "data": "a@b.c"})))
    env = {"IDNODE_NODE_URL": f"http://127.0.0.1:{node.port}"}
    ent = ("--credentials", str(creds))
    created = idnode("handle", "put", handle, str(body), *ent, env=env)
    assert (created.code, created.out.strip()) == (0, f"created {handle}")
    assert idnode("handle", "put", handle, str(body), *ent, env=env).out.strip() == f"replaced {handle}"
    one = json.dumps({"index": 3, "type": "EMAIL", "data": "ops@b.c"})
    assert idnode("handle", "put", handle, "-", "--index", "3", *ent, env=env, stdin=one).code == 0
    got = idnode("handle", "get", handle, env=env)
    assert got.code == 0
    assert got.out.splitlines() == [handle, "  1 URL https://one/", "  2 EMAIL a@b.c", "  3 EMAIL ops@b.c"]
    assert idnode("handle", "get", handle, "--json", env=env).json == node.get(f"/api/handles/{handle}").json
    assert idnode("handle", "delete", handle, "--index", "3", *ent, env=env).code == 0
    assert [v["index"] for v in node.get(f"/api/handles/{handle}").json["values"]] == [1, 2]
    refused = idnode("handle", "put", handle, str(body), "--no-overwrite", *ent, env=env)
    assert refused.code == 1 and "responseCode 101" in refused.err
    assert idnode("handle", "delete", handle, *ent, env=env).code == 0
    gone = idnode("handle", "get", handle, "--json", env=env)
    assert gone.code == 1 and "responseCode 100" in gone.err
    assert gone.json["exitCode"] == 1 and gone.json["node"]["responseCode"] == 100
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert idnode("handle", "put", handle, str(bad), *ent, env=env).code == 2


# Statistics and audit --------------------------------------------------------------


def test_stats_and_audit(node: Node, enterprise: tuple[str, Path]) -> None:
    prefix, creds = enterprise
    for n in range(3):
        assert node.put(f"/api/handles/{prefix}/s{n}", record(url_value(1, "https://x/")), auth=ADMIN).status == 201
    mine = idnode("stats", "--prefix", prefix, "--json", "--credentials", str(creds), env=admin_env(node))
    assert mine.code == 0 and [(s["prefix"], s["handles"]) for s in mine.json["prefixes"]] == [(prefix, 3)]
    everything = idnode("stats", env=admin_env(node))
    assert f"{prefix}: 3 identifiers" in everything.out
    audit = idnode("audit", "--prefix", prefix, "--json", env=admin_env(node)).json["entries"]
    made = [("create", f"0.NA/{prefix}")] + [("create", f"{prefix}/s{n}") for n in range(3)]
    assert [(e["operation"], e["handle"]) for e in audit] == made
    limited = idnode("audit", "--prefix", prefix, "--limit", "2", env=admin_env(node))
    assert len(limited.out.splitlines()) == 2 and f"create {prefix}/s0 1" in limited.out
    later = idnode("audit", "--prefix", prefix, "--since", "2099-01-01T00:00:00Z", env=admin_env(node))
    assert later.out.strip() == "no entries"


# Failures --------------------------------------------------------------------------


def test_wrong_secret_is_an_authentication_failure(node: Node) -> None:
    wrong = "not-the-admin-secret-at-all"
    failed = idnode("stats", env=admin_env(node, wrong))
    assert failed.code == 4 and "authentication failed" in failed.err and wrong not in failed.out + failed.err
    as_json = idnode("prefix", "create", new_prefix(), "--json", env=admin_env(node, wrong))
    assert as_json.code == 4 and as_json.json["node"]["responseCode"] == 403 and "secret" not in as_json.json


def test_unreachable_node(node: Node) -> None:
    env = admin_env(node)
    down = idnode("stats", "--node", f"http://127.0.0.1:{free_port()}", env=env)
    assert down.code == 3 and "cannot reach the node" in down.err and "Connection refused" in down.err
    env["IDNODE_NODE_URL"] = f"http://127.0.0.1:{free_port()}"
    assert idnode("handle", "get", "88.118/x", "--json", env=env).json["exitCode"] == 3


def test_an_enterprise_cannot_act_on_another_prefix(node: Node, enterprise: tuple[str, Path]) -> None:
    prefix, creds = enterprise
    other = new_prefix()
    assert idnode("prefix", "create", other, env=admin_env(node)).code == 0
    env = {"IDNODE_NODE_URL": f"http://127.0.0.1:{node.port}"}
    ent = ("--credentials", str(creds))
    put = idnode("handle", "put", f"{other}/x", "-", *ent, env=env, stdin=json.dumps(url_value(1, "https://x/")))
    assert put.code == 1 and "responseCode 401" in put.err and f"300:0.NA/{prefix}" in put.err
    assert node.get(f"/api/handles/{other}/x").status == 404
    assert idnode("stats", "--prefix", other, *ent, env=env).code == 1
    assert idnode("prefix", "delete", other, *ent, env=env).code == 1
    assert node.get(f"/api/handles/0.NA/{other}").status == 200


def test_credentials_rules(node: Node, tmp_path: Path) -> None:
    url = {"IDNODE_NODE_URL": f"http://127.0.0.1:{node.port}"}
    shared = credentials_file(tmp_path / "shared.toml", ADMIN_USER, ADMIN_SECRET, mode=0o644)
    refused = idnode("stats", "--credentials", str(shared), env=url)
    assert refused.code == 2 and "readable by other users" in refused.err and "chmod 600" in refused.err
    (tmp_path / "bad.toml").write_text("identity = 300\n")
    (tmp_path / "bad.toml").chmod(0o600)
    assert idnode("stats", "--credentials", str(tmp_path / "bad.toml"), env=url).code == 2
    assert idnode("stats", "--credentials", str(tmp_path / "absent.toml"), env=url).code == 2
    anonymous = idnode("stats", env=url)
    assert anonymous.code == 2 and "needs credentials" in anonymous.err
    half = idnode("stats", env={**url, "IDNODE_CLIENT_IDENTITY": ADMIN_USER})
    assert half.code == 2 and "IDNODE_CLIENT_SECRET" in half.err
    public = idnode("handle", "get", "0.NA/88.118", "--json", env=url)  # anonymous: public values only
    assert public.code == 0 and "HS_SECKEY" not in {v["type"] for v in public.json["values"]}
    flag = idnode("prefix", "create", new_prefix(), "--secret", "on-the-command-line", env=admin_env(node))
    assert flag.code == 2 and "unrecognized arguments" in flag.err


def test_https_node_with_a_private_ca(fresh_node: Node, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    fresh_node.args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    fresh_node.start()
    env = {**admin_env(fresh_node), "IDNODE_NODE_URL": f"https://127.0.0.1:{fresh_node.port}"}
    untrusted = idnode("stats", env=env)
    assert untrusted.code == 3 and "CERTIFICATE_VERIFY_FAILED" in untrusted.err
    trusted = idnode("prefix", "create", "88.118.9", "--json", env={**env, "SSL_CERT_FILE": str(cert)})
    assert trusted.code == 0 and trusted.json["identity"] == "300:0.NA/88.118.9"
    conf = config_file(tmp_path / "node.toml", data_dir=str(tmp_path / "d"), tls_cert=str(cert), tls_key=str(key))
    assert lines_of(check(conf)) == {"config": "ok", "tls": "ok", "store": "ok"}
    key.write_text(cert.read_text())  # not a key
    broken = check(conf)
    assert broken.code == 2 and lines_of(broken) == {"config": "ok", "tls": "PROBLEM", "store": "ok"}


# idnode check ----------------------------------------------------------------------


def config_file(path: Path, **settings: Any) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def check(path: Path, *extra: str, env: dict[str, str] | None = None) -> Run:
    return idnode("check", "--config", str(path), *extra, env=env)


def lines_of(run: Run) -> dict[str, str]:
    return {line.split()[1].rstrip(":"): line.split()[0] for line in run.out.splitlines()}


def test_check_a_good_configuration(node: Node, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    conf = config_file(
        tmp_path / "node.toml",
        data_dir=str(data),
        node_prefix="88.118.5",
        redis="redis://127.0.0.1:6379",
        upstream=[f"http://127.0.0.1:{node.port}"],
        upstream_identity=ADMIN_USER,
    )
    # The admin commands' variables in the same shell are not taken for misspelt settings.
    env = {**admin_env(node), "IDNODE_UPSTREAM_SECRET": ADMIN_SECRET}
    good = check(conf, env=env)
    assert good.code == 0, good.out
    assert lines_of(good) == {"config": "ok", "store": "ok", "redis": "ok", "upstream": "ok"}
    assert (data / "idnode.sqlite3").exists()
    fresh = check(config_file(tmp_path / "fresh.toml", data_dir=str(tmp_path / "not-yet")))
    assert fresh.code == 0 and "not created yet" in fresh.out and not (tmp_path / "not-yet").exists()


def test_check_a_bad_setting(tmp_path: Path) -> None:
    bad = check(config_file(tmp_path / "node.toml", data_dir=str(tmp_path / "d"), workers=0))
    assert bad.code == 2 and "setting 'workers'" in bad.out and lines_of(bad) == {"config": "PROBLEM"}
    unknown = check(config_file(tmp_path / "typo.toml", redis_url="redis://127.0.0.1:6379"))
    assert unknown.code == 2 and "unknown setting 'redis_url'" in unknown.out


def test_check_unreachable_redis_and_upstream(tmp_path: Path) -> None:
    conf = config_file(
        tmp_path / "node.toml",
        data_dir=str(tmp_path / "d"),
        redis=f"redis://127.0.0.1:{free_port()}",
        upstream=[f"http://127.0.0.1:{free_port()}"],
    )
    env = {"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET}
    both = check(conf, env=env)
    assert both.code == 8 | 16, both.out
    assert lines_of(both) == {"config": "ok", "store": "ok", "redis": "PROBLEM", "upstream": "PROBLEM"}
    as_json = check(conf, "--json", env=env).json
    assert as_json["exitCode"] == 24
    assert [(c["check"], c["bit"]) for c in as_json["checks"] if not c["ok"]] == [("redis", 8), ("upstream", 16)]
    redis_only = check(
        config_file(tmp_path / "r.toml", data_dir=str(tmp_path / "d"), redis=f"redis://[::1]:{free_port()}")
    )
    assert redis_only.code == 8 and "redis://[::1]" in redis_only.out


def test_check_upstream_refusing_credentials_and_unreachable_store(node: Node, tmp_path: Path) -> None:
    conf = config_file(
        tmp_path / "node.toml",
        store=f"postgresql://postgres@127.0.0.1:{free_port()}/test",
        upstream=[f"http://127.0.0.1:{node.port}"],
        upstream_identity=ADMIN_USER,
    )
    run = check(conf, env={"IDNODE_UPSTREAM_SECRET": "a-wrong-upstream-secret"})
    assert run.code == 4 | 16, run.out
    assert lines_of(run) == {"config": "ok", "store": "PROBLEM", "upstream": "PROBLEM"}
    assert "refuses upstream_identity" in run.out and "a-wrong-upstream-secret" not in run.out


OFF_MACHINE = "http://192.0.2.1:8000"  # TEST-NET-1: never routed, so nothing could leave the machine anyway


@pytest.mark.parametrize(
    "command",
    [
        ("stats",),
        ("audit",),
        ("prefix", "list"),
        ("identity", "set-secret", "88.118.9"),
        ("handle", "get", "88.118/x"),
    ],
)
def test_plain_http_to_another_machine_is_refused_before_connecting(command: tuple[str, ...]) -> None:
    env = {"IDNODE_CLIENT_IDENTITY": ADMIN_USER, "IDNODE_CLIENT_SECRET": ADMIN_SECRET}
    started = time.monotonic()
    refused = idnode(*command, "--node", OFF_MACHINE, "--timeout", "30", env=env)
    assert refused.code == 2, (refused.code, refused.err)
    assert "plain http://" in refused.err and "--insecure-http" in refused.err and "https://" in refused.err
    assert "cannot reach" not in refused.err
    assert time.monotonic() - started < 20  # a connection attempt would wait out the 30 s timeout
    as_json = idnode(*command, "--json", env={**env, "IDNODE_NODE_URL": OFF_MACHINE + "/"})
    assert as_json.code == 2 and as_json.json["exitCode"] == 2


def test_insecure_http_flag_and_loopback_names_are_allowed(node: Node) -> None:
    env = {"IDNODE_CLIENT_IDENTITY": ADMIN_USER, "IDNODE_CLIENT_SECRET": ADMIN_SECRET}
    for host in ("127.0.0.1", "localhost", "127.1.2.3"):
        url = f"http://{host}:{node.port}"
        ran = idnode("stats", "--node", url, env=env)
        assert ran.code in (0, 3), (host, ran.err)  # 127.1.2.3 has no listener: unreachable, not refused
        assert "--insecure-http" not in ran.err
    down = idnode("stats", "--node", f"http://[::1]:{free_port()}", env=env)
    assert down.code == 3 and "--insecure-http" not in down.err
    # The flag lets the URL through: the command then tries to connect (to a closed port here).
    allowed = idnode("stats", "--insecure-http", "--node", "http://0.0.0.0:1", "--timeout", "2", env=env)
    assert allowed.code == 3 and "cannot reach the node" in allowed.err


def test_check_refuses_a_plain_http_upstream_on_another_machine(tmp_path: Path) -> None:
    conf = config_file(tmp_path / "node.toml", data_dir=str(tmp_path / "d"), upstream=[OFF_MACHINE])
    started = time.monotonic()
    run = check(conf, "--timeout", "30", env={"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET})
    assert run.code == 2, run.out
    assert lines_of(run)["upstream"] == "PROBLEM" and "--insecure-http" in run.out
    assert time.monotonic() - started < 20


RAW_CONTROLS = ("\x1b", "\x9b", "\x07", "\x7f")


def test_record_data_prints_no_terminal_escapes(node: Node, enterprise: tuple[str, Path]) -> None:
    prefix, _ = enterprise
    handle = f"{prefix}/esc"
    hostile = "\x1b[31mred\x9b2J\x07\x7f"
    body = record({"index": 2, "type": "EMAIL", "data": hostile})
    assert node.put(f"/api/handles/{handle}", body, auth=ADMIN).status == 201
    env = {"IDNODE_NODE_URL": f"http://127.0.0.1:{node.port}"}
    shown = idnode("handle", "get", handle, env=env)
    assert shown.code == 0 and not any(c in shown.out for c in RAW_CONTROLS), repr(shown.out)
    assert "\\x1b[31mred\\u009b2J\\x07\\x7f" in shown.out
    as_json = idnode("handle", "get", handle, "--json", env=env)
    assert not any(c in as_json.out for c in RAW_CONTROLS), repr(as_json.out)
    assert as_json.json["values"][0]["data"]["value"] == hostile


class HostileNode(http.server.BaseHTTPRequestHandler):
    """A node (or a proxy in front of one) whose answers carry terminal escapes."""

    def do_GET(self) -> None:
        if self.path.startswith("/api/audit"):
            entry = {"time": "2026-12-01T00:00:00Z", "identity": "300:0.NA/88\x1b[2J", "address": "\x9b1;1H",
                     "operation": "create\x1b]0;owned\x07", "handle": "88/\x1b[31mx", "responseCode": 1}  # fmt: skip
            self._send(200, {"responseCode": 1, "entries": [entry]})
        else:
            self._send(404, {"responseCode": 100, "message": "handle \x1b]0;owned\x07x\x9b2J not found"})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_nodes_refusals_and_audit_print_no_terminal_escapes() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileNode)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"IDNODE_NODE_URL": f"http://127.0.0.1:{server.server_address[1]}",
               "IDNODE_CLIENT_IDENTITY": ADMIN_USER, "IDNODE_CLIENT_SECRET": ADMIN_SECRET}  # fmt: skip
        refused = idnode("handle", "get", "88/x", env=env)
        assert refused.code == 1 and not any(c in refused.out + refused.err for c in RAW_CONTROLS), repr(refused.err)
        assert "\\x1b]0;owned\\x07x\\u009b2J not found" in refused.err
        audit = idnode("audit", env=env)
        assert audit.code == 0 and not any(c in audit.out for c in RAW_CONTROLS), repr(audit.out)
        assert "\\x1b[31m" in audit.out
        as_json = idnode("audit", "--json", env=env)
        assert not any(c in as_json.out for c in RAW_CONTROLS), repr(as_json.out)
        assert as_json.json["entries"][0]["address"] == "\x9b1;1H"
    finally:
        server.shutdown()
        server.server_close()
