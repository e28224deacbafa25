"""A live publish: FLV tag bodies in, codec configs and timestamped packets out to readers.

This is the bridge between `rtmp/` (what the encoder sent) and `hls/` (what
the segmenter wants): it parses tags, turns sequence headers into track
configs, unwraps 32-bit RTMP timestamps into a monotonic millisecond clock,
measures the feed, and hands each packet to the channel's readers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hls.aac import AacConfigError, parse_audio_specific_config
from hls.media import MediaPacket, TrackConfig
from rtmp.flv import (
    AudioPacketType,
    FlvError,
    VideoPacketType,
    parse_audio_tag,
    parse_avc_config,
    parse_hevc_config,
    parse_video_tag,
)

from .coded_frames import TAG_VIDEO, TrackClock, take_coded_frames
from .feedstats import FeedStats

log = logging.getLogger("mediaserver.publisher")

# Codecs the HLS path carries; anything else is reported and skipped.
VIDEO_CODECS = ("h264", "hevc")
AUDIO_CODECS = ("aac",)
# Audio frames (~21 ms each) to wait for a video sequence header before a feed is
# treated as audio-only: quickly when the metadata announced no video, else ~3 s.
AUDIO_ONLY_QUICK_FRAMES = 5
AUDIO_ONLY_AFTER_FRAMES = 150


@dataclass(frozen=True, slots=True)
class TracksChanged:
    """Reader item: the publish's tracks are (re)declared; packets that follow use them."""

    video: TrackConfig | None
    audio: TrackConfig | None


@dataclass(frozen=True, slots=True)
class PublishEnded:
    """Reader item: the publisher is gone (its period ends; the channel may outlive it)."""

    reason: str


ReaderItem = MediaPacket | TracksChanged | PublishEnded


def _discard(items: list[ReaderItem]) -> None:
    """The output of a publisher that has ended."""


def _one_by_one(deliver: Callable[[ReaderItem], None]) -> Callable[[list[ReaderItem]], None]:
    """A batch output made of a per-item one."""

    def deliver_batch(items: list[ReaderItem]) -> None:
        for item in items:
            deliver(item)

    return deliver_batch


def _ignore_end(publisher: Publisher, reason: str, unpublished: bool) -> None:
    """The end callback of a publisher that has already ended."""


class Publisher:
    """The PublishSink of one accepted publish (see rtmp.server.PublishSink)."""

    def __init__(
        self,
        channel: str,
        peer: str,
        deliver: Callable[[ReaderItem], None],
        on_end: Callable[[Publisher, str, bool], None],
        stats: FeedStats | None = None,
        deliver_batch: Callable[[list[ReaderItem]], None] | None = None,
    ) -> None:
        """Output goes to `deliver_batch` (items in order, one call per batch) if
        given, else to `deliver` item by item."""
        self.channel = channel
        self.peer = peer
        self.stats = stats or FeedStats()
        self._deliver_batch = deliver_batch or _one_by_one(deliver)
        self._on_end = on_end
        self._video_config: TrackConfig | None = None
        self._audio_config: TrackConfig | None = None
        self._declared: TracksChanged | None = None
        self._video_clock = TrackClock()
        self._audio_clock = TrackClock()
        self._expect_video = True
        self._audio_waiting = 0
        self.ended = False
        self.session: Any = None  # the RtmpSession, for kicking

    # ---- PublishSink ----------------------------------------------------------------

    def on_metadata(self, values: dict[str, Any]) -> None:
        self.stats.metadata = {k: v for k, v in values.items() if isinstance(v, str | int | float)}
        # An encoder that says it has no video lets audio-only segmenting start at once.
        self._expect_video = bool(values.get("videocodecid"))

    def on_video(self, timestamp: int, payload: bytes | bytearray) -> None:
        out: list[ReaderItem] = []
        self.stats.tick()
        self._video(timestamp, payload, out)
        self._deliver_batch(out)

    def on_audio(self, timestamp: int, payload: bytes | bytearray) -> None:
        out: list[ReaderItem] = []
        self.stats.tick()
        self._audio(timestamp, payload, out)
        self._deliver_batch(out)

    def on_media(self, frames: list[tuple[int, int, bytes]]) -> None:
        """A run of media messages (see rtmp.server.PublishSink), delivered in one batch.

        Once the tracks are declared, plain coded frames go through
        take_coded_frames in one call; anything else (and everything before the
        declaration) through _video and _audio, in order.
        """
        out: list[ReaderItem] = []
        stats = self.stats
        stats.tick()
        index = 0
        count = len(frames)
        while index < count:
            declared = self._declared
            if declared is not None:
                index = take_coded_frames(frames, index, declared.video is not None,
                                          declared.audio is not None, self._video_clock,
                                          self._audio_clock, stats, out)
                if index == count:
                    break
            type_id, timestamp, payload = frames[index]
            if type_id == TAG_VIDEO:
                self._video(timestamp, payload, out)
            else:
                self._audio(timestamp, payload, out)
            index += 1
        if out:
            self._deliver_batch(out)

    def _video(self, timestamp: int, payload: bytes | bytearray, out: list[ReaderItem]) -> None:
        try:
            tag = parse_video_tag(payload)
        except FlvError as exc:
            self._bad_tag("video", exc, len(payload))
            return
        if tag.packet_type is VideoPacketType.OTHER or tag.packet_type is VideoPacketType.METADATA:
            self.stats.add_other(len(payload))  # command frames, extra tracks, HDR metadata
            return
        if tag.codec not in VIDEO_CODECS:
            self._unsupported(tag.codec, len(payload))
            return
        kind = tag.packet_type
        if kind is VideoPacketType.CODED_FRAMES:
            dts, backwards = self._video_clock.unwrap(timestamp)
            self.stats.add_video(len(payload), dts, tag.keyframe)
            if backwards:
                self.stats.backwards_timestamps += 1
            if self._declared is None and not self._declare(out, video_frame=True):
                return
            if self._declared is not None and self._declared.video is not None:
                pts = dts + tag.composition_time
                out.append(MediaPacket("video", dts, pts if pts >= dts else dts,
                                       tag.keyframe, tag.data))
        elif kind is VideoPacketType.SEQUENCE_START:
            self.stats.add_other(len(payload))
            self._set_video_config(tag.codec, bytes(tag.data), out)
        else:
            self.stats.add_other(len(payload))

    def _audio(self, timestamp: int, payload: bytes | bytearray, out: list[ReaderItem]) -> None:
        try:
            tag = parse_audio_tag(payload)
        except FlvError as exc:
            self._bad_tag("audio", exc, len(payload))
            return
        if tag.packet_type is AudioPacketType.OTHER:
            self.stats.add_other(len(payload))
            return
        if tag.codec not in AUDIO_CODECS:
            self._unsupported(tag.codec, len(payload))
            return
        if tag.packet_type is AudioPacketType.CODED_FRAMES:
            dts, backwards = self._audio_clock.unwrap(timestamp)
            self.stats.add_audio(len(payload))
            if backwards:
                self.stats.backwards_timestamps += 1
            if self._declared is None and not self._declare(out, video_frame=False):
                return
            if self._declared is not None and self._declared.audio is not None:
                out.append(MediaPacket("audio", dts, dts, True, tag.data))
        elif tag.packet_type is AudioPacketType.SEQUENCE_START:
            self.stats.add_other(len(payload))
            self._set_audio_config(bytes(tag.data), out)
        else:
            self.stats.add_other(len(payload))

    def on_end(self, reason: str, *, unpublished: bool = False) -> None:
        """`unpublished`: the encoder stopped on purpose (not a dropped connection)."""
        if self.ended:
            return
        self._deliver_batch([PublishEnded(reason)])
        on_end = self._on_end
        self.detach()
        on_end(self, reason, unpublished)

    def detach(self) -> None:
        """Stop delivering and let go of the channel and the session.

        Whatever still holds this publisher after its end (a connection being
        torn down, a loop variable) then holds neither the RTMP session nor the
        channel's segmenter; late tags from the old connection go nowhere.
        """
        self.ended = True
        self.session = None
        self._deliver_batch = _discard

    # ---- configs --------------------------------------------------------------------

    def _set_video_config(self, codec: str, extradata: bytes, out: list[ReaderItem]) -> None:
        try:
            config = parse_avc_config(extradata) if codec == "h264" else parse_hevc_config(
                extradata
            )
        except FlvError as exc:
            self._bad_tag("video sequence header", exc, len(extradata))
            return
        track = TrackConfig("video", codec, extradata, width=config.width, height=config.height)
        self.stats.video_codec = codec
        self.stats.width, self.stats.height = config.width or None, config.height or None
        if track != self._video_config:
            self._video_config = track
            self._redeclare_if_started(out)

    def _set_audio_config(self, extradata: bytes, out: list[ReaderItem]) -> None:
        try:
            config = parse_audio_specific_config(extradata)
        except AacConfigError as exc:
            self._bad_tag("AAC sequence header", exc, len(extradata))
            return
        track = TrackConfig("audio", "aac", extradata, sample_rate=config.sample_rate,
                            channels=config.channels)
        self.stats.audio_codec = "aac"
        self.stats.sample_rate = config.sample_rate
        self.stats.audio_channels = config.channels
        if track != self._audio_config:
            self._audio_config = track
            self._redeclare_if_started(out)

    def _declare(self, out: list[ReaderItem], video_frame: bool) -> bool:
        """Declare the tracks at the first coded frame, once what is expected is known."""
        if video_frame:
            if self._video_config is None:
                return False  # coded video before its avcC cannot be decoded
        else:
            if self._audio_config is None:
                return False
            self._audio_waiting += 1
            # Audio while video is announced (or not yet ruled out) waits for it a
            # little; a feed that never sends video becomes audio-only.
            patience = AUDIO_ONLY_AFTER_FRAMES if self._expect_video else AUDIO_ONLY_QUICK_FRAMES
            if self._video_config is None and self._audio_waiting < patience:
                return False
        self._declared = TracksChanged(self._video_config, self._audio_config)
        out.append(self._declared)
        return True

    def _redeclare_if_started(self, out: list[ReaderItem]) -> None:
        if self._declared is not None:
            log.info("tracks changed mid-stream channel=%s peer=%s", self.channel, self.peer)
            self._declared = TracksChanged(self._video_config, self._audio_config)
            out.append(self._declared)

    # ---- problems -------------------------------------------------------------------

    def _bad_tag(self, what: str, exc: Exception, size: int) -> None:
        self.stats.add_other(size)
        self.stats.malformed_tags += 1
        log.warning("malformed %s tag dropped channel=%s peer=%s: %s",
                    what, self.channel, self.peer, exc)

    def _unsupported(self, codec: str, size: int) -> None:
        self.stats.add_other(size)
        if codec not in self.stats.unknown_codecs:
            self.stats.unknown_codecs.add(codec)
            log.warning("unsupported codec %s ignored channel=%s peer=%s",
                        codec, self.channel, self.peer)
