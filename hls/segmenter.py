"""Cut one channel's packets into MPEG-TS segments and keep the live window.

Cut rules (all by dts, in milliseconds):

- A segment starts at a video keyframe; what comes before a publish's first
  keyframe is dropped. Audio-only publishes cut on audio frames.
- A segment is cut at the first keyframe once it has lasted the target
  duration, less one frame: keyframes that land a frame early in decode
  order (millisecond rounding, timestamp jitter, an open GOP's leading
  pictures) still cut where the encoder meant to.
- TARGETDURATION is fixed for the playlist's whole life (RFC 8216 6.2.1),
  across republishes within the grace period too: when the first segment
  closes, T = max(ceil(target), rounded(first segment)). The playlist is only
  served once that segment exists, so no player sees another value. A stream
  whose first GOP is long (OBS "auto": 250 frames) thus gets T from it and
  keeps cutting at its keyframes.
- Every later EXTINF rounds to at most T: a segment that reaches T + 0.5 s,
  less a frame of margin, without a keyframe is cut anyway. The next
  segment then starts with a non-keyframe and is not independent, so the
  playlist drops EXT-X-INDEPENDENT-SEGMENTS until it leaves the window.
  Irregular GOPs (a 7 s GOP in a 2 s stream) thus give segments of about T,
  not a T that grows mid-stream.
- A segment holding no video (the video stopped while audio goes on) cuts on
  audio frames at the target, like an audio-only publish. Such segments are
  independent: whether a segment is independent is decided by what is in it
  (its first video frame, if any, is a keyframe), not by how it was cut.
- A segment that did not open at a keyframe is cut at the next one once it
  has lasted ``EARLY_KEYFRAME_CUT_SHARE`` of the target, so independence
  (and video after a stretch of audio) comes back at once.
- Memory bound: a segment is also cut before it would exceed
  ``max_segment_bytes``, and the first segment (which fixes T) at
  ``max_segment_duration`` (default ``FORCED_CUT_TARGETS`` x target).

Segments that leave the playlist stay fetchable for their duration plus the
longest playlist they appeared in (RFC 8216 6.2.2), measured on ``clock``.
Everything held (listed, expired-but-kept, the open segment) stays within
``max_bytes``: when over, expired segments go first (oldest first), then the
window slides early, keeping the newest segment listed. Both are counted
(``segments_dropped_early``).

Output timeline: every publish ("period") is shifted by one offset so that
the first period starts at ``TIMELINE_ORIGIN_MS`` and each later period
continues where the previous one ended. Encoders restart their clocks at 0
on reconnect; players see monotonic timestamps and one EXT-X-DISCONTINUITY.

Duration of a segment: the next segment's first dts minus its own; for the
last segment of a period: its last dts minus its first plus one frame.

Media held once, TS just in time: a segment's frames are held once, and its
MPEG-TS form is muxed from them when first asked for (hls.tsjit, which also says
when it is muxed ahead and how continuity counters stay right whatever the order
of requests). What the muxer will need is logged per frame (hls.frames); FFmpeg's
known refusals are checked as frames arrive (dropped as ``muxer_refused``).

LL-HLS (``part_duration``): every frame also goes to a CmafRendition (hls.cmaf),
which cuts the open segment into fMP4 parts; the parts hold the segment's media
(the TS form's frames point into them) and, back to back, are the fMP4 form of the
segment. Without LL-HLS the payloads are joined into one buffer when the segment
closes. So ll.m3u8 lists exactly index.m3u8's segments (same cuts, sequence numbers,
durations, discontinuities, PROGRAM-DATE-TIME) plus parts, and a track change
brings a new init section. `max_bytes` covers everything held: the media once, TS
bytes while kept (let go first when over), init sections. Listeners
(`add_listener`) are called after each change a viewer can see: a part, a
segment, the end.
"""

from __future__ import annotations

import enum
import logging
import math
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from .aac import parse_audio_specific_config
from .cmaf import CmafRendition
from .frames import FrameLog
from .media import MediaPacket, TrackConfig, TrackKind
from .muxer import MuxerError, TrackSet, log_refusal
from .playlist import MediaPlaylist, OpenSegment, SegmentEntry, rounded_duration
from .resume import PlaylistResume
from .spill import SpillDirectory
from .store import Data, Resource, SegmentStore
from .tsjit import TsForm, TsPackager

log = logging.getLogger("hls.segmenter")

# Where the first period's first keyframe lands on the output timeline. Audio
# that arrives just after that keyframe may be stamped a little earlier; the
# headroom keeps it positive, because libavformat shifts negative timestamps
# and would shift only the segment that happens to hold them.
TIMELINE_ORIGIN_MS = 10_000
# The first segment (which fixes TARGETDURATION) is cut without a keyframe after
# this many target durations. Five leaves room for OBS's "auto" keyframe
# interval (x264's 250 frames: 8.3 s at 30 fps) at the default 2 s target, while
# still bounding a stream that sends one keyframe and never another.
FORCED_CUT_TARGETS = 5.0
# A segment is cut before it holds more than this many bytes (a 50 Mbit/s feed
# fills it in ~10 s); with a memory cap, a quarter of the cap at most.
MAX_SEGMENT_BYTES = 64 * 1024 * 1024
# With a memory cap, one segment may take at most this share of it: the newest
# listed segment plus the open one then fit with room to spare, whatever the
# frame sizes (TS overhead included).
SEGMENT_SHARE_OF_MEMORY = 4
# Under memory pressure the window slides early but keeps this many segments
# listed: a playlist with nothing in it would send players away.
MIN_LISTED_UNDER_PRESSURE = 1
# EXTINF rounds to the nearest second (halves up): a segment must end before
# T + 0.5 s. Forced cuts leave one frame of margin below that, but never more
# than this, so keyframes that come a little late still cut where meant to.
ROUNDING_HEADROOM_MS = 500
MAX_CUT_MARGIN_MS = 250
# A segment that did not open at a keyframe (a forced cut, or audio going on
# after the video stopped) is cut at the next keyframe once it has lasted this
# share of the target: segments start with keyframes again, and the playlist
# regains EXT-X-INDEPENDENT-SEGMENTS, a segment sooner; shorter would make
# needlessly tiny segments when a keyframe follows a forced cut closely.
EARLY_KEYFRAME_CUT_SHARE = 0.5
# Frame duration guess before a video track has shown two frames (30 fps).
DEFAULT_VIDEO_FRAME_MS = 1000 / 30
# Gaps between consecutive frames beyond this are stalls, not the frame rate.
MAX_FRAME_DURATION_MS = 1000
# Expired segments are looked for this often (media ms) as frames come in, so that
# each goes within this of its deadline (RFC 8216 6.2.2's minimum) rather than at the
# next segment's close: ~1 s less media held per stream for a few checks a second.
PURGE_INTERVAL_MS = 250
# LL-HLS parts: RFC 8216bis lists part durations to the millisecond, so the part
# target is kept in whole milliseconds (0.333 s, not a third of a second), and a
# part shorter than this would be mostly box overhead.
MIN_PART_MS = 50


class State(enum.Enum):
    """Where the segmenter is in the life of its channel."""

    IDLE = "idle"  # no publisher: waiting for configure()
    WAITING_KEYFRAME = "waiting_keyframe"  # configured; nothing to cut until a keyframe
    RECORDING = "recording"  # a segment is open
    ENDED = "ended"  # ENDLIST written; nothing more is accepted


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What `on_segment` observers learn about each published segment."""

    sequence: int
    name: str
    duration: float  # seconds
    size: int  # bytes of media held for it (fMP4 boxes included; TS bytes are made later)
    discontinuity: bool
    independent: bool


class _OpenSegment:
    """The segment being recorded: its frames for the TS form (the fMP4 parts are hls.cmaf's)."""

    __slots__ = (
        "discontinuity",
        "first_dts",
        "frames",
        "has_video",
        "independent",
        "keyframe_start",
        "last_lead_dts",
        "name",
        "payload_bytes",
        "refusals",
        "sequence",
        "wall_clock",
    )

    def __init__(
        self,
        sequence: int,
        name: str,
        frames: FrameLog,
        first_dts: int,
        wall_clock: float,
        discontinuity: bool,
        keyframe_start: bool,
    ) -> None:
        self.sequence = sequence
        self.name = name
        self.frames = frames
        self.first_dts = first_dts
        # The last dts of the track that times the segment: video if it holds any,
        # else audio. Its end is the segment's end when the period ends here.
        self.last_lead_dts = first_dts
        self.wall_clock = wall_clock
        self.discontinuity = discontinuity
        # Independent until a video frame other than a keyframe comes first.
        self.independent = True
        self.has_video = False
        self.keyframe_start = keyframe_start  # opened by a keyframe of the anchor track
        self.payload_bytes = 0  # what it holds (in parts, or kept for the close)
        self.refusals = 0  # frames refused as FFmpeg would (the first is logged louder)


class Segmenter:
    """One channel's HLS output: packets in; playlist text and segment bytes out.

    Synchronous and loop-bound: call it from the event loop that owns the
    channel. A packet costs some bookkeeping and, with LL-HLS, a part's share of
    boxes and one copy; a TS segment costs one PyAV mux of its frames, once, when
    first wanted (see hls.tsjit).
    """

    def __init__(
        self,
        target_duration: float = 2.0,
        window: int = 6,
        clock: Callable[[], float] = time.time,
        *,
        max_segment_duration: float | None = None,
        max_segment_bytes: int | None = None,
        max_bytes: int | None = None,
        on_segment: Callable[[SegmentInfo], None] | None = None,
        name_token: str | None = None,
        label: str = "",
        resume: PlaylistResume | None = None,
        part_duration: float | None = None,
        on_ts_due: Callable[[Segmenter], None] | None = None,
        spill: SpillDirectory | None = None,
    ) -> None:
        """`clock` stamps PROGRAM-DATE-TIME and times how long expired segments stay.
        `max_bytes` caps everything held (None: no cap); `max_segment_bytes`
        defaults to a share of it. `name_token` goes into segment names (default:
        random) so that a channel restarted later never reuses a URL that caches
        may hold as immutable; pass "" for plain ``seg{sequence}.ts``. `label`
        prefixes log lines. `resume` carries on a playlist another segmenter began
        (see hls.resume): its numbering, TARGETDURATION and timeline, with
        EXT-X-DISCONTINUITY before the first segment made here. `part_duration`
        (seconds) turns on the LL-HLS rendition with that PART-TARGET. `on_ts_due`:
        a segment of a watched channel is not muxed as TS inside its close (so inside
        push()) but left due, and this is called when none was due before; its owner
        calls make_due_ts() on later turns of its loop while it answers that more are
        due (a mux is ~2 ms that requests need not wait behind). `spill`: where
        expired segments wait out their retention, out of memory (hls.spill)."""
        if target_duration <= 0:
            raise ValueError("target_duration must be positive")
        if max_segment_duration is None:
            max_segment_duration = FORCED_CUT_TARGETS * target_duration
        if max_segment_duration < target_duration:
            raise ValueError("max_segment_duration must be at least target_duration")
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if max_segment_bytes is None:
            max_segment_bytes = MAX_SEGMENT_BYTES
            if max_bytes is not None:
                max_segment_bytes = min(max_segment_bytes, max_bytes // SEGMENT_SHARE_OF_MEMORY)
        if max_segment_bytes <= 0:
            raise ValueError("max_segment_bytes must be positive")
        part_ms = None if part_duration is None else math.floor(part_duration * 1000 + 1e-6)
        if part_ms is not None and not MIN_PART_MS <= part_ms < target_duration * 1000:
            raise ValueError(f"part_duration must be from {MIN_PART_MS / 1000} s to less "
                             "than target_duration")
        self.target_duration = target_duration
        self.max_segment_duration = max_segment_duration
        self.max_segment_bytes = max_segment_bytes
        self.max_bytes = max_bytes
        self._target_ms = round(target_duration * 1000)
        self._max_ms = round(max_segment_duration * 1000)
        self._clock = clock
        self._on_segment = on_segment
        self._on_ts_due = on_ts_due
        self._ts_due: deque[TsForm] = deque()  # watched: to mux ahead, oldest first
        self._label = label
        token = secrets.token_hex(4) if name_token is None else name_token
        self._name_suffix = f"-{token}.ts" if token else ".ts"
        part_target = None if part_ms is None else part_ms / 1000
        if resume is None:
            self._playlist = MediaPlaylist(window, target_duration, part_target=part_target)
        else:
            self._playlist = MediaPlaylist(
                window, target_duration, resume.next_sequence,
                discontinuity_sequence=resume.discontinuity_sequence,
                fixed_target=resume.target_duration, part_target=part_target)
        self._resumed_from = resume
        self._cmaf = CmafRendition(part_ms, token) if part_ms is not None else None
        self._listeners: list[Callable[[], None]] = []

        self._state = State.IDLE
        self._configs: tuple[TrackConfig | None, TrackConfig | None] | None = None
        self._tracks: TrackSet | None = None
        self._anchor: str | None = None  # the track that opens a period: video if any
        self._offset: int | None = None  # input ms → output ms, per period
        self._timeline_end: float | None = None  # output ms where the last period ended
        self._discontinuity_next = False
        if resume is not None:
            self._timeline_end = resume.timeline_end_ms
            self._discontinuity_next = True
        self._last_segment_end: float | None = None  # output ms where the last segment ended
        self._open: _OpenSegment | None = None
        self._last_dts: dict[str, int] = {}
        self._frame_ms: dict[str, float] = {}

        self._store = SegmentStore(spill)  # finished segments (listed and expired-but-kept)
        self._ts = TsPackager(label)
        # What the open segment may hold before the cap is reached (checked every frame):
        # the cap less what the store holds, refreshed whenever that may have grown.
        self._open_budget = math.inf
        self._refresh_budget()
        self._next_purge_dts = -math.inf  # output ms: when to look for expired segments next
        self._segments_produced = 0
        self._segments_dropped_early = 0
        self._forced_cuts = 0
        self._durations_clamped = 0
        self._last_segment_duration = 0.0
        self._longest_segment_duration = 0.0
        self._drops: Counter[str] = Counter()

    # ---- publisher side ---------------------------------------------------------------

    def configure(self, video: TrackConfig | None, audio: TrackConfig | None) -> None:
        """Declare a publish's tracks: at its start, and again when a sequence header changes.

        The same configs again are a no-op (encoders repeat sequence headers).
        Different configs mid-publish close the open segment; the next one
        starts at a keyframe with EXT-X-DISCONTINUITY (encoding parameters changed)
        on the same timeline.
        """
        if self._state is State.ENDED:
            log.warning("%sconfigure() after end(): ignored", self._prefix())
            return
        in_period = self._state is not State.IDLE
        if in_period and self._configs == (video, audio):
            return
        if in_period:
            self._close_open_segment(next_first_dts=None)
            self._discontinuity_next |= self._segments_produced > 0
        else:
            self._offset = None  # a new publisher brings a new clock
        self._set_tracks(video, audio)
        self._state = State.WAITING_KEYFRAME

    def push(self, packet: MediaPacket) -> None:
        """Take one packet (in arrival order). Unusable packets are counted and dropped."""
        kind = packet.kind
        if self._state is State.IDLE or self._state is State.ENDED:
            self._drop("not_configured")
            return
        assert self._tracks is not None
        if kind not in self._tracks.kinds:
            self._drop("undeclared_track")
            return
        data = packet.data
        size = len(data)
        if size > self.max_segment_bytes:
            self._drop("frame_too_large")  # no segment could hold it within the memory bound
            return
        starts_segment = kind == self._anchor and packet.keyframe
        if self._offset is None:
            if not starts_segment:
                self._drop("before_keyframe")
                return
            self._offset = self._period_offset(packet.dts)

        dts = packet.dts + self._offset
        pts = packet.pts + self._offset
        last = self._last_dts.get(kind)
        if last is not None and dts <= last:
            if dts < last:
                self._drop("backwards_dts")
                return
            dts = last + 1  # a repeated timestamp: muxers need strictly increasing dts
        if pts < dts:
            pts = dts
        if dts < 0:
            self._drop("negative_dts")
            return

        audio = kind == TrackKind.AUDIO
        segment = self._open
        if segment is None:
            if not starts_segment:
                self._drop("before_keyframe")
                return
            segment = self._open_segment(dts, keyframe_start=True)
        elif (starts_segment or dts - segment.first_dts >= self._target_ms
              or (audio and not segment.has_video)
              or segment.payload_bytes + size > self.max_segment_bytes):
            # Only these frames can meet a cut rule (every rule needs one of them).
            segment = self._maybe_cut(segment, kind, dts, starts_segment, size)

        if isinstance(data, memoryview) and not data.readonly:
            data = bytes(data)  # it is held past this call; a writable buffer could change
        refusal = self._tracks.refusal(kind, data)
        if refusal is not None:
            segment.refusals += 1
            log_refusal(self._label, kind, dts, refusal, first=segment.refusals == 1)
            self._drop("muxer_refused")
            return
        segment.payload_bytes += size
        keyframe = packet.keyframe
        frame_ms = self._frame_ms
        lead = not audio or not segment.has_video
        if self._cmaf is not None:
            part = self._cmaf.add(kind, dts, pts, keyframe, data, lead=lead,
                                  frame_ms=frame_ms.get(kind, DEFAULT_VIDEO_FRAME_MS))
            if part is not None:
                segment.frames.cut()  # the frames so far are in that part
                self._show_open_parts(segment)
        segment.frames.add(audio, keyframe, dts, pts, round(frame_ms.get(kind, 0)), data)
        if lead:
            segment.last_lead_dts = dts
            if not segment.has_video and not audio:
                segment.has_video = True
                segment.independent = keyframe
        self._last_dts[kind] = dts
        if not audio and last is not None and 1 < dts - last <= MAX_FRAME_DURATION_MS:
            # Smoothed, so a nudged (+1 ms) or dropped frame barely moves it.
            frame_ms[kind] = 0.75 * frame_ms[kind] + 0.25 * (dts - last)
        if dts >= self._next_purge_dts:
            # Expired segments go within PURGE_INTERVAL_MS of their deadline, not at the
            # next segment's close: about a second less media held per stream.
            self._next_purge_dts = dts + PURGE_INTERVAL_MS
            self._store.purge(self._clock())
        if segment.payload_bytes > self._open_budget:
            self._enforce_memory_cap()

    def publisher_gone(self) -> None:
        """The publisher left: publish the open segment; a later configure() starts a new period."""
        if self._state is State.ENDED or self._state is State.IDLE:
            return
        self._close_open_segment(next_first_dts=None)
        self._discontinuity_next |= self._segments_produced > 0
        self._clear_tracks()
        self._state = State.IDLE

    def end(self) -> None:
        """Publish the open segment and end the playlist (EXT-X-ENDLIST). Idempotent."""
        if self._state is State.ENDED:
            return
        self._close_open_segment(next_first_dts=None)
        self._clear_tracks()
        self._playlist.end()
        self._state = State.ENDED
        self._notify()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after each change viewers can see: a part, a segment, the end.

        Listeners run synchronously inside push(): they must return at once and
        not call back into the segmenter (a blocked request's wake-up is one)."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("%ssegmenter listener failed", self._prefix())

    def resume_point(self) -> PlaylistResume | None:
        """Where this playlist stands, for a segmenter elsewhere to carry it on (see
        hls.resume); None before its first segment, unless it was itself resumed."""
        playlist = self._playlist
        if self._last_segment_end is None:
            return self._resumed_from
        return PlaylistResume(
            next_sequence=playlist.next_sequence,
            discontinuity_sequence=playlist.last_discontinuity_sequence,
            target_duration=playlist.target_duration,
            # A period that ended here may have audio past its last video frame.
            timeline_end_ms=math.ceil(max(self._last_segment_end, self._timeline_end or 0.0)),
        )

    # ---- viewer side --------------------------------------------------------------------

    def render_playlist(self) -> str:
        return self._playlist.render()

    def render_ll_playlist(self, delta: bool = False) -> str:
        """The LL-HLS playlist (ValueError when LL-HLS is off); see MediaPlaylist.render_ll."""
        return self._playlist.render_ll(delta)

    @property
    def low_latency(self) -> bool:
        return self._cmaf is not None

    @property
    def preload_hint(self) -> str | None:
        """The next part's name while the playlist is live (None without LL-HLS)."""
        return self._playlist.preload_hint

    @property
    def parts_clamped(self) -> int:
        """Parts whose timestamps spanned more than PART-TARGET (a gap in the feed)."""
        return self._cmaf.parts_clamped if self._cmaf is not None else 0

    def segment(self, name: str) -> Data | None:
        """The bytes of a segment (TS or fMP4), part or init section by name: any in
        the window, the open segment's parts, or a segment that left the window less
        than its duration plus the longest playlist it appeared in ago (RFC 8216 6.2.2).
        A TS segment not asked for before is muxed now (hls.tsjit)."""
        now = self._clock()
        data = self._store.get(name, now)
        if type(data) is TsForm:
            return self._ts_bytes(data, now)
        if data is not None or self._cmaf is None:
            return data  # type: ignore[return-value]
        if name == self._cmaf.init_uri:
            return self._cmaf.init
        return self._cmaf.open_part(name)

    def segment_name(self, sequence: int) -> str:
        return f"seg{sequence}{self._name_suffix}"

    # ---- observability ------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def playlist(self) -> MediaPlaylist:
        return self._playlist

    @property
    def playlist_ready(self) -> bool:
        """True once there is a segment to list (players get 404 before that)."""
        return bool(self._playlist.segments)

    @property
    def segments_produced(self) -> int:
        return self._segments_produced

    @property
    def last_segment_duration(self) -> float:
        return self._last_segment_duration

    @property
    def longest_segment_duration(self) -> float:
        return self._longest_segment_duration

    @property
    def target_duration_seen(self) -> int:
        """The TARGETDURATION the playlist advertises (fixed by its first segment)."""
        return self._playlist.target_duration

    @property
    def bytes_in_window(self) -> int:
        return self._store.bytes_listed

    @property
    def bytes_held(self) -> int:
        """Everything this channel holds: listed, expired-but-kept and open segments (their
        media once, TS bytes while kept), and init sections."""
        store = self._store
        held = store.bytes_listed + store.bytes_expired + store.bytes_inits
        if self._open is not None:
            held += self._open.payload_bytes
        return held

    @property
    def bytes_kept_expired(self) -> int:
        """Bytes of segments that left the playlist and are still served for a while."""
        return self._store.bytes_expired

    @property
    def ts_packager(self) -> TsPackager:
        """How many TS segments were muxed, when, and what it cost (hls.tsjit)."""
        return self._ts

    @property
    def segments_dropped_early(self) -> int:
        """Segments let go before their time to stay within `max_bytes`
        (expired ones before their deadline, listed ones before the window slid)."""
        return self._segments_dropped_early

    @property
    def forced_cuts(self) -> int:
        """Segments cut without a keyframe (to keep within TARGETDURATION or a byte bound)."""
        return self._forced_cuts

    @property
    def durations_clamped(self) -> int:
        """Segments whose timestamps spanned more than TARGETDURATION allows (a gap in
        the feed); their EXTINF says the most it may."""
        return self._durations_clamped

    @property
    def ended(self) -> bool:
        return self._state is State.ENDED

    @property
    def packets_dropped(self) -> int:
        return sum(self._drops.values())

    @property
    def drop_reasons(self) -> dict[str, int]:
        return dict(self._drops)

    @property
    def tracks(self) -> tuple[str, ...]:
        """The track kinds the current publish is segmented with (unsupported ones skipped)."""
        return self._tracks.kinds if self._tracks is not None else ()

    # ---- internals ----------------------------------------------------------------------

    def _maybe_cut(
        self, segment: _OpenSegment, kind: str, dts: int, starts_segment: bool, size: int
    ) -> _OpenSegment:
        """Close the open segment before this packet if a cut rule says so; the segment
        the packet goes into."""
        elapsed = dts - segment.first_dts
        # A keyframe of the anchor cuts; so does any audio frame while the segment holds
        # no video (the video stopped and audio goes on: cut as an audio-only publish).
        cuts_here = starts_segment or (kind == TrackKind.AUDIO and not segment.has_video)
        tolerance = math.ceil(self._frame_ms.get(kind, DEFAULT_VIDEO_FRAME_MS))
        if cuts_here and elapsed >= self._target_ms - tolerance:
            self._close_open_segment(next_first_dts=dts, next_kind=kind)
            return self._open_segment(dts, keyframe_start=starts_segment)
        early = self._target_ms * EARLY_KEYFRAME_CUT_SHARE
        if starts_segment and not segment.keyframe_start and elapsed >= early:
            self._close_open_segment(next_first_dts=dts, next_kind=kind)
            return self._open_segment(dts, keyframe_start=True)
        too_long = elapsed >= self._forced_cut_ms()
        # The open segment holds its payloads once (fMP4 parts: plus box headers under
        # 1 % of them, not counted, so the check needs no walk through the parts).
        too_big = (segment.payload_bytes > 0
                   and segment.payload_bytes + size > self.max_segment_bytes)
        if not (too_long or too_big):
            return segment
        self._forced_cuts += 1
        # The first forced cut is worth a warning; an encoder with long GOPs repeats it.
        level = logging.WARNING if self._forced_cuts == 1 else logging.DEBUG
        log.log(
            level,
            "%sno keyframe for %.1f s / %d bytes: cutting segment %d anyway",
            self._prefix(),
            elapsed / 1000,
            segment.payload_bytes,
            segment.sequence,
        )
        self._close_open_segment(next_first_dts=dts, next_kind=kind)
        return self._open_segment(dts, keyframe_start=starts_segment)

    def _forced_cut_ms(self) -> int:
        """How long a segment may grow without a keyframe before it is cut anyway.

        Before TARGETDURATION is fixed: `max_segment_duration`. After: just short
        of what would round above it, one frame (of the slowest track) early so the
        packet that triggers the cut still lands in time.
        """
        if not self._playlist.target_fixed:
            return self._max_ms
        kinds = self._tracks.kinds if self._tracks is not None else ()
        frame = max((self._frame_ms.get(k, DEFAULT_VIDEO_FRAME_MS) for k in kinds), default=0.0)
        margin = min(math.ceil(frame) + 1, MAX_CUT_MARGIN_MS)
        limit = self._playlist.target_duration * 1000 + ROUNDING_HEADROOM_MS - margin
        return min(self._max_ms, limit)

    def _extinf_ceiling_ms(self) -> int:
        """The longest EXTINF (ms) that still rounds within TARGETDURATION."""
        bound = self._playlist.target_duration
        if not self._playlist.target_fixed:
            bound = max(bound, rounded_duration(self.max_segment_duration))
        return bound * 1000 + ROUNDING_HEADROOM_MS - 1

    def _set_tracks(self, video: TrackConfig | None, audio: TrackConfig | None) -> None:
        self._clear_tracks()
        self._configs = (video, audio)
        try:
            tracks = TrackSet(video, audio, label=self._label)
        except MuxerError as exc:
            log.error("%scannot segment this publish: %s", self._prefix(), exc)
            tracks = TrackSet(None, None, label=self._label)
        self._tracks = tracks
        if tracks.video is not None:
            self._anchor = TrackKind.VIDEO
        elif tracks.audio is not None:
            self._anchor = TrackKind.AUDIO
        else:
            self._anchor = None
            log.warning("%sno track HLS can carry: packets will be dropped", self._prefix())
        if tracks.audio is not None:
            asc = parse_audio_specific_config(tracks.audio.extradata)
            self._frame_ms[TrackKind.AUDIO] = asc.frame_duration_ms
        self._frame_ms.setdefault(TrackKind.VIDEO, DEFAULT_VIDEO_FRAME_MS)
        if self._cmaf is not None and tracks.kinds:
            # The same codecs and configs the TS muxer took; a new init section if they differ.
            self._cmaf.set_tracks(tracks.video, tracks.audio)

    def _clear_tracks(self) -> None:
        # Not closed here: segments held keep their TrackSet to be muxed later, and the
        # last one let go closes it.
        self._tracks = None
        self._configs = None
        self._anchor = None
        if self._cmaf is not None:
            self._cmaf.clear_tracks()

    def _period_offset(self, first_dts: int) -> int:
        """Shift that puts this period's first keyframe right after the previous period."""
        if self._timeline_end is None:
            return TIMELINE_ORIGIN_MS - first_dts
        return math.ceil(self._timeline_end) - first_dts

    def _open_segment(self, first_dts: int, *, keyframe_start: bool) -> _OpenSegment:
        assert self._tracks is not None
        sequence = self._playlist.next_sequence
        name = self.segment_name(sequence)
        segment = _OpenSegment(
            sequence,
            name,
            FrameLog(keep_payloads=self._cmaf is None),
            first_dts,
            self._clock(),
            discontinuity=self._discontinuity_next,
            keyframe_start=keyframe_start,
        )
        self._discontinuity_next = False
        self._open = segment
        self._state = State.RECORDING
        if self._cmaf is not None:
            self._cmaf.begin(first_dts)
            self._show_open_parts(segment)
        return segment

    def _show_open_parts(self, segment: _OpenSegment) -> None:
        """Put the open segment's parts so far, and the next part's hint, in ll.m3u8."""
        cmaf = self._cmaf
        assert cmaf is not None
        parts = cmaf.open_parts
        shown = OpenSegment(segment.sequence, cmaf.init_uri, segment.wall_clock,
                            segment.discontinuity, parts)
        self._playlist.set_open(shown, cmaf.hint_uri)
        if parts:
            self._notify()

    def _close_open_segment(self, *, next_first_dts: int | None,
                            next_kind: str | None = None) -> None:
        """Publish the open segment. `next_first_dts` is None when its period ends here;
        else `next_kind` is the track of the frame that starts the next segment."""
        segment = self._open
        if segment is None:
            return
        self._open = None
        self._state = State.WAITING_KEYFRAME
        if next_first_dts is not None:
            duration_ms = float(next_first_dts - segment.first_dts)
        else:
            lead = TrackKind.VIDEO if segment.has_video else TrackKind.AUDIO
            frame = self._frame_ms.get(lead, DEFAULT_VIDEO_FRAME_MS)
            duration_ms = segment.last_lead_dts - segment.first_dts + frame
            self._timeline_end = max(
                [segment.first_dts + duration_ms]
                + [last + self._frame_ms.get(kind, 0) for kind, last in self._last_dts.items()]
            )
        tracks = self._tracks
        if not len(segment.frames) or tracks is None:
            log.error("%ssegment %d came out empty: skipped", self._prefix(), segment.sequence)
            self._discontinuity_next |= segment.discontinuity
            return
        ceiling = self._extinf_ceiling_ms()
        if duration_ms > ceiling:
            # Only a jump in the feed's timestamps gets here: the cut rules end every
            # segment in time. EXTINF says the most it may; the timestamps keep the gap.
            self._durations_clamped += 1
            log.warning(
                "%ssegment %d spans %.3f s of timestamps: listed as %.3f s",
                self._prefix(),
                segment.sequence,
                duration_ms / 1000,
                ceiling / 1000,
            )
            duration_ms = ceiling
        self._last_segment_end = segment.first_dts + duration_ms
        duration = max(duration_ms, 1.0) / 1000
        entry = SegmentEntry(
            sequence=segment.sequence,
            uri=segment.name,
            duration=duration,
            program_date_time=segment.wall_clock,
            discontinuity=segment.discontinuity,
            independent=segment.independent,
        )
        resources: dict[str, Resource] = {}
        init = None
        parts = None
        if self._cmaf is not None:
            next_dts = {next_kind: next_first_dts} if next_first_dts is not None and next_kind \
                else None
            cmaf = self._cmaf.finish(segment.sequence, segment.first_dts + duration_ms, next_dts)
            parts = cmaf.data.parts if cmaf is not None else ()
            if cmaf is not None:
                entry = replace(entry, parts=cmaf.parts, ll_uri=cmaf.uri, map_uri=cmaf.map_uri)
                resources[cmaf.uri] = cmaf.data
                resources.update(cmaf.part_data)
                init = (cmaf.map_uri, self._cmaf.init)
        frames = segment.frames.close(parts)
        assert frames is not None  # it has frames
        form = TsForm(segment.name, frames, tracks)
        resources[segment.name] = form
        size = frames.size  # the media once: the fMP4 rendition is made of the same buffers
        self._store.add(segment.name, resources, size, init)
        now = self._clock()
        for removed in self._playlist.append(entry):
            self._let_go_of_ts(removed.uri)  # a late request makes it again
            self._store.expire(removed.uri, removed.duration, now)
        if self._cmaf is not None:
            self._playlist.set_open(None, self._cmaf.hint_uri)
        self._store.note_listed_in([listed.uri for listed in self._playlist.segments],
                                   self._playlist.duration)
        self._store.purge(now)
        if self._ts.hot(now):
            if self._on_ts_due is None:
                self._make_ts(form, at_close=True)
            else:
                self._ts_due.append(form)
                if len(self._ts_due) == 1:  # else the owner already has it to come back to
                    self._on_ts_due(self)
        else:
            tracks.close()  # nobody is watching: the muxer's templates are built again if asked
        self._enforce_memory_cap()
        self._segments_produced += 1
        self._last_segment_duration = duration
        self._longest_segment_duration = max(self._longest_segment_duration, duration)
        if self._on_segment is not None:
            info = SegmentInfo(
                segment.sequence,
                segment.name,
                duration,
                size,
                segment.discontinuity,
                segment.independent,
            )
            try:
                self._on_segment(info)
            except Exception:
                log.exception("%son_segment observer failed", self._prefix())
        self._notify()

    # ---- the TS form, just in time ------------------------------------------------

    def _ts_bytes(self, form: TsForm, now: float) -> bytearray | None:
        """A TS segment's bytes for a request: muxed now unless kept; kept if the memory
        cap leaves room for them."""
        self._ts.wanted(form.key, now, self._playlist.target_duration)
        data = form.data
        if data is None:
            self._make_ts(form, at_close=False)
            data = form.data
            if self.max_bytes is not None and self.bytes_held > self.max_bytes:
                self._let_go_of_ts_bytes(self.bytes_held - self.max_bytes, keep=form)
        return data

    def make_due_ts(self) -> bool:
        """Mux the oldest segment left due at its close (see `on_ts_due`) unless a request
        or its expiry came first; whether more are due."""
        while self._ts_due:
            form = self._ts_due.popleft()
            if form.data is None and self._store.get_form(form.key) is form:
                self._make_ts(form, at_close=True)
                self._enforce_memory_cap()
                break
        return bool(self._ts_due)

    def _make_ts(self, form: TsForm, *, at_close: bool) -> None:
        forms = self._store.ts_forms()
        for made in self._ts.make(forms, forms.index(form), at_close=at_close):
            assert made.data is not None
            self._store.resize(made.key, len(made.data))
        self._refresh_budget()

    def _let_go_of_ts(self, key: str) -> int:
        """Forget a segment's TS bytes (its media stays); the bytes freed."""
        form = self._store.get_form(key)
        if form is None or form.data is None:
            return 0
        freed = len(form.data)
        form.data = None
        self._store.resize(key, -freed)
        return freed

    def _let_go_of_ts_bytes(self, excess: int, keep: TsForm | None = None) -> int:
        """Forget TS bytes, oldest segment first (`keep`'s last), until `excess` bytes
        are freed or none are kept; what is still in excess."""
        forms = [form for form in self._store.ts_forms() if form.data is not None]
        if keep is not None and keep in forms:
            forms.remove(keep)
            forms.append(keep)
        for form in forms:
            if excess <= 0:
                break
            excess -= self._let_go_of_ts(form.key)
        return excess

    # ---- memory ---------------------------------------------------------------------

    def _enforce_memory_cap(self) -> None:
        """Within `max_bytes`: let go of TS bytes (made again if asked for), then drop
        expired segments oldest first, then slide the window early (keeping the newest
        listed). Segments that go early are counted."""
        if self.max_bytes is not None:
            self._free_bytes(self.bytes_held - self.max_bytes)
        self._refresh_budget()

    def _refresh_budget(self) -> None:
        if self.max_bytes is None:
            self._open_budget = math.inf
            return
        store = self._store
        self._open_budget = self.max_bytes - (store.bytes_listed + store.bytes_expired
                                              + store.bytes_inits)

    def _free_bytes(self, excess: int) -> None:
        if excess <= 0:
            return
        excess = self._let_go_of_ts_bytes(excess)
        dropped = 0
        while excess > 0:
            freed = self._store.forget_oldest_expired()
            if freed is None:
                break
            excess -= freed
            dropped += 1
        while excess > 0:
            entry = self._playlist.drop_oldest(keep=MIN_LISTED_UNDER_PRESSURE)
            if entry is None:
                break
            excess -= self._store.unlist(entry.uri)
            dropped += 1
        if dropped:
            level = logging.WARNING if not self._segments_dropped_early else logging.DEBUG
            log.log(
                level,
                "%sover the %d-byte memory cap: dropped %d segment(s) early",
                self._prefix(),
                self.max_bytes,
                dropped,
            )
            self._segments_dropped_early += dropped

    def _drop(self, reason: str) -> None:
        if not self._drops[reason]:
            log.info("%sdropping packets: %s", self._prefix(), reason.replace("_", " "))
        self._drops[reason] += 1

    def _prefix(self) -> str:
        return f"[{self._label}] " if self._label else ""
