"""Segmenter with real H.264/HEVC + AAC packets; every segment is read back with PyAV."""

from __future__ import annotations

import functools
import io
import itertools
import json
import logging
import shutil
import struct
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import av
import pytest

from hls.media import MediaPacket, TrackConfig
from hls.playlist import rounded_duration
from hls.segmenter import TIMELINE_ORIGIN_MS, Segmenter, SegmentInfo, State
from tests.hls_media import (
    Media,
    av_clip,
    ffmpeg_has_encoder,
    hevc_clip,
    load,
    long_gop_clip,
    playlist_entries,
    playlist_tag,
    probe_segment,
)

FRAME = 1 / 30  # the clips' video frame duration, seconds
T0 = 1_700_000_000.0


class Clock:
    """Wall clock that the test moves along with the media."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def feed(segmenter: Segmenter, media: Media, clock: Clock | None = None) -> None:
    """Publish `media`; the clock, if given, runs with the media from where it stands."""
    segmenter.configure(media.video, media.audio)
    first = media.packets[0].dts
    start = clock.now if clock is not None else 0.0
    for packet in media.packets:
        if clock is not None:
            clock.now = start + (packet.dts - first) / 1000
        segmenter.push(packet)


def segments_of(segmenter: Segmenter) -> list[tuple[float, bytes, bool]]:
    """(EXTINF, bytes, discontinuity) for every listed segment."""
    out = []
    for duration, uri, discontinuity in playlist_entries(segmenter.render_playlist()):
        data = segmenter.segment(uri)
        assert data is not None, uri
        out.append((duration, data, discontinuity))
    return out


@pytest.fixture(scope="module")
def hls_av() -> Media:
    return av_clip()


@pytest.fixture(scope="module")
def hls_av_segmented(hls_av: Media) -> Segmenter:
    segmenter = Segmenter(name_token="")
    feed(segmenter, hls_av)
    segmenter.end()
    return segmenter


# ---- a whole publish --------------------------------------------------------------------


def test_two_second_gop_gives_two_second_segments(hls_av_segmented: Segmenter) -> None:
    entries = playlist_entries(hls_av_segmented.render_playlist())
    assert [uri for _, uri, _ in entries] == ["seg0.ts", "seg1.ts", "seg2.ts", "seg3.ts"]
    durations = [d for d, _, _ in entries]
    assert durations[:3] == pytest.approx([2.0, 2.0, 2.0], abs=FRAME / 2)
    assert durations[3] == pytest.approx(1.0, abs=FRAME / 2)
    text = hls_av_segmented.render_playlist()
    assert playlist_tag(text, "EXT-X-TARGETDURATION") == "2"
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text
    assert text.endswith("#EXT-X-ENDLIST\n")


def test_extinf_sum_matches_media_duration(hls_av: Media, hls_av_segmented: Segmenter) -> None:
    total = sum(d for d, _, _ in playlist_entries(hls_av_segmented.render_playlist()))
    assert total == pytest.approx(hls_av.span_ms("video") / 1000, abs=FRAME)


def test_each_segment_stands_alone(hls_av_segmented: Segmenter) -> None:
    for _, data, _ in segments_of(hls_av_segmented):
        probe = probe_segment(data)
        assert probe.codecs == {"video": "h264", "audio": "aac"}
        assert (probe.width, probe.height) == (1280, 720)
        assert probe.video_starts_with_parameter_sets  # Annex B with SPS/PPS before the IDR
        assert probe.audio_has_adts
        assert probe.first_frame_decoded  # no previous segment needed
        assert data[0] == 0x47 and len(data) % 188 == 0


def test_timestamps_continue_across_segments(hls_av_segmented: Segmenter) -> None:
    segments = segments_of(hls_av_segmented)
    probes = [probe_segment(data) for _, data, _ in segments]
    assert probes[0].first_video_dts == pytest.approx(TIMELINE_ORIGIN_MS / 1000)
    for (duration, _, _), probe, following in zip(segments, probes, probes[1:], strict=False):
        assert following.first_video_pts is not None and probe.first_video_pts is not None
        assert following.first_video_pts - probe.first_video_pts == pytest.approx(
            duration, abs=FRAME
        )
        assert probe.last_video_dts is not None and following.first_video_dts is not None
        assert probe.last_video_dts < following.first_video_dts
    # B-frames survive: presentation runs ahead of decoding.
    assert probes[0].first_video_pts is not None and probes[0].first_video_dts is not None
    assert probes[0].first_video_pts > probes[0].first_video_dts


def test_ffprobe_accepts_a_segment(hls_av_segmented: Segmenter, tmp_path: Path) -> None:
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed")
    path = tmp_path / "seg1.ts"
    path.write_bytes(segments_of(hls_av_segmented)[1][1])
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stderr == ""
    streams = {s["codec_type"]: s for s in json.loads(result.stdout)["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (1280, 720)
    assert streams["audio"]["codec_name"] == "aac"
    assert int(streams["audio"]["sample_rate"]) == 48000


def test_observability_properties(hls_av: Media) -> None:
    seen: list[SegmentInfo] = []
    segmenter = Segmenter(name_token="", on_segment=seen.append)
    feed(segmenter, hls_av)
    segmenter.end()
    # The media is held once (no TS is made before it is asked for)...
    media = sum(len(packet.data) for packet in hls_av.packets)
    assert sum(info.size for info in seen) == media
    assert segmenter.bytes_in_window == segmenter.bytes_held == media
    # ...and each TS segment, once made, is kept while it is listed.
    segments = segments_of(segmenter)
    assert segmenter.bytes_in_window == media + sum(len(data) for _, data, _ in segments)
    assert segmenter.segments_produced == 4
    assert segmenter.last_segment_duration == pytest.approx(1.0, abs=FRAME / 2)
    assert segmenter.longest_segment_duration == pytest.approx(2.0, abs=FRAME / 2)
    assert segmenter.target_duration_seen == 2
    assert segmenter.ended
    assert segmenter.state is State.ENDED
    assert segmenter.packets_dropped == 0


def test_program_date_time_is_the_wall_clock_at_each_segments_first_packet(hls_av: Media) -> None:
    clock = Clock()
    segmenter = Segmenter(clock=clock, name_token="")
    feed(segmenter, hls_av, clock)
    segmenter.end()
    stamps = [e.program_date_time for e in segmenter.playlist.segments]
    assert stamps == pytest.approx([T0, T0 + 2, T0 + 4, T0 + 6], abs=0.001)
    assert "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z" in segmenter.render_playlist()


def test_on_segment_reports_every_cut(hls_av: Media) -> None:
    seen: list[SegmentInfo] = []
    segmenter = Segmenter(on_segment=seen.append, name_token="")
    feed(segmenter, hls_av)
    assert [info.sequence for info in seen] == [0, 1, 2]  # the last one is still open
    segmenter.end()
    assert [info.name for info in seen] == [f"seg{i}.ts" for i in range(4)]
    for info in seen:
        data = segmenter.segment(info.name)
        assert data is not None and 0 < info.size < len(data)  # the media, without TS overhead
        assert not info.discontinuity and info.independent
    assert [info.duration for info in seen] == [e.duration for e in segmenter.playlist.segments]


def test_a_failing_observer_does_not_stop_segmenting(hls_av: Media, caplog) -> None:
    def boom(_: SegmentInfo) -> None:
        raise RuntimeError("metrics broke")

    segmenter = Segmenter(on_segment=boom)
    with caplog.at_level(logging.ERROR, logger="hls.segmenter"):
        feed(segmenter, hls_av)
        segmenter.end()
    assert segmenter.segments_produced == 4
    assert "on_segment observer failed" in caplog.text


def test_segment_names_carry_a_token_unless_disabled(hls_av: Media) -> None:
    a, b = Segmenter(), Segmenter(name_token="abc")
    assert a.segment_name(0) != Segmenter().segment_name(0)  # random per instance
    assert b.segment_name(7) == "seg7-abc.ts"
    feed(b, hls_av)
    b.end()
    assert next(uri for _, uri, _ in playlist_entries(b.render_playlist())) == "seg0-abc.ts"
    assert b.segment("seg0-abc.ts") is not None and b.segment("seg0.ts") is None


# ---- periods and discontinuities -------------------------------------------------------


def test_returning_publisher_continues_the_playlist(hls_av: Media) -> None:
    segmenter = Segmenter(window=10, name_token="")
    feed(segmenter, hls_av)
    segmenter.publisher_gone()
    assert segmenter.state is State.IDLE
    assert not segmenter.ended
    feed(segmenter, hls_av)  # the encoder restarts its clock at 0
    segmenter.end()

    text = segmenter.render_playlist()
    entries = playlist_entries(text)
    assert [uri for _, uri, _ in entries] == [f"seg{i}.ts" for i in range(8)]
    assert [disc for _, _, disc in entries] == [False] * 4 + [True] + [False] * 3
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert playlist_tag(text, "EXT-X-MEDIA-SEQUENCE") == "0"
    assert playlist_tag(text, "EXT-X-DISCONTINUITY-SEQUENCE") == "0"

    probes = [probe_segment(data) for _, data, _ in segments_of(segmenter)]
    for probe, following in itertools.pairwise(probes):
        assert probe.last_video_dts < following.first_video_dts  # type: ignore[operator]
    # The second period starts right after the first one's last frame of either track
    # (here the AAC tail outlasts the last video frame by a few frames).
    period_end = probes[3].first_video_dts + entries[3][0]  # type: ignore[operator]
    assert period_end <= probes[4].first_video_dts <= period_end + 0.1  # type: ignore[operator]


def test_discontinuity_sequence_counts_a_discontinuity_that_slid_out(hls_av: Media) -> None:
    segmenter = Segmenter(window=3, name_token="")
    for _ in range(3):
        feed(segmenter, hls_av)
        segmenter.publisher_gone()
    # 12 segments of 2, 2, 2, 1 s. Window 3, but seg9-seg11 hold only 5 s < 3 x 2 s, so
    # seg8 (which opens the third period) stays; the tag before seg4 slid out.
    text = segmenter.render_playlist()
    assert [uri for _, uri, _ in playlist_entries(text)] == [f"seg{i}.ts" for i in range(8, 12)]
    assert playlist_tag(text, "EXT-X-MEDIA-SEQUENCE") == "8"
    assert playlist_tag(text, "EXT-X-DISCONTINUITY-SEQUENCE") == "1"
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    feed(segmenter, hls_av)
    segmenter.end()
    text = segmenter.render_playlist()
    assert playlist_tag(text, "EXT-X-MEDIA-SEQUENCE") == "12"
    assert playlist_tag(text, "EXT-X-DISCONTINUITY-SEQUENCE") == "2"


def test_new_period_with_other_timestamps_is_still_monotonic(hls_av: Media) -> None:
    segmenter = Segmenter(window=10, name_token="")
    feed(segmenter, hls_av.shifted(5_000_000))
    segmenter.publisher_gone()
    feed(segmenter, hls_av.shifted(123))
    segmenter.end()
    probes = [probe_segment(data) for _, data, _ in segments_of(segmenter)]
    dts = [p.first_video_dts for p in probes]
    assert dts == sorted(dts)
    assert dts[0] == pytest.approx(TIMELINE_ORIGIN_MS / 1000)
    assert TIMELINE_ORIGIN_MS / 1000 + 7.0 <= dts[4] <= TIMELINE_ORIGIN_MS / 1000 + 7.1


def test_huge_input_timestamps_start_at_the_origin(hls_av: Media) -> None:
    segmenter = Segmenter(name_token="")
    feed(segmenter, hls_av.shifted(2**33 + 12345))  # ~99 days of unwrapped RTMP clock
    segmenter.end()
    probe = probe_segment(segments_of(segmenter)[0][1])
    assert probe.first_video_dts == pytest.approx(TIMELINE_ORIGIN_MS / 1000)
    assert segmenter.segments_produced == 4


def test_changed_sequence_header_cuts_with_discontinuity_on_the_same_clock(hls_av: Media) -> None:
    segmenter = Segmenter(window=10, name_token="")
    segmenter.configure(hls_av.video, hls_av.audio)
    changed = replace(hls_av.video, width=640, height=360)  # type: ignore[type-var]
    for packet in hls_av.packets:
        if packet.dts == 3000 and packet.kind == "video":
            segmenter.configure(hls_av.video, hls_av.audio)  # a repeat: no effect
            segmenter.configure(changed, hls_av.audio)
        segmenter.push(packet)
    segmenter.end()
    entries = playlist_entries(segmenter.render_playlist())
    # 0-2 s, 2-3 s (closed by the change), then 4-6 s, 6-7 s: 3-4 s waits for a keyframe.
    assert [round(d, 1) for d, _, _ in entries] == [2.0, 1.0, 2.0, 1.0]
    assert [disc for _, _, disc in entries] == [False, False, True, False]
    probe = probe_segment(segments_of(segmenter)[2][1])
    assert probe.first_video_dts == pytest.approx(TIMELINE_ORIGIN_MS / 1000 + 4.0)
    assert segmenter.drop_reasons["before_keyframe"] > 0


# ---- cut rules --------------------------------------------------------------------------


def test_long_gop_gives_long_segments_and_target_duration() -> None:
    segmenter = Segmenter(name_token="")
    feed(segmenter, long_gop_clip())
    segmenter.end()
    durations = [d for d, _, _ in playlist_entries(segmenter.render_playlist())]
    assert durations == pytest.approx([5.0, 5.0, 5.0, 1.0], abs=FRAME / 2)
    assert playlist_tag(segmenter.render_playlist(), "EXT-X-TARGETDURATION") == "5"
    assert segmenter.target_duration_seen == 5


def test_video_only(hls_av: Media) -> None:
    segmenter = Segmenter(name_token="")
    feed(segmenter, hls_av.only("video"))
    segmenter.end()
    assert segmenter.tracks == ()  # ended: tracks released
    segments = segments_of(segmenter)
    assert [round(d, 1) for d, _, _ in segments] == [2.0, 2.0, 2.0, 1.0]
    for _, data, _ in segments:
        probe = probe_segment(data)
        assert probe.codecs == {"video": "h264"}
        assert probe.first_frame_decoded and probe.audio_packets == 0


def test_audio_only_cuts_on_audio_frames(hls_av: Media) -> None:
    media = hls_av.only("audio")
    segmenter = Segmenter(name_token="")
    feed(segmenter, media)
    segmenter.end()
    segments = segments_of(segmenter)
    aac_frame = 1024 / 48000
    assert len(segments) == 4
    for duration, data, _ in segments[:-1]:
        assert duration == pytest.approx(2.0, abs=aac_frame)
        probe = probe_segment(data)
        assert probe.codecs == {"audio": "aac"}
        assert probe.audio_has_adts
    total = sum(d for d, _, _ in segments)
    assert total == pytest.approx(media.span_ms("audio") / 1000, abs=aac_frame)


def test_packets_before_the_first_keyframe_are_dropped(hls_av: Media) -> None:
    late = hls_av.packets.index(next(p for p in hls_av.packets if p.dts >= 100))
    media = Media(hls_av.video, hls_av.audio, hls_av.packets[late:])
    segmenter = Segmenter(name_token="")
    feed(segmenter, media)
    segmenter.end()
    assert segmenter.drop_reasons["before_keyframe"] > 0
    durations = [d for d, _, _ in playlist_entries(segmenter.render_playlist())]
    assert durations == pytest.approx([2.0, 2.0, 1.0], abs=FRAME / 2)  # starts at the 2 s IDR
    probe = probe_segment(segments_of(segmenter)[0][1])
    assert probe.first_video_dts == pytest.approx(TIMELINE_ORIGIN_MS / 1000)
    assert probe.first_frame_decoded


def test_missing_keyframes_force_a_cut(hls_av: Media, caplog) -> None:
    first_key = True

    def unkey(packet: MediaPacket) -> MediaPacket:
        nonlocal first_key
        if packet.kind == "video" and packet.keyframe:
            if first_key:
                first_key = False
                return packet
            return replace(packet, keyframe=False)
        return packet

    media = Media(hls_av.video, hls_av.audio, tuple(unkey(p) for p in hls_av.packets))
    segmenter = Segmenter(max_segment_duration=3.0, name_token="")
    with caplog.at_level(logging.WARNING, logger="hls.segmenter"):
        feed(segmenter, media)
        segmenter.end()
    assert "no keyframe" in caplog.text
    entries = segmenter.playlist.segments
    assert [round(e.duration, 1) for e in entries] == [3.0, 3.0, 1.0]
    assert [e.independent for e in entries] == [True, False, False]
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in segmenter.render_playlist()


def test_byte_limit_forces_cuts(hls_av: Media) -> None:
    segmenter = Segmenter(max_segment_bytes=400_000, name_token="")
    feed(segmenter, hls_av)
    segmenter.end()
    assert segmenter.segments_produced > 8
    assert all(e.duration < 2.0 for e in segmenter.playlist.segments)


def test_window_is_bounded_and_expired_segments_linger(hls_av: Media) -> None:
    clock = Clock()
    segmenter = Segmenter(window=3, clock=clock, name_token="")
    feed(segmenter, hls_av, clock)
    segmenter.publisher_gone()
    feed(segmenter, hls_av, clock)
    segmenter.end()
    listed = [uri for _, uri, _ in playlist_entries(segmenter.render_playlist())]
    # Three segments would list 5 s, under 3 x TARGETDURATION (RFC 8216 6.2.2): four stay.
    assert listed == ["seg4.ts", "seg5.ts", "seg6.ts", "seg7.ts"]
    for uri in ("seg0.ts", "seg1.ts", "seg2.ts", "seg3.ts"):  # slid out seconds ago: served
        assert segmenter.segment(uri) is not None
    assert segmenter.segment("nope.ts") is None
    # Expired segments keep their media, not their TS bytes (made again when asked for).
    kept = segmenter.bytes_kept_expired
    assert segmenter.segment("seg0.ts") == segmenter.segment("seg0.ts")
    assert segmenter.bytes_kept_expired == kept
    media = segmenter.bytes_in_window
    ts = sum(len(segmenter.segment(u) or b"") for u in listed)
    assert segmenter.bytes_in_window == media + ts  # listed ones keep them
    clock.now += 60  # long past every deadline: gone, and no longer held
    assert all(segmenter.segment(f"seg{i}.ts") is None for i in range(4))
    assert segmenter.bytes_kept_expired == 0
    assert segmenter.bytes_held == segmenter.bytes_in_window


# ---- odd input --------------------------------------------------------------------------


def test_unsupported_codec_is_skipped_with_a_warning(hls_av: Media, caplog) -> None:
    mp3 = TrackConfig("audio", "mp3", b"", sample_rate=44100, channels=2)
    segmenter = Segmenter(name_token="")
    with caplog.at_level(logging.WARNING, logger="hls.muxer"):
        segmenter.configure(hls_av.video, mp3)
    assert "skipping audio track" in caplog.text
    assert segmenter.tracks == ("video",)
    for packet in hls_av.packets:
        segmenter.push(packet)
    segmenter.end()
    assert segmenter.drop_reasons["undeclared_track"] > 0
    assert probe_segment(segments_of(segmenter)[0][1]).codecs == {"video": "h264"}


def test_nothing_carriable_drops_everything(hls_av: Media, caplog) -> None:
    segmenter = Segmenter()
    with caplog.at_level(logging.WARNING):
        segmenter.configure(
            TrackConfig("video", "vp9", b"\x01" * 8), TrackConfig("audio", "opus", b"")
        )
    assert segmenter.tracks == ()
    for packet in hls_av.packets[:50]:
        segmenter.push(packet)
    segmenter.end()
    assert segmenter.segments_produced == 0
    assert not segmenter.playlist_ready
    assert "no track HLS can carry" in caplog.text


def test_repeated_and_backward_timestamps(hls_av: Media) -> None:
    packets = list(hls_av.packets)
    audio = [i for i, p in enumerate(packets) if p.kind == "audio"]
    repeat, back = audio[10], audio[20]
    packets[repeat] = replace(packets[repeat], dts=packets[audio[9]].dts, pts=packets[audio[9]].dts)
    packets[back] = replace(packets[back], dts=packets[audio[19]].dts - 5)
    segmenter = Segmenter(name_token="")
    feed(segmenter, Media(hls_av.video, hls_av.audio, tuple(packets)))
    segmenter.end()
    assert segmenter.drop_reasons == {"backwards_dts": 1}  # the repeat was nudged, not dropped
    assert segmenter.segments_produced == 4


def test_packets_without_a_publisher_are_dropped(hls_av: Media) -> None:
    segmenter = Segmenter()
    segmenter.push(hls_av.packets[0])
    assert segmenter.drop_reasons == {"not_configured": 1}
    feed(segmenter, hls_av)
    segmenter.publisher_gone()
    segmenter.push(hls_av.packets[0])
    assert segmenter.drop_reasons["not_configured"] == 2


def test_nothing_is_accepted_after_end(hls_av: Media) -> None:
    segmenter = Segmenter(name_token="")
    feed(segmenter, hls_av)
    segmenter.end()
    text = segmenter.render_playlist()
    segmenter.end()
    segmenter.publisher_gone()
    feed(segmenter, hls_av)
    assert segmenter.render_playlist() == text
    assert segmenter.state is State.ENDED


def test_states(hls_av: Media) -> None:
    segmenter = Segmenter()
    assert segmenter.state is State.IDLE
    segmenter.configure(hls_av.video, hls_av.audio)
    assert segmenter.state is State.WAITING_KEYFRAME
    segmenter.push(hls_av.packets[0])
    assert segmenter.state is State.RECORDING
    segmenter.publisher_gone()
    assert segmenter.state is State.IDLE and segmenter.playlist_ready
    segmenter.end()
    assert segmenter.state is State.ENDED


def test_writable_buffers_are_copied(hls_av: Media) -> None:
    reference = Segmenter(name_token="")
    feed(reference, hls_av)
    reference.end()

    buffers = [bytearray(p.data) for p in hls_av.packets]
    segmenter = Segmenter(name_token="")
    segmenter.configure(hls_av.video, hls_av.audio)
    for packet, buffer in zip(hls_av.packets, buffers, strict=True):
        segmenter.push(replace(packet, data=memoryview(buffer)))
        buffer[:] = bytes(len(buffer))  # the ingest side reuses its buffer at once
    segmenter.end()
    assert [d for _, d, _ in segments_of(segmenter)] == [d for _, d, _ in segments_of(reference)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_duration": 0},
        {"target_duration": 4.0, "max_segment_duration": 2.0},
        {"max_segment_bytes": 0},
        {"window": 0},
    ],
)
def test_constructor_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Segmenter(**kwargs)  # type: ignore[arg-type]


def test_hevc() -> None:
    if not ffmpeg_has_encoder("libx265"):
        pytest.skip("ffmpeg has no libx265")
    media = hevc_clip()
    assert media.video is not None and media.video.codec == "hevc"
    segmenter = Segmenter(name_token="")
    feed(segmenter, media)
    segmenter.end()
    segments = segments_of(segmenter)
    assert [round(d, 1) for d, _, _ in segments] == [2.0, 2.0, 1.0]
    for _, data, _ in segments:
        probe = probe_segment(data)
        assert probe.codecs == {"video": "hevc", "audio": "aac"}
        assert (probe.width, probe.height) == (320, 240)
        assert probe.video_starts_with_parameter_sets  # VPS/SPS/PPS before the IRAP
        assert probe.first_frame_decoded


# ---- RFC 8216 rules whatever the encoder sends ------------------------------------------


@functools.cache
def irregular_gop_clip() -> Media:
    """17 s of small H.264 + AAC with keyframes at 0, 2, 4, 11, 13, 15 s: one 7 s GOP."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    with tempfile.TemporaryDirectory(prefix="hls-media-") as tmp:
        path = Path(tmp) / "irregular.flv"
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"]
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
        cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "1000", "-sc_threshold", "0"]
        cmd += ["-force_key_frames", "0,2,4,11,13,15", "-pix_fmt", "yuv420p"]
        cmd += ["-c:a", "aac", "-ac", "2", "-t", "17", "-f", "flv", str(path)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        media = load(path)
    assert [round(k / 1000) for k in media.keyframe_dts()] == [0, 2, 4, 11, 13, 15]
    return media


class Recorder:
    """A segmenter on a test clock, with the playlist a player got after every segment."""

    def __init__(self, **options: object) -> None:
        self.clock = Clock()
        self.texts: list[str] = []
        self.times: list[float] = []
        self.independence: list[tuple[bool, ...]] = []
        self.segmenter = Segmenter(
            clock=self.clock, name_token="", on_segment=self._seen, **options  # type: ignore[arg-type]
        )

    def _seen(self, _: SegmentInfo) -> None:
        self.texts.append(self.segmenter.render_playlist())
        self.times.append(self.clock.now)
        self.independence.append(tuple(e.independent for e in self.segmenter.playlist.segments))

    def feed(self, media: Media) -> None:
        feed(self.segmenter, media, self.clock)


def first_video_is_keyframe(data: bytes | bytearray) -> bool | None:
    """Whether a segment's first video packet is a keyframe; None if it holds no video."""
    with av.open(io.BytesIO(bytes(data)), format="mpegts") as container:
        for packet in container.demux():
            if packet.size and packet.stream.type == "video":
                return bool(packet.is_keyframe)
    return None


def assert_fixed_target(recorder: Recorder) -> int:
    """One TARGETDURATION in every playlist served, every rounded EXTINF within it, and
    INDEPENDENT-SEGMENTS exactly when every listed segment is independent."""
    targets = {playlist_tag(text, "EXT-X-TARGETDURATION") for text in recorder.texts}
    assert len(targets) == 1, targets
    target = int(targets.pop() or 0)
    for text, independence in zip(recorder.texts, recorder.independence, strict=True):
        assert max(rounded_duration(d) for d, _, _ in playlist_entries(text)) <= target, text
        assert ("#EXT-X-INDEPENDENT-SEGMENTS" in text) == all(independence)
    return target


def assert_independence_is_honest(segmenter: Segmenter) -> None:
    """A segment listed as independent holds no video or starts with a keyframe; the others
    start without one."""
    for entry in segmenter.playlist.segments:
        data = segmenter.segment(entry.uri)
        assert data is not None
        assert entry.independent == (first_video_is_keyframe(data) is not False), entry


def test_irregular_gop_keeps_target_duration() -> None:
    recorder = Recorder(window=3)
    recorder.feed(irregular_gop_clip())
    recorder.segmenter.end()
    assert assert_fixed_target(recorder) == 2  # not 7, when the 7 s GOP comes
    segmenter = recorder.segmenter
    assert segmenter.forced_cuts == 2  # 4 s -> 6.47 s -> 8.93 s, then the 11 s keyframe cuts
    assert segmenter.durations_clamped == 0
    # While the forced cuts are listed the playlist does not promise independence...
    assert any("#EXT-X-INDEPENDENT-SEGMENTS" not in text for text in recorder.texts)
    # ...and once keyframes cut again and the window moved on, it does.
    final = segmenter.render_playlist()
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in final
    assert [round(d, 1) for d, _, _ in playlist_entries(final)] == [2.0, 2.0, 2.0]
    assert_independence_is_honest(segmenter)


def test_irregular_gop_segments_are_honest_while_listed() -> None:
    recorder = Recorder(window=20)
    recorder.feed(irregular_gop_clip())
    recorder.segmenter.end()
    assert_fixed_target(recorder)
    entries = recorder.segmenter.playlist.segments
    assert [round(e.duration, 2) for e in entries] == [2.0, 2.0, 2.47, 2.47, 2.07, 2.0, 2.0, 2.0]
    assert [e.independent for e in entries] == [True, True, True, False, False, True, True, True]
    assert_independence_is_honest(recorder.segmenter)


def test_long_first_gop_sets_the_target_and_keeps_it() -> None:
    recorder = Recorder()
    recorder.feed(long_gop_clip())  # 5 s GOPs at a 2 s target
    recorder.segmenter.end()
    assert assert_fixed_target(recorder) == 5
    assert recorder.segmenter.forced_cuts == 0
    assert all(e.independent for e in recorder.segmenter.playlist.segments)


def test_video_stopping_while_audio_goes_on(hls_av: Media) -> None:
    # Video stops after 3 s and comes back at the 6 s keyframe; audio runs throughout.
    packets = tuple(p for p in hls_av.packets if p.kind == "audio" or not 3000 <= p.dts < 6000)
    recorder = Recorder()
    recorder.feed(Media(hls_av.video, hls_av.audio, packets))
    recorder.segmenter.end()
    assert assert_fixed_target(recorder) == 2  # not 10
    assert all("#EXT-X-INDEPENDENT-SEGMENTS" in text for text in recorder.texts)
    entries = recorder.segmenter.playlist.segments
    # 0-2 s; 2-4.47 s cut before it could round to 3; audio alone 4.47-6 s, cut where the
    # video comes back with a keyframe; 6-7 s.
    durations = [round(e.duration, 2) for e in entries]
    assert durations == pytest.approx([2.0, 2.47, 1.53, 1.0], abs=0.03)
    segments = segments_of(recorder.segmenter)
    assert first_video_is_keyframe(segments[2][1]) is None  # audio only
    assert probe_segment(segments[2][1]).audio_packets > 60
    assert_independence_is_honest(recorder.segmenter)


def test_long_audio_only_stretch_cuts_at_the_target(hls_av: Media) -> None:
    packets = tuple(p for p in hls_av.packets if p.kind == "audio" or p.dts < 2500)
    recorder = Recorder()
    recorder.feed(Media(hls_av.video, hls_av.audio, packets))
    recorder.segmenter.end()
    assert assert_fixed_target(recorder) == 2
    durations = [round(e.duration, 1) for e in recorder.segmenter.playlist.segments]
    assert durations == [2.0, 2.5, 2.0, 0.6]  # the audio-only ones cut on audio frames at 2 s
    assert all(e.independent for e in recorder.segmenter.playlist.segments)


def test_republish_with_another_gop_keeps_the_target(hls_av: Media) -> None:
    recorder = Recorder(window=20)
    recorder.feed(hls_av)  # 2 s GOPs fix TARGETDURATION at 2
    recorder.segmenter.publisher_gone()
    recorder.feed(long_gop_clip())  # then an encoder with 5 s GOPs comes back within grace
    recorder.segmenter.end()
    assert assert_fixed_target(recorder) == 2
    second = [e for e in recorder.segmenter.playlist.segments if e.sequence >= 4]
    assert second[0].discontinuity
    assert not all(e.independent for e in second)  # forced cuts inside the 5 s GOPs
    assert_independence_is_honest(recorder.segmenter)


def test_a_gap_in_timestamps_never_breaks_the_target(hls_av: Media) -> None:
    # The encoder's clock jumps 30 s forward after 3 s (a stall): EXTINF stays within T.
    packets = tuple(replace(p, dts=p.dts + 30_000, pts=p.pts + 30_000) if p.dts >= 3000 else p
                    for p in hls_av.packets)
    recorder = Recorder()
    recorder.feed(Media(hls_av.video, hls_av.audio, packets))
    recorder.segmenter.end()
    assert assert_fixed_target(recorder) == 2
    assert recorder.segmenter.durations_clamped >= 1


# ---- retention of expired segments (RFC 8216 6.2.2) ------------------------------------


class RetentionOracle:
    """When each segment may go, from the playlists players were served and when (6.2.2):
    the time it left the playlist, plus its duration, plus the longest playlist it was in."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.seen = 0
        self.longest: dict[str, float] = {}
        self.deadlines: dict[str, float] = {}
        self.kept: dict[str, float] = {}  # uri -> how long it stayed after leaving
        self.checked = 0

    def check(self) -> None:
        recorder = self.recorder
        previous = (
            playlist_entries(recorder.texts[self.seen - 1]) if self.seen else []
        )
        while self.seen < len(recorder.texts):
            entries = playlist_entries(recorder.texts[self.seen])
            total = sum(d for d, _, _ in entries)
            for _, uri, _ in entries:
                self.longest[uri] = max(self.longest.get(uri, 0.0), total)
            listed = {uri for _, uri, _ in entries}
            for duration, uri, _ in previous:
                if uri not in listed:
                    self.kept[uri] = duration + self.longest[uri]
                    self.deadlines[uri] = recorder.times[self.seen] + self.kept[uri]
            previous = entries
            self.seen += 1
        now = recorder.clock.now
        for uri, deadline in list(self.deadlines.items()):
            if now < deadline - 0.01:
                assert recorder.segmenter.segment(uri) is not None, (uri, "gone too early")
            elif now > deadline + 0.01:
                assert recorder.segmenter.segment(uri) is None, (uri, "kept too long")
                del self.deadlines[uri]
                self.checked += 1


@pytest.mark.parametrize("window", [3, 6])
def test_expired_segments_stay_for_their_duration_plus_the_longest_playlist(
    hls_av: Media, window: int
) -> None:
    recorder = Recorder(window=window)
    oracle = RetentionOracle(recorder)
    segmenter = recorder.segmenter
    for _ in range(4):  # publishes within grace: one playlist, one clock
        segmenter.configure(hls_av.video, hls_av.audio)
        start, first = recorder.clock.now, hls_av.packets[0].dts
        for packet in hls_av.packets:
            recorder.clock.now = start + (packet.dts - first) / 1000
            segmenter.push(packet)
            oracle.check()
        recorder.clock.now += 0.5
        segmenter.publisher_gone()
    segmenter.end()
    for _ in range(1200):  # 60 s more, in 50 ms steps: every kept segment reaches its end
        recorder.clock.now += 0.05
        oracle.check()
    assert oracle.checked >= 16 - 4 - window
    assert not oracle.deadlines and segmenter.bytes_kept_expired == 0
    if window == 6:
        # Defaults: a 2 s segment that appeared in an 11 s playlist stays 13 s after it left.
        assert oracle.kept["seg0.ts"] == pytest.approx(13.0, abs=0.1)


# ---- memory cap ---------------------------------------------------------------------------


def with_big_frames(media: Media, size: int) -> Media:
    """The clip's timing with every video frame one `size`-byte NAL unit (AVCC, 4-byte length)."""

    def swap(packet: MediaPacket) -> MediaPacket:
        if packet.kind != "video":
            return packet
        nal = bytes([0x65 if packet.keyframe else 0x41]) + b"\xab" * (size - 5)
        return replace(packet, data=struct.pack(">I", len(nal)) + nal)

    return Media(media.video, media.audio, tuple(swap(p) for p in media.packets))


def test_memory_cap_holds_with_megabyte_frames(hls_av: Media) -> None:
    cap = 8 * 1024 * 1024
    media = with_big_frames(hls_av, 1024 * 1024)  # 30 MB/s of video
    segmenter = Segmenter(window=6, max_bytes=cap, name_token="")
    segmenter.configure(media.video, media.audio)
    most = 0
    for packet in media.packets:
        segmenter.push(packet)
        most = max(most, segmenter.bytes_held)
        assert segmenter.bytes_held <= cap
        listed = segmenter.playlist.segments
        if segmenter.playlist_ready and len(listed) < min(6, segmenter.segments_produced):
            assert segmenter.bytes_kept_expired == 0  # expired segments go first
    segmenter.end()
    assert segmenter.bytes_held <= cap
    assert most > cap // 2  # the cap, not the input, bounded it
    assert segmenter.segments_dropped_early > 0
    assert segmenter.drop_reasons == {}
    listed = segmenter.playlist.segments
    served = [segmenter.segment(e.uri) for e in listed]
    assert listed and all(data is not None for data in served)
    # TS bytes made for requests stay within the cap too: what it has no room for is made
    # again on the next request, byte for byte.
    assert segmenter.bytes_held <= cap
    assert [segmenter.segment(e.uri) for e in listed] == served


def test_memory_cap_drops_expired_before_listed(hls_av: Media) -> None:
    clock = Clock()
    reference = Segmenter(window=2, clock=clock, name_token="")
    for _ in range(2):
        feed(reference, hls_av, clock)
        reference.publisher_gone()
    needed = reference.bytes_in_window + reference.bytes_kept_expired
    # Room for the window and the open segment, not for everything expired.
    cap = reference.bytes_in_window + reference.bytes_kept_expired // 2 + 1_000_000
    clock = Clock()
    segmenter = Segmenter(window=2, clock=clock, max_bytes=cap, name_token="")
    for _ in range(2):
        feed(segmenter, hls_av, clock)
        segmenter.publisher_gone()
    assert cap < needed
    assert segmenter.bytes_held <= cap
    assert segmenter.segments_dropped_early > 0
    assert segmenter.playlist.segments == reference.playlist.segments  # the window is intact
    assert 0 < segmenter.bytes_kept_expired < reference.bytes_kept_expired


def test_a_frame_larger_than_a_segment_may_hold_is_refused(hls_av: Media) -> None:
    media = with_big_frames(hls_av, 3 * 1024 * 1024)
    segmenter = Segmenter(max_bytes=8 * 1024 * 1024, name_token="")
    feed(segmenter, media)
    assert segmenter.drop_reasons["frame_too_large"] > 0
    assert segmenter.bytes_held <= 8 * 1024 * 1024
