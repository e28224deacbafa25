"""A playlist carried on by another segmenter (a publisher that moved to another node).

Real H.264 + AAC packets through two Segmenters: the second, seeded with the first's
resume point, must read to a player like the same playlist after a reconnect.
"""

from __future__ import annotations

import pytest

from hls.resume import PlaylistResume
from hls.segmenter import TIMELINE_ORIGIN_MS, Segmenter
from tests.hls_media import Media, av_clip, probe_segment
from tests.m3u8 import parse_playlist


@pytest.fixture(scope="module")
def hls_av() -> Media:
    return av_clip()


def publish(segmenter: Segmenter, media: Media) -> None:
    segmenter.configure(media.video, media.audio)
    for packet in media.packets:
        segmenter.push(packet)
    segmenter.publisher_gone()


def numbering(segmenter: Segmenter) -> list[tuple[int, bool, int]]:
    """(media sequence, DISCONTINUITY tag, discontinuity sequence number) per segment."""
    playlist = parse_playlist(segmenter.render_playlist())
    return [(segment.sequence, segment.discontinuity, number)
            for segment, number in zip(playlist.segments, playlist.discontinuity_numbers(),
                                       strict=True)]


def test_resume_point_says_where_the_playlist_stands(hls_av: Media) -> None:
    origin = Segmenter(window=10, name_token="")
    assert origin.resume_point() is None  # nothing published yet: nothing to carry on
    publish(origin, hls_av)  # 4 segments: 2, 2, 2, 1 s
    point = origin.resume_point()
    assert point is not None
    assert (point.next_sequence, point.discontinuity_sequence, point.target_duration) == (4, 0, 2)
    assert point.timeline_end_ms is not None
    # The timeline ends after the last frame of either track, within a frame or two.
    assert 0 <= point.timeline_end_ms - (TIMELINE_ORIGIN_MS + 7000) <= 100


def test_carried_on_playlist_numbers_like_a_reconnect_on_one_node(hls_av: Media) -> None:
    one_node = Segmenter(window=20, name_token="")
    publish(one_node, hls_av)
    publish(one_node, hls_av)
    publish(one_node, hls_av)

    first = Segmenter(window=20, name_token="")
    publish(first, hls_av)
    publish(first, hls_av)
    point = first.resume_point()
    assert point is not None
    second = Segmenter(window=20, resume=point)
    publish(second, hls_av)

    expected = numbering(one_node)[8:]
    assert numbering(second) == expected
    assert expected[0] == (8, True, 2)  # continues after seg7; discontinuity number +1
    text = second.render_playlist()
    playlist = parse_playlist(text)
    assert playlist.media_sequence == 8 and playlist.discontinuity_sequence == 1
    assert playlist.target_duration == 2
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1


def test_carried_on_timestamps_continue_the_old_timeline(hls_av: Media) -> None:
    first = Segmenter(window=10, name_token="")
    publish(first, hls_av)
    point = first.resume_point()
    assert point is not None and point.timeline_end_ms is not None
    second = Segmenter(window=10, resume=point)
    publish(second, hls_av)
    uri = parse_playlist(second.render_playlist()).segments[0].uri
    data = second.segment(uri)
    assert data is not None
    probe = probe_segment(bytes(data))
    assert probe.first_video_dts == pytest.approx(point.timeline_end_ms / 1000, abs=0.002)


def test_carried_on_target_duration_stays_what_players_saw(hls_av: Media) -> None:
    seed = PlaylistResume(next_sequence=40, discontinuity_sequence=3, target_duration=6)
    second = Segmenter(target_duration=2.0, window=10, resume=seed)
    assert second.resume_point() == seed  # seeded, nothing made yet: still the seed
    publish(second, hls_av)
    playlist = parse_playlist(second.render_playlist())
    assert playlist.target_duration == 6
    assert [s.sequence for s in playlist.segments] == [40, 41, 42, 43]
    assert playlist.discontinuity_numbers() == [4, 4, 4, 4]
    # Still cut at the 2 s keyframes: the kept target is a ceiling, not a cut length.
    assert [round(s.duration) for s in playlist.segments] == [2, 2, 2, 1]


def test_a_segment_name_is_never_reused_by_the_carrying_segmenter(hls_av: Media) -> None:
    first = Segmenter(window=10)
    publish(first, hls_av)
    point = first.resume_point()
    assert point is not None
    second = Segmenter(window=10, resume=point)
    assert second.segment_name(3) != first.segment_name(3)
