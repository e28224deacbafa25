"""TsMuxer and TrackSet: PyAV remuxing of FLV-shaped packets into MPEG-TS."""

from __future__ import annotations

import logging

import pytest

from hls.media import TrackConfig
from hls.muxer import MuxerError, TrackSet, TsMuxer
from tests.hls_media import Media, av_clip, probe_segment


@pytest.fixture(scope="module")
def hls_clip() -> Media:
    return av_clip()


def first_gop(media: Media) -> list:
    return [p for p in media.packets if p.dts < 2000]


def mux(tracks: TrackSet, packets: list, offset: int = 10_000) -> TsMuxer:
    muxer = TsMuxer(tracks)
    for p in packets:
        assert muxer.write(p.kind, p.dts + offset, p.pts + offset, p.keyframe, p.data)
    return muxer


def test_output_is_self_contained_ts(hls_clip: Media) -> None:
    data = mux(TrackSet(hls_clip.video, hls_clip.audio), first_gop(hls_clip)).close()
    assert len(data) % 188 == 0
    assert all(data[i] == 0x47 for i in range(0, len(data), 188))
    probe = probe_segment(data)
    assert probe.codecs == {"video": "h264", "audio": "aac"}
    assert probe.video_starts_with_parameter_sets and probe.audio_has_adts
    assert probe.first_frame_decoded


def test_timestamps_go_through_unchanged(hls_clip: Media) -> None:
    packets = first_gop(hls_clip)
    probe = probe_segment(mux(TrackSet(hls_clip.video, hls_clip.audio), packets, 123_456).close())
    first_video = next(p for p in packets if p.kind == "video")
    first_audio = next(p for p in packets if p.kind == "audio")
    assert probe.first_video_dts == pytest.approx((first_video.dts + 123_456) / 1000)
    assert probe.first_video_pts == pytest.approx((first_video.pts + 123_456) / 1000)
    assert probe.first_audio_pts == pytest.approx((first_audio.pts + 123_456) / 1000)


def test_bytes_are_readable_while_the_segment_is_open(hls_clip: Media) -> None:
    packets = first_gop(hls_clip)
    muxer = TsMuxer(TrackSet(hls_clip.video, hls_clip.audio), flush_each_packet=True)
    sizes = []
    for p in packets:
        muxer.write(p.kind, p.dts + 10_000, p.pts + 10_000, p.keyframe, p.data)
        sizes.append(muxer.bytes_written)
    assert sizes == sorted(sizes)
    assert 0 < sizes[len(sizes) // 2] < sizes[-1]
    assert all(size % 188 == 0 for size in sizes)
    middle = sizes[len(sizes) // 2]
    early = muxer.read(0, middle)
    tail = muxer.read(middle)
    data = muxer.close()
    assert data.startswith(early + tail)
    assert muxer.bytes_written == len(data)
    assert muxer.read(10, 20) == data[10:20]
    assert muxer.close() is data  # idempotent


def test_buffered_and_per_packet_flushing_write_the_same_segment(hls_clip: Media) -> None:
    packets = first_gop(hls_clip)
    tracks = TrackSet(hls_clip.video, hls_clip.audio)
    outputs = []
    for flush_each_packet in (False, True):
        muxer = TsMuxer(tracks, flush_each_packet=flush_each_packet)
        for p in packets:
            assert muxer.write(p.kind, p.dts + 10_000, p.pts + 10_000, p.keyframe, p.data)
        if not flush_each_packet:
            assert muxer.bytes_written % 32768 == 0  # FFmpeg hands over full 32 kB buffers
        outputs.append(bytes(muxer.close()))
    assert len(outputs[0]) > 100_000
    assert outputs[0] == outputs[1]


def test_refused_packets_are_logged_and_skipped(hls_clip: Media, caplog) -> None:
    packets = first_gop(hls_clip)
    audio = [p for p in packets if p.kind == "audio"]
    muxer = TsMuxer(TrackSet(hls_clip.video, hls_clip.audio))
    for p in packets[:20]:
        muxer.write(p.kind, p.dts + 10_000, p.pts + 10_000, p.keyframe, p.data)
    late = audio[-1]
    with caplog.at_level(logging.WARNING):
        assert muxer.write("audio", late.dts + 10_000, late.pts + 10_000, True, late.data)
        again = audio[0]  # far behind the previous one: FFmpeg refuses non-monotonic dts
        assert not muxer.write("audio", again.dts + 10_000, again.pts + 10_000, True, again.data)
    assert muxer.errors == 1
    assert "muxer refused a packet on the audio track" in caplog.text
    assert "non monotonically increasing dts" in caplog.text  # FFmpeg's own words, via logging
    assert probe_segment(muxer.close()).first_frame_decoded


def test_undeclared_track_is_refused(hls_clip: Media) -> None:
    muxer = TsMuxer(TrackSet(hls_clip.video, None))
    audio = next(p for p in hls_clip.packets if p.kind == "audio")
    assert not muxer.write("audio", 10_000, 10_000, True, audio.data)
    assert not muxer.write("data", 10_000, 10_000, True, b"x")


def test_track_set_skips_what_ts_cannot_carry(hls_clip: Media, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="hls.muxer"):
        tracks = TrackSet(hls_clip.video, TrackConfig("audio", "opus", b"OpusHead"), label="ch")
    assert tracks.kinds == ("video",)
    assert "[ch] skipping audio track: audio codec 'opus'" in caplog.text
    broken = TrackSet(TrackConfig("video", "h264", b"\x00\x01"), hls_clip.audio)
    assert broken.kinds == ("audio",)
    bad_asc = TrackSet(hls_clip.video, TrackConfig("audio", "aac", b""))
    assert bad_asc.kinds == ("video",)
    swapped = TrackSet(hls_clip.audio, hls_clip.video)
    assert swapped.kinds == ()


def test_a_segment_needs_a_track() -> None:
    with pytest.raises(MuxerError):
        TsMuxer(TrackSet(None, None))


def test_frames_ffmpeg_cannot_mux_are_refused_before_it_and_do_not_spoil_the_next(
        hls_clip: Media, caplog: pytest.LogCaptureFixture) -> None:
    """A 1-byte AAC frame, or AVCC prefixes that do not tile the frame, never reach FFmpeg.

    FFmpeg refused them with an ERROR line each, and its refusal advanced its last
    dts, so the good frame after them (one ms on) was refused too.
    """
    packets = first_gop(hls_clip)
    muxer = TsMuxer(TrackSet(hls_clip.video, hls_clip.audio))
    video, video_next = [p for p in packets if p.kind == "video"][:2]
    audio = next(p for p in packets if p.kind == "audio")
    assert muxer.write("video", 10_000, 10_000, True, video.data)
    with caplog.at_level(logging.WARNING):
        for dts, data in ((10_001, b""), (10_002, b"\x01")):
            assert not muxer.write("audio", dts, dts, True, data)
        assert muxer.write("audio", 10_003, 10_003, True, audio.data)
        for dts, data in ((10_040, b""), (10_041, b"\x00\x00\x00\x05\x41"),
                          (10_042, b"\x00\x00\x00\x01\x41\x00\x00")):
            assert not muxer.write("video", dts, dts, False, data)
        assert muxer.write("video", 10_043, 10_043, False, video_next.data)
    assert muxer.errors == 5
    assert not [r for r in caplog.records if r.name.startswith("libav")]
    probe = probe_segment(muxer.close())
    assert probe.codecs == {"video": "h264", "audio": "aac"} and probe.first_frame_decoded


def test_templates_let_go_are_built_again_alike(hls_clip: Media) -> None:
    kept = TrackSet(hls_clip.video, hls_clip.audio)
    released = TrackSet(hls_clip.video, hls_clip.audio)
    released.close()  # an unwatched channel lets its templates go (~0.14 MB)
    gop = first_gop(hls_clip)
    assert mux(released, gop).close() == mux(kept, gop).close()
    kept.close()
    released.close()
