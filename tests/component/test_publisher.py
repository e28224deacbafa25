"""Publisher: FLV tag bodies in, TracksChanged / MediaPacket / PublishEnded out."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hls.media import MediaPacket
from mediaserver.publisher import (
    AUDIO_ONLY_AFTER_FRAMES,
    AUDIO_ONLY_QUICK_FRAMES,
    PublishEnded,
    Publisher,
    ReaderItem,
    TracksChanged,
)
from tests.flv_tags import aac_sequence_header, avc_sequence_header, feed, media_tag
from tests.hls_media import Media, av_clip


@dataclass
class Out:
    """What a publisher delivered and how it ended."""

    items: list[ReaderItem] = field(default_factory=list)
    ends: list[tuple[str, bool]] = field(default_factory=list)

    def publisher(self) -> Publisher:
        return Publisher("cam", "127.0.0.1:1", self.items.append,
                         lambda p, reason, unpublished: self.ends.append((reason, unpublished)))

    def packets(self, kind: str | None = None) -> list[MediaPacket]:
        return [i for i in self.items
                if isinstance(i, MediaPacket) and (kind is None or i.kind == kind)]

    def declarations(self) -> list[TracksChanged]:
        return [i for i in self.items if isinstance(i, TracksChanged)]


def test_tags_become_one_declaration_then_the_same_packets() -> None:
    media = av_clip()
    out = Out()
    publisher = out.publisher()
    feed(publisher, media)
    assert out.declarations() == [TracksChanged(media.video, media.audio)]
    assert isinstance(out.items[0], TracksChanged)
    # Audio that came before the video sequence header was usable is all delivered:
    # the headers come first, so every frame is.
    got = out.packets()
    assert [(p.kind, p.dts, p.pts, p.keyframe) for p in got] == [
        (p.kind, p.dts, p.pts, p.keyframe) for p in media.packets]
    assert all(bytes(a.data) == bytes(b.data) for a, b in zip(got, media.packets, strict=True))
    stats = publisher.stats
    assert stats.video_codec == "h264" and (stats.width, stats.height) == (1280, 720)
    assert stats.audio_codec == "aac" and stats.sample_rate == 48000
    assert stats.keyframes == len(media.keyframe_dts()) and stats.keyframe_interval == 2.0
    assert stats.malformed_tags == 0 and stats.backwards_timestamps == 0


def test_timestamps_unwrap_past_two_to_the_32() -> None:
    media = av_clip()
    out = Out()
    start = (1 << 32) - 3000  # the 32-bit clock wraps 3 s into the clip
    feed(out.publisher(), media, start_ms=start)
    video = out.packets("video")
    audio = out.packets("audio")
    assert [p.dts for p in video] == [p.dts + start for p in media.packets if p.kind == "video"]
    assert [p.dts for p in audio] == [p.dts + start for p in media.packets if p.kind == "audio"]
    assert video[-1].dts > 1 << 32
    assert all(b.dts > a.dts for a, b in itertools.pairwise(video))


def test_a_timestamp_going_back_is_held_and_counted() -> None:
    media = av_clip()
    out = Out()
    publisher = out.publisher()
    publisher.on_video(0, avc_sequence_header(media.video.extradata))  # type: ignore[union-attr]
    keyframe = next(p for p in media.packets if p.kind == "video")
    publisher.on_video(1000, media_tag(keyframe))
    publisher.on_video(400, media_tag(keyframe))  # the encoder's clock jumped back
    publisher.on_video(1033, media_tag(keyframe))
    assert [p.dts for p in out.packets()] == [1000, 1000, 1033]
    assert publisher.stats.backwards_timestamps == 1
    assert "timestamps jumped back 1 times" in publisher.stats.warnings(2.0)


def _audio_only_feed(metadata: dict[str, object], frames: int) -> Out:
    media = av_clip().only("audio")
    out = Out()
    publisher = out.publisher()
    publisher.on_metadata(metadata)
    publisher.on_audio(0, aac_sequence_header(media.audio.extradata))  # type: ignore[union-attr]
    for packet in media.packets[:frames]:
        publisher.on_audio(packet.dts, media_tag(packet))
    return out


def test_audio_only_is_declared_quickly_when_the_metadata_says_no_video() -> None:
    out = _audio_only_feed({"audiocodecid": 10.0}, AUDIO_ONLY_QUICK_FRAMES)
    assert out.declarations() == [TracksChanged(None, av_clip().audio)]
    # Frames before the declaration cannot be segmented; from it on, all are delivered.
    assert len(out.packets("audio")) == 1


def test_audio_waits_for_announced_video_then_goes_on_alone() -> None:
    waiting = _audio_only_feed({"videocodecid": 7.0, "audiocodecid": 10.0},
                               AUDIO_ONLY_AFTER_FRAMES - 1)
    assert waiting.items == []
    out = _audio_only_feed({"videocodecid": 7.0, "audiocodecid": 10.0},
                           AUDIO_ONLY_AFTER_FRAMES + 10)
    assert out.declarations() == [TracksChanged(None, av_clip().audio)]
    assert len(out.packets("audio")) == 11


def test_a_new_sequence_header_redeclares_the_tracks() -> None:
    media = av_clip()
    out = Out()
    publisher = out.publisher()
    feed(publisher, media)
    assert media.video is not None
    changed = bytearray(media.video.extradata)
    changed[-1] ^= 0x01  # different parameter sets (still a parsable avcC)
    publisher.on_video(7000, avc_sequence_header(bytes(changed)))
    publisher.on_video(7000, avc_sequence_header(bytes(changed)))  # repeated: no news
    declarations = out.declarations()
    assert len(declarations) == 2 and declarations[1].video is not None
    assert declarations[1].video.extradata == bytes(changed)


def test_bad_tags_are_counted_and_dropped_and_the_feed_goes_on() -> None:
    media = av_clip()
    out = Out()
    publisher = out.publisher()
    publisher.on_video(0, b"")  # empty body
    publisher.on_video(0, b"\x17\x01")  # AVC header cut short
    publisher.on_video(0, avc_sequence_header(b"\x01\x02"))  # an avcC that does not parse
    publisher.on_audio(0, b"")
    publisher.on_audio(0, aac_sequence_header(b"\xff"))  # an AudioSpecificConfig cut short
    publisher.on_video(0, b"\x12\x00\x00")  # Sorenson H.263: not carried by HLS
    assert out.items == []
    stats = publisher.stats
    assert stats.malformed_tags == 5
    assert "5 malformed tags dropped" in stats.warnings(2.0)
    assert stats.unknown_codecs and stats.video_codec is None
    feed(publisher, media)
    assert len(out.packets()) == len(media.packets)


def test_end_is_delivered_once_then_the_publisher_lets_go() -> None:
    out = Out()
    publisher = out.publisher()
    publisher.session = object()
    feed(publisher, av_clip())
    publisher.on_end("unpublished", unpublished=True)
    publisher.on_end("connection closed")
    assert out.ends == [("unpublished", True)]
    assert out.items[-1] == PublishEnded("unpublished")
    assert publisher.ended and publisher.session is None
    count = len(out.items)
    feed(publisher, av_clip())  # late tags from a connection being torn down
    assert len(out.items) == count


def test_a_dropped_connection_is_not_an_unpublish() -> None:
    out = Out()
    publisher = out.publisher()
    publisher.on_end("connection closed")
    assert out.ends == [("connection closed", False)]


def _frames(media: Media, start_ms: int = 0) -> list[tuple[int, int, bytes]]:
    """The clip as the runs a batching connection hands over: headers, then frames."""
    frames = []
    if media.video is not None:
        frames.append((9, start_ms, avc_sequence_header(media.video.extradata)))
    if media.audio is not None:
        frames.append((8, start_ms, aac_sequence_header(media.audio.extradata)))
    for packet in media.packets:
        frames.append((9 if packet.kind == "video" else 8, (packet.dts + start_ms) % (1 << 32),
                       media_tag(packet)))
    return frames


def _summary(out: Out, publisher: Publisher) -> tuple[object, ...]:
    items = [(type(i).__name__, i.kind, i.dts, i.pts, i.keyframe, bytes(i.data))
             if isinstance(i, MediaPacket) else i for i in out.items]
    stats = publisher.stats
    return (items, stats.video_frames, stats.audio_frames, stats.video_bytes, stats.audio_bytes,
            stats.keyframes, stats.keyframe_interval, stats.backwards_timestamps,
            stats.malformed_tags, sorted(stats.unknown_codecs))


def test_runs_of_frames_come_out_as_frames_one_by_one() -> None:
    media = av_clip()
    frames = _frames(media, start_ms=(1 << 32) - 1500)  # the clock wraps inside a run
    # Odd bodies mixed in: malformed, unsupported, a repeated header, a clock going back.
    frames[40:40] = [(9, 10, b"\x17\x01"), (8, 10, b""), (9, 10, b"\x12\x00\x00"), frames[0]]
    frames[90:90] = [(frames[89][0], frames[89][1] - 500, frames[89][2])]
    batched, single = Out(), Out()
    one_call = batched.publisher()
    cuts = [0, 1, 2, 30, 31, 77, 150, len(frames)]
    for start, end in itertools.pairwise(cuts):
        one_call.on_media(frames[start:end])
    by_one = single.publisher()
    for type_id, timestamp, body in frames:
        (by_one.on_video if type_id == 9 else by_one.on_audio)(timestamp, body)
    assert _summary(batched, one_call) == _summary(single, by_one)
    assert len(batched.packets()) > 100 and batched.declarations()
    assert one_call.stats.malformed_tags == 2 and one_call.stats.backwards_timestamps == 1


def test_a_run_goes_out_in_one_batch_when_the_output_takes_batches() -> None:
    media = av_clip()
    batches: list[list[ReaderItem]] = []
    publisher = Publisher("cam", "127.0.0.1:1", lambda item: None, lambda *args: None,
                          deliver_batch=batches.append)
    frames = _frames(media)
    publisher.on_media(frames[:20])
    publisher.on_media(frames[20:])
    assert len(batches) == 2
    assert sum(isinstance(i, MediaPacket) for b in batches for i in b) == len(media.packets)
