"""An edge's HTTP calls to origins: one session, a timeout on every call, outcomes not exceptions.

Every request names the edge in EDGE_HEADER, so the origin answers from what it
holds and never passes the request on (no loops when cluster records are stale).
The relays turn an Outcome into what the viewer sees (content, 404, 502 or 504);
nothing here raises for an origin's failure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import aiohttp

from hls.remote import EDGE_HEADER, WAIT_HEADER, Failed
from hls.segmenter import MAX_SEGMENT_BYTES

# A node on the same network accepts a connection in milliseconds; one that has not
# within a second is down or drowning, and the viewer is better served by an answer.
ORIGIN_CONNECT_TIMEOUT = 1.0
# No origin resource is larger than the largest segment a segmenter keeps; a bigger
# answer is a bug or not one of ours, and reading it would only cost memory.
MAX_ORIGIN_BODY = MAX_SEGMENT_BYTES
# Shorter than the origin's keep-alive (--http-keepalive-timeout, 15 s by default): the
# edge lets go of an idle connection before the origin closes it under a request.
ORIGIN_KEEPALIVE_SECONDS = 10.0
# Connections to all origins at once. Fetches are coalesced (one per playlist or
# segment in flight), so this is reached only with many channels changing at once.
ORIGIN_CONNECTIONS = 256
# The start of an origin's 404 text kept to tell the viewer (it says why).
MAX_REASON_BYTES = 256
# Origin answers passed on to the viewer as they are (see Outcome.REFUSED).
_REFUSALS = (400, 503)


class Outcome(enum.Enum):
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    NOT_FOUND = "not_found"
    # The origin declined the request as asked: 400 (an LL-HLS directive past the live
    # edge) or 503 (a blocking request it could not answer in time). The viewer gets it.
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    BAD_STATUS = "bad_status"
    TOO_LARGE = "too_large"

    @property
    def failure(self) -> bool:
        """The origin did not do its job (as opposed to answering "no such thing")."""
        return self not in (Outcome.OK, Outcome.NOT_MODIFIED, Outcome.NOT_FOUND,
                            Outcome.REFUSED)


@dataclass(frozen=True, slots=True)
class Reply:
    outcome: Outcome
    body: bytes = b""
    etag: str | None = None
    detail: str = ""  # for logs, and the viewer's text on a 404 or a refusal
    status: int = 0  # the origin's status, for REFUSED

    def failed(self) -> Failed:
        """What a viewer is told when the origin failed: too slow 504, else 502; a
        refusal as the origin said it.

        What went wrong, not where: node addresses stay in the log.
        """
        if self.outcome is Outcome.REFUSED:
            return Failed(self.status, self.detail)
        status = 504 if self.outcome is Outcome.TIMEOUT else 502
        return Failed(status, _VIEWER_TEXT.get(self.outcome, "origin failed"))


_VIEWER_TEXT = {
    Outcome.TIMEOUT: "origin timed out",
    Outcome.UNREACHABLE: "origin unreachable",
    Outcome.TOO_LARGE: "origin answer too large",
}


class OriginClient:
    """GETs from origins on one pooled session, created on first use (in the running loop)."""

    def __init__(self, node: str) -> None:
        self._node = node
        self._session: aiohttp.ClientSession | None = None

    async def get(self, url: str, timeout: float, etag: str | None = None,
                  wait: float | None = None) -> Reply:
        """GET url within `timeout` seconds (connect, headers and body together).

        `wait`, with an `etag`: ask the origin to hold the request up to that long until
        the resource differs from `etag` (hls.edge_hold); `timeout` must cover it.
        """
        headers = {EDGE_HEADER: self._node, "Accept-Encoding": "identity"}
        if etag is not None:
            headers["If-None-Match"] = etag
            if wait is not None:
                headers[WAIT_HEADER] = f"{wait:g}"
        limits = aiohttp.ClientTimeout(total=timeout, sock_connect=ORIGIN_CONNECT_TIMEOUT)
        try:
            async with self._open().get(url, headers=headers, timeout=limits,
                                        allow_redirects=False) as response:
                return await _reply(response)
        except TimeoutError:
            return Reply(Outcome.TIMEOUT, detail=f"timed out after {timeout:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return Reply(Outcome.UNREACHABLE, detail=str(exc) or type(exc).__name__)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=ORIGIN_CONNECTIONS,
                                             keepalive_timeout=ORIGIN_KEEPALIVE_SECONDS)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _reply(response: aiohttp.ClientResponse) -> Reply:
    status = response.status
    if status == 304:
        return Reply(Outcome.NOT_MODIFIED, etag=response.headers.get("ETag"))
    if status in (404, *_REFUSALS):
        reason = (await response.content.read(MAX_REASON_BYTES)).decode(errors="replace")
        outcome = Outcome.NOT_FOUND if status == 404 else Outcome.REFUSED
        return Reply(outcome, detail=reason.strip(), status=status)
    if status != 200:
        return Reply(Outcome.BAD_STATUS, detail=f"answered {status}")
    length = response.content_length
    if length is not None and length > MAX_ORIGIN_BODY:
        return Reply(Outcome.TOO_LARGE, detail=f"answered {length} bytes")
    body = await response.read() if length is not None else await _capped(response)
    if body is None:
        return Reply(Outcome.TOO_LARGE, detail=f"answered over {MAX_ORIGIN_BODY} bytes")
    return Reply(Outcome.OK, body, response.headers.get("ETag"))


async def _capped(response: aiohttp.ClientResponse) -> bytes | None:
    """A body without Content-Length, read up to MAX_ORIGIN_BODY (None past it)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_ORIGIN_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
