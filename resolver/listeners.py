"""The node's listening sockets: opened once, by the process that starts the node.

A node listens for HTTP and, unless turned off, for the Handle protocol on TCP and UDP
of one port (2641 by default, as every Handle server does). The sockets are opened before
anything else, so that a port in use stops start-up with one line naming the setting, and
before the workers fork, so that every worker serves every listener: a TCP listener's
connections go to whichever worker accepts first, and a datagram to whichever worker
reads the shared UDP socket first (measured fairer than SO_REUSEPORT's hashing, see
resolver.workers).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from resolver.config import Config

LISTEN_BACKLOG = 1024
# A burst of datagrams waits here while every worker is busy; past it the kernel drops them
# (counted by the kernel as receive-buffer errors), as a DNS server's would.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
PORT_ATTEMPTS = 32  # port 0: tries at a port free for both TCP and UDP


class ListenError(Exception):
    """A listener could not be opened; the message names the setting."""


@dataclass(frozen=True)
class Listeners:
    """The sockets one node serves, shared by all its workers."""

    http: socket.socket
    handle_tcp: socket.socket | None = None
    handle_udp: socket.socket | None = None

    @property
    def handle_address(self) -> tuple[str, int] | None:
        if self.handle_tcp is None:
            return None
        host, port = self.handle_tcp.getsockname()[:2]
        return host, port

    def close(self) -> None:
        for sock in (self.http, self.handle_tcp, self.handle_udp):
            if sock is not None:
                sock.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _tcp(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _udp(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _handle_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """TCP and UDP on one port; for port 0, the first port the kernel offers that is free for both."""
    for _ in range(PORT_ATTEMPTS if port == 0 else 1):
        tcp = _tcp(host, port)
        try:
            return tcp, _udp(host, tcp.getsockname()[1])
        except OSError:
            tcp.close()
            if port != 0:
                raise
    raise OSError(f"no port free for both TCP and UDP after {PORT_ATTEMPTS} tries")


def open_listeners(config: Config) -> Listeners:
    try:
        http = _tcp(config.host, config.port)
    except OSError as exc:
        raise ListenError(f"setting 'listen': cannot listen on {config.listen}: {exc.strerror or exc}") from None
    if not config.handle_listen:
        return Listeners(http)
    host, port = config.handle_host_port
    try:
        tcp, udp = _handle_pair(host, port)
    except OSError as exc:
        http.close()
        raise ListenError(
            f"setting 'handle_listen': cannot listen on {config.handle_listen} (TCP and UDP): {exc.strerror or exc}"
            " (--no-handle turns the Handle protocol off)"
        ) from None
    return Listeners(http, tcp, udp)
