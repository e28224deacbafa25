"""The load generator's fast reading of LL playlists (benchmarks.llm3u8.live_edge) says
what the full parser says, for playlists our playlist model renders."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.llm3u8 import live_edge, parse_ll_playlist, part_duration
from tests.unit.test_hls_ll_playlist import Stream


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=1, max_size=20), st.integers(0, 5), st.booleans())
def test_live_edge_agrees_with_the_full_parse(segments: list[int], open_parts: int,
                                              ended: bool) -> None:
    stream = Stream(window=8)
    for parts in segments:
        stream.segment(parts=parts)
    stream.open(open_parts)
    if ended:
        stream.playlist.end()
    for delta in (False, True):
        text = stream.playlist.render_ll(delta)
        full = parse_ll_playlist(text)
        fast = live_edge(text.encode())
        assert fast.next_wanted() == full.next_wanted()
        assert fast.hint == full.hint and fast.ended == full.ended
        assert list(fast.open_parts) == [part.uri for part in full.open_parts]
        for part in full.all_parts():
            assert part_duration(text.encode(), part.uri) == part.duration
