"""Publishing this node's prefixes to its top-level node(s).

Every committed change to a prefix handle ``0.NA/<prefix>`` bumps that prefix's sequence
number in the store's outbox, in the transaction of the change (``registry.store``). The
publisher compares the outbox with what each upstream was last sent (the publications
table) and brings the upstream up to date: a prefix handle held here is published as
``0.NA/<prefix>`` at the upstream with its HS_SITE and HS_SERV values (this node's own site
when it has none: it serves the prefix itself; an enterprise's server when it delegates the
prefix down), a deleted one is withdrawn. Each publication sends the state of the record as it is
now, so repeating one is harmless and a later change supersedes an earlier one that failed.
Failures are retried with exponential back-off, also across restarts: the outbox is durable.

The node's own prefix is republished on every start, so that a changed address reaches the
top-level node. Only its site values are written there: the rest of that record is the
top-level admin's grant. Runs in one process of the node (``resolver.server``).

This node's site is the primary one, at ``SITE_INDEX``; each of its mirror sites (``mirror_site``,
deploy/MIRROR.md) follows as a site that is not primary, at ``MIRROR_INDEXES``, so that a
resolver tries this node first and a mirror when it does not answer. A mirror site dropped from
the configuration is withdrawn from the node prefix's record at the top-level node too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, NamedTuple

from protocol.basic_auth import basic_credentials
from protocol.errors import HandleError
from protocol.identifiers import NA_PREFIX, is_at_or_under, prefix_handle
from protocol.jsonfmt import format_timestamp, value_to_json
from protocol.records import HS_SERV, HS_SITE, HandleRecord
from registry.store import Publication, Store
from resolver import metrics
from resolver.config import MAX_MIRROR_SITES
from resolver.delegation.hop import HopFailed
from resolver.delegation.http_client import HttpClient
from resolver.delegation.sites import Target, site_value

log = logging.getLogger("resolver.publisher")

POLL_SECONDS = 1.0  # other processes of the node write prefix handles too: look this often
RETRY_MIN_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
SITE_INDEX = 1
MIRROR_INDEXES = range(SITE_INDEX + 1, SITE_INDEX + 1 + MAX_MIRROR_SITES)  # kept for mirror sites
SITE_TTL = 3600


class SiteAddress(NamedTuple):
    """Where one site's server is: its address, HTTP(S) port and Handle protocol port (None: no Handle)."""

    host: str
    port: int
    handle_port: int | None = None


class Publisher:
    def __init__(
        self,
        store: Store,
        client: HttpClient,
        *,
        node_prefix: str,
        upstreams: tuple[Target, ...],
        identity: str,
        secret: str,
        address: tuple[str, int],
        protocol: str = "HTTP",
        handle_port: int | None = None,
        mirrors: tuple[SiteAddress, ...] = (),
    ) -> None:
        self.store = store
        self.client = client
        self.node_prefix = node_prefix
        self.upstreams = upstreams
        self._authorization = basic_credentials(identity, secret)
        self.address = address
        self.protocol = protocol
        self.handle_port = handle_port
        if len(mirrors) > MAX_MIRROR_SITES:
            raise ValueError(f"at most {MAX_MIRROR_SITES} mirror sites")
        self.mirrors = mirrors
        self.wake = asyncio.Event()
        self._by_url = {u.url: u for u in upstreams}
        self._seen = 0  # the highest outbox sequence number read
        self._todo: dict[tuple[str, str], int] = {}  # (prefix, upstream URL) -> outbox seq to publish
        self._attempts: dict[tuple[str, str], int] = {}  # failures in a row
        self._retry_at: dict[tuple[str, str], float] = {}

    async def prefix_changed(self, keys: list[str]) -> None:
        """A write listener: a prefix handle changed in this process, so look now."""
        if any(key.startswith(NA_PREFIX + "/") for key in keys):
            self.wake.set()

    async def run(self) -> None:
        await self.store.touch_prefix(self.node_prefix)
        while True:
            try:
                delay = await self.publish_due()
            except HandleError as exc:  # the store failed: try again shortly
                log.warning("publication: %s", exc.message)
                delay = RETRY_MIN_SECONDS
            try:
                async with asyncio.timeout(delay):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()

    async def publish_due(self) -> float:
        """Send every publication that is behind and due; seconds until the next is due.

        Only what changed since the last look is read from the outbox (one sequence orders
        it); the first look also reads what earlier runs of the node already published.
        """
        changed = await self.store.prefix_outbox(after=self._seen)
        if changed:
            first = self._seen == 0
            done = {(p.prefix, p.upstream): p for p in await self.store.publications()} if first else {}
            for prefix, seq in changed.items():
                self._seen = max(self._seen, seq)
                if not is_at_or_under(prefix, self.node_prefix):
                    continue
                for url in self._by_url:
                    last = done.get((prefix, url))
                    if last is not None and last.covers(seq):
                        continue
                    self._todo[prefix, url] = seq
                    if last is not None and last.state == "failed":
                        self._attempts[prefix, url] = last.attempts
        wait = POLL_SECONDS
        for (prefix, url), seq in list(self._todo.items()):
            due = self._retry_at.get((prefix, url), 0.0) - time.monotonic()
            if due > 0:
                wait = min(wait, due)
                continue
            await self._publish(prefix, seq, self._by_url[url])
        metrics.PUBLICATION_BACKLOG.set(len(self._todo))
        return wait

    def _values(self, prefix: str, record: HandleRecord) -> list[dict[str, Any]]:
        # The prefix's own service values (an enterprise's server), as the engine reads them.
        sites = [value_to_json(v) for v in record.values if v.type_matches(HS_SITE + ".") or v.type_matches(HS_SERV)]
        if sites:
            return sites
        return self.site_values()

    def site_values(self) -> list[dict[str, Any]]:
        """This node's site (primary) and its mirrors' (not primary), as HS_SITE values."""
        host, port = self.address
        values = [site_value(SITE_INDEX, host, port, self.protocol, SITE_TTL, handle_port=self.handle_port)]
        for index, mirror in zip(MIRROR_INDEXES, self.mirrors, strict=False):
            values.append(
                site_value(index, mirror.host, mirror.port, self.protocol, SITE_TTL,
                           handle_port=mirror.handle_port, primary=False)
            )  # fmt: skip
        return values

    async def _withdraw_mirrors(self, upstream: Target, name: str, kept: set[int]) -> None:
        """Remove from the node prefix's record at ``upstream`` the mirror sites no longer configured."""
        record = await self.client.resolve(upstream, prefix_handle(self.node_prefix), ())
        stale = [
            v.index
            for v in (record.values if record is not None else ())
            if v.index in MIRROR_INDEXES and v.index not in kept and v.type_matches(HS_SITE + ".")
        ]
        if stale:
            query = "?" + "&".join(f"index={i}" for i in stale)
            await self.client.write("DELETE", upstream, name, self._authorization, query=query)

    async def _publish(self, prefix: str, seq: int, upstream: Target) -> None:
        key = (prefix, upstream.url)
        name = prefix_handle(prefix).text
        record = await self.store.get(prefix_handle(prefix).key)
        try:
            if record is None:
                await self.client.write("DELETE", upstream, name, self._authorization)
                state = "withdrawn"
            else:
                values = self._values(prefix, record)
                query = ""
                if prefix == self.node_prefix:  # the rest of that record is the top-level admin's grant
                    query = "?" + "&".join(f"index={v['index']}" for v in values)
                await self.client.write("PUT", upstream, name, self._authorization, query=query, body=values)
                if prefix == self.node_prefix:
                    await self._withdraw_mirrors(upstream, name, {v["index"] for v in values})
                state = "published"
            attempts, error = 0, ""
            self._retry_at.pop(key, None)
            self._attempts.pop(key, None)
            del self._todo[key]
            log.info("%s %s at %s", state, name, upstream.url)
        except HopFailed as exc:
            state, error = "failed", exc.message
            attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
            backoff = min(RETRY_MAX_SECONDS, RETRY_MIN_SECONDS * 2 ** (attempts - 1))
            self._retry_at[key] = time.monotonic() + backoff
            log.warning("publishing %s at %s failed (attempt %d, next in %g s): %s", name, upstream.url, attempts,
                        backoff, exc.detail)  # fmt: skip
        metrics.PUBLICATIONS.labels(state).inc()
        await self.store.record_publication(Publication(prefix, upstream.url, seq, state, attempts, error, time.time()))


async def publication_report(store: Store, upstreams: tuple[Target, ...]) -> dict[str, list[dict[str, Any]]]:
    """Per prefix, how its publication at each upstream stands (``GET /api/prefixes``)."""
    if not upstreams:
        return {}
    outbox = await store.prefix_outbox()
    sent = {(p.prefix, p.upstream): p for p in await store.publications()}
    report: dict[str, list[dict[str, Any]]] = {}
    for prefix, seq in sorted(outbox.items()):
        rows = []
        for upstream in upstreams:
            last = sent.get((prefix, upstream.url))
            row: dict[str, Any] = {"upstream": upstream.url}
            if last is None:
                row["state"] = "pending"
            else:
                row["state"] = last.state if last.covers(seq) or last.state == "failed" else "pending"
                row["attempts"] = last.attempts
                row["updated"] = format_timestamp(int(last.updated))
                if last.error:
                    row["error"] = last.error
            rows.append(row)
        report[prefix] = rows
    return report
