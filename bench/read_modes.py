"""``idnode serve`` with the store's read mode chosen: reads on a thread pool, or on the event loop.

The CLI has no switch for ``SqliteStore(threaded_reads=...)``; this launcher runs the real
``resolver.server.bootstrap`` and ``serve`` with such a store passed in, so the two modes
differ in nothing else. Configuration comes from the same loader (defaults < IDNODE_* env < flags)::

    IDNODE_ADMIN_SECRET=... python -m bench.read_modes --reads loop --listen 127.0.0.1:0 --data-dir DIR
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvloop

from registry.sqlite.store import SqliteStore
from resolver import config as config_mod
from resolver.server import bootstrap, serve

READ_MODES = ("threads", "loop")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.read_modes", description=__doc__.splitlines()[0])
    parser.add_argument("--reads", choices=READ_MODES, required=True, help="where store reads run")
    parser.add_argument("--listen", help="HOST:PORT (port 0 picks a free one)")
    parser.add_argument("--data-dir", help="directory of the embedded store")
    parser.add_argument("--node-prefix", help="the prefix this node serves")
    args = parser.parse_args(argv)
    flags = {"listen": args.listen, "data_dir": args.data_dir, "node_prefix": args.node_prefix}
    try:
        config = config_mod.load(None, os.environ, flags)
    except config_mod.ConfigError as exc:
        print(f"read_modes: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = SqliteStore(
        config.data_dir / "idnode.sqlite3", readers=config.store_readers, threaded_reads=args.reads == "threads"
    )
    admin_secret = os.environ.get(config_mod.ADMIN_SECRET_ENV) or None

    async def run() -> None:
        # As `idnode serve` does it; bootstrap opens and closes a store of its own, and a
        # SqliteStore cannot be opened again once closed.
        await bootstrap(config, admin_secret)
        await serve(config, store)

    uvloop.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
