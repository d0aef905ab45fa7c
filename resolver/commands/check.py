"""``idnode check``: can a node start with this configuration, and reach what it names?

Run before ``serve`` (or a deploy) with the same file, environment and flags. It validates
the configuration as ``serve`` does, then opens the store, pings Redis and asks each
upstream, printing one line per check. No running node is needed.

The exit code is a bitmask of the kinds of problem found, so a script learns every one:
0 all good; 2 the configuration is invalid (or a TLS file does not load); 4 the store cannot
be opened; 8 Redis does not answer; 16 an upstream cannot be reached or refuses this node's
credentials. An invalid configuration stops the other checks (2 alone); argparse's own usage
errors are 2 as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from protocol.errors import HandleError
from registry.datadir import space_problem
from registry.store import redact_url
from resolver import config as config_mod
from resolver.commands.admin_client import (
    INSECURE_HTTP_FLAG,
    AdminClient,
    AdminError,
    AuthenticationRefused,
    Credentials,
    NodeRefused,
    UsageError,
    printable,
)

OK, CONFIG_BAD, STORE_BAD, REDIS_BAD, UPSTREAM_BAD = 0, 2, 4, 8, 16
EPILOG = (
    "exit code: the sum of the kinds of problem found: 2 invalid configuration (or TLS files), "
    "4 store, 8 Redis, 16 an upstream; 0 when every check passed"
)
_FLAGS = ("listen", "data_dir", "store", "store_replica", "node_prefix", "role", "redis", "upstream")


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    ok: bool
    detail: str
    bit: int = OK


def add_parsers(commands: Any) -> None:
    c = commands.add_parser(
        "check",
        help="validate a configuration and reach its store, Redis and upstreams",
        description="Validate the configuration as serve does (file, IDNODE_* environment, these flags), then "
        "open the store, ping Redis and ask each upstream. Needs no running node.",
        epilog=EPILOG,
    )
    c.add_argument("--config", type=Path, help="TOML configuration file (the node's)")
    c.add_argument("--listen", help="HOST:PORT the node serves HTTP on")
    c.add_argument("--data-dir", help="directory of the embedded store")
    c.add_argument("--store", help="sqlite:///DIR or postgresql://USER@HOST:PORT/DB")
    c.add_argument("--store-replica", action="append", help="postgresql:// URL of a replica (repeatable)")
    c.add_argument("--node-prefix", help="the prefix the node serves")
    c.add_argument("--role", choices=config_mod.ROLES)
    c.add_argument("--redis", help="redis://HOST:PORT[/DB] or redis+cluster://HOST:PORT,...")
    c.add_argument("--upstream", action="append", help="a top-level node's URL (repeatable)")
    c.add_argument(
        INSECURE_HTTP_FLAG,
        action="store_true",
        help="ask a plain http:// upstream on another machine (its credentials then cross the network in clear)",
    )
    c.add_argument("--timeout", type=float, default=3.0, help="seconds each check may take (default 3)")
    c.add_argument("--json", action="store_true", help='print {"exitCode", "checks": [...]} for scripts')
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    findings = findings_for(args)
    code = 0
    for finding in findings:
        code |= finding.bit
    if args.json:
        print(json.dumps({"exitCode": code, "checks": [asdict(f) for f in findings]}, indent=2))
    else:
        for f in findings:
            print(f"{'ok' if f.ok else 'PROBLEM':7} {f.check}: {printable(f.detail)}")
    return code


def findings_for(args: argparse.Namespace) -> list[Finding]:
    flags = {name: getattr(args, name) for name in _FLAGS}
    try:
        config = config_mod.load(args.config, os.environ, flags)
        config_mod.admin_secret(os.environ)
    except config_mod.ConfigError as exc:
        return [Finding("config", False, str(exc), CONFIG_BAD)]
    where = f"file {args.config}" if args.config else "no file"
    found = [Finding("config", True, f"valid ({where}; node prefix {config.node_prefix}, role {config.role})")]
    if config.tls_cert is not None and config.tls_key is not None:
        found.append(_tls(config.tls_cert, config.tls_key))
    found.append(_store(config, args.timeout))
    if config.redis is not None:
        found.append(_redis(config.redis, args.timeout))
    found += [_upstream(config, url, args.timeout, args.insecure_http) for url in config.upstream]
    return found


def _tls(cert: Path, key: Path) -> Finding:
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        return Finding("tls", False, f"cannot load {cert} with {key}: {exc}", CONFIG_BAD)
    return Finding("tls", True, f"{cert} loads")


def _store(config: config_mod.Config, timeout: float) -> Finding:
    shown = redact_url(config.store)
    if not config.postgres:
        problem = _data_dir_problem(config)
        if problem == "":
            return Finding("store", True, f"{shown}: not created yet (serve creates it)")
        if problem is not None:
            return Finding("store", False, problem, STORE_BAD)
    try:
        asyncio.run(asyncio.wait_for(_open_and_close(config), timeout if config.postgres else None))
    except HandleError as exc:
        return Finding("store", False, exc.message, STORE_BAD)
    except TimeoutError:
        return Finding("store", False, f"{shown}: no answer in {timeout:g} s", STORE_BAD)
    except OSError as exc:
        return Finding("store", False, f"{shown}: {exc.strerror or exc}", STORE_BAD)
    return Finding("store", True, f"{shown} opens")


def _data_dir_problem(config: config_mod.Config) -> str | None:
    """Why the SQLite data directory will not do; "" if it does not exist but can be created."""
    directory = config.data_dir.absolute()
    if not directory.exists():
        parent = next(p for p in directory.parents if p.exists())
        return "" if os.access(parent, os.W_OK | os.X_OK) else f"{directory}: cannot be created in {parent}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{directory} is not writable by this user"
    problem = space_problem(directory, config.min_free_bytes)
    return None if problem is None else f"{directory}: {problem}"


async def _open_and_close(config: config_mod.Config) -> None:
    from resolver.stores import default_store

    store = default_store(config)
    await store.open()
    await store.close()


def _redis(url: str, timeout: float) -> Finding:
    import redis
    from redis.backoff import NoBackoff
    from redis.cluster import ClusterNode, RedisCluster
    from redis.retry import Retry

    shown = redact_url(url)
    client: Any = None
    try:
        parts = urlsplit(url)
        if parts.scheme == "redis+cluster":
            nodes = [_cluster_node(item, ClusterNode) for item in parts.netloc.rpartition("@")[2].split(",")]
            client = RedisCluster(
                startup_nodes=nodes,
                username=parts.username,
                password=parts.password,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
        else:
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
            )
        client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        return Finding("redis", False, f"{shown}: {exc}", REDIS_BAD)
    finally:
        if client is not None:
            client.close()
    return Finding("redis", True, f"{shown} answers PING")


def _cluster_node(item: str, kind: Any) -> Any:
    host, _, port = item.rpartition(":")
    return kind(host.strip("[]") or "127.0.0.1", int(port or 6379))


def _upstream(config: config_mod.Config, url: str, timeout: float, insecure_http: bool) -> Finding:
    """Reachable and healthy, and this node's credentials accepted (one authenticated listing)."""
    identity, secret = config.upstream_identity or "", config.upstream_secret or ""
    try:
        client = AdminClient(url, Credentials(identity, secret), timeout, insecure_http=insecure_http)
    except UsageError as exc:  # nothing is sent: the URL would carry the credentials in clear
        return Finding("upstream", False, exc.message, CONFIG_BAD)
    try:
        client.get("/healthz", auth=False)
    except AdminError as exc:
        return Finding("upstream", False, f"{url}: {exc.message}", UPSTREAM_BAD)
    try:
        client.get("/api/handles", [("prefix", config.node_prefix), ("pageSize", "0")])
    except AuthenticationRefused as exc:
        return Finding("upstream", False, f"{url}: refuses upstream_identity {identity}: {exc.message}", UPSTREAM_BAD)
    except NodeRefused:
        pass  # authenticated; whether this identity may list there does not matter for publishing
    except AdminError as exc:
        return Finding("upstream", False, f"{url}: {exc.message}", UPSTREAM_BAD)
    return Finding("upstream", True, f"{url} answers and accepts {identity}")
