"""MPEG-TS packaged just in time: a segment's TS form is muxed when it is first wanted.

Why. Every segment's media is held once (hls.frames: in its fMP4 parts with LL-HLS,
else in one buffer), and muxing MPEG-TS with PyAV costs about 61k instructions a
frame, half of all a stream cost before (benchmarks/README.md, "Issue 12, media
half"). A channel nobody plays as index.m3u8 now never pays it; one somebody plays
pays it once per segment, however many viewers and edge nodes ask, as before.

When. On the first request for a segment; and at a segment's close while the channel
is watched, so that viewers who keep watching never wait for a mux (one is ~1-1.5 ms
for a 2 s, 3 Mbit/s segment). Watched: requests for two different segments came
within HOT_TARGETS target durations of each other, and the last of them within
HOT_TARGETS target durations. A player (or an edge node) asks for one segment after
another, so its second segment makes the channel watched; a one-off fetch (a
thumbnail grabber, a monitoring probe, any number of requests for the same segment)
has its segment muxed and nothing more.

Continuity counters (hls.continuity). Consecutive segments must read as one stream
whatever order they were first asked for in. The segments given counters ("placed")
are always one run of consecutive held segments: a request beyond the run muxes the
held segments between, going forward from the run's end (each begins where the one
before ended) or backward from its start (each ends where the one after begins); the
first segment placed, with nothing placed around it, begins anywhere (at 0). So the
first request of a channel muxes one segment, and steady viewers one each.

Kept. A segment's TS bytes stay while it is listed; when it leaves the playlist
they are let go (expired segments are asked for rarely: late players), and made
again for a late request: the same frames and counters give the same bytes. The
segmenter counts them in its memory cap, and lets them go before any media.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

from .continuity import Counters, advance, go_back, payload_counts, restamp
from .frames import HeldFrames
from .media import TrackKind
from .muxer import MuxerError, TrackSet, TsMuxer

log = logging.getLogger("hls.tsjit")

# A channel with requests for two different TS segments within this many target
# durations gets each new segment muxed as it closes, until its requests stop for as
# long. A steady player asks once a target duration (it reloads the playlist that
# often); the margin covers reloads that come late.
HOT_TARGETS = 3.0


class TsForm:
    """One held segment's MPEG-TS form: its frames, its tracks, and once placed, its
    continuity counters; its bytes while they are kept."""

    __slots__ = ("begin", "counts", "data", "frames", "key", "tracks")

    def __init__(self, key: str, frames: HeldFrames, tracks: TrackSet) -> None:
        self.key = key  # the segment's TS name
        self.frames = frames
        self.tracks = tracks  # the templates it is muxed with (kept alive for it)
        self.data: bytearray | None = None
        self.begin: Counters | None = None  # counters it begins at, once placed
        self.counts: Counters = {}  # payload packets per PID (mod 16), once placed

    @property
    def placed(self) -> bool:
        return self.begin is not None

    @property
    def after(self) -> Counters:
        """Where the segment after it begins."""
        assert self.begin is not None
        return advance(self.begin, self.counts)


class TsPackager:
    """When and how one channel's TS forms get their bytes; what that cost (for metrics)."""

    __slots__ = ("_hot_until", "_label", "_last_asked", "_last_key", "bytes_made", "failed",
                 "made_again", "made_at_close", "made_on_request", "seconds")

    def __init__(self, label: str = "") -> None:
        self._label = label
        self._hot_until = -math.inf
        self._last_key = ""  # the segment asked for last, and when
        self._last_asked = -math.inf
        self.made_on_request = 0  # segments muxed for a request (or for its continuity)
        self.made_at_close = 0  # segments muxed as they closed, the channel being watched
        self.made_again = 0  # of those, segments muxed again after their bytes were let go
        self.failed = 0
        self.bytes_made = 0
        self.seconds = 0.0  # wall time spent muxing (on the loop)

    def wanted(self, key: str, now: float, target_duration: float) -> None:
        """TS segment `key` was asked for now."""
        window = HOT_TARGETS * target_duration
        if now <= self._hot_until or (key != self._last_key and now - self._last_asked <= window):
            self._hot_until = now + window
        self._last_key, self._last_asked = key, now

    def hot(self, now: float) -> bool:
        """Whether new segments should be muxed as they close."""
        return now <= self._hot_until

    def make(self, forms: Sequence[TsForm], index: int, *, at_close: bool = False
             ) -> list[TsForm]:
        """Give forms[index] its bytes, first muxing the held segments its continuity
        needs. `forms`: every held segment, oldest first. The forms given bytes."""
        target = forms[index]
        if target.data is not None:
            return []
        placed = [i for i, form in enumerate(forms) if form.placed]
        if target.placed or not placed:
            order: Sequence[int] = (index,)
        elif index > placed[-1]:
            order = range(placed[-1] + 1, index + 1)
        elif index < placed[0]:
            order = range(placed[0] - 1, index - 1, -1)
        else:
            order = (index,)  # inside the run: only after a failed mux left a hole
        made = []
        for i in order:
            form = forms[i]
            before = forms[i - 1] if i > 0 else None
            after = forms[i + 1] if i + 1 < len(forms) else None
            if self._package(form, before, after, at_close):
                made.append(form)
        return made

    def _package(self, form: TsForm, before: TsForm | None, after: TsForm | None,
                 at_close: bool) -> bool:
        started = time.perf_counter()
        data = self._mux(form)
        self.seconds += time.perf_counter() - started
        if data is None:
            self.failed += 1
            return False
        counts = payload_counts(data)
        if form.begin is not None:
            begin = form.begin  # made again: the counters it was given the first time
            if counts != form.counts:
                log.warning("%ssegment %s muxed again came out with other packet counts",
                            _prefix(self._label), form.key)
            self.made_again += 1
        elif before is not None and before.placed:
            begin = before.after
        elif after is not None and after.begin is not None:
            begin = go_back(after.begin, counts)
        else:
            begin = {}
        form.data = restamp(data, begin)
        form.begin, form.counts = begin, counts
        self.bytes_made += len(data)
        if at_close:
            self.made_at_close += 1
        else:
            self.made_on_request += 1
        return True

    def _mux(self, form: TsForm) -> bytearray | None:
        try:
            muxer = TsMuxer(form.tracks, label=self._label)
        except MuxerError as exc:
            log.error("%scannot mux segment %s: %s", _prefix(self._label), form.key, exc)
            return None
        write = muxer.write
        try:
            for audio, keyframe, dts, pts, duration, payload in form.frames:
                write(TrackKind.AUDIO if audio else TrackKind.VIDEO, dts, pts, keyframe,
                      payload, duration, checked=True)
        except OSError as exc:  # its frames were written to a file that cannot be read
            log.error("%scannot mux segment %s: %s", _prefix(self._label), form.key, exc)
            return None
        data = muxer.close()
        if muxer.packets == 0 or not data:
            log.error("%ssegment %s came out empty", _prefix(self._label), form.key)
            return None
        return data


def _prefix(label: str) -> str:
    return f"[{label}] " if label else ""
