"""Prometheus metrics of the serving path (names are a contract with dashboards)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "idnode_requests",
    "Requests answered, by front-end, operation and Handle response code.",
    ["frontend", "op", "code"],
)
HTTP_RESPONSES = Counter(
    "idnode_http_responses",
    "HTTP responses, by route and HTTP status.",
    ["op", "status"],
)
REQUEST_DURATION = Histogram(
    "idnode_request_duration_seconds",
    "Time from request to response, by front-end and operation.",
    ["frontend", "op"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
STORE_READS = Counter("idnode_store_reads", "Records read from the store on the resolution path.")


def observe(frontend: str, op: str, code: int, status: int, seconds: float) -> None:
    REQUESTS.labels(frontend, op, str(code)).inc()
    HTTP_RESPONSES.labels(op, str(status)).inc()
    REQUEST_DURATION.labels(frontend, op).observe(seconds)
