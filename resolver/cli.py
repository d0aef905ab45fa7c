"""The ``idnode`` command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from protocol.errors import HandleError
from registry import datadir
from registry.bulk import items as bulk_fmt
from registry.identity.sealing import SecretKeyError
from registry.identity.tokens import TokenKeyError
from resolver import config as config_mod
from resolver import logs
from resolver.handle.server_key import ServerKeyError
from resolver.listeners import ListenError, Listeners, open_listeners

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
D = config_mod.DEFAULTS  # the help shows Config's defaults: they are written there only
PREFIXES = config_mod.DEFAULT_PREFIXES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idnode", description="Secondary node of the identifier resolution system.")
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("serve", help="run the node")
    s.add_argument("--config", type=Path, help="TOML configuration file")
    s.add_argument("--listen", help=f"HOST:PORT to serve HTTP on (default {D.listen})")
    handle = s.add_mutually_exclusive_group()
    handle.add_argument(
        "--handle-listen", help=f"HOST:PORT to serve the Handle protocol on, TCP and UDP (default {D.handle_listen})"
    )
    handle.add_argument(
        "--no-handle", dest="handle_listen", action="store_const", const="", help="do not serve the Handle protocol"
    )
    s.add_argument(
        "--no-handle-login",
        dest="handle_login",
        action="store_const",
        const=False,
        help="refuse LOGIN_ID_SYSTEM (2001): every administrative Handle request answers its own challenge",
    )
    s.add_argument(
        "--handle-password-login",
        action="store_const",
        const=True,
        default=None,
        help="accept OC_LOGIN (2000), a secret sent in clear (default off)",
    )
    s.add_argument("--data-dir", help=f"directory of the embedded store (default ./{D.data_dir})")
    s.add_argument(
        "--no-snms", dest="snms", action="store_const", const=False, help="do not serve SNMS's management API"
    )
    s.add_argument("--token-key-file", help=f"key signing SNMS tokens (default DATA_DIR/{config_mod.TOKEN_KEY_FILE})")
    s.add_argument(
        "--store",
        help="where records live: sqlite:///DIR (default: --data-dir) or postgresql://USER@HOST:PORT/DB",
    )
    s.add_argument(
        "--store-replica",
        action="append",
        help="postgresql:// URL of a streaming replica to read from (repeatable)",
    )
    s.add_argument(
        "--store-pool-size", type=int, help=f"PostgreSQL connections per worker (default {D.store_pool_size})"
    )
    s.add_argument(
        "--store-partitions", type=int, help=f"hash partitions of a new PostgreSQL store (default {D.store_partitions})"
    )
    s.add_argument("--audit-retention-days", type=int, help="PostgreSQL: drop audit months older than this")
    s.add_argument(
        "--node-prefix",
        help=f"the prefix this node serves (default {PREFIXES['secondary']}; {PREFIXES['top-level']} for a "
        "top-level node)",
    )
    s.add_argument(
        "--case-sensitive",
        action="store_const",
        const=True,
        default=None,
        help="treat handle suffixes as case-sensitive",
    )
    s.add_argument(
        "--allow-insecure-auth",
        action="store_const",
        const=True,
        default=None,
        help="accept credentials over plain HTTP on a non-loopback listener",
    )
    s.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    s.add_argument("--tls-key", help="PEM private key for --tls-cert")
    s.add_argument("--max-body-bytes", type=int, help="largest request body accepted")
    s.add_argument(
        "--min-free-bytes", type=int, help="free space kept in the data directory: below it writes are refused"
    )
    s.add_argument("--wal-max-bytes", type=int, help="the SQLite WAL is emptied (waiting for readers) past this")
    s.add_argument("--log-level", choices=config_mod.LOG_LEVELS)
    s.add_argument(
        "--log-format", choices=config_mod.LOG_FORMATS, help=f"text or json: one object a line (default {D.log_format})"
    )
    s.add_argument("--access-log", action="store_const", const=True, default=None, help="log every request")
    s.add_argument("--workers", type=int, help=f"serving processes sharing the port (default: the cores, {D.workers})")
    s.add_argument(
        "--redis", help="shared cache: redis://HOST:PORT[/DB] or redis+cluster://HOST:PORT,... (default none)"
    )
    s.add_argument("--cache-entries", type=int, help=f"most answers each worker caches (default {D.cache_entries:,})")
    s.add_argument(
        "--cache-bytes", type=int, help=f"most bytes of answers each worker caches (default {D.cache_bytes >> 20} MiB)"
    )
    s.add_argument(
        "--role",
        choices=config_mod.ROLES,
        help=f"secondary or top-level: the node for the country prefix (default {D.role})",
    )
    s.add_argument(
        "--upstream",
        action="append",
        help="a top-level node's URL, http://HOST:PORT (repeatable; identity and secret from "
        "upstream_identity / IDNODE_UPSTREAM_SECRET)",
    )
    s.add_argument("--advertise", help="HOST:PORT other nodes reach this one at (default: the listener)")
    s.add_argument(
        "--source-address", help="the local IP address queries to other nodes leave from (default: the kernel's choice)"
    )
    s.add_argument(
        "--mirror-of",
        metavar="URL",
        help="run as a mirror site of the primary at http(s)://HOST:PORT: --store names a hot standby of its "
        "database; resolution only, every write refused (deploy/MIRROR.md)",
    )
    s.add_argument(
        "--mirror-site",
        action="append",
        metavar="HOST:HTTP_PORT[/HANDLE_PORT]",
        help="a mirror site of this node, published after it in HS_SITE (repeatable; deploy/MIRROR.md)",
    )
    s.add_argument(
        "--delegation-allow",
        action="append",
        metavar="NETWORK",
        help="a network (CIDR, e.g. 10.20.0.0/16) where servers named by records may be although it is "
        "loopback, private, link-local or reserved (repeatable; default none)",
    )
    s.add_argument(
        "--header-timeout",
        type=float,
        help=f"seconds a request line and headers may take to arrive (default {D.header_timeout:g})",
    )
    s.add_argument(
        "--body-timeout", type=float, help=f"seconds a request body may take to arrive (default {D.body_timeout:g})"
    )
    s.add_argument(
        "--keepalive-timeout",
        type=float,
        help=f"seconds an idle connection is kept open between requests (default {D.keepalive_timeout:g})",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        help=f"open connections per worker; more are refused with 503 (default {D.max_connections})",
    )
    s.add_argument(
        "--max-connections-per-address",
        type=int,
        help="open connections per worker from one client address, HTTP and Handle TCP each; more are "
        f"refused (default {D.max_connections_per_address}, at most --max-connections)",
    )
    s.add_argument(
        "--trusted-proxy",
        dest="trusted_proxies",
        action="append",
        metavar="NETWORK",
        help="a reverse proxy (address or CIDR network) whose X-Forwarded-For names the client "
        "(repeatable; default none: the header is ignored)",
    )
    recursion = s.add_mutually_exclusive_group()
    recursion.add_argument(
        "--recursion", action="store_const", const=True, default=None, help="resolve others' handles for clients"
    )
    recursion.add_argument(
        "--no-recursion", dest="recursion", action="store_const", const=False, help="answer 301 for others' handles"
    )
    _bulk_parsers(commands)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parsers(commands)
    return parser


# Commands kept in modules of their own: each has add_parsers(commands), whose parsers set
# ``run`` (args -> exit code) with set_defaults.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "resolver.commands.admin",
    "resolver.commands.check",
    "resolver.commands.backup",
    "resolver.commands.rotate",
)


BULK_HELP = (
    "It talks to the store directly (no running node is needed). A node may be running on the same "
    "store meanwhile: its caches (each worker's, and Redis) keep the answers they hold until their "
    "TTL runs out, so an imported record may be served as it was before for up to cache_max_ttl."
)
_STORE_FLAGS = (
    "config",
    "data_dir",
    "store",
    "node_prefix",
    "case_sensitive",
    "log_level",
    "log_format",
    "max_body_bytes",
)


def _store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML configuration file (the node's)")
    p.add_argument("--data-dir", help=f"directory of the embedded store (default ./{D.data_dir})")
    p.add_argument("--store", help="sqlite:///DIR (default: --data-dir) or postgresql://USER@HOST:PORT/DB")
    p.add_argument("--node-prefix", help="the prefix this node serves: records must be under it (default 88.118)")
    p.add_argument("--case-sensitive", action="store_const", const=True, default=None)
    p.add_argument("--max-body-bytes", type=int, help="largest record accepted, as for a PUT")
    p.add_argument("--log-level", choices=config_mod.LOG_LEVELS)
    p.add_argument("--log-format", choices=config_mod.LOG_FORMATS)
    p.add_argument("--format", choices=bulk_fmt.FORMATS, help="jsonl or msgpack (default: by the file's extension)")


def _bulk_parsers(commands: Any) -> None:
    i = commands.add_parser(
        "import",
        help="load records from a file",
        description="Load handle records (JSON lines or msgpack, as GET /api/handles/{h} shows them), "
        "replacing those that exist (not existing credentials or the node's prefix handle unless "
        "--replace-credentials). Every item is checked first; any bad one and nothing is written "
        "(exit 1). Records are written in chunks, each recorded with the input's SHA-256: "
        "after an interruption the same command resumes. " + BULK_HELP,
    )
    i.add_argument("file", metavar="FILE", help="the input, or - for standard input")
    _store_flags(i)
    i.add_argument("--chunk", type=int, default=50_000, help="records per transaction (default 50000)")
    i.add_argument("--identity", default="import", help="who the audit log names (default: import)")
    i.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes checking the input")
    i.add_argument("--restart", action="store_true", help="write everything again, ignoring earlier progress")
    i.add_argument(
        "--prefix",
        action="append",
        default=[],
        help="only handles at or under this prefix (0.NA/P counts as P); repeatable; others are refused",
    )
    i.add_argument(
        "--replace-credentials",
        action="store_true",
        help="let the file change existing HS_ADMIN, HS_SECKEY, HS_PUBKEY, HS_VLIST values and the node's "
        "prefix handle (refused by default)",
    )
    e = commands.add_parser(
        "export",
        help="write records to a file",
        description="Write every record (or those directly under --prefix) as an import reads them. " + BULK_HELP,
    )
    e.add_argument("file", metavar="FILE", nargs="?", default="-", help="the output (default -: standard output)")
    _store_flags(e)
    e.add_argument("--prefix", help="only the handles directly under this prefix")


def _bulk(args: argparse.Namespace) -> int:
    from resolver.commands import bulk

    flags = {k: v for k, v in vars(args).items() if k in _STORE_FLAGS and k != "config"}
    try:
        config = config_mod.load(args.config, os.environ, flags)
        if args.command == "import" and not 1 <= args.chunk <= 1_000_000:
            raise config_mod.ConfigError("--chunk: must be between 1 and 1000000")
    except config_mod.ConfigError as exc:
        print(f"idnode {args.command}: error: {exc}", file=sys.stderr)
        return bulk.BAD_SETTINGS
    logs.setup(config.log_level, config.log_format)
    fmt = bulk_fmt.format_of(args.file, args.format)
    if args.command == "export":
        return bulk.run_export(config, args.file, fmt, args.prefix)
    options = bulk.ImportOptions(
        args.file,
        fmt,
        args.chunk,
        args.identity,
        max(args.jobs, 1),
        args.restart,
        tuple(args.prefix),
        args.replace_credentials,
    )
    return bulk.run_import(config, options)


class StartupError(Exception):
    """The machine refuses what the configuration asks (port taken, data directory unusable);
    the message names the setting and the path."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "run", None) is not None:
        return int(args.run(args))
    if args.command in ("import", "export"):
        return _bulk(args)
    flags: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    try:
        config = config_mod.load(args.config, os.environ, flags)
        admin_secret = config_mod.admin_secret(os.environ)
    except config_mod.ConfigError as exc:
        print(f"idnode: error: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level, config.log_format)
    try:
        if not config.postgres:
            _check_data_dir(config)
        try:
            listeners = open_listeners(config, config.workers)
        except ListenError as exc:
            raise StartupError(str(exc)) from None
        if config.workers > 1:
            return _serve_workers(config, admin_secret, listeners)
        from resolver.server import bootstrap, serve

        async def single() -> None:
            await bootstrap(config, admin_secret)
            await serve(config, listeners=listeners, announce_them=True)

        uvloop.run(single())
    except (StartupError, ServerKeyError, TokenKeyError, SecretKeyError) as exc:
        print(f"idnode: error: {exc}", file=sys.stderr)
        return 1
    except HandleError as exc:  # the store could not be opened
        setting = "store" if config.postgres else "data_dir"
        print(f"idnode: error: setting {setting!r}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"idnode: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_data_dir(config: config_mod.Config) -> None:
    """The data directory exists, is writable, has room, and is private to this user."""
    directory = config.data_dir
    try:
        directory.mkdir(mode=datadir.PRIVATE_DIR, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"setting 'data_dir': cannot create {directory}: {exc.strerror}") from None
    problem = datadir.space_problem(directory, config.min_free_bytes)
    if problem is not None:
        raise StartupError(f"setting 'data_dir': {directory}: {problem}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StartupError(f"setting 'data_dir': {directory} is not writable by this user")
    try:
        datadir.prepare_directory(directory)
    except OSError as exc:
        raise StartupError(f"setting 'data_dir': cannot make {directory} private: {exc.strerror}") from None


def _serve_workers(config: config_mod.Config, admin_secret: str | None, listeners: Listeners) -> int:
    # prometheus_client reads this when first imported, so it is set before anything imports
    # it. A directory given in the environment is used (and emptied) instead of a new one.
    given = os.environ.get(METRICS_DIR_ENV)
    with tempfile.TemporaryDirectory(prefix="idnode-metrics-") as metrics_dir:
        if given:
            for stale in Path(given).glob("*.db"):
                stale.unlink()
        else:
            os.environ[METRICS_DIR_ENV] = metrics_dir
        from resolver import workers
        from resolver.server import bootstrap

        uvloop.run(bootstrap(config, admin_secret))
        return workers.run(config, config.workers, listeners)


if __name__ == "__main__":
    sys.exit(main())
