"""Redis bytes per cached entry: what the shared tier costs per identifier in the hot set.

Starts a redis-server of its own (nothing else in it) and ``idnode serve --redis`` on a
store filled with bench.load_store records (SQLite directory or PostgreSQL URL), resolves
``--entries`` distinct handles once each, and divides Redis's ``used_memory`` growth by the
keys added; also the mean of ``MEMORY USAGE`` over a sample of keys (the entry alone,
without the dictionary's per-key overhead)::

    python -m bench.redis_entry --store postgresql://postgres@127.0.0.1:PORT/idnode_scale --entries 50000
"""

from __future__ import annotations

import argparse
import http.client
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench.load_store import handle_for
from bench.resolve_baseline import SEED, Target, machine, revision, serve_command
from protocol.identifiers import parse_handle
from resolver.cache.redis_tier import FORMAT
from tests.support.redisproc import RedisServer


def command(port: int, *args: str) -> bytes:
    """One Redis command over a fresh connection (RESP), the raw reply."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"".join([f"*{len(args)}\r\n".encode(), *(f"${len(a)}\r\n{a}\r\n".encode() for a in args)]))
        time.sleep(0.05)
        return s.recv(1 << 20)


def used_memory(port: int) -> int:
    info = command(port, "INFO", "memory").decode()
    return int(next(line for line in info.splitlines() if line.startswith("used_memory:")).split(":")[1])


def keys(port: int) -> int:
    return int(command(port, "DBSIZE").decode().strip().lstrip(":"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_entry", description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="sqlite:///DIR or postgresql://... filled by the loaders")
    parser.add_argument("--count", type=int, default=1_000_000, help="records in that store")
    parser.add_argument("--entries", type=int, default=50_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        redis = RedisServer(Path(work) / "redis").start()
        try:
            cmd = serve_command("--workers", "1")
            cmd += ["--store", args.store, "--redis", redis.url, "--data-dir", str(Path(work) / "data")]
            node = Target("node", "idnode serve", cmd).start()
            try:
                before_bytes, before_keys = used_memory(redis.port), keys(redis.port)
                conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
                resolved = [handle_for(i) for i in random.Random(SEED).sample(range(args.count), args.entries)]
                for handle in resolved:
                    conn.request("GET", f"/api/handles/{handle}")
                    reply = conn.getresponse()
                    reply.read()
                    if reply.status != 200:
                        raise RuntimeError(f"{handle}: {reply.status}")
                time.sleep(1.0)  # the tier writes behind the answer
                added = keys(redis.port) - before_keys
                grown = used_memory(redis.port) - before_bytes
            finally:
                node.stop()
            usages = [
                int(
                    command(redis.port, "MEMORY", "USAGE", f"idnode:v{FORMAT}:rec:{parse_handle(h).key}").strip(
                        b":\r\n"
                    )
                )
                for h in resolved[:200]
            ]
        finally:
            redis.stop()
    print(f"{added:,} entries added; used_memory grew {grown:,} bytes = {grown / added:.0f} bytes per entry")
    print(f"MEMORY USAGE, mean of {len(usages)} keys: {sum(usages) / len(usages):.0f} bytes")
    print(f"machine: {machine()}; revision {revision()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
