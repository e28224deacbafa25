"""What the HLS handlers ask when a channel is not held here: a remote source.

In a cluster any node answers any playback URL, but only the origin (the node
holding the publisher) has a segmenter. The handlers stay ignorant of clusters:
when their lookup finds nothing they hand a RemoteRequest to an optional
RemoteSource and turn its answer into the same response a local channel gets
(headers, ETag/304, gzip, ranges). The source lives outside `hls/` (an edge
that proxies or redirects to the origin); this module is the whole contract.

A request that carries EDGE_HEADER came from another node's edge: it is
answered from local state only, never passed on again, so stale cluster records
can never make nodes fetch from each other in a loop.

An edge follows a channel's FOLLOWED_PLAYLIST while it has viewers of it: its
request carries If-None-Match (the copy it holds) and WAIT_HEADER (seconds), and
the origin answers when the playlist differs from that copy, or 304 once the
wait is over (hls.edge_hold). One answer per playlist change per edge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

# Set by an edge on every request it sends to an origin (its value names the edge node).
EDGE_HEADER = "X-Mediaserver-Edge"
# With EDGE_HEADER and If-None-Match: hold the request up to this many seconds until the
# playlist differs from the ETag given.
WAIT_HEADER = "X-Mediaserver-Wait"
# The playlist an origin holds such requests for: the MPEG-TS one, which every player
# polls. LL-HLS players block on ll.m3u8 already (_HLS_msn), and edges share those.
FOLLOWED_PLAYLIST = "index.m3u8"


class Kind(enum.Enum):
    """How a resource may be shared between viewers, which is all a source needs to know."""

    PLAYLIST = "playlist"  # changes as the stream goes: fetched often, shared briefly
    MEDIA = "media"  # a segment, part or init section: its name is never reused (immutable)
    # Changes now and then under one name (a channel's thumbnail): shared for a few seconds.
    SNAPSHOT = "snapshot"


@dataclass(frozen=True, slots=True)
class RemoteRequest:
    kind: Kind
    channel: str  # already checked against the channel-name rule
    path: str  # as the viewer asked, e.g. /live/cam/index.m3u8; the same on every node
    query: str  # the raw query string ("" when none); LL-HLS directives travel here


# eq=False: identity is the version. The handlers keep the rendered form (ETag, gzip) of
# a playlist body per Found object, weakly, so a source that hands out the same object
# while its copy is fresh gets it rendered once.
@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Found:
    body: bytes


@dataclass(frozen=True, slots=True)
class Redirect:
    location: str  # absolute URL on the origin


@dataclass(frozen=True, slots=True)
class Missing:
    reason: str  # told to the viewer with a 404


@dataclass(frozen=True, slots=True)
class Failed:
    status: int  # 502 (origin answered badly or not at all) or 504 (origin too slow)
    reason: str


RemoteAnswer = Found | Redirect | Missing | Failed


class RemoteSource(Protocol):
    async def fetch(self, request: RemoteRequest) -> RemoteAnswer:
        """Answer for a channel not held here; never raises for an origin's failure."""
        ...
