"""The LL-HLS side of MediaPlaylist (parts, hints, skip, discontinuities) and the
delivery directives (hls.directives): pure, no media, no event loop."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hls.directives import (
    DirectiveError,
    Directives,
    advance_part_limit,
    parse_directives,
    satisfied,
    too_far,
)
from hls.playlist import (
    LL_DELTA_PLAYLIST_VERSION,
    LL_PLAYLIST_VERSION,
    MediaPlaylist,
    OpenSegment,
    PartialSegment,
    SegmentEntry,
)

T0 = 1_700_000_000.0
PART = 0.333


class Stream:
    """Builds an LL playlist the way the segmenter does: parts, then the segment."""

    def __init__(self, window: int = 6, target: float = 2.0) -> None:
        self.playlist = MediaPlaylist(window, target, part_target=PART)
        self.next_part = 0
        self.map_uri = "init-a.mp4"

    def parts(self, count: int, *, first_independent: bool = True,
              duration: float = 0.3) -> tuple[PartialSegment, ...]:
        made = []
        for index in range(count):
            made.append(PartialSegment(duration, f"part{self.next_part}.m4s",
                                       first_independent and index == 0))
            self.next_part += 1
        return tuple(made)

    def segment(self, parts: int = 7, *, discontinuity: bool = False,
                last: float = 0.2) -> SegmentEntry:
        """Parts of 0.3 s and a last one of `last`: 2.0 s with the defaults."""
        sequence = self.playlist.next_sequence
        made = self.parts(parts - 1) + self.parts(1, first_independent=False, duration=last)
        entry = SegmentEntry(sequence, f"seg{sequence}.ts", round(0.3 * (parts - 1) + last, 3),
                             T0 + 2 * sequence, discontinuity, parts=made,
                             ll_uri=f"seg{sequence}.m4s", map_uri=self.map_uri)
        self.playlist.append(entry)
        self.playlist.set_open(None, f"part{self.next_part}.m4s")
        return entry

    def open(self, parts: int, *, discontinuity: bool = False) -> OpenSegment:
        sequence = self.playlist.next_sequence
        shown = OpenSegment(sequence, self.map_uri, T0 + 2 * sequence, discontinuity,
                            self.parts(parts))
        self.playlist.set_open(shown, f"part{self.next_part}.m4s")
        return shown


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def tag(text: str, name: str) -> str:
    (value,) = [line.split(":", 1)[1] for line in lines(text) if line.startswith(f"#{name}:")]
    return value


def attributes(value: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in value.split(",")]
    return {name: raw.strip('"') for name, raw in pairs}


def part_uris(text: str) -> list[str]:
    return [attributes(line.split(":", 1)[1])["URI"] for line in lines(text)
            if line.startswith("#EXT-X-PART:")]


# ---- rendering ------------------------------------------------------------------------


def test_ll_playlist_header_promises_what_rfc8216bis_requires() -> None:
    stream = Stream()
    stream.segment()
    text = stream.playlist.render_ll()
    assert lines(text)[:3] == ["#EXTM3U", f"#EXT-X-VERSION:{LL_PLAYLIST_VERSION}",
                               "#EXT-X-TARGETDURATION:2"]
    assert LL_PLAYLIST_VERSION == 6  # EXT-X-MAP outside I-frames-only playlists
    control = attributes(tag(text, "EXT-X-SERVER-CONTROL"))
    assert control["CAN-BLOCK-RELOAD"] == "YES"
    assert float(control["CAN-SKIP-UNTIL"]) >= 6 * 2
    assert float(control["PART-HOLD-BACK"]) >= 3 * PART
    assert float(tag(text, "EXT-X-PART-INF").split("=")[1]) == PART
    assert tag(text, "EXT-X-MAP") == 'URI="init-a.mp4"'
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text and "#EXT-X-PROGRAM-DATE-TIME" in text


def test_parts_come_before_their_segment_and_only_the_first_is_independent() -> None:
    stream = Stream()
    entry = stream.segment(parts=4)
    body = lines(stream.playlist.render_ll())
    at = body.index(f"#EXTINF:{entry.duration:.3f},")
    assert body[at + 1] == "seg0.m4s"
    assert body[at - 4:at] == [
        '#EXT-X-PART:DURATION=0.300,INDEPENDENT=YES,URI="part0.m4s"',
        '#EXT-X-PART:DURATION=0.300,URI="part1.m4s"',
        '#EXT-X-PART:DURATION=0.300,URI="part2.m4s"',
        '#EXT-X-PART:DURATION=0.200,URI="part3.m4s"',
    ]
    # Segment tags (PDT, MAP) apply to the first part too, so they come before it.
    assert body.index("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z") < at - 4


def test_open_segment_parts_then_the_preload_hint_end_the_playlist() -> None:
    stream = Stream()
    stream.segment()
    stream.open(2)
    body = lines(stream.playlist.render_ll())
    assert body[-4:] == [
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z",
        '#EXT-X-PART:DURATION=0.300,INDEPENDENT=YES,URI="part7.m4s"',
        '#EXT-X-PART:DURATION=0.300,URI="part8.m4s"',
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part9.m4s"',
    ]
    assert stream.playlist.preload_hint == "part9.m4s"


def test_an_open_segment_without_parts_shows_only_the_hint() -> None:
    stream = Stream()
    stream.segment()
    stream.open(0, discontinuity=True)
    body = lines(stream.playlist.render_ll())
    assert body[-2:] == ["seg0.m4s", '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part7.m4s"']
    assert "#EXT-X-DISCONTINUITY" not in body


def test_ended_playlist_has_no_hint_and_no_open_parts() -> None:
    stream = Stream()
    stream.segment()
    stream.open(2)
    stream.playlist.end()
    text = stream.playlist.render_ll()
    assert "PRELOAD-HINT" not in text and "part7" not in text
    assert lines(text)[-1] == "#EXT-X-ENDLIST"
    assert stream.playlist.preload_hint is None


def test_part_tags_go_once_three_target_durations_from_the_end() -> None:
    stream = Stream(window=10)
    for _ in range(6):
        stream.segment()  # 2.0 s each
    stream.open(1)
    text = stream.playlist.render_ll()
    listed = part_uris(text)
    # 7 parts a segment; with the open part, segments 5, 4 and 3 end 0.3, 2.3 and 4.3 s
    # from the end (within 3 x 2 s), segment 2 ends 6.3 s from it.
    assert listed[0] == "part21.m4s" and "part20.m4s" not in listed
    assert listed[-1] == "part42.m4s"
    assert [line for line in lines(text) if line.endswith(".m4s") and "#" not in line] == [
        f"seg{n}.m4s" for n in range(6)]


def test_republish_brings_discontinuity_and_a_new_map() -> None:
    stream = Stream()
    stream.segment()
    stream.map_uri = "init-b.mp4"
    stream.segment(discontinuity=True)
    stream.open(1, discontinuity=False)
    body = lines(stream.playlist.render_ll())
    at = body.index("#EXT-X-DISCONTINUITY")
    assert body[at + 1:at + 3] == ['#EXT-X-MAP:URI="init-b.mp4"',
                                   "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z"]
    assert [line for line in body if line.startswith("#EXT-X-MAP")] == [
        '#EXT-X-MAP:URI="init-a.mp4"', '#EXT-X-MAP:URI="init-b.mp4"']


def test_same_init_after_a_discontinuity_is_not_repeated() -> None:
    stream = Stream()
    stream.segment()
    stream.segment(discontinuity=True)
    assert stream.playlist.render_ll().count("#EXT-X-MAP") == 1


def test_delta_update_skips_what_is_past_the_skip_boundary() -> None:
    stream = Stream(window=12)
    for number in range(12):
        stream.map_uri = "init-b.mp4" if number >= 3 else "init-a.mp4"
        stream.segment(discontinuity=number == 3)
    stream.open(1)
    full = stream.playlist.render_ll()
    delta = stream.playlist.render_ll(delta=True)
    # 24 s listed, CAN-SKIP-UNTIL 12 s: segments ending more than 12 s before the end
    # of the last segment (0 to 4) go.
    assert tag(delta, "EXT-X-SKIP") == "SKIPPED-SEGMENTS=5"
    assert tag(delta, "EXT-X-VERSION") == str(LL_DELTA_PLAYLIST_VERSION) == "9"
    assert tag(full, "EXT-X-VERSION") == "6" and "EXT-X-SKIP" not in full
    for name in ("EXT-X-MEDIA-SEQUENCE", "EXT-X-DISCONTINUITY-SEQUENCE", "EXT-X-SERVER-CONTROL"):
        assert tag(delta, name) == tag(full, name)
    assert "#EXT-X-DISCONTINUITY\n" not in delta  # it was on skipped segment 3
    segments = [line for line in lines(delta) if line.startswith("seg")]
    assert segments == [f"seg{n}.m4s" for n in range(5, 12)]
    # The first segment after the skip still says which init it needs.
    first = lines(delta).index("seg5.m4s")
    assert '#EXT-X-MAP:URI="init-b.mp4"' in lines(delta)[:first]
    assert delta.endswith(full[full.index("seg5.m4s"):])


def test_delta_update_with_nothing_to_skip_is_the_full_playlist() -> None:
    stream = Stream()
    for _ in range(6):
        stream.segment()
    assert stream.playlist.render_ll(delta=True) == stream.playlist.render_ll()


def test_delta_is_ignored_once_ended() -> None:
    stream = Stream(window=12)
    for _ in range(12):
        stream.segment()
    stream.playlist.end()
    assert "EXT-X-SKIP" not in stream.playlist.render_ll(delta=True)


def test_ll_text_is_kept_until_the_playlist_changes() -> None:
    stream = Stream()
    stream.segment()
    first = stream.playlist.render_ll()
    assert stream.playlist.render_ll() is first
    stream.open(1)
    second = stream.playlist.render_ll()
    assert second is not first and "part7" in second
    ts = stream.playlist.render()
    stream.open(2)
    assert stream.playlist.render() is ts  # parts do not touch index.m3u8


def test_ll_playlist_refuses_segments_without_their_fmp4_form_or_with_long_parts() -> None:
    playlist = MediaPlaylist(part_target=PART)
    with pytest.raises(ValueError, match="fMP4"):
        playlist.append(SegmentEntry(0, "seg0.ts", 2.0))
    long_part = (PartialSegment(0.4, "part0.m4s", True),)
    with pytest.raises(ValueError, match="PART-TARGET"):
        playlist.append(SegmentEntry(0, "seg0.ts", 2.0, parts=long_part, ll_uri="s.m4s",
                                     map_uri="i.mp4"))
    with pytest.raises(ValueError, match="no LL-HLS form"):
        MediaPlaylist().render_ll()
    with pytest.raises(ValueError, match="part_target"):
        MediaPlaylist(target_duration=2.0, part_target=2.0)
    with pytest.raises(ValueError, match="must be 0"):
        playlist.set_open(OpenSegment(3, "i.mp4", None, False, ()), None)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.booleans()), min_size=1, max_size=30),
       st.integers(0, 5), st.booleans())
def test_any_ll_playlist_keeps_its_structure(segments: list[tuple[int, bool]], open_parts: int,
                                            ended: bool) -> None:
    stream = Stream(window=4)
    for parts, discontinuity in segments:
        stream.segment(parts=parts, discontinuity=discontinuity)
    stream.open(open_parts)
    if ended:
        stream.playlist.end()
    for delta in (False, True):
        body = lines(stream.playlist.render_ll(delta))
        assert body.count("#EXT-X-MAP:URI=\"init-a.mp4\"") == 1
        hints = [line for line in body if line.startswith("#EXT-X-PRELOAD-HINT")]
        assert len(hints) == (0 if ended else 1)
        assert (body[-1] == "#EXT-X-ENDLIST") == ended
        # Part numbers only grow, and each part's duration is within PART-TARGET.
        numbers = [int(uri[4:-4]) for uri in part_uris("\n".join(body))]
        assert numbers == sorted(numbers)
        for line in body:
            if line.startswith("#EXT-X-PART:"):
                assert float(attributes(line.split(":", 1)[1])["DURATION"]) <= PART
        # Nothing but tags of the next segment between a segment's last part and its URI.
        for at, line in enumerate(body):
            if line.startswith("#EXTINF:"):
                assert not body[at + 1].startswith("#")


# ---- delivery directives ----------------------------------------------------------------


def test_directives_parse() -> None:
    assert parse_directives({}) == Directives()
    assert parse_directives({"_HLS_msn": "12", "_HLS_part": "3", "x": "y"}) == Directives(12, 3)
    assert parse_directives({"_HLS_skip": "YES"}).skip
    assert parse_directives({"_HLS_skip": "v2", "_HLS_msn": "0"}) == Directives(0, None, True)
    assert not Directives().blocking and Directives(1).blocking


@pytest.mark.parametrize(("query", "message"), [
    ({"_HLS_part": "1"}, "needs _HLS_msn"),
    ({"_HLS_msn": "-1"}, "decimal integer"),
    ({"_HLS_msn": "1.5"}, "decimal integer"),
    ({"_HLS_msn": ""}, "decimal integer"),
    ({"_HLS_msn": "\u0661"}, "decimal integer"),  # an Arabic-Indic digit: isdigit(), not ASCII
    ({"_HLS_msn": "9" * 21}, "decimal integer"),
    ({"_HLS_msn": str(2**64)}, "out of range"),
    ({"_HLS_msn": "1", "_HLS_part": "x"}, "decimal integer"),
    ({"_HLS_skip": "NO"}, "YES or v2"),
])
def test_bad_directives_are_refused_with_a_reason(query: dict[str, str], message: str) -> None:
    with pytest.raises(DirectiveError, match=message):
        parse_directives(query)


def test_a_repeated_directive_is_refused() -> None:
    with pytest.raises(DirectiveError, match="more than once"):
        parse_directives({"_HLS_msn": "1"}, frozenset({"_HLS_msn"}))
    assert parse_directives({"cb": "1"}, frozenset({"cb"})) == Directives()


def test_advance_part_limit() -> None:
    assert advance_part_limit(0.333) == 9
    assert advance_part_limit(0.5) == 6
    assert advance_part_limit(1.0) == 3
    assert advance_part_limit(2.0) == 3


def test_too_far_past_the_live_edge() -> None:
    stream = Stream()
    stream.segment()
    stream.segment()  # last complete: 1
    stream.open(2)  # segment 2 has parts 0 and 1
    playlist = stream.playlist
    assert too_far(playlist, Directives(3)) is None  # last + 2
    assert "more than 2 past" in (too_far(playlist, Directives(4)) or "")
    assert too_far(playlist, Directives(2, 2)) is None  # the next part
    assert too_far(playlist, Directives(2, 10)) is None  # 9 parts past the last (limit 9)
    assert "parts past" in (too_far(playlist, Directives(2, 11)) or "")
    assert too_far(playlist, Directives(3, 8)) is None
    assert "parts past" in (too_far(playlist, Directives(3, 9)) or "")
    assert too_far(playlist, Directives(0, 99)) is None  # an old segment: answered at once
    playlist.end()
    assert too_far(playlist, Directives(99, 99)) is None  # directives ignored once ended


def test_satisfied_waits_for_the_part_or_segment_asked_for() -> None:
    stream = Stream()
    stream.segment(parts=4)  # segment 0: parts 0-3
    playlist = stream.playlist
    assert satisfied(playlist, Directives(0))
    assert not satisfied(playlist, Directives(1))  # msn alone: the whole segment
    assert satisfied(playlist, Directives(0, 3))
    assert not satisfied(playlist, Directives(0, 4))  # past the last part: 1.0, not there
    stream.open(1)
    assert satisfied(playlist, Directives(0, 4))  # ...now part 0 of segment 1 exists
    assert satisfied(playlist, Directives(0, 40))
    assert satisfied(playlist, Directives(1, 0))
    assert not satisfied(playlist, Directives(1, 1))
    assert not satisfied(playlist, Directives(1))
    stream.open(2)
    assert satisfied(playlist, Directives(1, 1))
    assert satisfied(playlist, Directives(None, None, True))
    playlist.end()
    assert satisfied(playlist, Directives(5, 5))


def test_satisfied_for_a_segment_gone_from_the_window() -> None:
    stream = Stream(window=2)
    for _ in range(5):
        stream.segment()
    assert stream.playlist.media_sequence == 2
    assert satisfied(stream.playlist, Directives(0, 3))
