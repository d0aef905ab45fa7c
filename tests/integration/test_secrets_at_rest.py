"""Finding 3 of #21: a copy of the store is not a set of credentials (secrets sealed under secret_key_file)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.nodeproc import ADMIN, ADMIN_SECRET, Node, record
from tests.support.pgproc import temp_database
from tests.support.poll import wait_until

OWNER = "0.NA/88.118.77"
SECRET = "owner-of-77-secret-value"


def _forms(secret: str) -> list[bytes]:
    sha1, sha256 = hashlib.sha1(secret.encode()), hashlib.sha256(secret.encode())
    return [sha1.hexdigest().encode(), sha1.digest(), sha256.hexdigest().encode(), sha256.digest()]


def _raw_store(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("idnode.sqlite3*"))


def _dumped(url: str) -> bytes:
    """Every row of a PostgreSQL store as pg_dump writes it (bytea as hex text)."""
    done = subprocess.run(["pg_dump", "--data-only", url], capture_output=True, check=True, timeout=120)
    return done.stdout


def _texts(form: bytes) -> list[bytes]:
    """A form as it can stand in a dump: itself, and bytea's hex of it."""
    return [form, form.hex().encode()]


def _register_owner(node: Node) -> None:
    """OWNER's handle, its own admin, with SECRET at 300 (written by the node admin)."""
    grant = {"handle": OWNER, "index": 300, "permissions": "111111111111"}
    values = record(
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": grant}},
        {"index": 300, "type": "HS_SECKEY", "data": SECRET},
    )
    assert node.put(f"/api/handles/{OWNER}", values, auth=ADMIN).status == 201


def test_a_stolen_store_holds_no_hash_of_any_secret_and_opens_nothing_without_its_key(tmp_path: Path) -> None:
    node = Node(tmp_path / "data").start()
    try:
        _register_owner(node)
        assert node.get(f"/api/handles/{OWNER}", auth=(f"300:{OWNER}", SECRET)).status == 200
    finally:
        node.stop()
    raw = _raw_store(tmp_path / "data")
    assert raw
    for secret in (SECRET, ADMIN_SECRET):
        for form in _forms(secret):
            assert form not in raw, (secret, form)
    key_file = tmp_path / "data" / "secret-key"
    assert key_file.stat().st_mode & 0o077 == 0

    node = node.restart()  # the key kept with the node: everything still verifies
    try:
        assert node.get(f"/api/handles/{OWNER}", auth=(f"300:{OWNER}", SECRET)).status == 200
    finally:
        node.stop()

    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "data", copy, ignore=shutil.ignore_patterns("secret-key", "*.lock"))
    thief = Node(copy).start()
    try:
        assert thief.get(f"/api/handles/{OWNER}", auth=(f"300:{OWNER}", SECRET)).status == 403
        assert thief.get(f"/api/handles/{OWNER}").status in (200, 403)  # records are served as usual
        wait_until(lambda: "secret_key_file does not hold" in "".join(thief.stderr_lines), what="the reason logged")
    finally:
        thief.stop()
    shutil.copy(key_file, copy / "secret-key")  # given the key, the copy verifies again
    thief = Node(copy).start()
    try:
        assert thief.get(f"/api/handles/{OWNER}", auth=(f"300:{OWNER}", SECRET)).status == 200
    finally:
        thief.stop()


def test_a_postgresql_store_holds_no_hash_of_any_secret(tmp_path: Path) -> None:
    with temp_database() as url:
        node = Node(tmp_path / "data", store=url).start()
        try:
            _register_owner(node)
            assert node.get(f"/api/handles/{OWNER}", auth=(f"300:{OWNER}", SECRET)).status == 200
        finally:
            node.stop()
        dump = _dumped(url)
    assert OWNER.encode() in dump  # the dump holds the records: the check below can see them
    for secret in (SECRET, ADMIN_SECRET):
        for form in _forms(secret):
            for text in _texts(form):
                assert text not in dump, (secret, text)


def _rotate(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    cmd = [sys.executable, "-m", "resolver.cli", "rotate-secret-key", "--data-dir", str(data_dir)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_rotating_the_secret_key_reseals_everything_and_the_old_key_opens_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    node = Node(data).start()
    try:
        _register_owner(node)
        busy = _rotate(data)  # refused while the node has the store open
        assert busy.returncode == 4 and "stop the node first" in busy.stderr, busy.stderr
    finally:
        node.stop()
    old_key = (data / "secret-key").read_bytes()

    done = _rotate(data)
    assert done.returncode == 0, done.stderr
    assert "sealed under the new key" in done.stdout
    new_key = (data / "secret-key").read_bytes()
    assert new_key != old_key and len(new_key.split()) == 1  # the old key is gone from the file
    assert (data / "secret-key").stat().st_mode & 0o077 == 0

    node = node.start()
    try:  # the owner and the node admin still log in under the new key
        assert node.get(f"/api/handles/{OWNER}", auth=(f"300:{OWNER}", SECRET)).status == 200
        assert node.get("/api/audit?limit=1", auth=ADMIN).status == 200
    finally:
        node.stop()

    (data / "secret-key").write_bytes(old_key)  # the old key alone opens nothing any more
    node = node.start()
    try:
        assert node.get(f"/api/handles/{OWNER}", auth=(f"300:{OWNER}", SECRET)).status == 403
    finally:
        node.stop()
