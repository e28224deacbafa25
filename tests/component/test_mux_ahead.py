"""MuxAhead gives each segment a watched channel leaves due its own loop turn: what else
the loop has to do (an HTTP request's callback) runs between two muxes, not after all."""

from __future__ import annotations

import asyncio

from hls.segmenter import Segmenter
from mediaserver.mux_ahead import MuxAhead
from tests.component.test_hls_segmenter import Clock, feed
from tests.hls_media import av_clip


async def test_each_due_segment_is_muxed_on_a_turn_of_its_own() -> None:
    media = av_clip()
    ahead = MuxAhead()
    due: list[Segmenter] = []

    def left_due(segmenter: Segmenter) -> None:
        due.append(segmenter)
        ahead.request(segmenter)

    channels = []
    for _ in range(2):
        clock = Clock()
        segmenter = Segmenter(name_token="", clock=clock, window=10, part_duration=0.333,
                              on_ts_due=left_due)
        feed(segmenter, media, clock)
        channels.append((segmenter, clock))
    await asyncio.sleep(0)
    assert due == [] and ahead.made == 0  # nobody watched: nothing due
    before: dict[Segmenter, set[str]] = {}
    for segmenter, clock in channels:
        for entry in segmenter.playlist.segments[-2:]:  # a player: watched from here
            assert segmenter.segment(entry.uri) is not None
        before[segmenter] = {entry.uri for entry in segmenter.playlist.segments}
        feed(segmenter, media.shifted(8000), clock)
    assert [s.ts_packager.made_at_close for s, _ in channels] == [0, 0]  # not inside push()

    closed_since = {segmenter: [entry.uri for entry in segmenter.playlist.segments
                                if entry.uri not in before[segmenter]]
                    for segmenter, _ in channels}
    segments_due = sum(len(names) for names in closed_since.values())
    assert segments_due > len(due) == 2  # told once a channel: it is asked again while due

    events: list[int] = []
    asyncio.get_running_loop().call_soon(lambda: events.append(ahead.made))
    for _ in range(10 * segments_due):
        if ahead.made == segments_due:
            break
        await asyncio.sleep(0)
    assert ahead.made == segments_due
    assert events == [1]  # the other callback ran after the first mux, not after all
    assert sum(s.ts_packager.made_at_close for s, _ in channels) == segments_due
    for _ in range(3):
        await asyncio.sleep(0)
    assert ahead.made == segments_due  # nothing left: no further turns
    for segmenter, _ in channels:
        made = segmenter.ts_packager.made_on_request
        for name in closed_since[segmenter]:
            assert segmenter.segment(name) is not None
        assert segmenter.ts_packager.made_on_request == made  # each was ready
