"""Listening sockets: bound by the server itself, or handed to a worker by its supervisor.

With `--workers N` the supervisor binds the public RTMP and HTTP sockets once and
every worker inherits them: the kernel queues each new connection on the one
socket and whichever worker accepts first takes it. Each worker also binds its
own private HTTP listener, the address other nodes use to reach exactly that
worker (edge fetches, cluster calls), which the shared port cannot do.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from .config import Config

# Worker listeners are reached only from this box unless --advertise says otherwise.
LOOPBACK = "127.0.0.1"


def bind_tcp(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def bound(what: str, host: str, port: int) -> Iterator[socket.socket]:
    """A bound socket, closed on exit; a bind failure says which listener and address."""
    try:
        sock = bind_tcp(host, port)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen for {what} on {host}:{port}: "
                                 f"{exc.strerror or exc}") from exc
    with sock:
        yield sock


@dataclass(frozen=True, slots=True)
class SharedListeners:
    """What a worker serves on: the box's public sockets, and where its own listener goes."""

    rtmp: socket.socket  # listening, shared with the other workers
    http: socket.socket  # listening, shared with the other workers
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
