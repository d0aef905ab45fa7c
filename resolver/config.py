"""One typed, immutable configuration, loaded once: defaults < TOML file < IDNODE_* env < flags.

A bad setting stops start-up with a ConfigError that names the setting.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import socket
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from protocol.errors import HandleError
from protocol.identifiers import parse_prefix
from registry.identity import sealing
from registry.identity.tokens import KEY_FILE
from registry.quota import MAX_LIMIT, Limits
from registry.store import redact_url

ENV_PREFIX = "IDNODE_"
ADMIN_SECRET_ENV = "IDNODE_ADMIN_SECRET"
ADMIN_SECRET_MIN_LENGTH = 16
# IDNODE_* variables that are not settings but are read legitimately: the admin secret
# (read on first start only, never kept in the Config), the benchmark's record count
# (read by bench/locustfile.py) and the admin commands' node and credentials
# (resolver/commands/admin_client.py), all often set in the shell the node or `idnode check` runs from.
CLIENT_ENV = ("IDNODE_NODE_URL", "IDNODE_CLIENT_IDENTITY", "IDNODE_CLIENT_SECRET")
OTHER_ENV = frozenset({ADMIN_SECRET_ENV, "IDNODE_BENCH_COUNT", *CLIENT_ENV})
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
CORES = min(len(os.sched_getaffinity(0)), 64)
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster")
ROLES = ("secondary", "top-level")
PG_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite://"
DEFAULT_PREFIXES = {"secondary": "88.118", "top-level": "88"}
TOKEN_KEY_FILE = KEY_FILE  # in data_dir unless token_key_file says otherwise
SECRET_KEY_FILE = sealing.KEY_FILE  # in data_dir unless secret_key_file says otherwise


MAX_MIRROR_SITES = 4  # HS_SITE indexes the publisher keeps for them, after the node's own site

# Failure limits keep that many times per key in memory shared by the workers (registry.identity.ratelimit).
MAX_AUTH_LIMIT = 10_000


class ConfigError(Exception):
    """A setting is missing, malformed or out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class Config:
    listen: str = "127.0.0.1:8000"
    handle_listen: str = "127.0.0.1:2641"  # the Handle protocol, TCP and UDP, HOST:PORT ("" or --no-handle: off)
    handle_udp_rate: float = 2000.0  # Handle requests/s over UDP per source address (0: no limit)
    handle_udp_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # networks the UDP rate does not apply to
    handle_message_timeout: float = 10.0  # seconds a Handle message over TCP may take to arrive, from its first byte
    handle_idle_timeout: float = 60.0  # seconds a Handle TCP connection may sit idle
    # LOGIN_ID_SYSTEM (2001), China's SDKs' login: a challenge answered once authorises the
    # administrative requests that follow on the same TCP connection (resolver/handle/login.py).
    handle_login: bool = True
    # OC_LOGIN (2000), CAICT ID-SDK's password login: the secret crosses the network in clear.
    handle_password_login: bool = False
    data_dir: Path = Path("data")
    node_prefix: str = ""  # default: 88.118, or 88 for a top-level node
    case_sensitive: bool = False
    max_body_bytes: int = 1024 * 1024
    max_batch_bytes: int = 16 * 1024 * 1024
    auth_failure_limit: int = 10
    auth_failure_window: int = 60
    auth_brake_limit: int = 30  # failures per window on one identity (node-wide: 10x) before failures are slowed
    allow_insecure_auth: bool = False
    # SNMS's management API (token login, /identityv2/data, /snms/api/v5/template) on the HTTP listener.
    snms: bool = True
    token_key_file: Path | None = None  # signs SNMS tokens; default data_dir/snms-token-key (made at first start)
    # Seals stored secrets (HS_SECKEY, login digests); default data_dir/secret-key (made at first start).
    # Never in a backup: keep it apart from the store (registry.identity.sealing).
    secret_key_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    store_readers: int = 4
    # Where records live: sqlite:///DIR (the embedded store; default: data_dir) or
    # postgresql://USER@HOST:PORT/DB, with reads optionally spread over streaming replicas.
    store: str = ""
    store_replica: tuple[str, ...] = ()
    store_pool_size: int = 8  # PostgreSQL connections per worker process
    store_partitions: int = 64  # hash partitions of the PostgreSQL records table, fixed when it is created
    audit_retention_days: int = 0  # PostgreSQL drops audit months older than this (0: keep everything)
    workers: int = CORES
    redis: str | None = None
    redis_namespace: str = "idnode"
    redis_timeout: float = 0.05
    cache_entries: int = 1_000_000
    cache_bytes: int = 1024 * 1024 * 1024  # 1M entries with REST and Handle answers (bench.long_tail)
    cache_min_ttl: float = 1.0
    cache_max_ttl: float = 3600.0
    cache_negative_ttl: float = 60.0
    stale_window: float = 86400.0
    store_timeout: float = 2.0
    role: str = "secondary"
    upstream: tuple[str, ...] = ()  # the top-level node(s), tried in order
    upstream_identity: str | None = None  # default 300:0.NA/<node prefix>
    upstream_secret: str | None = None
    advertise: str | None = None  # HOST:PORT other nodes reach this one at (default: the listener)
    # The local address queries to other nodes leave from (default: the kernel's choice), as
    # BIND's query-source: a multi-homed host, or a lab of nodes on loopback addresses of their own.
    source_address: str | None = None
    # Mirror sites (deploy/MIRROR.md). On a mirror: the primary site's URL, http(s)://HOST:PORT; the
    # node then serves resolution from `store`, a hot standby, and refuses every write. On a primary:
    # each mirror's HOST:HTTP_PORT[/HANDLE_PORT], published as a second site of the node's prefixes.
    mirror_of: str | None = None
    mirror_site: tuple[str, ...] = ()
    recursion: bool | None = None  # default: on for a secondary node, off for a top-level one
    upstream_timeout: float = 2.0  # per request to another node
    resolve_timeout: float = 5.0  # for a whole delegated resolution
    max_delegation_depth: int = 8  # nodes a query may pass through
    access_log: bool = False
    log_level: str = "info"
    log_format: str = "text"  # or "json": one object per line (resolver.logs)
    # Delegation targets. Servers named by records (HS_SITE, HS_SERV) at
    # loopback, private, link-local or reserved addresses are refused unless one of these
    # networks (CIDR) covers them; the configured upstreams are not checked.
    delegation_allow: tuple[str, ...] = ()
    # Storage: free space kept, and the WAL bounded.
    min_free_bytes: int = 64 * 1024 * 1024  # below this free in data_dir, writes are refused and /healthz is 503
    wal_max_bytes: int = 64 * 1024 * 1024  # a WAL past this is checkpointed to empty, waiting for readers
    # The HTTP edge against slow and greedy clients (resolver/http/connections.py), per connection
    header_timeout: float = 10.0  # request line and headers complete, from the first byte (or the connection)
    body_timeout: float = 60.0  # whole body complete, from the end of its header: 16 MiB needs 280 KB/s
    keepalive_timeout: float = 75.0  # idle between requests before the node closes the connection
    max_connections: int = 1024  # open connections per worker; more are answered 503 and closed
    # Open connections per worker from one client address, HTTP and Handle TCP each: one address
    # must not hold every slot. Above what the project's own load drivers open from one address
    # (bench/handle_load: up to 64, wrk -c50); capped by max_connections.
    max_connections_per_address: int = 128
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For names the client (resolver/http/forwarded.py)
    trusted_proxies: tuple[str, ...] = ()
    # Quotas of every enterprise prefix (registry/quota.py) unless the node admin set its own
    # (`idnode prefix quota`); 0: no limit. Days are China's (UTC+8).
    quota_identifiers: int = 0  # identifiers one prefix may hold (604 past it)
    quota_registrations_per_day: int = 0  # identifiers created under one prefix per day (603)
    quota_resolutions_per_day: int = 0  # authenticated resolutions per identity of the prefix per day (603)
    quota_prefixes: int = 0  # prefixes that may be derived from one prefix (605)

    @property
    def quota_defaults(self) -> Limits:
        """The node-wide quotas, as the quota policy takes them."""
        return Limits(
            self.quota_identifiers,
            self.quota_registrations_per_day,
            self.quota_resolutions_per_day,
            self.quota_prefixes,
        )

    @property
    def mirror_refusal(self) -> str | None:
        """What a mirror site answers every write (None: this node takes writes)."""
        if self.mirror_of is None:
            return None
        return (
            f"this node is a mirror site of prefix {self.node_prefix}: read-only, it serves resolution from a "
            f"replica of the primary site's store; send writes to the primary site at {self.mirror_of}"
        )

    @property
    def connections_per_address(self) -> int:
        """The per-address cap in force: one above ``max_connections`` could never be reached."""
        return min(self.max_connections_per_address, self.max_connections)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def handle_host_port(self) -> tuple[str, int]:
        host, _, port = self.handle_listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def token_key_path(self) -> Path:
        """The key SNMS tokens are signed with: give nodes that should accept each other's tokens the same file."""
        return self.token_key_file or self.data_dir / KEY_FILE

    @property
    def secret_key_path(self) -> Path:
        """The key stored secrets are sealed with: nodes sharing one store need the same file."""
        return self.secret_key_file or self.data_dir / SECRET_KEY_FILE

    @property
    def postgres(self) -> bool:
        return self.store.startswith(PG_SCHEMES)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def loopback_only(self) -> bool:
        """True when the listener cannot be reached from another machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


_FIELDS = {f.name: f for f in fields(Config)}


DEFAULTS = Config()  # every setting's default, written once above: policies and the CLI help read it here


def _coerce(name: str, raw: Any) -> Any:
    kind = _FIELDS[name].type
    if kind == "tuple[str, ...]":
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"setting {name!r}: expected a list of strings, got {raw!r}")
        return tuple(i.strip() for i in items if i.strip())
    if kind in ("bool", "bool | None"):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return raw.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"setting {name!r}: expected true or false, got {raw!r}")
    if kind == "int":
        if isinstance(raw, bool):
            raise ConfigError(f"setting {name!r}: expected an integer, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name!r}: expected an integer, got {raw!r}") from None
    if kind == "float":
        if isinstance(raw, bool):
            raise ConfigError(f"setting {name!r}: expected a number, got {raw!r}")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name!r}: expected a number, got {raw!r}") from None
    if kind in ("Path", "Path | None"):
        if not isinstance(raw, str | Path) or not str(raw):
            raise ConfigError(f"setting {name!r}: expected a path, got {raw!r}")
        return Path(raw)
    if not isinstance(raw, str):
        raise ConfigError(f"setting {name!r}: expected a string, got {raw!r}")
    return raw


def _check_listener(name: str, value: str) -> None:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"setting {name!r}: expected HOST:PORT, got {value!r}")


def _validate(config: Config) -> Config:
    _check_listener("listen", config.listen)
    if config.handle_listen:
        _check_listener("handle_listen", config.handle_listen)
    try:
        node_prefix = parse_prefix(config.node_prefix or DEFAULT_PREFIXES.get(config.role, "88.118"))
    except HandleError as exc:
        raise ConfigError(f"setting 'node_prefix': {exc.message}") from None
    for name in ("max_body_bytes", "max_batch_bytes"):
        if getattr(config, name) < 1024:
            raise ConfigError(f"setting {name!r}: must be at least 1024")
    for name, most in (("auth_failure_limit", MAX_AUTH_LIMIT), ("auth_brake_limit", MAX_AUTH_LIMIT),
                       ("auth_failure_window", 86400)):  # fmt: skip
        if not 1 <= getattr(config, name) <= most:
            raise ConfigError(f"setting {name!r}: must be between 1 and {most}")
    if not 1 <= config.workers <= 64:
        raise ConfigError("setting 'workers': must be between 1 and 64")
    if not 1 <= config.store_readers <= 64:
        raise ConfigError("setting 'store_readers': must be between 1 and 64")
    _validate_cache(config)
    config = _validate_storage(config)
    _validate_edge(config)
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(f"setting 'log_level': expected one of {', '.join(LOG_LEVELS)}")
    if config.log_format not in LOG_FORMATS:
        raise ConfigError(f"setting 'log_format': expected one of {', '.join(LOG_FORMATS)}")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("settings 'tls_cert' and 'tls_key' must be given together")
    for name in ("tls_cert", "tls_key"):
        path = getattr(config, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"setting {name!r}: no such file {str(path)!r}")
    return _validate_hierarchy(replace(config, node_prefix=node_prefix))


def host_port(text: str, name: str) -> tuple[str, int]:
    """``HOST:PORT`` (host an IP address, IPv6 in brackets or not), or ConfigError naming ``name``."""
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"setting {name!r}: expected HOST:PORT, got {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"setting {name!r}: {host!r} is not an IP address (HS_SITE carries addresses)") from None
    return host, int(port)


def _check_source(address: str) -> None:
    """An IP address of this machine, or ConfigError: a query could not leave from another."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        raise ConfigError(f"setting 'source_address': {address!r} is not an IP address") from None
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError as exc:
            raise ConfigError(f"setting 'source_address': this machine cannot send from {address}: {exc}") from None


def _validate_hierarchy(config: Config) -> Config:
    if config.role not in ROLES:
        raise ConfigError(f"setting 'role': expected one of {', '.join(ROLES)}, got {config.role!r}")
    upstreams = []
    for url in config.upstream:
        scheme, sep, rest = url.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "?" in rest or "#" in rest:
            raise ConfigError(f"setting 'upstream': expected http://HOST:PORT or https://HOST:PORT, got {url!r}")
        upstreams.append(url.rstrip("/"))
    if config.role == "top-level" and upstreams:
        raise ConfigError("setting 'upstream': a top-level node has no upstream")
    config = _validate_mirrors(config)
    if upstreams and not config.upstream_secret:
        raise ConfigError(
            "setting 'upstream_secret' (IDNODE_UPSTREAM_SECRET) is required with 'upstream': "
            "the secret of the identity the top-level node granted this node"
        )
    if config.advertise is not None:
        host_port(config.advertise, "advertise")
    elif upstreams and config.host in ("0.0.0.0", "::", ""):
        raise ConfigError("setting 'advertise': the node listens on every address; say which one others reach")
    if config.source_address is not None:
        _check_source(config.source_address)
    for name in ("upstream_timeout", "resolve_timeout"):
        if not 0 < getattr(config, name) <= 300:
            raise ConfigError(f"setting {name!r}: must be between 0 and 300 seconds")
    if not 1 <= config.max_delegation_depth <= 32:
        raise ConfigError("setting 'max_delegation_depth': must be between 1 and 32")
    allow = tuple(_network(text, "delegation_allow") for text in config.delegation_allow)
    recursion = config.role == "secondary" if config.recursion is None else config.recursion
    identity = config.upstream_identity or f"300:0.NA/{config.node_prefix}"
    return replace(
        config, upstream=tuple(upstreams), recursion=recursion, upstream_identity=identity, delegation_allow=allow
    )


def _validate_mirrors(config: Config) -> Config:
    for text in config.mirror_site:
        mirror_address(text)
    if len(config.mirror_site) > MAX_MIRROR_SITES:
        raise ConfigError(f"setting 'mirror_site': at most {MAX_MIRROR_SITES} mirror sites")
    if config.mirror_of is None:
        return config
    scheme, sep, rest = config.mirror_of.rstrip("/").partition("://")
    if scheme not in ("http", "https") or not sep or not rest or any(c in rest for c in "/?#@ "):
        raise ConfigError(
            f"setting 'mirror_of': expected the primary site's http://HOST:PORT or https://HOST:PORT, "
            f"got {config.mirror_of!r}"
        )
    if not config.postgres:
        raise ConfigError("setting 'mirror_of': a mirror reads a PostgreSQL hot standby (setting 'store')")
    if config.store_replica:
        raise ConfigError("setting 'store_replica': a mirror reads only its own store, the hot standby")
    if config.mirror_site:
        raise ConfigError("setting 'mirror_site': the primary publishes its mirrors, not a mirror ('mirror_of')")
    if config.role != "secondary":
        raise ConfigError("setting 'mirror_of': only a secondary node has mirror sites")
    return replace(config, mirror_of=config.mirror_of.rstrip("/"))


def mirror_address(text: str) -> tuple[str, int, int | None]:
    """A ``mirror_site`` entry, HOST:HTTP_PORT[/HANDLE_PORT]: the mirror's address, its HTTP port
    and its Handle protocol port (TCP and UDP; None when it serves no Handle protocol)."""
    address, slash, handle = text.partition("/")
    host, port = host_port(address, "mirror_site")
    if not slash:
        return host, port, None
    if not handle.isascii() or not handle.isdigit() or not 0 < int(handle) <= 65535:
        raise ConfigError(f"setting 'mirror_site': expected HOST:HTTP_PORT[/HANDLE_PORT], got {text!r}")
    return host, port, int(handle)


def _network(text: str, name: str) -> str:
    """A network in CIDR form (an address alone: just that address), normalised; ConfigError naming ``name``."""
    try:
        return str(ipaddress.ip_network(text))
    except ValueError as exc:
        raise ConfigError(f"setting {name!r}: expected networks like 10.20.0.0/16, got {text!r} ({exc})") from None


def _validate_cache(config: Config) -> None:
    if config.redis is not None:
        scheme, sep, rest = config.redis.partition("://")
        if not sep or scheme not in REDIS_SCHEMES or not rest:
            raise ConfigError(
                f"setting 'redis': expected a URL redis://HOST:PORT[/DB], rediss://..., unix://PATH "
                f"or redis+cluster://HOST:PORT,HOST:PORT,..., got {config.redis!r}"
            )
    if not 0.001 <= config.redis_timeout <= 10:
        raise ConfigError("setting 'redis_timeout': must be between 0.001 and 10 seconds")
    if not config.redis_namespace or not config.redis_namespace.isprintable() or " " in config.redis_namespace:
        raise ConfigError("setting 'redis_namespace': must be a non-empty word")
    if config.cache_entries < 1 or config.cache_bytes < 1024 * 1024:
        raise ConfigError("settings 'cache_entries' and 'cache_bytes' must be at least 1 and 1 MiB")
    if not 0 <= config.cache_min_ttl <= config.cache_max_ttl:
        raise ConfigError("settings 'cache_min_ttl' and 'cache_max_ttl': need 0 <= min <= max")
    for name in ("cache_negative_ttl", "stale_window"):
        if getattr(config, name) < 0:
            raise ConfigError(f"setting {name!r}: must not be negative")
    if not 0 < config.store_timeout <= 300:
        raise ConfigError("setting 'store_timeout': must be between 0 and 300 seconds")


def _validate_storage(config: Config) -> Config:
    if not config.store:
        config = replace(config, store=SQLITE_SCHEME + str(config.data_dir.absolute()))
    elif config.store.startswith(SQLITE_SCHEME):
        path = config.store[len(SQLITE_SCHEME) :]
        if not path:
            raise ConfigError(f"setting 'store': expected sqlite:///DIRECTORY, got {config.store!r}")
        config = replace(config, data_dir=Path(path))
    else:
        _database_url(config.store, "store")
    for url in config.store_replica:
        _database_url(url, "store_replica")
    if config.store_replica and not config.postgres:
        raise ConfigError("setting 'store_replica': replicas need a PostgreSQL store (setting 'store')")
    if not 1 <= config.store_pool_size <= 1000:
        raise ConfigError("setting 'store_pool_size': must be between 1 and 1000")
    if not 1 <= config.store_partitions <= 4096:
        raise ConfigError("setting 'store_partitions': must be between 1 and 4096")
    if config.audit_retention_days < 0:
        raise ConfigError("setting 'audit_retention_days': must not be negative (0 keeps everything)")
    if not 0 <= config.min_free_bytes <= 1 << 50:
        raise ConfigError("setting 'min_free_bytes': must be between 0 and 1 PiB")
    if not 1024 * 1024 <= config.wal_max_bytes <= 1 << 40:
        raise ConfigError("setting 'wal_max_bytes': must be between 1 MiB and 1 TiB")
    return config


def _database_url(url: str, name: str) -> None:
    """A postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE URL, or ConfigError naming ``name``."""
    shown = redact_url(url)
    if not url.startswith(PG_SCHEMES):
        raise ConfigError(
            f"setting {name!r}: expected sqlite:///DIRECTORY or postgresql://USER@HOST:PORT/DATABASE, got {shown!r}"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"setting {name!r}: {shown!r} is not a valid URL ({exc})") from None
    if not parts.hostname or not parts.path.strip("/") or port == 0:
        raise ConfigError(f"setting {name!r}: expected postgresql://USER@HOST:PORT/DATABASE, got {shown!r}")


def _env_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The settings given as IDNODE_<NAME>; any other IDNODE_ variable is refused, since a
    misspelt one would otherwise be ignored in silence and the node run with the default."""
    known = {ENV_PREFIX + name.upper(): name for name in _FIELDS}
    for var in sorted(env):
        if var.startswith(ENV_PREFIX) and var not in known and var not in OTHER_ENV:
            close = difflib.get_close_matches(var, [*known, *OTHER_ENV], n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"environment: unknown variable {var}{hint}")
    return {name: env[var] for var, name in known.items() if var in env}


def admin_secret(env: Mapping[str, str]) -> str | None:
    """The admin secret chosen for the first start (IDNODE_ADMIN_SECRET), if any."""
    secret = env.get(ADMIN_SECRET_ENV) or None
    if secret is not None and len(secret) < ADMIN_SECRET_MIN_LENGTH:
        raise ConfigError(
            f"{ADMIN_SECRET_ENV}: the admin secret must be at least {ADMIN_SECRET_MIN_LENGTH} characters "
            f"(got {len(secret)}); unset it to have the node generate one"
        )
    return secret


def _validate_edge(config: Config) -> None:
    for name, most in (("header_timeout", 300), ("body_timeout", 3600), ("keepalive_timeout", 3600)):
        if not 0 < getattr(config, name) <= most:
            raise ConfigError(f"setting {name!r}: must be more than 0 and at most {most} seconds")
    if not 1 <= config.max_connections <= 1_000_000:
        raise ConfigError("setting 'max_connections': must be between 1 and 1000000")
    if not 1 <= config.max_connections_per_address <= 1_000_000:
        raise ConfigError("setting 'max_connections_per_address': must be between 1 and 1000000")
    for text in config.trusted_proxies:
        _network(text, "trusted_proxies")
    for name, most in (("handle_message_timeout", 300), ("handle_idle_timeout", 3600)):
        if not 0 < getattr(config, name) <= most:
            raise ConfigError(f"setting {name!r}: must be more than 0 and at most {most} seconds")
    if config.handle_udp_rate < 0:
        raise ConfigError("setting 'handle_udp_rate': must be 0 (no limit) or more")
    for name in ("quota_identifiers", "quota_registrations_per_day", "quota_resolutions_per_day", "quota_prefixes"):
        if not 0 <= getattr(config, name) <= MAX_LIMIT:
            raise ConfigError(f"setting {name!r}: must be 0 (no limit) or a positive count")
    for network in config.handle_udp_exempt:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"setting 'handle_udp_exempt': {network!r} is not a network (CIDR)") from None


def _apply(config: Config, settings: Mapping[str, Any], source: str) -> Config:
    changes = {}
    for name, raw in settings.items():
        if name not in _FIELDS:
            raise ConfigError(f"{source}: unknown setting {name!r}")
        if raw is not None:
            changes[name] = _coerce(name, raw)
    return replace(config, **changes)


def load(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration from its three sources and validate it."""
    config = Config()
    if config_file is not None:
        try:
            with open(config_file, "rb") as fh:
                config = _apply(config, tomllib.load(fh), f"config file {config_file}")
        except OSError as exc:
            raise ConfigError(f"config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from None
    env = os.environ if env is None else env
    config = _apply(config, _env_settings(env), "environment")
    config = _apply(config, flags or {}, "command line")
    return _validate(config)
