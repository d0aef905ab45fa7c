"""Resolution over the REST API and the proxy, against a real server process."""

from __future__ import annotations

import pytest

from tests.support.nodeproc import ADMIN, Node, metric_value, record, url_value
from tests.support.poll import wait_until

# Run against both store backends (PostgreSQL: a database of this module's own).
STORE_BACKENDS = ("sqlite", "postgresql")

P = "/api/handles/88.118.8/"


def make(node: Node, suffix: str, *values: dict[str, object]) -> None:
    reply = node.put(P + suffix, record(*values), auth=ADMIN)
    assert reply.status == 201, reply.body


def three(name: str) -> list[dict[str, object]]:
    return [
        url_value(1, f"https://example.com/p/{name}"),
        {"index": 2, "type": "EMAIL", "data": "ops@example.com", "ttl": 3600},
        {"index": 3, "type": "URL.alt", "data": "https://mirror.example.com/"},
    ]


def test_resolve_returns_handle_net_json(node: Node, name: str) -> None:
    make(node, name, *three(name))
    reply = node.get(P + name)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json
    assert body["responseCode"] == 1
    assert body["handle"] == f"88.118.8/{name}"
    first, second, _ = body["values"]
    assert first["index"] == 1 and first["type"] == "URL"
    assert first["data"] == {"format": "string", "value": f"https://example.com/p/{name}"}
    assert first["ttl"] == 86400
    assert first["timestamp"].endswith("Z") and "permissions" not in first
    assert second["ttl"] == 3600


def test_unknown_handle_is_404_code_100(node: Node) -> None:
    reply = node.get(P + "no-such-thing")
    assert (reply.status, reply.code) == (404, 100)
    assert reply.json["handle"] == "88.118.8/no-such-thing"
    assert "not found" in reply.json["message"]


def test_handles_are_case_insensitive(node: Node, name: str) -> None:
    make(node, name + "Mixed", url_value(1, "https://x.example/"))
    reply = node.get(f"/api/handles/88.118.8/{name.lower()}MIXED")
    assert reply.status == 200
    assert reply.json["values"][0]["data"]["value"] == "https://x.example/"


@pytest.mark.parametrize(
    ("query", "indexes"),
    [
        ("index=2", [2]),
        ("index=1&index=3", [1, 3]),
        ("type=EMAIL", [2]),
        ("type=email", [2]),
        ("type=URL", [1]),
        ("type=URL.", [1, 3]),
        ("type=EMAIL&index=1", [1, 2]),
    ],
)
def test_index_and_type_filters(node: Node, name: str, query: str, indexes: list[int]) -> None:
    make(node, name, *three(name))
    reply = node.get(f"{P}{name}?{query}")
    assert (reply.status, reply.code) == (200, 1)
    assert [v["index"] for v in reply.json["values"]] == indexes


def test_filter_matching_nothing_is_200_code_200(node: Node, name: str) -> None:
    make(node, name, *three(name))
    reply = node.get(f"{P}{name}?type=HS_ADMIN")
    assert (reply.status, reply.code) == (200, 200)
    assert reply.json["values"] == []


def test_non_public_values_are_hidden_from_anonymous_callers(node: Node, name: str) -> None:
    secret_value = {"index": 5, "type": "INTERNAL", "data": "cost price 12.50", "permissions": "1100"}
    make(node, name, url_value(1, "https://x.example/"), secret_value)
    anonymous = node.get(P + name)
    assert [v["index"] for v in anonymous.json["values"]] == [1]
    admin = node.get(P + name, auth=ADMIN)
    assert [v["index"] for v in admin.json["values"]] == [1, 5]
    assert admin.json["values"][1]["permissions"] == "1100"
    public_only = node.get(P + name + "?publicOnly=true", auth=ADMIN)
    assert [v["index"] for v in public_only.json["values"]] == [1]


def test_handles_outside_the_node_prefix_are_not_our_responsibility(node: Node) -> None:
    for path in ("/api/handles/88.119/x", "/api/handles/88/x", "/api/handles/0.NA/88.119", "/api/handles/88.1180/x"):
        reply = node.get(path)
        assert (reply.status, reply.code) == (400, 301), path
        assert "88.118" in reply.json["message"]


def test_prefix_handles_under_the_node_prefix_are_served(node: Node) -> None:
    reply = node.get("/api/handles/0.na/88.118")
    assert (reply.status, reply.code) == (200, 1)
    assert reply.json["handle"] == "0.NA/88.118"
    # The admin's secret is never public; the admin record is.
    assert [v["type"] for v in reply.json["values"]] == ["HS_ADMIN"]


def test_proxy_redirects_to_first_url(node: Node, name: str) -> None:
    make(node, name, *three(name))
    reply = node.get(f"/88.118.8/{name}")
    assert reply.status == 302
    assert reply.headers["location"] == f"https://example.com/p/{name}"
    by_type = node.get(f"/88.118.8/{name}?type=URL.alt")
    assert by_type.headers["location"] == "https://mirror.example.com/"


def test_proxy_noredirect_shows_the_record(node: Node, name: str) -> None:
    make(node, name, *three(name))
    reply = node.get(f"/88.118.8/{name}?noredirect")
    assert (reply.status, reply.code) == (200, 1)
    assert len(reply.json["values"]) == 3


def test_proxy_without_url_value_shows_the_record(node: Node, name: str) -> None:
    make(node, name, {"index": 2, "type": "EMAIL", "data": "a@b.example"})
    reply = node.get(f"/88.118.8/{name}")
    assert reply.status == 200
    assert reply.json["values"][0]["type"] == "EMAIL"


def test_proxy_unknown_handle_is_404(node: Node) -> None:
    reply = node.get("/88.118.8/never-registered")
    assert (reply.status, reply.code) == (404, 100)


def test_healthz(node: Node) -> None:
    reply = node.get("/healthz")
    assert reply.status == 200 and reply.json["status"] == "ok"


def test_metrics_count_requests_by_route_and_code(node: Node, name: str) -> None:
    def seen(exposition: str) -> tuple[float, float, float]:
        return (
            metric_value(exposition, "idnode_requests_total", {"code": "100", "frontend": "http", "op": "resolve"}),
            metric_value(exposition, "idnode_http_responses_total", {"op": "resolve", "status": "404"}),
            metric_value(exposition, "idnode_request_duration_seconds_count", {"frontend": "http", "op": "resolve"}),
        )

    before = seen(node.settled_metrics())
    for i in range(3):
        assert node.get(P + f"metrics-miss-{name}-{i}").status == 404
    after = wait_until(
        lambda: seen(node.get("/metrics").body.decode()),
        lambda now: all(n - b >= 3 for n, b in zip(now, before, strict=True)),
        what="the three misses to be counted",
    )
    assert after[0] - before[0] == 3 and after[1] - before[1] == 3
    assert after[2] - before[2] == 3


def test_prefixes_lists_the_node_prefix(node: Node) -> None:
    reply = node.get("/api/prefixes")
    assert reply.status == 200
    assert "88.118" in reply.json["prefixes"]


def test_cors_and_preflight(node: Node) -> None:
    assert node.get(P + "whatever").headers["access-control-allow-origin"] == "*"
    preflight = node.request("OPTIONS", P + "whatever", headers={"Origin": "https://app.example"})
    assert preflight.status == 204
    assert "PUT" in preflight.headers["access-control-allow-methods"]


def test_pretty_output(node: Node, name: str) -> None:
    make(node, name, url_value(1, "https://x.example/"))
    reply = node.get(P + name + "?pretty")
    assert b'\n  "responseCode": 1' in reply.body


def test_unknown_api_resources_are_404(node: Node) -> None:
    for path in ("/api/handle/88.118/x", "/api/", "/api/handles/"):
        reply = node.get(path)
        assert reply.status == 404, path
        assert "no such resource" in reply.json["message"]
