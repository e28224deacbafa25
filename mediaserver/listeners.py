"""Listening sockets: bound by the server itself, or handed to a worker by its supervisor.

With `--workers N` the supervisor owns each public port (RTMP, HTTP) as a
SO_REUSEPORT group: a reservation socket that never listens, and one listening
socket per worker, which the kernel spreads new connections over (see
mediaserver.workers.supervisor for why). Each worker also binds its own private
HTTP listener, the address other nodes use to reach exactly that worker (edge
fetches, cluster calls), which the shared port cannot do.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from .config import Config

# Worker listeners are reached only from this box unless --advertise says otherwise.
LOOPBACK = "127.0.0.1"


def bind_tcp(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A bound (not yet listening) TCP socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def bind_named(what: str, host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """bind_tcp(), with a failure that says which listener and address it was for."""
    try:
        return bind_tcp(host, port, reuse_port)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen for {what} on {host}:{port}: "
                                 f"{exc.strerror or exc}") from exc


@contextlib.contextmanager
def bound(what: str, host: str, port: int) -> Iterator[socket.socket]:
    """A bound socket, closed on exit; a bind failure says which listener and address."""
    with bind_named(what, host, port) as sock:
        yield sock


class SharedPort:
    """One public port for several workers: a SO_REUSEPORT group the supervisor owns.

    The reservation socket is bound but never listens, so it takes no connections;
    it holds the port (and the number port 0 picked) while no worker listens.
    """

    def __init__(self, what: str, host: str, port: int) -> None:
        if not hasattr(socket, "SO_REUSEPORT"):
            raise OSError(f"cannot share the {what} port between workers: this system "
                          "has no SO_REUSEPORT")
        self.what = what
        self._reservation = bind_named(what, host, port, reuse_port=True)
        self.address: tuple[str, int] = self._reservation.getsockname()[:2]

    def listener(self, backlog: int) -> socket.socket:
        """A new listening socket in the group, for one worker."""
        sock = bind_named(self.what, *self.address, reuse_port=True)
        sock.listen(backlog)
        return sock

    def close(self) -> None:
        self._reservation.close()


@dataclass(frozen=True, slots=True)
class SharedListeners:
    """What a worker serves on: the box's public ports, and where its own listener goes."""

    rtmp: socket.socket  # listening, this worker's socket in the port's SO_REUSEPORT group
    http: socket.socket
    private_http: tuple[str, int]  # to bind: this worker's own HTTP listener


def private_http_address(config: Config, slot: int) -> tuple[str, int]:
    """Where worker `slot` binds its own HTTP listener.

    Without --advertise, loopback on a free port: the nodes that reach it are the
    other workers of this box. With --advertise HOST:PORT, the --http interface on
    PORT + slot (free ports for PORT 0), so other boxes can reach each worker and a
    firewall can name the range; HOST is what the worker advertises.
    """
    if config.advertise is None:
        return LOOPBACK, 0
    port = config.advertise[1]
    return config.http[0], port + slot if port else 0
