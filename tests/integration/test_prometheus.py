"""deploy/prometheus with Debian's promtool and a real Prometheus scraping a real node.

promtool checks the configuration and the rules and runs the rules' unit tests; then a
Prometheus on a free port scrapes a node every second, the test reads a series back
through its query API, stops the node and waits for IdnodeDown to fire. Skipped, saying
why, only where the binaries are not installed (.ci/run installs them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.nodeproc import Node
from tests.support.poll import wait_until
from tests.support.promql import DEPLOY, RULES, as_promql, dashboard_expressions, load_dashboard
from tests.support.redisproc import free_port

PROMETHEUS_DIR = DEPLOY / "prometheus"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt install prometheus)"
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not installed (Debian: apt install prometheus)"
)
DOWN_FOR = "2s"  # IdnodeDown's 1m, shortened so the test sees it fire
T = TypeVar("T")


def promtool(*args: str) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_promtool_accepts_the_configuration_and_the_rules() -> None:
    assert "SUCCESS" in promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert "SUCCESS: 14 rules found" in promtool("check", "rules", str(RULES))


@needs_promtool
def test_the_rules_unit_tests_pass() -> None:
    tests = sorted(str(p) for p in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    out = promtool("test", "rules", *tests)
    assert out.count("SUCCESS") == len(tests), out


def test_every_alert_has_a_unit_test_that_sees_it_fire() -> None:
    alerts = {line.split(":", 1)[1].strip() for line in RULES.read_text().splitlines() if "- alert:" in line}
    tested = "".join(p.read_text() for p in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    fired = {a for a in alerts if f"alertname: {a}\n        exp_alerts:\n          - exp_labels" in tested}
    assert len(alerts) == 9
    assert fired == alerts


def short_down_rules() -> str:
    """The rule file as it is, but for IdnodeDown's ``for``."""
    text = RULES.read_text()
    start = text.index("- alert: IdnodeDown")
    end = text.index("- alert:", start + 1)
    rule = text[start:end]
    assert "for: 1m" in rule
    return text[:start] + rule.replace("for: 1m", f"for: {DOWN_FOR}") + text[end:]


class Prometheus:
    def __init__(self, directory: Path, target: str) -> None:
        self.port = free_port()
        rules = directory / "idnode.rules.yml"
        rules.write_text(short_down_rules())
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {rules}\n"
            f"scrape_configs:\n  - job_name: idnode\n    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = directory / "prometheus.log"
        assert PROMETHEUS is not None
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def api(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def until(what: str, probe: Callable[[], T | None], prom: Prometheus, timeout: float = 30.0) -> T:
    """``probe``'s first true result, polled while Prometheus runs, within ``timeout`` seconds."""

    def running_probe() -> T | None:
        assert prom.proc.poll() is None, "Prometheus exited"
        return probe()

    try:
        found = wait_until(running_probe, what=what, timeout=timeout, interval=0.2, ignoring=(OSError,))
    except AssertionError as exc:
        raise AssertionError(f"{exc}; Prometheus said:\n{prom.log.read_text()}") from None
    assert found is not None
    return found


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    started = Node(tmp_path / "data", args=["--workers", "2"]).start()
    yield started
    if started.proc is not None and started.proc.poll() is None:
        started.stop()


@pytest.fixture
def prometheus(tmp_path: Path, node: Node) -> Iterator[Prometheus]:
    prom = Prometheus(tmp_path, f"127.0.0.1:{node.port}")
    yield prom
    prom.stop()


@needs_prometheus
def test_a_real_prometheus_scrapes_the_node_and_sees_it_go_down(node: Node, prometheus: Prometheus) -> None:
    target = f"127.0.0.1:{node.port}"
    until("scrape of the node", lambda: prometheus.query(f'up{{job="idnode", instance="{target}"}} == 1'), prometheus)
    assert node.get("/api/handles/88.118/prometheus-none").status == 404
    series = until(
        "resolution counted",
        lambda: prometheus.query('idnode_requests_total{job="idnode", op="resolve", code="100"}'),
        prometheus,
    )
    assert [(s["metric"]["instance"], s["value"][1]) for s in series] == [(target, "1")]

    rules = until("evaluated rules", lambda: _evaluated_rules(prometheus), prometheus)
    assert {r["name"]: r["health"] for r in rules} == {r["name"]: "ok" for r in rules}
    assert len(rules) == 14
    for expr in dashboard_expressions(load_dashboard()):  # every panel's query is PromQL Prometheus takes
        prometheus.query(as_promql(expr))

    assert not _firing(prometheus, target)
    node.stop()
    stopped = time.monotonic()
    alert = until("IdnodeDown firing", lambda: _firing(prometheus, target), prometheus)
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == f"idnode {target} is down"
    assert time.monotonic() - stopped < 15


def _evaluated_rules(prom: Prometheus) -> list[dict[str, Any]] | None:
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    if rules and not any(r.get("lastEvaluation", "0001").startswith("0001") for r in rules):
        return rules
    return None


def _firing(prom: Prometheus, instance: str) -> dict[str, Any] | None:
    for alert in prom.api("alerts")["alerts"]:
        labels = alert["labels"]
        if (labels["alertname"], labels.get("instance"), alert["state"]) == ("IdnodeDown", instance, "firing"):
            found: dict[str, Any] = alert
            return found
    return None
