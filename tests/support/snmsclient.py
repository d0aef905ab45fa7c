"""SNMS's management API for tests: the documented examples (tests/snms/), enterprises, a client.

The examples' identifiers are under prefix 88 (88.101.5, 88.101.0042, 88.1021.150,
88.709.911, 88.888.888) except batchDelete's 86.709.612, so the nodes these tests run serve
node prefix 88 (``--node-prefix 88``) and that one prefix reads 88.709.612 (see
tests/snms/README.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from registry.days import CHINA
from registry.identity.tokens import dated_password
from tests.integration.test_permissions import admin_value
from tests.support.nodeproc import ADMIN_SECRET, Auth, Node, Reply, record

EXAMPLES = Path(__file__).parents[1] / "snms"
NODE_ARGS = ["--node-prefix", "88"]
NODE_ADMIN: Auth = ("300:0.NA/88", ADMIN_SECRET)
REWRITES = {"86.709.612": "88.709.612"}  # outside node prefix 88: the one documented rewrite
STATUSES = (1, -1, -2, -3)  # what a request may get; -4 is an internal failure


def example(name: str) -> dict[str, Any]:
    """tests/snms/<name>.json, with REWRITES applied."""
    text = (EXAMPLES / f"{name}.json").read_text()
    for old, new in REWRITES.items():
        text = text.replace(old, new)
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def secret_of(prefix: str) -> str:
    return f"secret-of-{prefix}-0123456789"


def sha256hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def dated(secret: str, shift_days: int = 0) -> str:
    """/identity/token/v1's password for ``secret`` on China's date today (+ shift_days)."""
    day = dt.datetime.now(CHINA).date() + dt.timedelta(days=shift_days)
    return dated_password(sha256hex(secret), day)


def enterprise(node: Node, prefix: str, secret: str | None = None) -> None:
    """Allocate ``prefix`` to an enterprise whose identity 300:0.NA/<prefix> has ``secret`` (in clear)."""
    seckey = {"index": 300, "type": "HS_SECKEY", "data": secret or secret_of(prefix)}
    reply = node.put(f"/api/handles/0.NA/{prefix}", record(admin_value(f"0.NA/{prefix}"), seckey), auth=NODE_ADMIN)
    assert reply.status == 201, reply.body


def shape_errors(doc: Any, got: Any, where: str = "", skip: frozenset[str] = frozenset()) -> list[str]:
    """Where ``got`` differs from the documented ``doc`` in keys or JSON types (not in values).
    A list is compared item by item against the documented first item; ``skip`` names keys
    (``data.items[].metadataId``) the comparison leaves out on both sides."""
    if isinstance(doc, dict):
        if not isinstance(got, dict):
            return [f"{where or '.'}: {type(got).__name__}, documented an object"]
        keys = {k for k in doc if f"{where}.{k}".lstrip(".") not in skip}
        have = {k for k in got if f"{where}.{k}".lstrip(".") not in skip}
        errors = [f"{where}: keys {sorted(have)} documented {sorted(keys)}"] if keys != have else []
        for k in keys & have:
            errors += shape_errors(doc[k], got[k], f"{where}.{k}".lstrip("."), skip)
        return errors
    if isinstance(doc, list):
        if not isinstance(got, list) or (doc and not got):
            return [f"{where}: {got!r:.60}, documented a non-empty array"]
        return [e for item in got for e in shape_errors(doc[0], item, f"{where}[]", skip)] if doc else []
    kinds = (bool, int, str, type(None))
    if next(k for k in kinds if isinstance(doc, k)) is not next((k for k in kinds if isinstance(got, k)), None):
        return [f"{where}: {got!r:.60}, documented like {doc!r:.60}"]
    return []


def documented_shape(name: str, got: Any, part: str = "response") -> list[str]:
    """shape_errors against example ``name``'s ``part``, less the keys its file says the node does
    not serve and plus those it serves beyond the example (``not_served`` / ``also_served``)."""
    ex = example(name)
    skip = frozenset(ex.get("not_served", {})) | frozenset(ex.get("also_served", {}))
    return shape_errors(ex[part], got, skip=skip)


@dataclass
class Snms:
    """One enterprise's SNMS session on a node: a token from the plain login, and the calls."""

    node: Node
    token: str = ""

    def login(self, username: str, password: str, path: str = "/identity/token") -> Reply:
        reply = self.node.request("POST", path, {"username": username, "password": password})
        if reply.status == 200 and reply.json["status"] == 1:
            self.token = reply.json["data"]["token"]
        return reply

    def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, token: str | None = None
    ) -> Reply:
        bearer = self.token if token is None else token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return self.node.request(method, path, body, raw=raw, headers=headers)

    def replay(self, name: str, body: Any = None) -> Reply:
        """Example ``name``'s request (its body, or ``body``), as the docs give it."""
        ex = example(name)
        path = ex["path"] + (f"?{quote(ex['query'], safe='=&/')}" if "query" in ex else "")
        return self.call(ex["method"], path, ex.get("request") if body is None else body)

    def detail(self, handle: str) -> Reply:
        return self.call("GET", f"/identityv2/data/detail?handle={quote(handle, safe='/')}")


def logged_in(node: Node, prefix: str) -> Snms:
    client = Snms(node)
    reply = client.login(prefix, secret_of(prefix))
    assert (reply.status, reply.json["status"]) == (200, 1), reply.body
    return client


def envelope(reply: Reply) -> tuple[int, str, Any]:
    """(status, message, data) of an SNMS answer, after checking it is one (HTTP 200, the three keys)."""
    assert reply.status == 200, (reply.status, reply.body[:300])
    body = reply.json
    assert set(body) == {"message", "status", "data"} and isinstance(body["message"], str), body
    return body["status"], body["message"], body["data"]


def template(prefix: str, version: str, *items: dict[str, Any]) -> dict[str, Any]:
    """An SNMS template body, shaped as template_post.json's."""
    body = dict(example("template_post")["request"], prefix=prefix, version=version)
    body["items"] = list(items)
    return body


def item(name: str, id_type: str, index: int | None, low: int = 1, high: int = 64, **extra: Any) -> dict[str, Any]:
    got: dict[str, Any] = {"name": name, "idType": id_type}
    got["metadata"] = {"type": "string", "minLength": low, "maxLength": high}
    if index is not None:
        got["idIndex"] = index
    return got | extra


def value(index: int, vtype: str, text: str) -> dict[str, Any]:
    return {"data": {"format": "string", "value": text}, "auth": "", "index": index, "type": vtype}


def identifier(handle: str, version: str, *values: dict[str, Any]) -> dict[str, Any]:
    return {"handle": handle, "templateVersion": version, "value": list(values)}
