"""The PromQL of deploy/: read from the Grafana dashboard and the rule file, and the metric names in it.

Enough of PromQL to find the metric names an expression selects: strings, label matchers,
ranges and grouping lists are taken out first, then every identifier left that is not a
function, a keyword or an aggregation is a metric name. The rule file is read without a
YAML library (its ``expr`` values are one line, or a ``|`` block), and the reader checks it
found one expression per rule, so a change of layout fails loudly instead of reading less.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "idnode.json"
RULES = DEPLOY / "prometheus" / "idnode.rules.yml"

# Series Prometheus makes itself: the scrape's health, and the alerts' state.
BUILT_IN = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"})
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                      "offset", "inf", "nan"})  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (functions, keywords and label names left out)."""
    bare = _STRING.sub('""', expr)
    bare = _MATCHERS.sub("{}", bare)
    bare = _RANGE.sub("[]", bare)
    bare = _GROUPING.sub(" ", bare)
    names = set()
    for match in _IDENTIFIER.finditer(bare):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every query of every panel (rows' panels too), as Grafana stores it."""
    found = []
    for panel in _panels(dashboard.get("panels", [])):
        found += [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
    return found


def _panels(panels: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def as_promql(expr: str) -> str:
    """A Grafana query as Prometheus takes it: every instance, a one-minute rate window."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")


def rule_expressions(text: str) -> dict[str, str]:
    """Each rule's name (``alert`` or ``record``) and its ``expr``, from a rule file."""
    rules: dict[str, str] = {}
    lines = text.splitlines()
    current = None
    for n, line in enumerate(lines):
        stripped = line.strip()
        head = re.match(r"-\s+(alert|record):\s*(\S+)", stripped)
        if head:
            current = head.group(2)
            continue
        if not stripped.startswith("expr:") or current is None:
            continue
        value = stripped.removeprefix("expr:").strip()
        if value in ("|", ">", "|-", ">-"):
            indent = len(line) - len(line.lstrip()) + 1
            block = []
            for following in lines[n + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) < indent:
                    break
                block.append(following.strip())
            value = " ".join(block).strip()
        if value:  # a plain scalar on the lines below is left unread, and counted as missing
            rules[current] = value
        current = None
    declared = len(re.findall(r"^\s*-\s+(?:alert|record):", text, re.MULTILINE))
    if len(rules) != declared:
        raise ValueError(f"read {len(rules)} expressions for {declared} rules: the rule file's layout changed")
    return rules


def recorded_names(text: str) -> set[str]:
    """The series a rule file's recording rules make."""
    return set(re.findall(r"^\s*-\s+record:\s*(\S+)", text, re.MULTILINE))


def exported_names(exposition: str) -> set[str]:
    """The metric names a text exposition carries: every sample's, and each histogram's own name."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind.strip() == "histogram":
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def unknown_names(exprs: Iterable[str], exported: set[str], also: Iterable[str] = ()) -> dict[str, set[str]]:
    """Per expression, the names in it that are neither exported, built in, nor in ``also``."""
    known = exported | BUILT_IN | set(also)
    unknown = {}
    for expr in exprs:
        missing = {n for n in metric_names(expr) if n not in known and _histogram_base(n) not in known}
        if missing:
            unknown[expr] = missing
    return unknown


def _histogram_base(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name
