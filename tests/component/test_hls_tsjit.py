"""MPEG-TS just in time: a segment is muxed when first wanted, from its frames held once;
its continuity counters run on whatever order requests come in; what is kept stays
within the memory cap and comes back byte for byte."""

from __future__ import annotations

import gc
import itertools
import random
from collections.abc import Iterator

import pytest

from hls.continuity import TS_PACKET_SIZE
from hls.fmp4 import FragmentWriter
from hls.frames import FrameLog
from hls.media import MediaPacket
from hls.muxer import TrackSet
from hls.segmenter import PURGE_INTERVAL_MS, Segmenter
from hls.tsjit import HOT_TARGETS
from tests.component.test_hls_segmenter import Clock, feed
from tests.hls_media import Media, av_clip

PART_TARGET = 0.333


@pytest.fixture(scope="module")
def hls_av() -> Media:
    return av_clip()


def segmenter_of(ll: bool, **options: object) -> Segmenter:
    if ll:
        options.setdefault("part_duration", PART_TARGET)
    return Segmenter(name_token="", **options)  # type: ignore[arg-type]


def published(media: Media, ll: bool, publishes: int = 2, **options: object) -> Segmenter:
    """`publishes` publishes of the clip within one playlist (a discontinuity between),
    every segment listed."""
    options.setdefault("window", 10)
    segmenter = segmenter_of(ll, **options)
    for _ in range(publishes):
        feed(segmenter, media, options.get("clock"))  # type: ignore[arg-type]
        segmenter.publisher_gone()
    segmenter.end()
    return segmenter


def publishes(segmenter: Segmenter, media: Media, clock: Clock, times: int = 3
              ) -> Iterator[bool]:
    """`times` publishes of `media` (~7 s each) in one playlist, the clock moving with the
    media: yields False after each packet pushed, True after each publisher leaves."""
    for _ in range(times):
        segmenter.configure(media.video, media.audio)
        start, first = clock.now, media.packets[0].dts
        for packet in media.packets:
            clock.now = start + (packet.dts - first) / 1000
            segmenter.push(packet)
            yield False
        clock.now += 0.1
        segmenter.publisher_gone()
        yield True


def ts_names(segmenter: Segmenter) -> list[str]:
    return [entry.uri for entry in segmenter.playlist.segments]


def counter_breaks(data: bytes) -> list[tuple[int, int, int]]:
    """(packet, PID, counter) where a PID's continuity counter does not continue."""
    last: dict[int, int] = {}
    breaks = []
    for index in range(len(data) // TS_PACKET_SIZE):
        at = index * TS_PACKET_SIZE
        pid = ((data[at + 1] & 0x1F) << 8) | data[at + 2]
        counter, payload = data[at + 3] & 0x0F, data[at + 3] & 0x10
        expected = last.get(pid)
        if payload:
            if expected is not None and counter != (expected + 1) % 16:
                breaks.append((index, pid, counter))
            last[pid] = counter
        elif expected is not None and counter != expected:
            breaks.append((index, pid, counter))
    return breaks


def without_counters(data: bytes) -> bytes:
    """The bytes with every continuity counter zeroed."""
    out = bytearray(data)
    for at in range(3, len(out), TS_PACKET_SIZE):
        out[at] &= 0xF0
    return bytes(out)


# ---- what it costs ---------------------------------------------------------------------


@pytest.mark.parametrize("ll", [False, True])
def test_a_channel_nobody_asks_ts_of_is_never_muxed(hls_av: Media, ll: bool) -> None:
    segmenter = published(hls_av, ll)
    packager = segmenter.ts_packager
    assert segmenter.segments_produced == 8
    assert packager.made_on_request == packager.made_at_close == packager.bytes_made == 0
    # What it holds is the media once (with LL-HLS: in its parts, boxes included).
    media = 2 * sum(len(packet.data) for packet in hls_av.packets)
    assert media <= segmenter.bytes_held < media * 1.01


@pytest.mark.parametrize("ll", [False, True])
def test_each_segment_is_muxed_once_however_often_it_is_asked_for(hls_av: Media,
                                                                  ll: bool) -> None:
    segmenter = published(hls_av, ll)
    first = [segmenter.segment(name) for name in ts_names(segmenter)]
    again = [segmenter.segment(name) for name in ts_names(segmenter)]
    assert all(data is not None for data in first) and again == first
    assert segmenter.ts_packager.made_on_request == len(first)


# ---- continuity, whatever the order ------------------------------------------------------


def orders(count: int) -> list[list[int]]:
    forward = list(range(count))
    shuffled = forward[:]
    random.Random(12).shuffle(shuffled)
    return [forward, forward[::-1], [3, 1, 6, 0, 7, 2, 5, 4], [5, 4, 6, 3, 7, 2, 1, 0],
            shuffled]


@pytest.mark.parametrize("ll", [False, True])
@pytest.mark.parametrize("order", orders(8), ids=lambda o: "-".join(map(str, o)))
def test_segments_read_as_one_stream_whatever_order_they_are_first_asked_for(
        hls_av: Media, ll: bool, order: list[int]) -> None:
    reference = published(hls_av, ll)
    in_order = [bytes(reference.segment(name) or b"") for name in ts_names(reference)]
    segmenter = published(hls_av, ll)
    names = ts_names(segmenter)
    assert len(names) == len(order)
    for index in order:
        assert segmenter.segment(names[index]) is not None
    got = [bytes(segmenter.segment(name) or b"") for name in names]
    assert counter_breaks(b"".join(got)) == []
    # Only the counters may differ from segments muxed in order.
    assert [without_counters(data) for data in got] == [without_counters(d) for d in in_order]
    # And the first request muxed one segment, not every one before it.
    assert segmenter.ts_packager.made_on_request == len(order)


def test_in_order_segments_are_continuous_from_the_first(hls_av: Media) -> None:
    segmenter = published(hls_av, ll=False)
    joined = b"".join(bytes(segmenter.segment(name) or b"") for name in ts_names(segmenter))
    assert counter_breaks(joined) == []
    assert len(counter_breaks(b"".join(without_counters(bytes(segmenter.segment(n) or b""))
                                       for n in ts_names(segmenter)))) > 0  # the test can fail


def test_a_request_past_the_muxed_run_muxes_the_segments_between(hls_av: Media) -> None:
    segmenter = published(hls_av, ll=True)
    names = ts_names(segmenter)
    assert segmenter.segment(names[1]) is not None
    assert segmenter.ts_packager.made_on_request == 1
    assert segmenter.segment(names[5]) is not None  # 2, 3, 4 and 5: continuity from 1
    assert segmenter.ts_packager.made_on_request == 5
    assert segmenter.segment(names[0]) is not None  # just before the run: one more
    assert segmenter.ts_packager.made_on_request == 6
    joined = b"".join(bytes(segmenter.segment(name) or b"") for name in names)
    assert counter_breaks(joined) == []


# ---- muxed ahead while watched -------------------------------------------------------------


def test_a_watched_channel_gets_each_segment_muxed_as_it_closes(hls_av: Media) -> None:
    clock = Clock()
    segmenter = segmenter_of(ll=True, clock=clock, window=10)
    segmenter.configure(hls_av.video, hls_av.audio)
    start, first = clock.now, hls_av.packets[0].dts
    asked: list[str] = []
    for packet in hls_av.packets:
        clock.now = start + (packet.dts - first) / 1000
        segmenter.push(packet)
        names = ts_names(segmenter)
        if len(asked) < 2 and names and names[-1] not in asked:
            # A player arrives: it takes the newest segment, then the next one.
            assert segmenter.segment(names[-1]) is not None
            asked.append(names[-1])
    packager = segmenter.ts_packager
    assert packager.made_on_request == 2
    assert packager.made_at_close == segmenter.segments_produced - 2 > 0
    # Each is there when the viewer comes for it: nothing more is muxed on request.
    for name in ts_names(segmenter):
        assert segmenter.segment(name) is not None
    assert packager.made_on_request == 2


def test_with_on_ts_due_a_watched_channel_leaves_each_close_due_for_a_later_turn(
        hls_av: Media) -> None:
    """Nothing is muxed inside push(); the owner's next loop turn muxes what the close
    left due, so a steady player finds each segment made. One that asks before the
    turn has it muxed for its request, and the turn then has nothing to do."""
    clock = Clock()
    told: list[Segmenter] = []
    segmenter = segmenter_of(ll=True, clock=clock, window=20, on_ts_due=told.append)
    packager = segmenter.ts_packager
    asked: list[str] = []
    turns = 0
    early = None  # the due segment the player asks for before its turn
    for period_ended in publishes(segmenter, hls_av, clock):
        # Only the owner's turns mux ahead: never push() or publisher_gone().
        assert packager.made_at_close == turns - (1 if early else 0)
        names = ts_names(segmenter)
        if len(told) > turns:
            if len(told) == 4 and early is None:
                early = names[-1]
                assert segmenter.segment(early) is not None  # before its turn
                asked.append(early)
                assert packager.made_on_request == 3
            turns += 1
            assert not segmenter.make_due_ts()  # the owner's next loop turn
            assert packager.made_at_close == turns - (1 if early else 0)
        if not period_ended and names and names[-1] not in asked:  # a steady player
            assert segmenter.segment(names[-1]) is not None
            asked.append(names[-1])
    assert told == [segmenter] * turns
    assert turns == segmenter.segments_produced - 2 > 4  # all but the two before watched
    assert packager.made_on_request == 3  # those two and the one asked for early
    joined = b"".join(bytes(segmenter.segment(name) or b"") for name in ts_names(segmenter))
    assert counter_breaks(joined) == []


def test_one_off_fetches_do_not_make_a_channel_watched(hls_av: Media) -> None:
    """A probe that takes one segment now and then, or many requests for one segment,
    get what they ask for muxed (and, for continuity, the segments between) and nothing
    as segments close."""
    clock = Clock()
    segmenter = segmenter_of(ll=True, clock=clock, window=20)
    probed: list[str] = []
    probed_at = -1e9
    probe_every = HOT_TARGETS * 2.0 + 0.5  # seconds: each probe after the last one's window
    for _ in publishes(segmenter, hls_av, clock):
        names = ts_names(segmenter)
        if names and clock.now - probed_at >= probe_every and names[-1] not in probed:
            for _ in range(3):  # three viewers of one segment, or one retrying
                assert segmenter.segment(names[-1]) is not None
            probed.append(names[-1])
            probed_at = clock.now
    packager = segmenter.ts_packager
    assert len(probed) >= 2
    assert packager.made_at_close == 0  # nothing muxed ahead of a request
    # What was muxed is what the probes asked for and the segments between (continuity).
    assert packager.made_on_request == ts_names(segmenter).index(probed[-1]) + 1


def test_a_channel_left_alone_stops_being_muxed_ahead(hls_av: Media) -> None:
    clock = Clock()
    segmenter = segmenter_of(ll=False, clock=clock, window=20)
    asked_at = None
    for _ in publishes(segmenter, hls_av, clock):
        names = ts_names(segmenter)
        if asked_at is None and len(names) == 2:  # a viewer takes two, then goes
            segmenter.segment(names[0])
            segmenter.segment(names[1])
            asked_at = clock.now
    assert asked_at is not None
    packager = segmenter.ts_packager
    hot_for = HOT_TARGETS * segmenter.target_duration_seen
    closed_while_hot = sum(1 for entry in segmenter.playlist.segments[1:]
                           if entry.program_date_time + entry.duration <= asked_at + hot_for + 0.1)
    assert 0 < packager.made_at_close <= closed_while_hot
    assert packager.made_at_close < segmenter.segments_produced - 2


# ---- kept, let go, made again ----------------------------------------------------------------


def test_a_segment_that_left_the_playlist_is_made_again_alike(hls_av: Media) -> None:
    clock = Clock()
    segmenter = segmenter_of(ll=False, clock=clock, window=2)
    first_bytes = {}
    for _ in publishes(segmenter, hls_av, clock, times=2):
        for name in ts_names(segmenter):
            if name not in first_bytes:
                first_bytes[name] = bytes(segmenter.segment(name) or b"")
    expired = [name for name in first_bytes if name not in ts_names(segmenter)]
    assert expired
    held_before = segmenter.bytes_kept_expired
    again = {name: segmenter.segment(name) for name in expired}
    assert all(again[name] == first_bytes[name] for name in expired)
    assert segmenter.ts_packager.made_again == len(expired)
    assert segmenter.bytes_kept_expired > held_before  # kept while they stay fetchable


def test_ts_bytes_are_kept_within_the_memory_cap(hls_av: Media) -> None:
    free = published(hls_av, ll=True, window=10)
    media = free.bytes_held
    ts = sum(len(free.segment(name) or b"") for name in ts_names(free))
    cap = media + ts // 2  # room for the media and half of the TS
    segmenter = published(hls_av, ll=True, window=10, max_bytes=cap)
    assert segmenter.segments_dropped_early == 0
    served = [bytes(segmenter.segment(name) or b"") for name in ts_names(segmenter)]
    assert all(served)
    assert media < segmenter.bytes_held <= cap
    assert [bytes(segmenter.segment(name) or b"") for name in ts_names(segmenter)] == served
    assert segmenter.segments_dropped_early == 0  # TS bytes never push media out


# ---- what is held, and what it frees ----------------------------------------------------------


@pytest.mark.parametrize("parts", [False, True])
def test_held_frames_give_back_every_frame_as_it_came(hls_av: Media, parts: bool) -> None:
    log = FrameLog(keep_payloads=not parts)
    writer = FragmentWriter(hls_av.video, hls_av.audio) if parts else None
    chunks = []
    packets: list[MediaPacket] = hls_av.packets[:120]
    for index, packet in enumerate(packets):
        if writer is not None and index and index % 17 == 0:
            chunks.append(writer.fragment())
            log.cut()
        if writer is not None:
            writer.add(packet.kind, packet.dts, packet.pts, packet.keyframe, packet.data)
        log.add(packet.kind == "audio", packet.keyframe, packet.dts, packet.pts, index % 40,
                packet.data)
    if writer is not None:
        chunks.append(writer.fragment())
    held = log.close(tuple(chunks) if writer is not None else None)
    assert held is not None and len(held) == len(packets)
    for index, ((audio, keyframe, dts, pts, duration, data), packet) in enumerate(
            zip(held, packets, strict=True)):
        assert (audio, keyframe, dts, pts) == (packet.kind == "audio", packet.keyframe,
                                               packet.dts, packet.pts)
        assert duration == index % 40 and bytes(data) == bytes(packet.data)


def test_held_frames_refuse_buffers_that_do_not_match() -> None:
    log = FrameLog(keep_payloads=False)
    log.add(False, True, 0, 0, 33, b"x" * 100)
    log.cut()
    log.add(False, False, 33, 33, 33, b"y" * 10)
    with pytest.raises(ValueError):
        log.close((b"x" * 100,))  # one buffer for two cuts' worth
    held = log.close((b"x" * 100, b"y" * 5))
    assert held is not None
    with pytest.raises(ValueError):
        list(held)  # the second buffer is smaller than its frame


def test_a_dropped_channel_leaves_no_muxer_for_the_collector(hls_av: Media) -> None:
    gc.collect()
    gc.disable()
    try:
        segmenter = published(hls_av, ll=True)
        assert all(segmenter.segment(name) for name in ts_names(segmenter))
        del segmenter
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = {type(o).__module__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not {name for name in left if name and name.split(".")[0] in ("av", "hls")}


def test_orders_cover_every_neighbour_case() -> None:
    # Forward, backward, and requests landing on both sides of the muxed run.
    seen_sides = set()
    for order in orders(8):
        done: set[int] = set()
        for index in order:
            if done:
                seen_sides.add("after" if index > max(done) else "before")
            done.add(index)
    assert seen_sides == {"after", "before"}
    assert len({tuple(o) for o in orders(8)}) == len(orders(8))
    assert all(sorted(o) == list(range(8)) for o in orders(8))
    assert list(itertools.islice(orders(8)[0], 3)) == [0, 1, 2]


@pytest.mark.parametrize("ll", [False, True])
def test_expired_media_goes_soon_after_its_deadline(hls_av: Media, ll: bool) -> None:
    """RFC 8216 6.2.2's time, and not a segment more: the store is purged as frames come
    in, so an expired segment's media is let go at most PURGE_INTERVAL_MS (and a frame)
    after its time, not at the next segment's close."""
    clock = Clock()
    sizes: dict[str, int] = {}
    segmenter = segmenter_of(ll=ll, clock=clock, window=3,
                             on_segment=lambda info: sizes.__setitem__(info.name, info.size))
    durations: dict[str, float] = {}
    longest: dict[str, float] = {}
    deadlines: dict[str, float] = {}
    listed: set[str] = set()
    for _ in range(6):  # ~42 s: deadlines pass while the stream goes on
        segmenter.configure(hls_av.video, hls_av.audio)
        start, first = clock.now, hls_av.packets[0].dts
        for packet in hls_av.packets:
            clock.now = start + (packet.dts - first) / 1000
            segmenter.push(packet)
            entries = segmenter.playlist.segments
            for entry in entries:
                durations[entry.uri] = entry.duration
                longest[entry.uri] = max(longest.get(entry.uri, 0.0),
                                         segmenter.playlist.duration)
            now_listed = {entry.uri for entry in entries}
            for uri in listed - now_listed:
                deadlines[uri] = clock.now + durations[uri] + longest[uri]
            listed = now_listed
            due = sum(sizes[u] for u, at in deadlines.items() if clock.now < at - 0.001)
            allowed = sum(sizes[u] for u, at in deadlines.items()
                          if clock.now <= at + PURGE_INTERVAL_MS / 1000 + 0.05)
            assert due <= segmenter.bytes_kept_expired <= allowed
        clock.now += 0.1
        segmenter.publisher_gone()
    assert sum(1 for at in deadlines.values() if at < clock.now) >= 10


def test_an_unwatched_channel_lets_the_muxer_templates_go(hls_av: Media,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[object] = []
    original = TrackSet.close

    def counting_close(self: TrackSet) -> None:
        closed.append(self)
        original(self)

    monkeypatch.setattr(TrackSet, "close", counting_close)
    clock = Clock()
    segmenter = segmenter_of(ll=True, clock=clock)
    feed(segmenter, hls_av, clock)
    assert len(closed) == segmenter.segments_produced > 0  # at each close: nobody watches
    closed.clear()
    for name in ts_names(segmenter)[:2]:  # a player: built again for these
        assert segmenter.segment(name) is not None
    feed(segmenter, hls_av.shifted(8000), clock)  # watched now: kept for the next ones
    assert closed == [] and segmenter.ts_packager.made_at_close > 0
