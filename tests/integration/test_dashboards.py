"""Every metric the Grafana dashboard and the Prometheus rules query is one a real node exports.

A secondary node under a top-level node is made to do a little of everything (write,
resolve, miss, fail a login, delegate to a dead server, publish, close a malformed HTTP
connection, drop an oversized Handle message), so that labelled metrics, which have no
series before their first event, show up on its ``/metrics``; the names in deploy/'s
PromQL are then looked up in that exposition.
"""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_hierarchy import LOOPBACK_ALLOWED, TOP_ADMIN, dead_port, grant, site, wait_published
from tests.support.nodeproc import ADMIN, ADMIN_SECRET, Node, metric_value, record, url_value
from tests.support.promql import (
    RULES,
    dashboard_expressions,
    exported_names,
    load_dashboard,
    metric_names,
    recorded_names,
    rule_expressions,
    unknown_names,
)


@pytest.fixture(scope="module")
def busy_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("dashboards")
    top = Node(tmp / "top", args=["--role", "top-level", "--node-prefix", "88", "--workers", "1"]).start()
    env = {"IDNODE_UPSTREAM_SECRET": ADMIN_SECRET, **LOOPBACK_ALLOWED}
    node = Node(tmp / "a", args=["--upstream", f"http://127.0.0.1:{top.port}", "--workers", "2"], env=env)
    try:
        grant(top, "88.118")
        assert top.put("/api/handles/0.NA/88.300", record(site(dead_port())), auth=TOP_ADMIN).status == 201
        node.start()
        wait_published(node, "88.118")
        path = "/api/handles/88.118/dashboards-1"
        assert node.put(path, record(url_value(1, "https://d.example/")), auth=ADMIN).status == 201
        for _ in range(4):  # a miss, then hits in whichever worker took it
            assert node.get(path).status == 200
        assert node.get("/api/handles/88.118/dashboards-none").status == 404
        assert node.get("/api/handles/88.300/elsewhere").status == 502  # the site named for 88.300 is dead
        _send_malformed_http(node.port)
        _send_oversized_handle_message(node.handle_port)
        yield node
    finally:
        for started in (node, top):
            if started.proc is not None and started.proc.poll() is None:
                started.stop()


def _send_malformed_http(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        assert b" 400 " in s.recv(4096).split(b"\r\n")[0]


def _send_oversized_handle_message(port: int) -> None:
    envelope = bytes([2, 10]) + bytes(14) + b"\xff\xff\xff\xff"  # a message length of -1
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(envelope)
        assert s.recv(4096)  # an error answer, then the connection is closed


@pytest.fixture(scope="module")
def exported(busy_node: Node) -> set[str]:
    return exported_names(busy_node.settled_metrics())


def test_a_failed_basic_login_counts_as_an_authentication_failure(busy_node: Node) -> None:
    before = busy_node.metric("idnode_requests_total", code="403")
    wrong = ("300:0.NA/88.118", "not-the-secret")
    assert (
        busy_node.put("/api/handles/88.118/dashboards-2", record(url_value(1, "https://x/")), auth=wrong).status == 403
    )
    assert busy_node.metric("idnode_requests_total", until=lambda n: n > before, code="403") - before == 1


def test_every_metric_the_dashboard_queries_is_exported(exported: set[str]) -> None:
    exprs = dashboard_expressions(load_dashboard())
    assert len(exprs) >= 15
    assert unknown_names(exprs, exported) == {}


def test_every_metric_the_rules_query_is_exported(exported: set[str]) -> None:
    text = RULES.read_text()
    rules = rule_expressions(text)
    assert len(rules) >= 9
    assert unknown_names(rules.values(), exported, also=recorded_names(text)) == {}


def test_a_metric_the_node_does_not_export_is_caught(exported: set[str]) -> None:
    dashboard = copy.deepcopy(load_dashboard())
    dashboard["panels"][-1]["targets"].append({"expr": 'sum(rate(idnode_cache_hitz_total{instance=~"$instance"}[5m]))'})
    assert unknown_names(dashboard_expressions(dashboard), exported) == {
        'sum(rate(idnode_cache_hitz_total{instance=~"$instance"}[5m]))': {"idnode_cache_hitz_total"}
    }
    text = RULES.read_text().replace("idnode_store_errors_total", "idnode_store_failures_total")
    unknown = unknown_names(rule_expressions(text).values(), exported, also=recorded_names(text))
    assert set().union(*unknown.values()) == {"idnode_store_failures_total"}


def test_metric_names_leave_out_functions_labels_and_grouping() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (frontend, le) (rate(a_bucket{op=~"a|b", code!="c"}[$__rate_interval])))'
        " / ignoring (tier) group_left () (sum(rate(c_total[5m] offset 1h)) + d:e:f) > bool 0 and on (instance) up"
    )
    assert metric_names(expr) == {"a_bucket", "c_total", "d:e:f", "up"}


def test_the_dashboard_chooses_its_data_source_and_instances() -> None:
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    instance = variables["instance"]
    assert instance["query"]["query"] == 'label_values(up{job="idnode"}, instance)'
    assert instance["datasource"]["uid"] == "${datasource}" and instance["multi"] and instance["includeAll"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    for expr in dashboard_expressions(dashboard):
        assert 'instance=~"$instance"' in expr, expr
    titles = " ".join(p["title"] for p in panels).lower()
    for wanted in ("front-end", "p50 / p99", "hit ratio by tier", "store", "redis", "delegations", "upstream latency",
                   "registrations per second", "publications"):  # fmt: skip
        assert wanted in titles, wanted


def test_the_exposition_reader_sees_samples_and_histograms() -> None:
    text = (
        "# HELP x_seconds t\n# TYPE x_seconds histogram\n"
        'x_seconds_bucket{le="+Inf"} 1.0\nx_seconds_count 1.0\n# TYPE y_total counter\ny_total{a="b c"} 2.0\n'
    )
    assert exported_names(text) == {"x_seconds", "x_seconds_bucket", "x_seconds_count", "y_total"}
    assert metric_value(text, "y_total", {"a": "b c"}) == 2.0


def test_rule_expressions_fail_loudly_on_a_layout_they_cannot_read(tmp_path: Path) -> None:
    text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr:\n          up == 0\n"
    with pytest.raises(ValueError, match="layout"):
        rule_expressions(text)
