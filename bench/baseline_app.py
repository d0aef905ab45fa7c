"""The trivial baseline: aiohttp + uvloop answering every GET /api/handles/{h} with fixed bytes.

It shares the real server's framework, event loop, route shape, response body and headers
(idnode's CORS headers included, so both send the same bytes), and its process model
(``--workers N``: one listening socket, N forked processes), and does nothing else, so
the gap between the two is what idnode's own request path costs::

    python -m bench.baseline_app --listen 127.0.0.1:8001 --body-file body.json --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import uvloop
from aiohttp import web

from resolver.http.common import CORS

BODY = web.AppKey("body", bytes)


async def fixed(request: web.Request) -> web.Response:
    response = web.Response(body=request.app[BODY], content_type="application/json")
    response.headers.update(CORS)
    return response


def make_app(body: bytes) -> web.Application:
    app = web.Application()
    app[BODY] = body
    app.router.add_get("/api/handles/{handle:.+}", fixed)
    return app


async def run(sock: socket.socket, body: bytes) -> None:
    runner = web.AppRunner(make_app(body), access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
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
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the listening socket")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    sock = socket.create_server((host, int(port)), backlog=1024)
    sock.setblocking(False)
    body = args.body_file.read_bytes()
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            uvloop.run(run(sock, body))
            os._exit(0)
        children.append(pid)
    address = sock.getsockname()
    # Same announcement as `idnode serve`, so one driver can start either.
    print(f"baseline: listening on http://{address[0]}:{address[1]}", file=sys.stderr, flush=True)

    def stop(signum: int, _frame: object) -> None:
        for pid in children:
            os.kill(pid, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for pid in children:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
