"""The origin's half of an edge following a playlist: hold the edge's request until it changes.

An edge with viewers of a channel held here asks for its index.m3u8 again as soon
as it has an answer, with If-None-Match (the copy it holds) and WAIT_HEADER
(hls.remote). Rather than a 304 at once, the handler holds the request until the
playlist differs from that copy (a new segment, the end), then answers it as any
other. So an edge costs this node one answer per playlist change, whatever its
audience, and its copy is never older than the trip between the two nodes. An
ended playlist (ENDLIST) never changes again: a request for it is not held.

Held on the channel's one ChangeSignal (hls.waiters), with the LL-HLS requests:
woken by each part, segment and the end. Bounded: never longer than the edge
asked or MAX_HOLD_SECONDS, then a 304; ended early when the channel leaves this
node (handed over or dropped: the edge is told 404 and looks for it again) and
when the edge hangs up. Requests without EDGE_HEADER are never held.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping

from .remote import EDGE_HEADER, WAIT_HEADER
from .waiters import ChangeSignal

# The longest hold an edge gets, whatever it asks: a stalled stream then costs each
# edge one 304 this often, and a request is never held past what a proxy between the
# nodes (idle timeouts are usually a minute) would allow.
MAX_HOLD_SECONDS = 30.0
# A held request whose edge hung up ends at the channel's next change, or at most this
# long after the hang-up when nothing changes (a stalled stream).
GONE_CHECK_SECONDS = 1.0


class HoldError(ValueError):
    """A WAIT_HEADER that is not a number of seconds."""


def requested_hold(headers: Mapping[str, str]) -> float:
    """Seconds an edge asks its request to be held; 0 for a request that is not held.

    Raises HoldError for a wait that is not a finite, non-negative number.
    """
    value = headers.get(WAIT_HEADER)
    if value is None or EDGE_HEADER not in headers:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise HoldError(f"{WAIT_HEADER} must be a number of seconds, not {value[:32]!r}")
    return min(seconds, MAX_HOLD_SECONDS)


async def hold(signal: ChangeSignal, changed: Callable[[], bool], gone: Callable[[], bool],
               seconds: float) -> None:
    """Return once `changed()` (asked at each change of the channel), once `gone()` (asked
    at each change and at least every GONE_CHECK_SECONDS), or after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not gone():
        left = deadline - loop.time()
        if left <= 0:
            return
        over, _ = await signal.wait_until(lambda: changed() or gone(),
                                          min(left, GONE_CHECK_SECONDS))
        if over:
            return
