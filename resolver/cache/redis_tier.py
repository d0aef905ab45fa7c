"""The shared cache tier: Redis (one server or a Cluster), never allowed to cause an outage.

Every operation is bounded by ``timeout`` (default 50 ms); a failure or a timeout counts
in ``idnode_redis_errors_total`` and is a miss. After ``Breaker.threshold`` failures in a
row the breaker opens (``idnode_redis_breaker_open``) and Redis is left alone for a cool-down
(1 s, doubling up to 10 s), so a dead or stopped Redis does not cost 50 ms per request; then
one request probes it.
redis-py reconnects by itself on the next command.

Entries are msgpack ``[format, expires_at, ttl, record]`` under
``<namespace>:v<format>:rec:<handle key>``, where ``record`` is the store's encoding of
the record or nil for "not found", and ``expires_at`` is Unix time. Redis keeps an entry
for its TTL plus the serve-stale window, so a stale answer outlives a store outage.

Writes are announced on the channel ``<namespace>:v<format>:changed`` as msgpack
``[node id, [handle key, ...]]``; every worker of every other node drops what it cached
for those handles. A worker whose subscription broke has missed announcements, so it
clears its own cache when it subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import msgpack
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError

from resolver import metrics
from resolver.config import DEFAULTS

log = logging.getLogger("resolver.redis")

FORMAT = 1
CLUSTER_SCHEME = "redis+cluster"
PENDING_LIMIT = 100_000  # invalidations kept for a Redis that is away, beyond which the oldest go


class RedisEntry(NamedTuple):
    expires_at: float  # Unix time
    ttl: float
    record: bytes | None  # encode_record() bytes, or None for "not found"


class Breaker:
    """Consecutive-failure circuit breaker with a doubling cool-down."""

    def __init__(self, threshold: int = 3, cooldown: float = 1.0, max_cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.cooldown = cooldown
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold

    def allow(self) -> bool:
        if self.failures < self.threshold:
            return True
        if self.probing or time.monotonic() < self.open_until:
            return False
        self.probing = True  # half-open: this one call tries Redis
        return True

    def success(self) -> None:
        if self.failures >= self.threshold:
            log.warning("redis is back; cache tier enabled again")
            metrics.REDIS_BREAKER_OPEN.dec()
        self.failures = 0
        self.probing = False
        self.cooldown = self.base_cooldown

    def failure(self) -> None:
        self.failures += 1
        if self.failures == self.threshold:
            log.warning("redis failing; skipping it for %.1f s at a time", self.cooldown)
            metrics.REDIS_BREAKER_OPEN.inc()
        if self.failures >= self.threshold:
            if self.probing:
                self.cooldown = min(self.cooldown * 2, self.max_cooldown)
            self.open_until = time.monotonic() + self.cooldown
            self.probing = False


def _clients(url: str, timeout: float) -> tuple[Any, Redis]:
    """The command client (plain or cluster) and a plain client for pub/sub."""
    parts = urlsplit(url)
    if parts.scheme == CLUSTER_SCHEME:
        nodes = []
        for item in parts.netloc.rpartition("@")[2].split(","):
            host, _, port = item.rpartition(":")
            nodes.append(ClusterNode(host.strip("[]") or "127.0.0.1", int(port or 6379)))
        user, password = parts.username, parts.password
        client: Any = RedisCluster(
            startup_nodes=nodes,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            username=user,
            password=password,
        )
        # Published messages reach every node of a cluster: any one of them will do.
        first = nodes[0]
        subscriber = Redis(
            host=first.host, port=int(first.port), socket_connect_timeout=1.0, username=user, password=password
        )
        return client, subscriber
    client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False)
    subscriber = Redis.from_url(url, socket_connect_timeout=1.0, socket_keepalive=True)
    return client, subscriber


class RedisTier:
    def __init__(
        self,
        url: str,
        *,
        node_id: str,
        namespace: str = DEFAULTS.redis_namespace,
        timeout: float = DEFAULTS.redis_timeout,
        on_changed: Callable[[Sequence[str]], None],
        on_resubscribed: Callable[[], None],
    ) -> None:
        self.url = url
        self.node_id = node_id
        self.timeout = timeout
        self.prefix = f"{namespace}:v{FORMAT}:rec:"
        self.channel = f"{namespace}:v{FORMAT}:changed"
        self.breaker = Breaker()
        self._on_changed = on_changed
        self._on_resubscribed = on_resubscribed
        self._client, self._subscriber = _clients(url, timeout)
        self._listener: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._pending: dict[str, None] = {}  # invalidations Redis has not taken yet (ordered set)
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="redis-subscriber")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
        with contextlib.suppress(RedisError, OSError):
            await self._subscriber.aclose()

    async def _call(self, make: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
        """Run one command within the timeout; (False, None) on any failure."""
        if not self.breaker.allow():
            return False, None
        try:
            async with asyncio.timeout(self.timeout):
                result = await make()
        except (RedisError, OSError, TimeoutError) as exc:
            metrics.count("redis_errors")
            self.breaker.failure()
            log.debug("redis: %r", exc)
            return False, None
        self.breaker.success()
        if self._pending:
            self._spawn(self._flush_pending())
        return True, result

    async def get(self, key: str) -> RedisEntry | None:
        ok, raw = await self._call(lambda: self._client.get(self.prefix + key))
        if not ok or raw is None:
            return None
        try:
            fmt, expires_at, ttl, record = msgpack.unpackb(raw)
            if fmt != FORMAT:
                return None
            return RedisEntry(float(expires_at), float(ttl), record)
        except (ValueError, TypeError, msgpack.UnpackException):
            log.warning("redis: unreadable cache entry for %s; ignored", key)
            return None

    def set_later(self, key: str, entry: RedisEntry, keep_seconds: float) -> None:
        """Store ``entry`` in the background for ``keep_seconds`` (the TTL plus the stale window)."""
        payload = msgpack.packb([FORMAT, entry.expires_at, entry.ttl, entry.record])
        ms = max(1, int(keep_seconds * 1000))
        self._spawn(self._call(lambda: self._client.set(self.prefix + key, payload, px=ms)))

    async def invalidate(self, keys: Sequence[str]) -> None:
        """Delete the entries and tell the other nodes; keys Redis could not take are retried."""
        if not keys:
            return
        message = msgpack.packb([self.node_id, list(keys)])
        names = [self.prefix + k for k in keys]
        ok, _ = await self._call(lambda: self._client.delete(*names))
        if ok:
            await self._call(lambda: self._publish(message))
            return
        for key in keys:
            self._pending[key] = None
        while len(self._pending) > PENDING_LIMIT:
            self._pending.pop(next(iter(self._pending)))

    async def _publish(self, message: bytes) -> None:
        await self._subscriber.publish(self.channel, message)

    async def _flush_pending(self) -> None:
        keys = list(self._pending)[:2000]
        if not keys:
            return
        for key in keys:
            self._pending.pop(key, None)
        await self.invalidate(keys)

    def _spawn(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                # Whatever was announced while we were not listening is lost: start afresh.
                self._on_resubscribed()
                self.subscribed.set()
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None:
                        self._received(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                metrics.count("redis_errors")
                log.debug("redis subscription: %r", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _received(self, data: bytes) -> None:
        try:
            node, keys = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException):
            log.warning("redis: unreadable change announcement ignored")
            return
        if node != self.node_id and isinstance(keys, list):
            self._on_changed([k for k in keys if isinstance(k, str)])
