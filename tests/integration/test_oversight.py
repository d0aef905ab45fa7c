"""Audit log, statistics and the failed-authentication limit."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import quote

from registry.days import china_day
from tests.support.nodeproc import ADMIN, ADMIN_SECRET, ADMIN_USER, Node, record, url_value

# Run against both store backends (PostgreSQL: a database of this module's own).
STORE_BACKENDS = ("sqlite", "postgresql")

ENTERPRISE = "88.118.50"
ENT: tuple[str, str] = (f"300:0.NA/{ENTERPRISE}", "ent-50-secret")


def allocate(node: Node) -> None:
    admin_value = {"handle": f"0.NA/{ENTERPRISE}", "index": 300, "permissions": "111111111111"}
    values = record(
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin_value}},
        {"index": 300, "type": "HS_SECKEY", "data": ENT[1]},
    )
    assert node.put(f"/api/handles/0.NA/{ENTERPRISE}", values, auth=ADMIN).status == 201


def test_every_write_is_audited_without_secrets(fresh_node: Node) -> None:
    node = fresh_node.start()
    allocate(node)
    node.put(f"/api/handles/{ENTERPRISE}/a", record(url_value(1, "https://a.example/")), auth=ENT)
    node.put(f"/api/handles/{ENTERPRISE}/a?index=2", record(url_value(2, "https://b.example/")), auth=ENT)
    node.put(f"/api/handles/{ENTERPRISE}/a?overwrite=false", record(url_value(1, "https://c.example/")), auth=ENT)
    node.put("/api/handles/88.118.51/intrusion", record(url_value(1, "https://x.example/")), auth=ENT)
    node.delete(f"/api/handles/{ENTERPRISE}/a", auth=ENT)
    batch = {"operations": [{"op": "create", "handle": f"{ENTERPRISE}/b", "values": [url_value(1, "https://b/")]}]}
    node.request("POST", "/api/batch", batch, auth=ENT)
    entries = node.get("/api/audit?limit=50", auth=ADMIN).json["entries"]
    seen = [(e["identity"], e["operation"], e["handle"], e["responseCode"]) for e in entries]
    ent = ENT[0]
    assert (ADMIN_USER, "create", f"0.NA/{ENTERPRISE}", 1) in seen
    assert (ent, "create", f"{ENTERPRISE}/a", 1) in seen
    assert (ent, "update", f"{ENTERPRISE}/a", 1) in seen
    assert (ent, "put", f"{ENTERPRISE}/a", 101) in seen
    assert (ent, "put", "88.118.51/intrusion", 401) in seen
    assert (ent, "delete", f"{ENTERPRISE}/a", 1) in seen
    assert (ent, "batch_create", f"{ENTERPRISE}/b", 1) in seen
    assert all(e["address"] == "127.0.0.1" for e in entries)
    raw = node.get("/api/audit?limit=1000", auth=ADMIN).body
    assert ENT[1].encode() not in raw and ADMIN_SECRET.encode() not in raw
    # Durable: the log survives a restart.
    node.restart()
    assert len(node.get("/api/audit?limit=50", auth=ADMIN).json["entries"]) == len(entries)


def test_audit_scope_and_filters(fresh_node: Node) -> None:
    node = fresh_node.start()
    allocate(node)
    node.put("/api/handles/88.118.52/x", record(url_value(1, "https://x.example/")), auth=ADMIN)
    node.put(f"/api/handles/{ENTERPRISE}.1/x", record(url_value(1, "https://x.example/")), auth=ENT)
    own = node.get(f"/api/audit?prefix={ENTERPRISE}", auth=ENT).json["entries"]
    assert {e["handle"] for e in own} == {f"0.NA/{ENTERPRISE}", f"{ENTERPRISE}.1/x"}
    assert node.get("/api/audit", auth=ENT).status == 403
    assert node.get("/api/audit?prefix=88.118.52", auth=ENT).status == 403
    assert node.get("/api/audit").status == 401
    future = quote(datetime.fromtimestamp(time.time() + 3600, UTC).isoformat())
    assert node.get(f"/api/audit?since={future}", auth=ADMIN).json["entries"] == []
    assert len(node.get("/api/audit?limit=1", auth=ADMIN).json["entries"]) == 1
    assert node.get("/api/audit?since=yesterday", auth=ADMIN).status == 400


def test_stats_count_identifiers_and_registrations_per_day(fresh_node: Node) -> None:
    node = fresh_node.start()
    allocate(node)
    for i in range(3):
        node.put(f"/api/handles/{ENTERPRISE}/s{i}", record(url_value(1, "https://s.example/")), auth=ENT)
    node.put(f"/api/handles/{ENTERPRISE}/s0", record(url_value(1, "https://changed.example/")), auth=ENT)
    node.delete(f"/api/handles/{ENTERPRISE}/s2", auth=ENT)
    operations = [
        {"op": "create", "handle": f"{ENTERPRISE}/b{i}", "values": [url_value(1, "https://b/")]} for i in range(4)
    ]
    node.request("POST", "/api/batch", {"operations": operations}, auth=ENT)
    everything = {s["prefix"]: s for s in node.get("/api/stats", auth=ADMIN).json["prefixes"]}
    mine = everything[ENTERPRISE]
    today = china_day(time.time())  # registrations are counted in China's day
    assert mine["handles"] == 6  # 3 + 4 created, 1 deleted; the replace is not a registration
    assert mine["registrationsPerDay"] == {today: 7}
    scoped = node.get(f"/api/stats?prefix={ENTERPRISE}", auth=ENT).json["prefixes"]
    assert [s["prefix"] for s in scoped] == [ENTERPRISE]
    assert node.get("/api/stats", auth=ENT).status == 403
    node.restart()
    assert node.get(f"/api/handles?prefix={ENTERPRISE}&pageSize=0", auth=ADMIN).json["totalCount"] == "6"


def test_failed_authentication_is_rate_limited(fresh_node: Node) -> None:
    node = fresh_node.start()
    allocate(node)
    for _ in range(10):
        reply = node.get(f"/api/handles/0.NA/{ENTERPRISE}", auth=(ENT[0], "guess"))
        assert reply.status == 403
    limited = node.get(f"/api/handles/0.NA/{ENTERPRISE}", auth=ENT)  # even the right secret now waits
    assert (limited.status, limited.code) == (429, 403)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert "too many failed" in limited.json["message"]
    assert any("authentication failed" in line for line in node.stderr_lines)
    # Anonymous reads are not affected.
    assert node.get(f"/api/handles/0.NA/{ENTERPRISE}").status == 200
