"""File descriptors: raise the soft limit, and size the connection caps to fit under it.

Every RTMP and HTTP connection holds one descriptor. If the caps add up to
more than the process may open, accept() starts failing for everything at
once (health checks, playlists, new publishers), which is what a cap is there
to prevent. So the caps are fitted under the limit with a reserve left over.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger("mediaserver")

# Descriptors kept out of both caps: listening sockets, the store (SQLite file or a
# Redis pool), webhook and edge clients, log files, PyAV, the HTTP probe reserve.
FD_RESERVE = 128


@dataclass(frozen=True, slots=True)
class ConnectionCaps:
    rtmp: int
    http: int
    fd_limit: int
    reserve: int


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit on some systems
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def plan_caps(fd_limit: int, rtmp: int, http: int, reserve: int = FD_RESERVE) -> ConnectionCaps:
    """The configured caps, shrunk in proportion if together they exceed the limit."""
    budget = max(fd_limit - reserve, 2)
    if rtmp + http > budget:
        # In proportion, so that neither kind of client is starved by the other's cap.
        new_rtmp = max(1, budget * rtmp // (rtmp + http))
        rtmp, http = new_rtmp, max(1, budget - new_rtmp)
    return ConnectionCaps(rtmp=rtmp, http=http, fd_limit=fd_limit, reserve=reserve)
