"""A playlist as served: its body, ETag and gzip form, made once per playlist change.

Every viewer of a channel asks for the same few hundred bytes until the next
segment or part, so the body, its ETag, its gzipped form, their headers and
their heads on the wire are made once per change (keyed on the identity of the
text the playlist model caches), never per request. Both ways of answering a
playlist read them from here: the aiohttp handlers (hls.http) and the hot path
(hls.hot), so a change is encoded and compressed once whichever path serves it.

Conditional requests (ETag, If-None-Match -> 304) and gzip are RFC 8216 6.2.1's
SHOULDs; `choose` is the one place that decides which form a request gets.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .wire import response_head

if TYPE_CHECKING:
    from .segmenter import Segmenter

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
PLAYLIST_CACHE = "no-cache"
EXPOSED_HEADERS = "Content-Length, Content-Range, Accept-Ranges, Age, Date, ETag"
# On every answer, errors included, so a web player on another origin sees the real status.
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": EXPOSED_HEADERS,
}
# Level 6 (gzip's default): a playlist is compressed once per change, so the cost
# hardly matters, and higher levels gain nothing on a few hundred bytes of text.
GZIP_LEVEL = 6
# Distinct Accept-Encoding values remembered (browsers and players send a handful).
_ACCEPT_ENCODING_CACHE = 256


@dataclass(frozen=True, slots=True)
class Representation:
    """One form of a playlist version: its body and the headers that go with it, as
    header dicts (for aiohttp) and as heads ready for the wire (for the hot path)."""

    body: bytes
    etag: str  # quoted, as sent
    headers: dict[str, str]
    not_modified_headers: dict[str, str]
    head: bytes  # 200, Content-Length included; no Date line, no final CRLF
    not_modified_head: bytes  # 304, likewise

    @classmethod
    def make(cls, body: bytes, etag: str, encoding: str | None) -> Representation:
        common = {"Cache-Control": PLAYLIST_CACHE, "ETag": etag, "Vary": "Accept-Encoding"}
        common |= CORS
        headers = {"Content-Type": PLAYLIST_TYPE} | common
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        return cls(body, etag, headers, common, response_head(200, headers, len(body)),
                   response_head(304, common))


@dataclass(frozen=True, slots=True)
class PlaylistVersion:
    """A playlist body as served: identity and gzip forms, made once per change."""

    identity: Representation
    gzipped: Representation

    @classmethod
    def of(cls, body: bytes) -> PlaylistVersion:
        # A digest of the body: every node serving the same playlist gives the same ETag.
        tag = hashlib.blake2b(body, digest_size=12).hexdigest()
        # A gzipped body is another representation, so it gets its own strong ETag.
        identity = Representation.make(body, f'"{tag}"', None)
        packed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        return cls(identity, Representation.make(packed, f'"{tag}-gzip"', "gzip"))

    def choose(self, accept_encoding: str | None, if_none_match: str | None
               ) -> tuple[Representation, bool]:
        """The form a request accepts (gzip or not), and whether it already has it (304)."""
        chosen = self.gzipped if accepts_gzip(accept_encoding) else self.identity
        return chosen, etag_matches(if_none_match, chosen.etag)


class PlaylistVersions:
    """Per segmenter and form (TS, LL, LL delta), the last text served and its version.

    The text is the playlist model's cached object: a new object means a new
    version. Entries go away with their segmenter."""

    __slots__ = ("_by_segmenter",)

    def __init__(self) -> None:
        self._by_segmenter: weakref.WeakKeyDictionary[
            Segmenter, dict[str, tuple[str, PlaylistVersion]]] = weakref.WeakKeyDictionary()

    def of(self, segmenter: Segmenter, form: str, text: str) -> PlaylistVersion:
        forms = self._by_segmenter.get(segmenter)
        if forms is None:
            forms = self._by_segmenter[segmenter] = {}
        known = forms.get(form)
        if known is not None and known[0] is text:
            return known[1]
        version = PlaylistVersion.of(text.encode())
        forms[form] = (text, version)
        return version


@functools.lru_cache(maxsize=_ACCEPT_ENCODING_CACHE)
def accepts_gzip(value: str | None) -> bool:
    """Whether an Accept-Encoding value allows gzip (RFC 9110 12.5.3); q=0 refuses it."""
    if not value:
        return False
    wildcard = False
    for item in value.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            return _qvalue(params) > 0
        if coding == "*":
            wildcard = _qvalue(params) > 0
    return wildcard


def _qvalue(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0  # unreadable weight: play safe and do not compress
    return 1.0


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses weak comparison (RFC 9110 13.1.2): W/ prefixes do not matter."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False
