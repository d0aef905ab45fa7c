"""Process edge: wire the store, services and front-end together and run until told to stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from aiohttp import web

from protocol import valuedata as vd
from protocol.identifiers import prefix_handle
from protocol.wire.message import PROTOCOL_VERSION
from registry.bootstrap import ensure_node_prefix
from registry.identity import secrets, tokens
from registry.identity.auth import NODE_BRAKE_FACTOR, Authenticator
from registry.identity.ratelimit import FailureLimiter
from registry.identity.resealing import SEALED_UNDER, reseal_store
from registry.identity.sealing import SecretKeyError
from registry.service import RegistrationService
from registry.store import Store
from resolver import metrics, stores
from resolver.cache.generations import Generations
from resolver.cache.redis_tier import RedisTier
from resolver.cache.tiers import CachePolicy
from resolver.config import Config, host_port, mirror_address
from resolver.delegation.delegator import DelegationPolicy
from resolver.delegation.http_client import HttpClient
from resolver.delegation.publisher import Publisher, SiteAddress, publication_report
from resolver.engine import ResolutionEngine
from resolver.handle.admin import HandleAdmin
from resolver.handle.frontend import HandleFrontend
from resolver.handle.login import LoginPolicy
from resolver.handle.server_key import ensure_key, load_key, public_key_bytes
from resolver.handle.shared import HandleShared
from resolver.handle.transport import HandleLimits, HandleTcpListener, HandleUdpListener
from resolver.http.connections import ConnectionLimits, GuardedRunner
from resolver.http.forwarded import ClientAccessLogger
from resolver.http.frontend import HttpFrontend
from resolver.listeners import Listeners, open_listeners
from resolver.logs import ACCESS_LOGGER
from resolver.snms.routes import SnmsRoutes

log = logging.getLogger("idnode")

SHUTDOWN_GRACE_SECONDS = 10.0
METRICS_FLUSH_SECONDS = 0.5
# A 2,000-item batch allocates tens of thousands of containers; with CPython's default
# thresholds (700, 10, 10) the cyclic collector then runs hundreds of times per batch and
# scans everything alive each time. The serving path makes few reference cycles, so collect
# far less often (measured: +30% registration throughput, bench/RESULTS.md).
GC_THRESHOLDS = (100_000, 50, 1000)


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def _announce_secret(config: Config, secret: str) -> None:
    # Printed once, on first start, and never stored in clear.
    print(
        f"\nidnode: generated the node admin secret for identity 300:0.NA/{config.node_prefix}\n"
        f"idnode:     {secret}\n"
        "idnode: it is shown only this once; keep it safe (set IDNODE_ADMIN_SECRET before the\n"
        "idnode: first start to choose it yourself)\n",
        file=sys.stderr,
        flush=True,
    )


# Descriptors a worker needs beside its client connections: the store's readers and WAL,
# Redis, connections to other nodes, the metrics files, and a margin.
FDS_BESIDE_CONNECTIONS = 256


def raise_fd_limit(config: Config) -> None:
    """Lift this process's open-file limit to what ``max_connections`` needs, if allowed.

    Many systems start processes with a soft limit of 1024, which would run out before the
    connection cap and make accept() fail for every client instead of the excess.
    """
    want = config.max_connections + FDS_BESIDE_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < want:
        log.warning(
            "setting 'max_connections' (%d) needs about %d open files but the limit is %d: "
            "lower max_connections or raise the limit (ulimit -n, LimitNOFILE=)",
            config.max_connections,
            want,
            soft,
        )


async def bootstrap(config: Config, admin_secret: str | None, store: Store | None = None) -> None:
    """First start: create the node's prefix handle, showing a generated admin secret once.

    A mirror site's node writes nothing to its store (a hot standby): it checks it instead."""
    ensure_key(config.data_dir)  # the Handle server key: made once, before the workers fork
    if config.snms:
        tokens.ensure_key(config.token_key_path)  # likewise the key SNMS tokens are signed with
    if config.mirror_of is not None:
        await check_mirror(config, store)
        return
    if not config.secret_key_path.exists():
        log.info("making the secret key %s: keep a copy apart from the store and its backups", config.secret_key_path)
    stores.load_secret_key(config)  # and the key stored secrets are sealed with
    store = store or stores.default_store(config)
    await store.open()
    try:
        (await reseal_store(store)).report()  # secrets in clear (or under an older key) sealed now
        generated = await ensure_node_prefix(store, config.node_prefix, admin_secret)
        if generated:
            _announce_secret(config, generated)
    finally:
        await store.close()


async def check_mirror(config: Config, store: Store | None = None) -> None:
    """A mirror site's start: its store opens read-only (the schema is there, replicated), and it
    holds the primary's secret key and node prefix; nothing is written."""
    if not config.secret_key_path.exists():  # a new key could open none of the secrets the primary sealed
        raise SecretKeyError(
            f"setting 'secret_key_file': {config.secret_key_path} does not exist; a mirror site verifies "
            "logins with the secrets its primary sealed: copy the primary node's secret key file there"
        )
    stores.load_secret_key(config)
    store = store or stores.default_store(config)
    await store.open()
    try:
        if await store.get(prefix_handle(config.node_prefix).key) is None:
            log.warning(
                "mirror site: the store holds no %s yet; has the standby replayed the primary's first start?",
                prefix_handle(config.node_prefix).text,
            )
        noted = await store.note(SEALED_UNDER)
        if noted is not None and not noted.startswith(f"{secrets.keyring().current};"):
            log.warning(
                "mirror site: the primary sealed the stored secrets under another key than secret_key_file's "
                "current one: logins will fail here until the primary node's secret key file is copied"
            )
    finally:
        await store.close()
    log.info("mirror site of %s for prefix %s: serving resolution only", config.mirror_of, config.node_prefix)


@dataclass(frozen=True)
class NodeShared:
    """What every worker of one node shares, made before they fork."""

    limiter: FailureLimiter  # failed authentications per identity and address, and per address: refuses
    brake: FailureLimiter  # failed authentications per identity: slows
    node_brake: FailureLimiter  # failed authentications on the whole node: slows
    generations: Generations = field(default_factory=Generations)
    used_passwords: tokens.UsedPasswords = field(default_factory=tokens.UsedPasswords)  # SNMS's dated logins
    handle: HandleShared = field(default_factory=HandleShared)  # pending challenges and sessions
    node_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}")


def node_shared(config: Config) -> NodeShared:
    return NodeShared(
        FailureLimiter(config.auth_failure_limit, config.auth_failure_window),
        FailureLimiter(config.auth_brake_limit, config.auth_failure_window),
        FailureLimiter(NODE_BRAKE_FACTOR * config.auth_brake_limit, config.auth_failure_window),
    )


def node_site(config: Config, bound: tuple[str, int], public_key: bytes = b"") -> vd.Site:
    """This node's HS_SITE as the Handle protocol shows it (GET_SITE_INFO): its TCP and UDP interfaces.

    The address is the Handle listener's, or the advertised host when it listens on every address.
    A mirror site's is not primary and takes no administration.
    """
    host, port = bound
    if host in ("0.0.0.0", "::", "") and config.advertise is not None:
        host = host_port(config.advertise, "advertise")[0]
    primary = config.mirror_of is None
    interfaces = (vd.Interface("TCP", port, query=True, admin=primary), vd.Interface("UDP", port, query=True))
    server = vd.Server(1, host, public_key, interfaces)
    return vd.Site(servers=(server,), protocol_version=PROTOCOL_VERSION, is_primary=primary)


def advertised(config: Config, bound: tuple[str, int]) -> tuple[str, int]:
    """The address other nodes reach this one at: ``advertise``, else the listener's."""
    return bound if config.advertise is None else host_port(config.advertise, "advertise")


async def serve(
    config: Config,
    store: Store | None = None,
    *,
    listeners: Listeners | None = None,
    announce_them: bool = False,
    on_ready: Callable[[], None] | None = None,
    shared: NodeShared | None = None,
    publish: bool = True,
) -> None:
    """Run one serving process until SIGTERM or SIGINT (after ``bootstrap``).

    ``store`` replaces the configured one (tests, benchmarks). The process serves the
    ``listeners`` opened for the node (by default it opens and announces them itself); a
    worker of several serves those its parent opened, with what the parent ``shared``,
    and leaves announcing them to the parent. One process of a node ``publish``es its
    prefixes to the upstream (when one is configured).
    """
    if listeners is None:
        listeners, announce_them = open_listeners(config), True
    raise_fd_limit(config)
    stores.load_secret_key(config)
    store = store or stores.default_store(config)
    shared = shared or node_shared(config)
    await store.open()
    gc.freeze()  # what start-up allocated lives for the whole process: never scan it again
    gc.set_threshold(*GC_THRESHOLDS)
    redis: RedisTier | None = None
    engine: ResolutionEngine | None = None
    flusher = asyncio.create_task(_flush_metrics(), name="metrics-flush")
    background: list[asyncio.Task[None]] = []
    publishing = HttpClient(shared.node_id, config.upstream_timeout, source_address=config.source_address)
    try:
        service = RegistrationService(
            store,
            node_prefix=config.node_prefix,
            case_sensitive=config.case_sensitive,
            quota_defaults=config.quota_defaults,
            quota_refused=metrics.quota_refused,
            read_only=config.mirror_refusal,
        )
        local: list[ResolutionEngine] = []
        if config.redis is not None:
            redis = RedisTier(
                config.redis,
                node_id=shared.node_id,
                namespace=config.redis_namespace,
                timeout=config.redis_timeout,
                on_changed=lambda keys: local[0].changed_elsewhere(keys),
                on_resubscribed=lambda: local[0].forget_all() if local else None,
            )
        engine = ResolutionEngine(
            store,
            node_prefix=service.node_prefix,
            case_sensitive=config.case_sensitive,
            policy=CachePolicy.of(config),
            generations=shared.generations,
            redis=redis,
            delegation=DelegationPolicy.of(config),
            node_id=shared.node_id,
        )
        local.append(engine)
        engine.start()
        if redis is not None:
            await redis.start()
        authenticator = Authenticator(
            store,
            case_sensitive=config.case_sensitive,
            limiter=shared.limiter,
            brake=shared.brake,
            node_brake=shared.node_brake,
        )
        signer = tokens.TokenSigner(tokens.load_key(config.token_key_path)) if config.snms else None
        mounted = [] if signer is None else [SnmsRoutes(service, authenticator, engine, signer, shared.used_passwords)]
        publications = partial(publication_report, store, engine.upstreams) if config.upstream else None
        app = HttpFrontend(config, engine, service, authenticator, mounted=mounted, publications=publications).app()
        served: list[Served] = [HttpListener(app, config, listeners.http)]
        server_key = load_key(config.data_dir)
        admin = HandleAdmin(
            service, authenticator, shared.handle, exempt=config.handle_udp_exempt, logins=LoginPolicy.of(config)
        )
        handle = HandleFrontend(
            engine,
            case_sensitive=config.case_sensitive,
            admin=admin.respond,
            charge=admin.charge_resolution,
            key=server_key,
        )
        if listeners.handle_tcp is not None:
            limits = HandleLimits.of(config)
            served.append(HandleTcpListener(handle, limits, listeners.handle_tcp))
            served += [HandleUdpListener(handle, limits, sock) for sock in listeners.handle_udp]
        started = engine  # for the closure below: mypy cannot see engine is set

        def listening(bound: tuple[str, int]) -> None:
            started.advertised = advertised(config, bound)
            if listeners.handle_address is not None:
                handle.site = node_site(config, listeners.handle_address, public_key_bytes(server_key))
            if publish and config.upstream and config.mirror_of is None:  # a mirror's primary publishes it
                publisher = Publisher(
                    store,
                    publishing,
                    node_prefix=service.node_prefix,
                    upstreams=started.upstreams,
                    identity=config.upstream_identity or "",
                    secret=config.upstream_secret or "",
                    address=started.advertised,
                    protocol="HTTPS" if config.tls else "HTTP",
                    handle_port=None if listeners.handle_address is None else listeners.handle_address[1],
                    mirrors=tuple(SiteAddress(*mirror_address(text)) for text in config.mirror_site),
                )
                store.add_write_listener(publisher.prefix_changed)
                background.append(asyncio.create_task(publisher.run(), name="publisher"))

        await _run(served, listeners, listening, on_ready, config if announce_them else None)
    finally:
        for task in background:
            task.cancel()
        flusher.cancel()
        if engine is not None:
            await engine.close()
        await publishing.close()
        if redis is not None:
            await redis.close()
        metrics.RECORDER.flush()
        await store.close()


async def _flush_metrics() -> None:
    while True:
        await asyncio.sleep(METRICS_FLUSH_SECONDS)
        metrics.RECORDER.flush()


def announce(scheme: str, host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"idnode: listening on {scheme}://{shown}:{port}", file=sys.stderr, flush=True)


def announce_listeners(config: Config, listeners: Listeners) -> None:
    """One line per listener; the HTTP one last: scripts wait for it, and have read the others by then."""
    if listeners.handle_address is not None:
        announce("handle", *listeners.handle_address)
    host, port = listeners.http.getsockname()[:2]
    announce("https" if config.tls else "http", host, port)


class Served(Protocol):
    """A listener a worker serves: started once, closed at shutdown after the others stopped accepting."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class HttpListener:
    def __init__(self, app: web.Application, config: Config, sock: socket.socket) -> None:
        self._sock = sock
        self._ssl = _ssl_context(config)
        self._runner = GuardedRunner(
            app,
            ConnectionLimits.of(config),
            access_log=logging.getLogger(ACCESS_LOGGER) if config.access_log else None,
            access_log_class=ClientAccessLogger,
            shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
            handle_signals=False,
            keepalive_timeout=config.keepalive_timeout,
            # Bodies are read as sent: no client of the API compresses them, and refusing
            # Content-Encoding (read_body) leaves no decompression to bound.
            auto_decompress=False,
        )

    async def start(self) -> None:
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock, ssl_context=self._ssl).start()

    async def close(self) -> None:
        await self._runner.cleanup()  # stops accepting, finishes requests in flight within the grace


async def _run(
    served: list[Served],
    listeners: Listeners,
    listening: Callable[[tuple[str, int]], None],
    on_ready: Callable[[], None] | None,
    announcing: Config | None,
) -> None:
    """Serve every listener until SIGTERM or SIGINT; then close them all, each finishing what is in flight."""
    for listener in served:
        await listener.start()
    host, port = listeners.http.getsockname()[:2]
    listening((host, port))
    if announcing is not None:
        announce_listeners(announcing, listeners)
    if on_ready is not None:
        on_ready()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing requests in flight")
    await asyncio.gather(*(listener.close() for listener in served))
