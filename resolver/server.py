"""Process edge: wire the store, services and front-end together and run until told to stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Callable

from aiohttp import web

from registry.auth import Authenticator
from registry.bootstrap import ensure_node_prefix
from registry.ratelimit import FailureLimiter
from registry.service import RegistrationService
from registry.sqlite import SqliteStore
from registry.store import Store
from resolver.config import Config
from resolver.engine import ResolutionEngine
from resolver.http import HttpFrontend

log = logging.getLogger("idnode")

SHUTDOWN_GRACE_SECONDS = 10.0
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


def default_store(config: Config) -> Store:
    return SqliteStore(config.data_dir / "idnode.sqlite3", readers=config.store_readers)


async def bootstrap(config: Config, admin_secret: str | None, store: Store | None = None) -> None:
    """First start: create the node's prefix handle, showing a generated admin secret once."""
    store = store or default_store(config)
    await store.open()
    try:
        generated = await ensure_node_prefix(store, config.node_prefix, admin_secret)
        if generated:
            _announce_secret(config, generated)
    finally:
        await store.close()


async def serve(
    config: Config,
    store: Store | None = None,
    *,
    listener: socket.socket | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run one serving process until SIGTERM or SIGINT (after ``bootstrap``).

    ``store`` replaces the configured one (benchmarks). A worker of several serves on the
    ``listener`` its parent opened, and leaves announcing the address to the parent.
    """
    store = store or default_store(config)
    await store.open()
    gc.freeze()  # what start-up allocated lives for the whole process: never scan it again
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        service = RegistrationService(store, node_prefix=config.node_prefix, case_sensitive=config.case_sensitive)
        engine = ResolutionEngine(store, node_prefix=service.node_prefix)
        limiter = FailureLimiter(config.auth_failure_limit, config.auth_failure_window)
        authenticator = Authenticator(store, case_sensitive=config.case_sensitive, limiter=limiter)
        app = HttpFrontend(config, engine, service, authenticator).app()
        await _run_http(app, config, listener, on_ready)
    finally:
        await store.close()


def announce(scheme: str, host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"idnode: listening on {scheme}://{shown}:{port}", file=sys.stderr, flush=True)


async def _run_http(
    app: web.Application, config: Config, listener: socket.socket | None, on_ready: Callable[[], None] | None
) -> None:
    runner = web.AppRunner(
        app,
        access_log=log if config.access_log else None,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        handle_signals=False,
    )
    await runner.setup()
    ssl_context = _ssl_context(config)
    site: web.BaseSite
    if listener is not None:
        site = web.SockSite(runner, listener, ssl_context=ssl_context)
    else:
        site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context, backlog=1024)
    await site.start()
    if listener is None:
        for sock in runner.addresses:
            announce("https" if ssl_context else "http", sock[0], sock[1])
    if on_ready is not None:
        on_ready()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing requests in flight")
    await runner.cleanup()
