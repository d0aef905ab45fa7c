"""The node's listening sockets: opened once, by the process that starts the node.

A node listens for HTTP and, unless turned off, for the Handle protocol on TCP and UDP
of one port (2641 by default, as every Handle server does). The sockets are opened before
anything else, so that a port in use stops start-up with one line naming the setting, and
before the workers fork, so that every worker serves every listener: a TCP listener's
connections go to whichever worker accepts first. UDP is different: each worker reads a
socket of its own, all bound to the port with SO_REUSEPORT, so that the kernel sends
every datagram of one client socket to the same worker, where the parts of a
multi-datagram request can be put back together.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace

from resolver.config import Config

LISTEN_BACKLOG = 1024
DEFER_ACCEPT_SECONDS = 1  # the Handle listener's TCP_DEFER_ACCEPT
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
    handle_udp: tuple[socket.socket, ...] = ()  # one per worker

    @property
    def handle_address(self) -> tuple[str, int] | None:
        if self.handle_tcp is None:
            return None
        host, port = self.handle_tcp.getsockname()[:2]
        return host, port

    def for_worker(self, n: int) -> Listeners:
        """What worker ``n`` serves: the shared sockets and its own UDP socket."""
        return replace(self, handle_udp=self.handle_udp[n : n + 1])

    def close(self) -> None:
        for sock in (self.http, self.handle_tcp, *self.handle_udp):
            if sock is not None:
                sock.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _tcp(host: str, port: int, defer_accept: bool = False) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if defer_accept and hasattr(socket, "TCP_DEFER_ACCEPT"):
            # Linux: wake the node once the client's first bytes have come (Handle clients
            # speak first), not at the end of the handshake; a client silent that long is
            # accepted all the same and meets the idle timeout. resolver.handle.transport.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT_SECONDS)
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _udp(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _handle_sockets(host: str, port: int, udp_count: int) -> tuple[socket.socket, tuple[socket.socket, ...]]:
    """TCP and ``udp_count`` UDP sockets on one port; for port 0, the first port free for both."""
    for _ in range(PORT_ATTEMPTS if port == 0 else 1):
        tcp = _tcp(host, port, defer_accept=True)
        udp: list[socket.socket] = []
        try:
            for _ in range(udp_count):
                udp.append(_udp(host, tcp.getsockname()[1]))
            return tcp, tuple(udp)
        except OSError:
            tcp.close()
            for sock in udp:
                sock.close()
            if port != 0:
                raise
    raise OSError(f"no port free for both TCP and UDP after {PORT_ATTEMPTS} tries")


def open_listeners(config: Config, workers: int = 1) -> Listeners:
    try:
        http = _tcp(config.host, config.port)
    except OSError as exc:
        raise ListenError(f"setting 'listen': cannot listen on {config.listen}: {exc.strerror or exc}") from None
    if not config.handle_listen:
        return Listeners(http)
    host, port = config.handle_host_port
    try:
        tcp, udp = _handle_sockets(host, port, workers)
    except OSError as exc:
        http.close()
        raise ListenError(
            f"setting 'handle_listen': cannot listen on {config.handle_listen} (TCP and UDP): {exc.strerror or exc}"
            " (--no-handle turns the Handle protocol off)"
        ) from None
    return Listeners(http, tcp, udp)
