"""``idnode rotate-secret-key``: seal every stored secret under a new node secret key.

The stored HS_SECKEY values and login digests are sealed under the key in ``secret_key_file``
(``registry.identity.sealing``). Rotating it, with the nodes stopped:

1. a new key is made and written first in the file, the old ones kept after it, so that a
   rotation cut short at any point leaves a file that opens everything (the next start, or the
   next rotation, finishes the job: both reseal what is not under the current key);
2. every value and digest is resealed under the new key (``registry.identity.resealing``);
3. the file is written again with the new key alone, unless something could not be resealed
   (then the old keys stay, and the command says so and exits 1).

A SQLite store that a node has open is refused; a PostgreSQL store cannot tell, so every node
that shares it must be stopped first, and each given the new file before it starts again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from protocol.records import HS_SECKEY
from registry.datadir import StoreInUse, hold
from registry.identity import sealing, secrets
from registry.identity.resealing import PAGE, reseal_store
from registry.sqlite.writer import STORE_FILE
from registry.store import Store
from resolver import config as config_mod
from resolver import logs

OK, FAILED, BAD_SETTINGS, IN_USE = 0, 1, 2, 4


def add_parsers(commands: Any) -> None:
    p = commands.add_parser(
        "rotate-secret-key",
        help="seal every stored secret under a new secret key (the nodes stopped)",
        description="Make a new node secret key, reseal every stored HS_SECKEY value and login digest under "
        "it, and drop the old key from secret_key_file. Stop every node using the store first (a SQLite store "
        "in use is refused), and give every node sharing a PostgreSQL store the new file. Exit codes: 0 done, "
        "1 some values could not be resealed (the old keys are kept), 2 bad settings, 4 the store is in use.",
    )
    p.add_argument("--config", type=Path, help="TOML configuration file (the node's)")
    p.add_argument("--data-dir", help="directory of the embedded store (default ./data)")
    p.add_argument("--store", help="sqlite:///DIR (default: --data-dir) or postgresql://USER@HOST:PORT/DB")
    p.add_argument("--secret-key-file", help=f"the node secret key (default DATA_DIR/{sealing.KEY_FILE})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    flags = {k: getattr(args, k) for k in ("data_dir", "store", "secret_key_file")}
    try:
        config = config_mod.load(args.config, os.environ, flags)
        old = sealing.load_file(config.secret_key_path)
    except (config_mod.ConfigError, sealing.SecretKeyError) as exc:
        print(f"idnode rotate-secret-key: error: {exc}", file=sys.stderr)
        return BAD_SETTINGS
    logs.setup(config.log_level, config.log_format)
    if not config.postgres:
        try:
            os.close(hold(config.data_dir / STORE_FILE, exclusive=True))  # refused while a node has it open
        except StoreInUse as exc:
            print(f"idnode rotate-secret-key: refused: {exc}; stop the node first", file=sys.stderr)
            return IN_USE
    return asyncio.run(_rotate(config, old))


async def _rotate(config: config_mod.Config, old: sealing.Keyring) -> int:
    from resolver.stores import default_store  # loaded only now

    path = config.secret_key_path
    new = sealing.Keyring.generate()
    sealing.write_file(path, sealing.Keyring(new.keys + old.keys))  # first: nothing sealed is ever unopenable
    secrets.use_keyring(sealing.load_file(path))
    store = default_store(config)
    await store.open()
    try:
        done = await reseal_store(store, every_record=True)
        behind = await _left_behind(store)
    finally:
        await store.close()
    done.report()
    if done.missing or behind:
        print(
            f"idnode rotate-secret-key: {sum(done.missing.values()) + behind} value(s) are not sealed under the new "
            f"key (keys not held: {', '.join(sorted(done.missing)) or 'none'}; changed meanwhile: {behind}); "
            f"the old keys stay in {path} until a rotation or a start reseals them",
            file=sys.stderr,
        )
        return FAILED
    sealing.write_file(path, new)
    print(
        f"idnode rotate-secret-key: {done.values} secret(s) and {done.digests} login digest(s) sealed under the new "
        f"key {new.current}; {path} now holds it alone: give every node sharing the store this file"
    )
    return OK


async def _left_behind(store: Store) -> int:
    """Stored secrets and login digests still not sealed under the current key (a record that
    changed while it was resealed: a node was running after all)."""
    left, after = 0, None
    while rows := await store.export_after(None, after, PAGE):
        for _, record in rows:
            left += sum(1 for v in record.values if v.type.upper() == HS_SECKEY and secrets.needs_reseal(v.data))
        after = rows[-1][0]
    return left + sum(1 for name, _ in await store.login_digests() if secrets.digest_needs_reseal(name))
