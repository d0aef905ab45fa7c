"""The floor under a Python Handle TCP server's connection-per-request cost, for bench.tcp_kept.

Two processes (as idnode's two workers) accept from one listener, each through an epoll of
its own with EPOLLEXCLUSIVE, the listener with TCP_DEFER_ACCEPT, as idnode's listener does;
each connection is read once, answered with one fixed answer (the request id patched in) and
closed: no parsing, no cache, no metrics, no event loop. What it costs per connection is what
the kernel and the least Python can do; idnode's figure against it says how much of its own
cost is left to take out.

    python -m bench.tcp_floor --port 12345 --answer HEX
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys

RID = slice(8, 12)  # the envelope's request id


def serve(listener: socket.socket, answer: bytes) -> None:
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    template = bytearray(answer)
    while True:
        poller.poll()
        for _ in range(64):
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                break
            try:
                request = conn.recv(65_536, socket.MSG_DONTWAIT)
                if len(request) >= RID.stop:
                    template[RID] = request[RID]
                    conn.send(template, socket.MSG_DONTWAIT)
            except OSError:
                pass
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tcp_floor", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answer", required=True, help="the answer's bytes, hex")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    listener.listen(1024)
    listener.setblocking(False)
    for _ in range(args.processes - 1):
        if os.fork() == 0:
            break
    serve(listener, bytes.fromhex(args.answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
