"""``idnode backup`` and ``idnode restore``: a SQLite node's store and keys, copied while it serves.

A backup is a directory: the store as one SQLite file (a single snapshot of every table,
made by ``registry.sqlite.backup``), the node's keys (``handle-server-key.pem``, which its
HS_SITE publishes, and ``snms-token-key``, which signs SNMS tokens: a node restored without
them has another identity), and ``backup.json``, naming each file with its SHA-256. It is
built beside DEST under a temporary name and renamed into place once every file is on
disk, so DEST is either a whole backup or absent. ``tar`` it to ship it elsewhere.

Exit codes: 0 done; 1 failed (I/O error, no store); 2 bad settings, or a PostgreSQL store;
3 refused: DEST exists, or the restore would replace a store or key without --force;
4 refused: the store is in use (a node serves it, or a restore runs); 5 the backup is
damaged (a checksum or SQLite's integrity check fails): nothing was restored.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.datadir import StoreInUse, hold, prepare_directory, write_private
from registry.identity.tokens import KEY_FILE as TOKEN_KEY_FILE
from registry.sqlite import backup as sb
from registry.sqlite.writer import STORE_FILE
from resolver import config as config_mod
from resolver import logs
from resolver.handle.server_key import KEY_FILE as SERVER_KEY_FILE

log = logging.getLogger("idnode.backup")

OK, FAILED, BAD_SETTINGS, WOULD_OVERWRITE, IN_USE, DAMAGED = 0, 1, 2, 3, 4, 5
MANIFEST = "backup.json"
FORMAT = "idnode-backup"
FORMAT_VERSION = 1
PG_HELP = "a PostgreSQL store is backed up with PostgreSQL's tools: see deploy/POSTGRESQL.md, 'Backup and restore'"


class Refused(Exception):
    """The command will not go on; ``code`` is its exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def add_parsers(commands: Any) -> None:
    b = commands.add_parser(
        "backup",
        help="copy a SQLite node's store and keys, while it serves",
        description="Write a consistent copy of the store (one snapshot of every table) and the node's key "
        "files into the new directory DEST, without stopping the node. Exit codes: 0 done, 1 failed, "
        "2 bad settings or a PostgreSQL store, 3 DEST exists, 4 a restore runs on the store.",
    )
    b.add_argument("dest", metavar="DEST", type=Path, help="the backup directory to create (must not exist)")
    _store_flags(b)
    b.set_defaults(run=run_backup)
    r = commands.add_parser(
        "restore",
        help="put a backup in place (the node stopped)",
        description="Check the backup DEST made (checksums, SQLite's integrity check), then put its store and "
        "keys in the data directory. Refused while a node has the store open. Exit codes: 0 done, 1 failed, "
        "2 bad settings, 3 a store or key exists (use --force), 4 the store is in use, 5 the backup is damaged.",
    )
    r.add_argument("src", metavar="SRC", type=Path, help="a directory made by idnode backup")
    _store_flags(r)
    r.add_argument("--force", action="store_true", help="replace the store and keys that are there")
    r.set_defaults(run=run_restore)


def _store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML configuration file (the node's)")
    p.add_argument("--data-dir", help="directory of the embedded store (default ./data)")
    p.add_argument("--store", help="sqlite:///DIR (default: --data-dir)")
    p.add_argument("--token-key-file", help=f"the SNMS token key (default DATA_DIR/{TOKEN_KEY_FILE})")
    p.add_argument("--log-level", choices=config_mod.LOG_LEVELS)
    p.add_argument("--log-format", choices=config_mod.LOG_FORMATS)


def _config(args: argparse.Namespace) -> config_mod.Config:
    flags = {k: getattr(args, k) for k in ("data_dir", "store", "token_key_file", "log_level", "log_format")}
    config = config_mod.load(args.config, os.environ, flags)
    if config.postgres:
        raise Refused(BAD_SETTINGS, f"setting 'store': {PG_HELP}")
    return config


def _run(command: str, args: argparse.Namespace, body: Any) -> int:
    try:
        config = _config(args)
    except config_mod.ConfigError as exc:
        print(f"idnode {command}: error: {exc}", file=sys.stderr)
        return BAD_SETTINGS
    except Refused as exc:
        print(f"idnode {command}: error: {exc}", file=sys.stderr)
        return exc.code
    logs.setup(config.log_level, config.log_format)
    try:
        body(config, args)
    except Refused as exc:
        print(f"idnode {command}: refused: {exc}", file=sys.stderr)
        return exc.code
    except StoreInUse as exc:
        print(f"idnode {command}: refused: {exc}", file=sys.stderr)
        return IN_USE
    except sb.BackupFailed as exc:
        print(f"idnode {command}: error: {exc}", file=sys.stderr)
        return DAMAGED if command == "restore" else FAILED
    except OSError as exc:
        print(f"idnode {command}: error: {exc}", file=sys.stderr)
        return FAILED
    return OK


# Backup ----------------------------------------------------------------------------------


def run_backup(args: argparse.Namespace) -> int:
    return _run("backup", args, _backup)


def _key_files(config: config_mod.Config) -> dict[str, Path]:
    """Where the node keeps each key a backup carries, by its name in the backup."""
    return {SERVER_KEY_FILE: config.data_dir / SERVER_KEY_FILE, TOKEN_KEY_FILE: config.token_key_path}


def _backup(config: config_mod.Config, args: argparse.Namespace) -> None:
    dest: Path = args.dest.absolute()
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise Refused(WOULD_OVERWRITE, f"{dest} exists; a backup goes to a new directory")
    store = config.data_dir / STORE_FILE
    if not store.is_file():
        raise sb.BackupFailed(f"no store at {store} (setting 'data_dir')")
    started = time.monotonic()
    staging = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    staging.mkdir(mode=0o700)
    try:
        in_use = hold(store, exclusive=False)  # no restore may replace the store while it is copied
        try:
            contents = sb.copy_store(store, staging / STORE_FILE, _progress)
        finally:
            os.close(in_use)
        for name, path in _key_files(config).items():
            if path.is_file():
                write_private(staging / name, path.read_bytes())
        _write_manifest(staging, config, contents)
        sb.fsync_path(staging)
        os.rename(staging, dest)  # replaces an empty directory, never a backup
        sb.fsync_path(dest.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    took = time.monotonic() - started
    print(f"idnode backup: {contents.handles} handles (schema {contents.schema_version}) to {dest} in {took:.1f} s")


def _progress(done: int, total: int) -> None:
    log.debug("copied %d of %d pages", done, total)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _write_manifest(directory: Path, config: config_mod.Config, contents: sb.Snapshot) -> None:
    files = {p.name: {"sha256": _digest(p), "bytes": p.stat().st_size} for p in sorted(directory.iterdir())}
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "node_prefix": config.node_prefix,
        "schema_version": contents.schema_version,
        "handles": contents.handles,
        "audit_rows": contents.audit_rows,
        "files": files,
    }
    write_private(directory / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")


# Restore ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checked:
    """A backup whose every file matched its checksum and whose store passed the integrity check."""

    directory: Path
    files: frozenset[str]
    contents: sb.Snapshot


def check_backup(directory: Path) -> Checked:
    """The backup at ``directory``, checked; BackupFailed saying what is wrong with it."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise sb.BackupFailed(f"{directory} is not an idnode backup: cannot read {MANIFEST}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise sb.BackupFailed(f"{directory / MANIFEST} is not an idnode backup manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise sb.BackupFailed(f"backup format version {manifest.get('version')!r}; this idnode reads {FORMAT_VERSION}")
    files: dict[str, dict[str, Any]] = manifest.get("files", {})
    if STORE_FILE not in files or not set(files) <= {STORE_FILE, SERVER_KEY_FILE, TOKEN_KEY_FILE}:
        raise sb.BackupFailed(f"{directory / MANIFEST} lists unexpected files: {sorted(files)}")
    for name, expected in files.items():
        path = directory / name
        try:
            digest = _digest(path)
        except OSError as exc:
            raise sb.BackupFailed(f"{path}: {exc.strerror}") from None
        if digest != expected.get("sha256"):
            raise sb.BackupFailed(f"{path} does not match its checksum in {MANIFEST}: the backup is damaged")
    return Checked(directory, frozenset(files), sb.verify(directory / STORE_FILE))


def run_restore(args: argparse.Namespace) -> int:
    return _run("restore", args, _restore)


def _restore(config: config_mod.Config, args: argparse.Namespace) -> None:
    backup = check_backup(args.src)
    prepare_directory(config.data_dir)
    store = config.data_dir / STORE_FILE
    in_use = hold(store, exclusive=True)  # no node starts on the store meanwhile
    try:
        targets = {name: path for name, path in _key_files(config).items() if name in backup.files}
        if not args.force:
            _refuse_overwrite(store, backup, targets)
        with contextlib.ExitStack() as staged:
            keys = {path: staged.enter_context(sb.staged_copy(backup.directory / name, path.parent))
                    for name, path in targets.items()}  # fmt: skip
            db = staged.enter_context(sb.staged_copy(backup.directory / STORE_FILE, config.data_dir))
            for path, copy in keys.items():
                os.replace(copy, path)
                sb.fsync_path(path.parent)
            sb.install(db, store)
    finally:
        os.close(in_use)
    print(f"idnode restore: {backup.contents.handles} handles (schema {backup.contents.schema_version}) into {store}")
    if not config.secret_key_path.exists():  # never in a backup: kept apart (registry.identity.sealing)
        print(
            f"idnode restore: the secret key is not at {config.secret_key_path} (setting 'secret_key_file'): "
            "put the node's key file there before it starts, or no stored secret will verify",
            file=sys.stderr,
        )


def _refuse_overwrite(store: Path, backup: Checked, targets: dict[str, Path]) -> None:
    there = [p for p in (store, store.with_name(store.name + "-wal")) if p.exists()]
    there += [p for name, p in targets.items() if p.exists() and _digest(p) != _digest(backup.directory / name)]
    if there:
        shown = ", ".join(str(p) for p in there)
        raise Refused(WOULD_OVERWRITE, f"already there: {shown}; --force replaces it")
