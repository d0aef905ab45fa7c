"""Prometheus metrics of the serving path (names are a contract with dashboards and alerts).

The request path does not call prometheus_client per request: with several workers every
``inc`` is a write into a memory-mapped file, and three labelled metrics per request cost
more than the cached answer itself. ``Recorder`` adds up counts in plain dicts instead and
``flush`` hands them to the metrics twice a second and before every scrape, so what
Prometheus sees lags by at most half a second.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram

from protocol.errors import HandleError, QuotaExceeded, StoreUnavailable

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
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUEST_DURATION = Histogram(
    "idnode_request_duration_seconds",
    "Time from request to response, by front-end and operation.",
    ["frontend", "op"],
    buckets=DURATION_BUCKETS,
)
STORE_READS = Counter("idnode_store_reads", "Records read from the store on the resolution path.")
CACHE_HITS = Counter("idnode_cache_hits", "Answers found in a cache tier (local: this worker; redis).", ["tier"])
CACHE_MISSES = Counter("idnode_cache_misses", "Resolutions found in no cache tier.")
CACHE_COALESCED = Counter("idnode_cache_coalesced", "Misses that waited for another request's store read.")
CACHE_PREFETCHES = Counter("idnode_cache_prefetches", "Entries refreshed in the background near the end of their TTL.")
CACHE_SERVED_STALE = Counter("idnode_cache_served_stale", "Expired answers served because the store failed.")
REDIS_ERRORS = Counter("idnode_redis_errors", "Redis operations that failed or timed out (each treated as a miss).")
# Each worker has a breaker of its own: the sum over live workers says how many skip Redis now.
REDIS_BREAKER_OPEN = Gauge(
    "idnode_redis_breaker_open",
    "Workers whose Redis circuit breaker is open (Redis left alone after failures in a row).",
    multiprocess_mode="livesum",
)
# Set by each worker's cache sweeper; summed over the live workers (each keeps its own cache).
CACHE_ENTRIES = Gauge(
    "idnode_cache_entries",
    "Entries in the workers' caches, by form (hot: ready objects; packed: answers kept in packed form).",
    ["form"],
    multiprocess_mode="livesum",
)
CACHE_BYTES = Gauge(
    "idnode_cache_bytes",
    "Bytes the workers' caches count against cache_bytes (each worker's bound), both forms.",
    multiprocess_mode="livesum",
)
STORE_ERRORS = Counter(
    "idnode_store_errors",
    "Requests that met a store failure or timeout, answered with an error or with a stale copy.",
)
CACHE_INVALIDATIONS = Counter(
    "idnode_cache_invalidations", "Handles invalidated in the cache, by where the change came from.", ["source"]
)
DELEGATIONS = Counter(
    "idnode_delegations",
    "Queries sent to other nodes for handles this node does not hold, by outcome (answered, not_found, "
    "error, unreachable: no usable HTTP or Handle protocol answer, refused: an address delegation may not "
    "use, bailiwick, loop).",
    ["result"],
)
UPSTREAM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UPSTREAM_DURATION = Histogram(
    "idnode_upstream_request_duration_seconds",
    "Time of each request to another node (HTTP: resolution, referral or publication; Handle protocol: one "
    "resolution, UDP and any TCP fallback together), by peer: "
    "a configured upstream's HOST:PORT, or 'site' for every server a record names.",
    ["peer"],
    buckets=UPSTREAM_BUCKETS,
)
REFERRAL_CACHE_HITS = Counter(
    "idnode_referral_cache_hits", "Prefix referrals (which servers serve a prefix) found in this worker's cache."
)
PUBLICATIONS = Counter(
    "idnode_publications",
    "Prefix publications to a top-level node, by outcome (published, withdrawn, failed).",
    ["result"],
)
# Only the publishing worker sets it; the others hold 0, and a dead worker's value goes with it.
PUBLICATION_BACKLOG = Gauge(
    "idnode_publication_backlog",
    "Prefix publications to a top-level node still to be sent (due, or waiting to be retried).",
    multiprocess_mode="livesum",
)
CONNECTIONS_CLOSED = Counter(
    "idnode_http_connections_closed",
    "HTTP connections the node closed itself, by reason (header_timeout, body_timeout, limit, address_limit: "
    "over the cap per client address, malformed).",
    ["reason"],
)

HANDLE_DROPPED = Counter(
    "idnode_handle_dropped",
    "Handle protocol traffic the node dropped or cut off, by transport and reason (rate_limited: a UDP "
    "source over its rate; oversize; fragments: parts of a UDP message that never completed; timeout: a TCP "
    "message that did not arrive in time; idle; stalled: a TCP client that stopped reading its answers; "
    "limit: connections over the cap; address_limit: over the cap "
    "per client address; overload: UDP requests over the in-flight cap; too_large: a UDP answer refused "
    "for its size, the client told to use TCP; session_limit: a session setup over its source's or the "
    "node's bound; challenge_limit: an admin request refused a challenge, its source having its quota "
    "pending or its slots all held by others).",
    ["transport", "reason"],
)

QUOTA_REFUSALS = Counter(
    "idnode_quota_refusals",
    "Requests refused because a prefix's quota is used up, by kind (identifiers: 604, registrations: 603, "
    "resolutions: 603, prefixes: 605; registry/quota.py). A batch counts each refused item.",
    ["kind"],
)

_COUNTERS = {
    "store_reads": STORE_READS,
    "misses": CACHE_MISSES,
    "coalesced": CACHE_COALESCED,
    "prefetches": CACHE_PREFETCHES,
    "served_stale": CACHE_SERVED_STALE,
    "redis_errors": REDIS_ERRORS,
    "store_errors": STORE_ERRORS,
    "referral_hits": REFERRAL_CACHE_HITS,
}


class Recorder:
    """Per-process tallies, handed to prometheus_client by ``flush``."""

    def __init__(self) -> None:
        # (frontend, op, code, status) -> [count per duration bucket ..., +Inf count, sum of seconds]
        self.series: dict[tuple[str, str, int, int], list[float]] = {}
        self.events: Tally[str] = Tally()
        self.hits = {"local": 0, "redis": 0}
        self.closed: Tally[str] = Tally()
        self.dropped: Tally[tuple[str, str]] = Tally()
        self.quota: Tally[str] = Tally()

    def observe(self, frontend: str, op: str, code: int, status: int, seconds: float) -> None:
        slots = self.series.get((frontend, op, code, status))
        if slots is None:
            slots = self.series[frontend, op, code, status] = [0.0] * (len(DURATION_BUCKETS) + 2)
        slots[bisect_left(DURATION_BUCKETS, seconds)] += 1
        slots[-1] += seconds

    def flush(self) -> None:
        for (frontend, op, code, status), slots in self.series.items():
            n = sum(slots[:-1])
            REQUESTS.labels(frontend, op, str(code)).inc(n)
            if frontend == "http":
                HTTP_RESPONSES.labels(op, str(status)).inc(n)
            child = REQUEST_DURATION.labels(frontend, op)
            # Histogram keeps one count per bucket (made cumulative when collected) and
            # the sum; the last bucket is +Inf. observe() has no "n at once" form.
            for i, count in enumerate(slots[:-1]):
                if count:
                    child._buckets[i].inc(count)
            child._sum.inc(slots[-1])
        self.series.clear()
        for name, n in self.events.items():
            _COUNTERS[name].inc(n)
        self.events.clear()
        for tier, n in self.hits.items():
            if n:
                CACHE_HITS.labels(tier).inc(n)
                self.hits[tier] = 0
        for reason, n in self.closed.items():
            CONNECTIONS_CLOSED.labels(reason).inc(n)
        self.closed.clear()
        for (transport, reason), n in self.dropped.items():
            HANDLE_DROPPED.labels(transport, reason).inc(n)
        self.dropped.clear()
        for kind, n in self.quota.items():
            QUOTA_REFUSALS.labels(kind).inc(n)
        self.quota.clear()


RECORDER = Recorder()
observe = RECORDER.observe


def count(event: str, n: int = 1) -> None:
    RECORDER.events[event] += n


def error_answered(exc: HandleError) -> None:
    """Count what an error answer says about the node itself (its store failed), once per request."""
    if isinstance(exc, StoreUnavailable):
        RECORDER.events["store_errors"] += 1


def connection_closed(reason: str) -> None:
    """Count a connection the HTTP edge closed (a flood of them costs no file write each)."""
    RECORDER.closed[reason] += 1


def quota_refused(exc: QuotaExceeded) -> None:
    """Count a quota refusal (the registration service's hook: single writes, batch items, resolutions)."""
    RECORDER.quota[exc.kind] += 1


def handle_dropped(transport: str, reason: str, n: int = 1) -> None:
    """Count Handle protocol traffic dropped or cut off (``reason`` from a fixed set)."""
    RECORDER.dropped[transport, reason] += n
