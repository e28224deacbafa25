"""MediaPlaylist: numbering tags, window rules and text format (no media, no event loop)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hls.playlist import (
    PLAYLIST_VERSION,
    WINDOW_HARD_CAP_FACTOR,
    MediaPlaylist,
    PartialSegment,
    SegmentEntry,
    format_program_date_time,
    rounded_duration,
)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def entry(playlist: MediaPlaylist, duration: float = 2.0, **fields: object) -> SegmentEntry:
    sequence = playlist.next_sequence
    return SegmentEntry(sequence, f"seg{sequence}.ts", duration, T0 + 2 * sequence, **fields)  # type: ignore[arg-type]


def add(playlist: MediaPlaylist, duration: float = 2.0, **fields: object) -> None:
    playlist.append(entry(playlist, duration, **fields))


def tag(text: str, name: str) -> str:
    (value,) = [line.split(":", 1)[1] for line in text.splitlines() if line.startswith(f"#{name}:")]
    return value


def uris(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_render_lists_header_tags_then_segments() -> None:
    playlist = MediaPlaylist(window=6, target_duration=2.0)
    add(playlist, 2.0)
    add(playlist, 2.002)
    lines = playlist.render().splitlines()
    assert lines[:6] == [
        "#EXTM3U",
        f"#EXT-X-VERSION:{PLAYLIST_VERSION}",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-DISCONTINUITY-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    assert lines[6:] == [
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z",
        "#EXTINF:2.000,",
        "seg0.ts",
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z",
        "#EXTINF:2.002,",
        "seg1.ts",
    ]
    assert playlist.render().endswith("seg1.ts\n")
    assert PLAYLIST_VERSION >= 3  # decimal EXTINF


def test_empty_playlist_renders_valid_header() -> None:
    text = MediaPlaylist().render()
    assert text.startswith("#EXTM3U\n")
    assert uris(text) == []
    assert "#EXT-X-ENDLIST" not in text


def test_endlist_only_once_ended_and_window_stops() -> None:
    playlist = MediaPlaylist(window=2)
    add(playlist)
    assert "#EXT-X-ENDLIST" not in playlist.render()
    playlist.end()
    assert playlist.ended
    assert playlist.render().splitlines()[-1] == "#EXT-X-ENDLIST"
    with pytest.raises(ValueError, match="ended"):
        add(playlist)


def test_window_slides_and_media_sequence_follows() -> None:
    playlist = MediaPlaylist(window=3)
    removed = []
    for _ in range(5):
        removed += playlist.append(entry(playlist))
    text = playlist.render()
    assert tag(text, "EXT-X-MEDIA-SEQUENCE") == "2"
    assert uris(text) == ["seg2.ts", "seg3.ts", "seg4.ts"]
    assert [r.uri for r in removed] == ["seg0.ts", "seg1.ts"]
    assert playlist.next_sequence == 5


def test_first_sequence_is_configurable() -> None:
    playlist = MediaPlaylist(first_sequence=100)
    add(playlist)
    assert tag(playlist.render(), "EXT-X-MEDIA-SEQUENCE") == "100"
    assert uris(playlist.render()) == ["seg100.ts"]


def test_append_rejects_wrong_sequence_and_empty_duration() -> None:
    playlist = MediaPlaylist()
    with pytest.raises(ValueError, match="expected sequence 0"):
        playlist.append(SegmentEntry(3, "seg3.ts", 2.0))
    with pytest.raises(ValueError, match="positive"):
        playlist.append(SegmentEntry(0, "seg0.ts", 0.0))


def test_discontinuity_tag_precedes_its_segment() -> None:
    playlist = MediaPlaylist(window=6)
    add(playlist)
    add(playlist, discontinuity=True)
    lines = playlist.render().splitlines()
    at = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[at + 1].startswith("#EXT-X-PROGRAM-DATE-TIME:")
    assert lines[at + 2] == "#EXTINF:2.000,"
    assert lines[at + 3] == "seg1.ts"


def test_discontinuity_sequence_counts_tags_that_slid_out() -> None:
    playlist = MediaPlaylist(window=3)
    add(playlist)
    add(playlist, discontinuity=True)  # seg1
    add(playlist)
    add(playlist)
    assert tag(playlist.render(), "EXT-X-DISCONTINUITY-SEQUENCE") == "0"  # seg0 left, no tag
    add(playlist)  # seg1 and its tag leave
    text = playlist.render()
    assert tag(text, "EXT-X-DISCONTINUITY-SEQUENCE") == "1"
    assert "#EXT-X-DISCONTINUITY\n" not in text


def test_first_segment_fixes_target_duration_for_good() -> None:
    playlist = MediaPlaylist(window=2, target_duration=2.0)
    assert not playlist.target_fixed
    add(playlist, 2.002)  # 29.97 fps GOP: still rounds to 2
    assert playlist.target_fixed and playlist.target_duration == 2
    add(playlist, 2.499)  # rounds to 2: fits
    with pytest.raises(ValueError, match="exceeds TARGETDURATION 2"):
        add(playlist, 2.5)  # rounds to 3 (halves up): RFC 8216 6.2.1 forbids raising T
    for _ in range(10):
        add(playlist, 1.0)
    assert tag(playlist.render(), "EXT-X-TARGETDURATION") == "2"


def test_a_long_first_segment_sets_a_longer_target() -> None:
    playlist = MediaPlaylist(window=3, target_duration=2.0)
    add(playlist, 8.333)  # OBS "auto" keyframe interval: 250 frames at 30 fps
    assert playlist.target_duration == 8
    add(playlist, 8.333)
    add(playlist, 2.0)
    assert tag(playlist.render(), "EXT-X-TARGETDURATION") == "8"


def test_drop_oldest_keeps_the_numbering_right() -> None:
    playlist = MediaPlaylist(window=6)
    add(playlist)
    add(playlist, discontinuity=True)
    add(playlist)
    assert playlist.drop_oldest(keep=1) is not None
    dropped = playlist.drop_oldest(keep=1)
    assert dropped is not None and dropped.uri == "seg1.ts"
    assert playlist.drop_oldest(keep=1) is None  # the newest stays listed
    text = playlist.render()
    assert uris(text) == ["seg2.ts"]
    assert tag(text, "EXT-X-MEDIA-SEQUENCE") == "2"
    assert tag(text, "EXT-X-DISCONTINUITY-SEQUENCE") == "1"
    add(playlist)
    assert uris(playlist.render()) == ["seg2.ts", "seg3.ts"]


def test_configured_target_is_a_floor() -> None:
    playlist = MediaPlaylist(target_duration=1.5)
    assert playlist.target_duration == 2
    add(playlist, 0.4)
    assert playlist.target_duration == 2


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.2, 1), (1.0, 1), (1.499, 1), (1.5, 2), (2.002, 2), (2.4994, 2), (2.5, 3), (5.0, 5)],
)
def test_rounded_duration(seconds: float, expected: int) -> None:
    assert rounded_duration(seconds) == expected


def test_window_keeps_three_target_durations() -> None:
    # RFC 8216 6.2.2: an open playlist must keep >= 3 x TARGETDURATION of media.
    playlist = MediaPlaylist(window=2)
    add(playlist, 6.0)  # TARGETDURATION becomes 6: 18 s must stay listed
    for _ in range(6):
        add(playlist, 2.0)
    assert playlist.duration >= 3 * playlist.target_duration
    assert len(playlist.segments) > playlist.window


def test_window_hard_cap_wins_over_three_targets() -> None:
    playlist = MediaPlaylist(window=2)
    add(playlist, 10.0)
    for _ in range(40):
        add(playlist, 0.1)
    assert len(playlist.segments) == 2 * WINDOW_HARD_CAP_FACTOR


def test_forced_cut_segment_suspends_independent_segments() -> None:
    playlist = MediaPlaylist(window=3)
    add(playlist)
    add(playlist, independent=False)
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in playlist.render()
    for _ in range(3):
        add(playlist)
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in playlist.render()


def test_parts_stay_out_of_the_ts_playlist() -> None:
    playlist = MediaPlaylist(part_target=0.5)
    part = PartialSegment(0.5, "part0.m4s", independent=True)
    add(playlist, parts=(part,), ll_uri="seg0.m4s", map_uri="init.mp4")
    assert playlist.segments[0].parts == (part,)
    assert "PART" not in playlist.render() and "m4s" not in playlist.render()


def test_segment_without_wall_clock_has_no_program_date_time() -> None:
    playlist = MediaPlaylist()
    playlist.append(SegmentEntry(0, "seg0.ts", 2.0))
    assert "PROGRAM-DATE-TIME" not in playlist.render()


def test_program_date_time_format() -> None:
    assert format_program_date_time(T0) == "2023-11-14T22:13:20.000Z"
    assert format_program_date_time(T0 + 0.2506) == "2023-11-14T22:13:20.250Z"
    assert format_program_date_time(0) == "1970-01-01T00:00:00.000Z"
    pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(pattern, format_program_date_time(T0 + 123.456789))


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"target_duration": 0}, {"first_sequence": -1}])
def test_constructor_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MediaPlaylist(**kwargs)  # type: ignore[arg-type]


# ---- properties over random histories ----------------------------------------------------

durations = st.floats(min_value=0.02, max_value=12.0, allow_nan=False).map(lambda d: round(d, 3))
histories = st.lists(st.tuples(durations, st.booleans(), st.booleans()), max_size=60)


@settings(max_examples=200, deadline=None)
@given(
    history=histories,
    window=st.integers(min_value=1, max_value=8),
    target=st.sampled_from([1.0, 2.0, 4.0, 6.0]),
)
def test_invariants_over_random_histories(
    history: list[tuple[float, bool, bool]], window: int, target: float
) -> None:
    playlist = MediaPlaylist(window=window, target_duration=target)
    appended: list[SegmentEntry] = []
    removed: list[SegmentEntry] = []
    fixed_target: int | None = None
    for duration, discontinuity, independent in history:
        if fixed_target is not None and rounded_duration(duration) > fixed_target:
            with pytest.raises(ValueError, match="exceeds TARGETDURATION"):
                playlist.append(entry(playlist, duration))
            duration = fixed_target + 0.499  # what the segmenter's cut rules guarantee
        new = entry(playlist, duration, discontinuity=discontinuity, independent=independent)
        appended.append(new)
        removed += playlist.append(new)
        text = playlist.render()

        listed = uris(text)
        media_sequence = int(tag(text, "EXT-X-MEDIA-SEQUENCE"))
        target_duration = int(tag(text, "EXT-X-TARGETDURATION"))
        # The window is the newest segments, numbered from MEDIA-SEQUENCE, in order.
        assert listed == [s.uri for s in appended[len(removed) :]]
        assert media_sequence == len(removed)
        assert listed == [f"seg{media_sequence + i}.ts" for i in range(len(listed))]
        # Size: at least `window` (once available), at most the hard cap; more than
        # `window` only to keep three target durations listed.
        assert min(window, len(appended)) <= len(listed) <= window * WINDOW_HARD_CAP_FACTOR
        if len(listed) > window and len(listed) < window * WINDOW_HARD_CAP_FACTOR:
            head = playlist.segments[0]
            assert playlist.duration - head.duration < 3 * target_duration
        # Discontinuity numbering counts exactly the tags that left.
        assert int(tag(text, "EXT-X-DISCONTINUITY-SEQUENCE")) == sum(
            s.discontinuity for s in removed
        )
        assert text.count("#EXT-X-DISCONTINUITY\n") == sum(
            s.discontinuity for s in appended[len(removed) :]
        )
        # TARGETDURATION is fixed by the first segment and bounds every rounded EXTINF.
        extinf = [float(v.rstrip(",")) for v in re.findall(r"#EXTINF:([0-9.]+,)", text)]
        assert all(rounded_duration(d) <= target_duration for d in extinf)
        assert target_duration >= max(rounded_duration(s.duration) for s in appended)
        if fixed_target is None:
            fixed_target = max(math.ceil(target), rounded_duration(duration))
        assert target_duration == fixed_target
        # Tags every segment needs, and the independence promise only when true.
        assert text.count("#EXT-X-PROGRAM-DATE-TIME:") == len(listed)
        assert ("#EXT-X-INDEPENDENT-SEGMENTS" in text) == all(
            s.independent for s in playlist.segments
        )
        assert "#EXT-X-ENDLIST" not in text
    playlist.end()
    assert playlist.render().endswith("#EXT-X-ENDLIST\n")
