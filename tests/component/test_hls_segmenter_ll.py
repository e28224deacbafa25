"""The segmenter's LL-HLS rendition with real H.264/HEVC + AAC: parts, parents, inits,
the same cuts as the TS rendition, memory, and what ffprobe and PyAV read back."""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import av
import pytest

from hls.playlist import PartialSegment
from hls.segmenter import Segmenter
from tests.component.test_hls_segmenter import Clock, feed, with_big_frames
from tests.hls_media import Media, av_clip, ffmpeg_has_encoder, hevc_clip, long_gop_clip

PART_TARGET = 0.333
# RFC 8216bis 4.4.4.9: every part but a segment's last (or an independent one) lasts at
# least 85 % of the part target.
MIN_PART_SHARE = 0.85


def ll_segmenter(**options: object) -> Segmenter:
    options.setdefault("part_duration", PART_TARGET)
    return Segmenter(name_token="", **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def hls_av() -> Media:
    return av_clip()


@pytest.fixture(scope="module")
def ll_done(hls_av: Media) -> Segmenter:
    segmenter = ll_segmenter(clock=Clock())
    feed(segmenter, hls_av)
    segmenter.end()
    return segmenter


def data(segmenter: Segmenter, name: str) -> bytes:
    found = segmenter.segment(name)
    assert found is not None, name
    return bytes(found)


def decoded_video_frames(blob: bytes) -> int:
    with av.open(io.BytesIO(blob)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_both_renditions_list_the_same_segments(ll_done: Segmenter) -> None:
    playlist = ll_done.playlist
    entries = playlist.segments
    assert len(entries) == 4
    for entry in entries:
        assert entry.ll_uri == f"seg{entry.sequence}.m4s"
        assert entry.uri == f"seg{entry.sequence}.ts"
    ts = ll_done.render_playlist()
    ll = ll_done.render_ll_playlist()
    for name in ("EXT-X-TARGETDURATION", "EXT-X-MEDIA-SEQUENCE", "EXT-X-DISCONTINUITY-SEQUENCE"):
        assert tag_line(ts, name) == tag_line(ll, name)
    # EXTINF and PROGRAM-DATE-TIME line up one for one.
    assert [line for line in ts.splitlines() if line.startswith(("#EXTINF", "#EXT-X-PROG"))] == [
        line for line in ll.splitlines() if line.startswith(("#EXTINF", "#EXT-X-PROG"))]


def tag_line(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"#{name}:"))


def test_parts_respect_the_part_target_and_tile_their_segment(ll_done: Segmenter) -> None:
    for entry in ll_done.playlist.segments:
        parts = entry.parts
        assert parts[0].independent  # every segment starts at a keyframe
        assert not any(part.independent for part in parts[1:])  # one GOP per segment
        assert all(part.duration <= PART_TARGET for part in parts)
        assert all(part.duration >= MIN_PART_SHARE * PART_TARGET for part in parts[:-1])
        assert sum(part.duration for part in parts) == pytest.approx(entry.duration, abs=0.002)
        # The parent segment is its parts, back to back.
        assert data(ll_done, entry.ll_uri or "") == b"".join(
            data(ll_done, part.uri) for part in parts)
    assert ll_done.parts_clamped == 0


def test_init_and_parts_decode_every_frame(ll_done: Segmenter, hls_av: Media) -> None:
    entries = ll_done.playlist.segments
    init = data(ll_done, entries[0].map_uri or "")
    parts = b"".join(data(ll_done, part.uri) for entry in entries for part in entry.parts)
    assert decoded_video_frames(init + parts) == sum(p.kind == "video" for p in hls_av.packets)
    # One segment on its own, as a player joining there reads it.
    assert decoded_video_frames(init + data(ll_done, entries[2].ll_uri or "")) == 60


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
def test_ffprobe_decodes_init_plus_parts(ll_done: Segmenter, tmp_path: Path,
                                         hls_av: Media) -> None:
    entries = ll_done.playlist.segments
    path = tmp_path / "ll.mp4"
    path.write_bytes(data(ll_done, entries[0].map_uri or "") + b"".join(
        data(ll_done, part.uri) for entry in entries for part in entry.parts))
    probe = subprocess.run(
        ["ffprobe", "-v", "warning", "-count_frames", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=60)
    assert probe.stderr == ""
    assert probe.stdout.split() == [
        f"h264,1280,720,{sum(p.kind == 'video' for p in hls_av.packets)}",
        f"aac,{sum(p.kind == 'audio' for p in hls_av.packets)}"]


def test_open_segment_parts_are_listed_and_served_as_they_land(hls_av: Media) -> None:
    segmenter = ll_segmenter()
    changes: list[int] = []
    segmenter.add_listener(lambda: changes.append(len(segmenter.playlist.segments)))
    segmenter.configure(hls_av.video, hls_av.audio)
    hints = []
    for packet in hls_av.packets[:200]:  # 2.6 s: into the second segment
        segmenter.push(packet)
        hints.append(segmenter.preload_hint)
    open_segment = segmenter.playlist.open_segment
    assert open_segment is not None and open_segment.sequence == 1
    assert open_segment.parts and open_segment.parts[0].independent
    text = segmenter.render_ll_playlist()
    for part in open_segment.parts:
        assert f'URI="{part.uri}"' in text
        assert segmenter.segment(part.uri) is not None
    assert text.rstrip().endswith(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{segmenter.preload_hint}"')
    assert segmenter.segment(segmenter.preload_hint or "") is None  # not made yet
    assert hints[0] == "part0.m4s"
    # One change per part (a segment's last part lands with the segment): listeners are
    # how blocked requests wake.
    parts = len(segmenter.playlist.segments[0].parts) + len(open_segment.parts)
    assert len(changes) == parts
    assert changes.count(1) == len(open_segment.parts) + 1
    segmenter.end()
    assert segmenter.preload_hint is None
    assert len(changes) == parts + 2  # the last segment with its last part, then the end


def test_republish_with_other_tracks_brings_a_new_init_and_a_discontinuity(
        hls_av: Media) -> None:
    segmenter = ll_segmenter(window=20)
    feed(segmenter, hls_av.only("video"))
    segmenter.publisher_gone()
    feed(segmenter, hls_av)  # audio joins: other tracks
    segmenter.publisher_gone()
    feed(segmenter, hls_av)  # the same tracks again
    segmenter.end()
    entries = segmenter.playlist.segments
    maps = [entry.map_uri for entry in entries]
    assert len(set(maps)) == 2
    changed = next(i for i, entry in enumerate(entries) if entry.map_uri != maps[0])
    assert entries[changed].discontinuity
    text = segmenter.render_ll_playlist()
    assert text.count("#EXT-X-DISCONTINUITY\n") == 2
    assert text.count("#EXT-X-MAP:") == 2
    before = text.index("#EXT-X-DISCONTINUITY")
    assert text.index(f'#EXT-X-MAP:URI="{maps[changed]}"') > before
    for uri in set(maps):
        init = data(segmenter, uri or "")
        with av.open(io.BytesIO(init)) as container:
            assert len(container.streams) == (1 if uri == maps[0] else 2)


def test_memory_cap_covers_everything_held(hls_av: Media) -> None:
    cap = 8 * 1024 * 1024
    media = with_big_frames(hls_av, 512 * 1024)
    plain = Segmenter(window=6, max_bytes=cap, name_token="")
    feed(plain, media)
    segmenter = ll_segmenter(window=6, max_bytes=cap)
    segmenter.configure(media.video, media.audio)
    for packet in media.packets:
        segmenter.push(packet)
        assert segmenter.bytes_held <= cap
    # The media is held once, in the parts: LL-HLS takes no more of the cap than plain HLS.
    assert segmenter.segments_dropped_early == plain.segments_dropped_early > 0
    listed = segmenter.playlist.segments
    assert listed and all(data(segmenter, e.ll_uri or "") for e in listed)
    fmp4_bytes = sum(len(data(segmenter, e.ll_uri or "")) for e in listed)
    assert segmenter.bytes_in_window == fmp4_bytes
    # TS segments made for requests are held within the cap too.
    ts_bytes = sum(len(data(segmenter, e.uri)) for e in listed)
    assert segmenter.bytes_held <= cap
    assert fmp4_bytes <= segmenter.bytes_in_window <= fmp4_bytes + ts_bytes


def test_parts_stay_as_long_as_their_segment(hls_av: Media) -> None:
    clock = Clock()
    segmenter = ll_segmenter(window=2, clock=clock)
    feed(segmenter, hls_av, clock)
    segmenter.publisher_gone()
    feed(segmenter, hls_av, clock)
    segmenter.end()
    gone = segmenter.playlist.media_sequence  # segments before this left the window
    assert gone > 0
    # Segment 0 left the window; its fMP4 form, parts and init are still served...
    assert segmenter.segment("seg0.m4s") is not None
    assert segmenter.segment("part0.m4s") is not None
    init = segmenter.playlist.segments[0].map_uri or ""
    assert segmenter.segment(init) is not None
    clock.now += 3600  # ...until their deadline
    assert segmenter.segment("seg0.ts") is None
    assert segmenter.segment("seg0.m4s") is None and segmenter.segment("part0.m4s") is None
    assert segmenter.segment(init) is not None  # listed segments still need it


def test_audio_only_parts_cut_on_audio_frames(hls_av: Media) -> None:
    segmenter = ll_segmenter()
    feed(segmenter, hls_av.only("audio"))
    segmenter.end()
    for entry in segmenter.playlist.segments:
        assert all(part.independent for part in entry.parts)
        assert all(MIN_PART_SHARE * PART_TARGET <= part.duration <= PART_TARGET
                   for part in entry.parts[:-1])


def test_a_gap_in_the_feed_is_listed_as_a_full_part(hls_av: Media) -> None:
    packets = tuple(replace(p, dts=p.dts + 700, pts=p.pts + 700) if p.dts >= 1000 else p
                    for p in hls_av.packets)
    segmenter = ll_segmenter()
    feed(segmenter, Media(hls_av.video, hls_av.audio, packets))
    segmenter.end()
    assert segmenter.parts_clamped == 1
    durations = [part.duration for entry in segmenter.playlist.segments for part in entry.parts]
    assert max(durations) == PART_TARGET


def test_long_gop_forced_cuts_still_give_parts_within_the_target() -> None:
    segmenter = ll_segmenter()
    feed(segmenter, long_gop_clip())
    segmenter.end()
    for entry in segmenter.playlist.segments:
        assert entry.parts[0].independent == entry.independent
        assert all(part.duration <= PART_TARGET for part in entry.parts)


@pytest.mark.skipif(not ffmpeg_has_encoder("libx265"), reason="ffmpeg has no libx265")
def test_hevc_parts() -> None:
    media = hevc_clip()
    segmenter = ll_segmenter()
    feed(segmenter, media)
    segmenter.end()
    entries = segmenter.playlist.segments
    blob = data(segmenter, entries[0].map_uri or "") + b"".join(
        data(segmenter, e.ll_uri or "") for e in entries)
    assert decoded_video_frames(blob) == sum(p.kind == "video" for p in media.packets)


def test_ll_off_makes_no_fmp4(hls_av: Media) -> None:
    segmenter = Segmenter(name_token="")
    feed(segmenter, hls_av)
    assert not segmenter.low_latency and segmenter.preload_hint is None
    assert all(not e.parts and e.ll_uri is None for e in segmenter.playlist.segments)
    with pytest.raises(ValueError):
        segmenter.render_ll_playlist()


@pytest.mark.parametrize("part", [0.01, 2.0, 3.0])
def test_part_duration_must_fit_in_a_segment(part: float) -> None:
    with pytest.raises(ValueError, match="part_duration"):
        Segmenter(target_duration=2.0, part_duration=part)


def test_part_numbers_are_not_reused_across_periods(hls_av: Media) -> None:
    segmenter = ll_segmenter(window=20)
    feed(segmenter, hls_av)
    segmenter.publisher_gone()
    feed(segmenter, hls_av)
    segmenter.end()
    uris = [p.uri for e in segmenter.playlist.segments for p in e.parts]
    assert len(uris) == len(set(uris))
    assert isinstance(segmenter.playlist.segments[0].parts[0], PartialSegment)


def test_millisecond_jitter_never_makes_a_part_too_long(hls_av: Media) -> None:
    # 24 fps: frames 41.67 ms apart, stamped 42, 42, 41 (in some phase), and 8 frames
    # are 0.3333 s, a hair over the target: the part must be cut a frame earlier, not
    # come out 0.334 s (listed clamped). Same for 30 fps's 33, 34, 33.
    for pattern in ((42, 42, 41), (41, 42, 42), (42, 41, 42), (33, 34, 33), (33, 33, 34)):
        video = [p for p in hls_av.packets if p.kind == "video"]
        stamps = [0]
        for index in range(1, len(video)):
            stamps.append(stamps[-1] + pattern[index % 3])
        moved = {id(p): stamp for p, stamp in zip(video, stamps, strict=True)}
        packets = tuple(replace(p, dts=moved[id(p)], pts=moved[id(p)] + p.pts - p.dts)
                        if id(p) in moved else p for p in hls_av.packets)
        ordered = tuple(sorted(packets, key=lambda p: p.dts))
        segmenter = ll_segmenter()
        feed(segmenter, Media(hls_av.video, hls_av.audio, ordered))
        segmenter.end()
        assert segmenter.parts_clamped == 0, pattern
        for entry in segmenter.playlist.segments:
            assert all(MIN_PART_SHARE * PART_TARGET <= part.duration <= PART_TARGET
                       for part in entry.parts[:-1]), (pattern, entry.parts)
