"""PlaylistResume and the MediaPlaylist seeding it drives (no media, no event loop)."""

from __future__ import annotations

import pytest

from hls.playlist import MediaPlaylist, SegmentEntry
from hls.resume import PlaylistResume


def add(playlist: MediaPlaylist, duration: float = 2.0, discontinuity: bool = False) -> None:
    sequence = playlist.next_sequence
    playlist.append(SegmentEntry(sequence, f"s{sequence}.ts", duration,
                                 discontinuity=discontinuity))


@pytest.mark.parametrize("fields", [
    {"next_sequence": -1, "discontinuity_sequence": 0, "target_duration": 2},
    {"next_sequence": 0, "discontinuity_sequence": -1, "target_duration": 2},
    {"next_sequence": 0, "discontinuity_sequence": 0, "target_duration": 0},
    {"next_sequence": 0, "discontinuity_sequence": 0, "target_duration": 2,
     "timeline_end_ms": -5},
])
def test_resume_refuses_impossible_numbers(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PlaylistResume(**fields)


def test_seeded_playlist_continues_numbering_and_keeps_its_target() -> None:
    playlist = MediaPlaylist(3, 2.0, 17, discontinuity_sequence=4, fixed_target=5)
    assert playlist.target_fixed and playlist.target_duration == 5
    add(playlist, 2.0, discontinuity=True)
    text = playlist.render()
    assert "#EXT-X-MEDIA-SEQUENCE:17\n" in text
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:4\n" in text
    assert "#EXT-X-TARGETDURATION:5\n" in text
    assert playlist.last_discontinuity_sequence == 5
    with pytest.raises(ValueError):
        add(playlist, 6.0)  # the kept target binds like one fixed by a first segment


def test_kept_target_gives_way_to_a_larger_configured_one() -> None:
    # A 4 s target cannot live under a TARGETDURATION of 2: the configured one wins.
    assert MediaPlaylist(3, 4.0, fixed_target=2).target_duration == 4


def test_last_discontinuity_sequence_counts_tags_in_and_out_of_the_window() -> None:
    playlist = MediaPlaylist(2, 2.0)
    assert playlist.last_discontinuity_sequence == 0
    for discontinuity in (False, True, False, True, False, False, False):
        add(playlist, 2.0, discontinuity)
    assert playlist.discontinuity_sequence == 2  # both tags slid out
    assert playlist.last_discontinuity_sequence == 2
    add(playlist, 2.0, discontinuity=True)
    assert playlist.last_discontinuity_sequence == 3
