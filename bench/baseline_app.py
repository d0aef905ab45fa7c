"""The trivial baseline: aiohttp + uvloop answering every GET /api/handles/{h} with fixed bytes.

It shares the real server's framework, event loop, route shape and response body, and
does nothing else, so the gap between the two is what idnode's own request path costs::

    python -m bench.baseline_app --listen 127.0.0.1:8001 --body-file body.json
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import uvloop
from aiohttp import web

BODY = web.AppKey("body", bytes)


async def fixed(request: web.Request) -> web.Response:
    return web.Response(body=request.app[BODY], content_type="application/json")


def make_app(body: bytes) -> web.Application:
    app = web.Application()
    app[BODY] = body
    app.router.add_get("/api/handles/{handle:.+}", fixed)
    return app


async def run(listen: str, body: bytes) -> None:
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(make_app(body), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, int(port), backlog=1024).start()
    for address in runner.addresses:
        # Same announcement as `idnode serve`, so one driver can start either.
        print(f"baseline: listening on http://{address[0]}:{address[1]}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_app", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8001", help="HOST:PORT (port 0 picks a free one)")
    parser.add_argument("--body-file", type=Path, required=True, help="the response body to serve")
    args = parser.parse_args(argv)
    uvloop.run(run(args.listen, args.body_file.read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
