"""Expired segments written out of memory (hls.spill) are served byte for byte as if
they had stayed, weigh nothing in memory while they wait, and leave no file behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from hls import spill as spill_module
from hls.media import MediaPacket
from hls.segmenter import Segmenter
from hls.spill import SpillDirectory
from tests.component.test_hls_segmenter import T0, Clock
from tests.hls_media import Media, av_clip, playlist_entries

PART_TARGET = 0.333


@pytest.fixture(scope="module")
def hls_av() -> Media:
    return av_clip()


def names_listed(segmenter: Segmenter) -> list[str]:
    """Every resource the playlists name: TS segments, fMP4 segments and their parts."""
    names = [uri for _, uri, _ in playlist_entries(segmenter.render_playlist())]
    for entry in segmenter.playlist.segments:
        if entry.ll_uri:
            names.append(entry.ll_uri)
            names.extend(part.uri for part in entry.parts)
    return names


def three_publishes(media: Media) -> list[tuple[int, MediaPacket | None]]:
    """(ms since the start, packet) of the clip published three times, 1 s apart, with
    (.., None) where the publisher leaves and comes back: ~21 s, ten segments."""
    out: list[tuple[int, MediaPacket | None]] = []
    first = media.packets[0].dts
    span = media.packets[-1].dts - first + 1000
    for period in range(3):
        if period:
            out.append((period * span - 500, None))
        out.extend((period * span + p.dts - first, p) for p in media.packets)
    return out


def push(segmenter: Segmenter, clock: Clock, media: Media,
         item: tuple[int, MediaPacket | None]) -> None:
    at, packet = item
    clock.now = T0 + at / 1000
    if packet is None:
        segmenter.publisher_gone()
        segmenter.configure(media.video, media.audio)
    else:
        segmenter.push(packet)


def publish_three_times(segmenter: Segmenter, clock: Clock, media: Media) -> None:
    segmenter.configure(media.video, media.audio)
    for item in three_publishes(media):
        push(segmenter, clock, media, item)


@pytest.mark.parametrize("part_duration", [PART_TARGET, None], ids=["ll-hls", "ts-only"])
def test_expired_segments_come_back_from_their_files_byte_for_byte(
        hls_av: Media, tmp_path: Path, part_duration: float | None) -> None:
    spill = SpillDirectory(tmp_path / "expired")
    clocks = Clock(), Clock()
    in_memory = Segmenter(window=2, clock=clocks[0], name_token="", part_duration=part_duration)
    in_files = Segmenter(window=2, clock=clocks[1], name_token="", part_duration=part_duration,
                         spill=spill)
    seen: list[str] = []  # every name ever listed, in order
    for segmenter in (in_memory, in_files):
        segmenter.configure(hls_av.video, hls_av.audio)
    for packet in three_publishes(hls_av):
        for segmenter, clock in zip((in_memory, in_files), clocks, strict=True):
            push(segmenter, clock, hls_av, packet)
        seen.extend(name for name in names_listed(in_memory) if name not in seen)
    assert in_files.playlist.media_sequence == in_memory.playlist.media_sequence > 2
    expired = [name for name in seen if name not in names_listed(in_files)]
    assert any(name.endswith(".ts") for name in expired)
    if part_duration is not None:
        assert any(name.startswith("part") for name in expired)

    # While they wait, the expired segments are files, not memory.
    assert in_memory.bytes_kept_expired > 0
    assert in_files.bytes_kept_expired == 0
    assert in_files.bytes_held == in_memory.bytes_held - in_memory.bytes_kept_expired

    served = 0
    for name in reversed(expired):  # newest first: late requests in any order
        kept = in_memory.segment(name)
        if kept is None:
            assert in_files.segment(name) is None, name  # past its deadline in both
            continue
        served += name.endswith(".ts")
        assert bytes(in_files.segment(name) or b"") == bytes(kept), name
    # One range of the file per expired segment still kept; the others' are free since
    # their deadlines, and were taken by the segments that expired after them.
    assert spill.in_use == served > 0 and spill.written > served
    size = os.path.getsize(spill.file)
    assert spill.bytes_in_use <= size <= spill.bytes_in_use + spill.bytes_free
    assert spill.bytes_free < spill.bytes_in_use  # reused: not a range per segment written
    assert spill.failed == 0

    # Past their deadlines their ranges are all free.
    for clock in clocks:
        clock.now += 3600
    assert all(in_files.segment(name) is None for name in expired)
    assert spill.in_use == spill.bytes_in_use == 0 < spill.bytes_free
    spill.close()
    assert not spill.path.exists()


def test_a_failed_write_keeps_the_segment_in_memory(hls_av: Media, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spill = SpillDirectory(tmp_path / "expired")

    def disk_full(fd: int, buffers: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(spill_module.os, "pwritev", disk_full)  # writes fail from here on
    clock = Clock()
    segmenter = Segmenter(window=2, clock=clock, name_token="", part_duration=PART_TARGET,
                          spill=spill)
    publish_three_times(segmenter, clock, hls_av)
    assert segmenter.playlist.media_sequence > 0
    assert spill.failed == segmenter.playlist.media_sequence and spill.written == 0
    assert segmenter.bytes_kept_expired > 0  # held as without a spill directory
    kept = [i for i in range(segmenter.playlist.media_sequence)
            if segmenter.segment(f"seg{i}.m4s") is not None]
    assert kept and all(segmenter.segment(f"seg{i}.ts") is not None for i in kept)
    assert sum("could not keep an expired segment" in r.message for r in caplog.records) == 1


def test_memory_pressure_drops_only_segments_that_hold_memory(hls_av: Media,
                                                              tmp_path: Path) -> None:
    """Written-out segments free nothing when dropped, so the cap never drops them."""
    spill = SpillDirectory(tmp_path / "expired")
    clock = Clock()
    segmenter = Segmenter(window=2, clock=clock, name_token="", part_duration=PART_TARGET,
                          spill=spill)
    publish_three_times(segmenter, clock, hls_av)
    expired = segmenter.playlist.media_sequence
    in_use = spill.in_use, spill.bytes_in_use
    assert in_use[0]
    segmenter.max_bytes = segmenter.bytes_held - 1  # just over: one listed segment must go
    segmenter._enforce_memory_cap()
    assert segmenter.bytes_held <= segmenter.max_bytes
    assert segmenter.playlist.media_sequence == expired + 1  # a listed one went early...
    assert (spill.in_use, spill.bytes_in_use) == in_use  # ...and no written-out one


def test_a_file_that_cannot_be_read_back_is_a_missing_segment(
        hls_av: Media, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Someone cut the file short: late requests get nothing (a 404), counted and
    logged, and the channel goes on."""
    spill = SpillDirectory(tmp_path / "expired")
    clock = Clock()
    segmenter = Segmenter(window=2, clock=clock, name_token="", part_duration=PART_TARGET,
                          spill=spill)
    publish_three_times(segmenter, clock, hls_av)
    kept = [i for i in range(segmenter.playlist.media_sequence)
            if segmenter.segment(f"seg{i}.m4s") is not None]  # read back from their files
    assert kept
    os.truncate(spill.file, 0)
    first = kept[0]
    assert segmenter.segment(f"seg{first}.ts") is None
    assert segmenter.ts_packager.failed == 1
    assert segmenter.segment(f"seg{first}.m4s") is None
    assert "cannot mux segment" in caplog.text and "could not be read back" in caplog.text
    listed = segmenter.playlist.segments[-1]
    assert segmenter.segment(listed.uri) is not None  # the listed ones are untouched
