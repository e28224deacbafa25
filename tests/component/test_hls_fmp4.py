"""The fMP4 writer (hls.fmp4) against real clips, read back by PyAV and ffprobe."""

from __future__ import annotations

import io
import itertools
import shutil
import struct
import subprocess
from pathlib import Path

import av
import pytest

from hls.fmp4 import NON_SYNC_SAMPLE_FLAGS, SYNC_SAMPLE_FLAGS, Fmp4Error, FragmentWriter, boxes
from hls.media import MediaPacket, TrackConfig
from tests.hls_media import Media, av_clip, ffmpeg_has_encoder, hevc_clip

ORIGIN_MS = 10_000
FRAGMENT_MS = 300


def fragmented(media: Media, fragment_ms: int = FRAGMENT_MS) -> tuple[bytes, list[bytes]]:
    """(init, fragments): a fragment cut before each lead frame past `fragment_ms`."""
    writer = FragmentWriter(media.video, media.audio)
    lead = "video" if media.video is not None else "audio"
    shift = ORIGIN_MS - media.packets[0].dts
    fragments: list[bytes] = []
    start: int | None = None
    for packet in media.packets:
        dts = packet.dts + shift
        if packet.kind == lead and start is not None and dts - start >= fragment_ms:
            fragment = writer.fragment({lead: dts})
            assert fragment is not None
            fragments.append(fragment)
            start = dts
        if start is None:
            start = dts
        writer.add(packet.kind, dts, packet.pts + shift, packet.keyframe, packet.data)
    last = writer.fragment()
    assert last is not None
    fragments.append(last)
    assert writer.fragment() is None  # nothing left
    return writer.init, fragments


def children(data: bytes, offset: int, size: int, header: int = 8) -> dict[bytes, bytes]:
    inner = data[offset + header:offset + size]
    return {kind: inner[at:at + length] for kind, at, length in boxes(inner)}


def test_init_section_is_ftyp_then_moov_with_empty_tracks_and_mvex() -> None:
    media = av_clip()
    init, _ = fragmented(media)
    top = boxes(init)
    assert [kind for kind, _, _ in top] == [b"ftyp", b"moov"]
    assert init[8:12] == b"iso6"  # RFC 8216bis 3.1.2: a brand compatible with iso6
    moov = children(init, top[1][1], top[1][2])
    assert set(moov) == {b"mvhd", b"trak", b"mvex"}
    mvhd = moov[b"mvhd"]
    assert struct.unpack_from(">I", mvhd, 8 + 4 + 12)[0] == 0  # duration 0
    with av.open(io.BytesIO(init)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert (video.codec_context.width, video.codec_context.height) == (1280, 720)
        assert audio.codec_context.name == "aac"
        assert audio.codec_context.sample_rate == 48000 and audio.codec_context.channels == 2
        assert video.frames == 0 and audio.frames == 0  # no samples in the init section


def test_every_frame_decodes_from_init_and_fragments_with_its_timestamps() -> None:
    media = av_clip()
    init, fragments = fragmented(media)
    assert len(fragments) > 20
    for fragment in fragments:
        assert [kind for kind, _, _ in boxes(fragment)] == [b"moof", b"mdat"]
    data = init + b"".join(fragments)
    sent = [p for p in media.packets if p.kind == "video"]
    shift = ORIGIN_MS - media.packets[0].dts
    with av.open(io.BytesIO(data)) as container:
        got = [p for p in container.demux(video=0) if p.size]
        assert [(p.dts, p.pts, p.is_keyframe) for p in got] == [
            ((s.dts + shift) * 90, (s.pts + shift) * 90, s.keyframe) for s in sent]
        assert [bytes(p) for p in got] == [bytes(s.data) for s in sent]
    with av.open(io.BytesIO(data)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(io.BytesIO(data)) as container:
        samples = sum(1 for _ in container.decode(audio=0))
    assert frames == len(sent)
    assert samples == sum(1 for p in media.packets if p.kind == "audio")


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
def test_ffprobe_reads_init_and_fragments_without_complaint(tmp_path: Path) -> None:
    media = av_clip()
    init, fragments = fragmented(media)
    path = tmp_path / "parts.mp4"
    path.write_bytes(init + b"".join(fragments))
    probe = subprocess.run(
        ["ffprobe", "-v", "warning", "-count_frames", "-show_entries",
         "stream=codec_name,nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=60)
    assert probe.stderr == ""
    counts = {kind: int(n) for kind, n in (line.split(",") for line in probe.stdout.split())}
    assert counts == {"h264": sum(p.kind == "video" for p in media.packets),
                      "aac": sum(p.kind == "audio" for p in media.packets)}


def test_aac_frames_get_their_nominal_duration_despite_millisecond_stamps() -> None:
    media = av_clip().only("audio")
    stamps = [p.dts for p in media.packets]
    assert len({b - a for a, b in itertools.pairwise(stamps)}) > 1  # 21 and 22 ms
    init, fragments = fragmented(media)
    with av.open(io.BytesIO(init + b"".join(fragments))) as container:
        durations = {p.duration for p in container.demux(audio=0) if p.size}
    assert durations == {1024}


def test_a_real_gap_in_audio_is_kept() -> None:
    media = av_clip().only("audio")
    packets = list(media.packets)
    gap_at = len(packets) // 2
    moved = [MediaPacket(p.kind, p.dts + 500, p.pts + 500, p.keyframe, p.data)
             for p in packets[gap_at:]]
    init, fragments = fragmented(Media(None, media.audio, tuple(packets[:gap_at] + moved)))
    with av.open(io.BytesIO(init + b"".join(fragments))) as container:
        dts = [p.dts for p in container.demux(audio=0) if p.size]
    steps = [b - a for a, b in itertools.pairwise(dts)]
    assert max(steps) >= 1024 + 48000 * 0.49  # the 500 ms survive
    assert steps.count(1024) >= len(steps) - 2


def test_sample_flags_mark_keyframes_only() -> None:
    media = av_clip().only("video")
    writer = FragmentWriter(media.video, None)
    for packet in media.packets[:3]:
        writer.add("video", packet.dts, packet.pts, packet.keyframe, packet.data)
    fragment = writer.fragment()
    assert fragment is not None
    moof = children(fragment, 0, boxes(fragment)[0][2])
    traf = children(moof[b"traf"], 0, len(moof[b"traf"]))
    count, = struct.unpack_from(">I", traf[b"trun"], 12)
    entries = struct.unpack_from(f">{4 * count}I", traf[b"trun"], 20)
    assert [entries[4 * i + 2] for i in range(count)] == [
        SYNC_SAMPLE_FLAGS if p.keyframe else NON_SYNC_SAMPLE_FLAGS for p in media.packets[:3]]


@pytest.mark.skipif(not ffmpeg_has_encoder("libx265"), reason="ffmpeg has no libx265")
def test_hevc_goes_in_hvc1_and_decodes() -> None:
    media = hevc_clip()
    init, fragments = fragmented(media)
    assert b"hvc1" in init and b"hvcC" in init
    with av.open(io.BytesIO(init + b"".join(fragments))) as container:
        assert container.streams.video[0].codec_context.name == "hevc"
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == sum(p.kind == "video" for p in media.packets)


def test_video_only_and_audio_only_writers() -> None:
    media = av_clip()
    for kind in ("video", "audio"):
        only = media.only(kind)
        init, fragments = fragmented(only)
        with av.open(io.BytesIO(init + b"".join(fragments))) as container:
            assert [s.type for s in container.streams] == [kind]
            decoded = sum(1 for _ in container.decode(container.streams[0]))
        assert decoded == len(only.packets)


def test_codecs_without_a_sample_entry_are_refused() -> None:
    with pytest.raises(Fmp4Error):
        FragmentWriter(TrackConfig("video", "vp9", b"\x01" * 8), None)
    with pytest.raises(Fmp4Error):
        FragmentWriter(None, None)
