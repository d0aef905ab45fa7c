"""The node's log: JSON lines on request, an access log, and no secret in either."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tests.conftest import LIMITS_OFF
from tests.support.nodeproc import ADMIN_SECRET, Node, basic, record, url_value
from tests.support.snmsclient import NODE_ADMIN, NODE_ARGS, Snms, enterprise, secret_of

WRONG_SECRET = "wrong-secret-d41d8cd98f00b204"
PREFIX = "88.101.5"
NODE_ADMIN_ID = "300:0.NA/88"  # NODE_ADMIN's identity


def _after_start(node: Node) -> list[str]:
    start = max(i for i, line in enumerate(node.stderr_lines) if "idnode: listening on http" in line)
    return node.stderr_lines[start + 1 :]


def _exercise(node: Node) -> list[str]:
    """Requests that carry every kind of secret; what must never reach the log."""
    enterprise(node, PREFIX)
    admin_put = node.put(f"/api/handles/{PREFIX}/LOG1", record(url_value(1, "https://l.example/")), auth=NODE_ADMIN)
    assert admin_put.status == 201, admin_put.body
    assert node.get(f"/api/handles/{PREFIX}/LOG1?index=1").status == 200
    refused = node.put(f"/api/handles/{PREFIX}/LOG2", record(), auth=(NODE_ADMIN_ID, WRONG_SECRET))
    assert refused.status == 403  # as handle.net answers it
    snms = Snms(node)
    assert snms.login(PREFIX, WRONG_SECRET).json["status"] != 1
    assert snms.login(PREFIX, secret_of(PREFIX)).json["status"] == 1 and snms.token
    assert snms.detail(f"{PREFIX}/LOG1").status == 200
    return [
        ADMIN_SECRET,
        WRONG_SECRET,
        secret_of(PREFIX),
        snms.token,
        snms.token.rsplit(".", 1)[1],  # the token's signature alone
        basic(NODE_ADMIN_ID, ADMIN_SECRET).split()[1],
        base64.b64encode(WRONG_SECRET.encode()).decode()[:16],
    ]


def test_json_lines_with_access_log_and_no_secret(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", args=[*NODE_ARGS, "--log-format", "json", "--access-log"], env=LIMITS_OFF).start()
    try:
        secrets = _exercise(node)
    finally:
        assert node.stop() == 0
    lines = [line for line in _after_start(node) if line.strip() != "idnode: stopped"]
    events: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every one a JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in events)
    requests = [e["first_request_line"] for e in events if e["logger"] == "idnode.access"]
    assert f"GET /api/handles/{PREFIX}/LOG1?index=1 HTTP/1.1" in requests
    assert f"PUT /api/handles/{PREFIX}/LOG2 HTTP/1.1" in requests and "POST /identity/token HTTP/1.1" in requests
    failed = [e for e in events if e["message"].startswith("authentication failed")]
    assert failed and all(e["level"] == "WARNING" for e in failed)
    text = "".join(node.stderr_lines)
    for secret in secrets:
        assert secret not in text
    assert "Basic " not in text and "Bearer " not in text


def test_text_log_keeps_its_form_and_the_access_log_is_off_by_default(tmp_path: Path) -> None:
    node = Node(tmp_path / "data", env=LIMITS_OFF).start()
    try:
        assert node.get("/api/handles/88.118/nothing-here").status == 404
        assert node.put("/api/handles/88.118/x", record(), auth=("300:0.NA/88.118", WRONG_SECRET)).status == 403
    finally:
        assert node.stop() == 0
    lines = _after_start(node)
    assert any(" WARNING registry.auth: authentication failed for identity" in line for line in lines)
    assert not any("idnode.access" in line or "nothing-here" in line for line in lines)
    assert WRONG_SECRET not in "".join(node.stderr_lines)
