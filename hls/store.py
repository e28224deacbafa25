"""What viewers can fetch of one channel's finished segments, by name, and what it weighs.

Each finished segment is held as one entry with every resource made from it: its
TS form (hls.tsjit: the frames it is muxed from when first asked for, and its bytes
while they are kept), and with LL-HLS its parts and its fMP4 form (the parts back
to back, so it weighs nothing more; the TS form's frames are the same buffers).
An entry's size is what it holds: its media once, plus TS bytes while kept
(`resize`). An entry is listed while the segment is in the playlist,
then expired: still fetchable until a deadline (RFC 8216 6.2.2: its duration
plus the longest playlist it appeared in; parts stay as long, which covers
RFC 8216bis 6.2.2's three target durations after their EXT-X-PART tags go).
Given a SpillDirectory, an expired segment's media goes to a file at expiry and is
read back for a late request (hls.spill); its entry then weighs nothing in memory.
Init sections are shared by the segments that need them and held while any does.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from .chunks import Chunks
from .spill import SpillDirectory, SpilledMedia
from .tsjit import TsForm

Data = bytes | bytearray | memoryview | Chunks
Resource = Data | TsForm

log = logging.getLogger("hls.store")


@dataclass(frozen=True, slots=True)
class _InFile:
    """A spilled entry's resource: buffer `index` of its file, or (None) all of them."""

    index: int | None


@dataclass(slots=True)
class _Held:
    key: str
    resources: dict[str, Resource | _InFile]
    size: int  # bytes this entry owns (resources that share buffers count once)
    init: str | None
    longest_playlist: float = 0.0  # seconds: the longest playlist it appeared in
    deadline: float = math.inf  # clock time it stops being served, once expired
    names: list[str] = field(default_factory=list)
    spilled: SpilledMedia | None = None  # its media, once written out at expiry


class SegmentStore:
    """Listed and expired segments by key (the TS name), every resource by its name."""

    __slots__ = ("_by_name", "_expired", "_inits", "_listed", "_spill", "bytes_expired",
                 "bytes_inits", "bytes_listed")

    def __init__(self, spill: SpillDirectory | None = None) -> None:
        self._spill = spill
        self._listed: dict[str, _Held] = {}
        self._expired: dict[str, _Held] = {}  # insertion order: oldest first
        self._by_name: dict[str, _Held] = {}
        self._inits: dict[str, list[bytes | int]] = {}  # name -> [bytes, segments needing it]
        # Kept as running totals: the segmenter checks the memory cap on every frame.
        self.bytes_listed = 0
        self.bytes_expired = 0
        self.bytes_inits = 0

    def add(self, key: str, resources: dict[str, Resource], size: int,
            init: tuple[str, bytes] | None = None) -> None:
        """List a finished segment under `key`; `init` is the section its fMP4 form needs."""
        held = _Held(key, resources, size, init[0] if init else None)
        self._listed[key] = held
        self.bytes_listed += size
        for name in resources:
            self._by_name[name] = held
            held.names.append(name)
        if init is not None:
            entry = self._inits.get(init[0])
            if entry is None:
                entry = self._inits[init[0]] = [init[1], 0]
                self.bytes_inits += len(init[1])
            entry[1] += 1  # type: ignore[operator]

    def get(self, name: str, now: float) -> Resource | None:
        held = self._by_name.get(name)
        if held is not None:
            if now > held.deadline:
                self._forget(held)
                return None
            resource = held.resources[name]
            if type(resource) is _InFile:
                return _read_back(held, resource)
            return resource
        init = self._inits.get(name)
        return init[0] if init is not None else None  # type: ignore[return-value]

    def get_form(self, key: str) -> TsForm | None:
        """The TS form of the segment held under `key` (deadline or not)."""
        held = self._by_name.get(key)
        form = held.resources.get(key) if held is not None else None
        return form if type(form) is TsForm else None

    def ts_forms(self) -> list[TsForm]:
        """The TS form of every segment held, oldest first."""
        held = (*self._expired.values(), *self._listed.values())
        return [form for h in held if type(form := h.resources.get(h.key)) is TsForm]

    def resize(self, key: str, change: int) -> None:
        """The entry under `key` holds `change` bytes more (or fewer): TS bytes kept or let go."""
        held = self._by_name[key]
        held.size += change
        if held.deadline == math.inf:
            self.bytes_listed += change
        else:
            self.bytes_expired += change

    def note_listed_in(self, keys: list[str], playlist_seconds: float) -> None:
        """These listed segments appeared in a playlist this long."""
        for key in keys:
            held = self._listed[key]
            held.longest_playlist = max(held.longest_playlist, playlist_seconds)

    def expire(self, key: str, duration: float, now: float) -> None:
        """A segment slid out of the playlist: keep it for its duration plus the longest
        playlist it appeared in, a player's worst case for asking (RFC 8216 6.2.2)."""
        held = self._listed.pop(key)
        self.bytes_listed -= held.size
        held.deadline = now + duration + held.longest_playlist
        self._expired[key] = held
        self.bytes_expired += held.size
        if self._spill is not None:
            self._write_out(held, self._spill)

    def _write_out(self, held: _Held, spill: SpillDirectory) -> None:
        """Move an expired entry's media to a file (kept in memory if that fails)."""
        form = held.resources.get(held.key)
        if type(form) is not TsForm or form.data is not None or form.frames.chunks is None:
            return
        chunks = form.frames.chunks
        at = {id(chunk): index for index, chunk in enumerate(chunks)}
        in_file = {name: _InFile(None if type(resource) is Chunks else at[id(resource)])
                   for name, resource in held.resources.items()
                   if resource is not form and (type(resource) is Chunks or id(resource) in at)}
        if len(in_file) != len(held.resources) - 1:
            return  # a resource not made of these buffers: nothing to gain
        media = spill.write(chunks)
        if media is None:
            return
        held.resources.update(in_file)
        form.frames.spill(media)
        held.spilled = media
        self.bytes_expired -= held.size
        held.size = 0

    def unlist(self, key: str) -> int:
        """Drop a listed segment at once (memory pressure); the bytes it freed."""
        return self._forget(self._listed[key])

    def purge(self, now: float) -> None:
        # Deadlines are not in expiry order (durations differ): look at each; few are kept.
        for held in [h for h in self._expired.values() if now > h.deadline]:
            self._forget(held)

    def forget_oldest_expired(self) -> int | None:
        """Drop the oldest expired segment still holding memory (memory pressure); its
        bytes, None if none."""
        for held in self._expired.values():
            if held.size:
                return self._forget(held)
        return None

    def _forget(self, held: _Held) -> int:
        if held.deadline == math.inf:
            del self._listed[held.key]
            self.bytes_listed -= held.size
        else:
            del self._expired[held.key]
            self.bytes_expired -= held.size
        for name in held.names:
            if self._by_name.get(name) is held:
                del self._by_name[name]
        if held.spilled is not None:
            held.spilled.remove()
        if held.init is not None:
            entry = self._inits[held.init]
            entry[1] -= 1  # type: ignore[operator]
            if entry[1] == 0:
                del self._inits[held.init]
                self.bytes_inits -= len(entry[0])  # type: ignore[arg-type]
        return held.size


def _read_back(held: _Held, resource: _InFile) -> Data | None:
    """A spilled entry's resource from its file (None if the file cannot be read: the
    request is answered as for a segment no longer held)."""
    assert held.spilled is not None
    try:
        if resource.index is None:
            return Chunks(held.spilled.load())
        return held.spilled.load_one(resource.index)
    except OSError as exc:
        log.warning("an expired segment's file could not be read back: %s", exc)
        return None
