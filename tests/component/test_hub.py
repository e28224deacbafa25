"""StreamHub with a fake clock: publish, takeover, ends, grace, kicks, sweeping, memory."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import mediaserver.hub as hub_module
from hls.resume import PlaylistResume
from hls.segmenter import SegmentInfo, State
from mediaserver.hub import HubEvent, HubSettings, Refusal, StreamHub
from mediaserver.publisher import PublishEnded, Publisher
from mediaserver.readers import DEFAULT_MAX_QUEUED
from mediaserver.thumbnails import Thumbnailer
from tests.flv_tags import feed
from tests.hls_media import av_clip
from tests.m3u8 import parse_playlist

GRACE = 30.0
RETENTION = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSession:
    """Stands in for an RtmpSession: a kick closes the connection, which ends its sink."""

    def __init__(self) -> None:
        self.kicks: list[str] = []
        self.sink: Publisher | None = None

    def kick(self, reason: str) -> None:
        self.kicks.append(reason)
        if self.sink is not None:
            self.sink.on_end(f"kicked: {reason}")


class Rig:
    def __init__(self, **settings: object) -> None:
        self.clock = FakeClock()
        self.hub = StreamHub(HubSettings(grace_period=GRACE, ended_retention=RETENTION,
                                         **settings),  # type: ignore[arg-type]
                             clock=self.clock)
        self.events: list[HubEvent] = []
        self.hub.listeners.append(self.events.append)

    def publish(self, channel: str = "cam", peer: str = "127.0.0.1:1") -> Publisher:
        session = FakeSession()
        publisher = self.hub.start_publish(channel, peer, session)
        session.sink = publisher
        return publisher

    def playlist(self, channel: str = "cam"):  # type: ignore[no-untyped-def]
        segmenter = self.hub.segmenter(channel)
        assert segmenter is not None
        return parse_playlist(segmenter.render_playlist())

    def kinds(self) -> list[tuple[str, str]]:
        return [(event.kind, event.channel) for event in self.events]


async def settle() -> None:
    """Let the readers drain (one loop turn)."""
    await asyncio.sleep(0)


async def test_publish_goes_live_and_the_segmenter_gets_the_media() -> None:
    rig = Rig()
    publisher = rig.publish()
    assert rig.hub.is_live("cam") and rig.hub.publishers() == [publisher]
    feed(publisher, av_clip())
    await settle()
    assert rig.playlist().segments and not rig.playlist().ended
    assert rig.kinds() == [("stream.started", "cam")]
    streams = rig.hub.live_streams()
    assert [(s.channel, s.video_codec, s.width) for s in streams] == [("cam", "h264", 1280)]


async def test_takeover_closes_the_old_publisher_and_keeps_the_playlist() -> None:
    rig = Rig()
    old = rig.publish(peer="10.0.0.1:1")
    old_session = old.session
    feed(old, av_clip())
    await settle()
    channel = rig.hub.channels["cam"]
    new = rig.publish(peer="10.0.0.2:2")
    assert old_session.kicks == ["another publisher took over this channel"]
    assert old.ended and old.session is None
    assert rig.hub.publishers() == [new] and rig.hub.publishes_taken_over == 1
    assert rig.hub.channels["cam"] is channel  # same playlist goes on
    # Late frames of the old connection reach nothing.
    backlog = channel.reader.backlog
    feed(old, av_clip())
    assert channel.reader.backlog == backlog
    feed(new, av_clip(), start_ms=50_000)
    await settle()
    playlist = rig.playlist()
    assert [s.discontinuity for s in playlist.segments].count(True) == 1
    # A takeover is not a channel event: one start, no end.
    assert rig.kinds() == [("stream.started", "cam")]


async def test_reject_duplicate_refuses_while_live_only() -> None:
    rig = Rig(duplicate_publish="reject")
    assert rig.hub.refusal_for("cam") is None
    publisher = rig.publish()
    assert rig.hub.refusal_for("cam") == Refusal(
        "duplicate", "channel cam already has a live publisher")
    publisher.on_end("connection closed")
    assert rig.hub.refusal_for("cam") is None


async def test_a_dropped_connection_keeps_the_playlist_open_for_the_grace_period() -> None:
    rig = Rig()
    publisher = rig.publish()
    feed(publisher, av_clip())
    publisher.on_end("connection closed")
    assert not rig.hub.is_live("cam")
    assert rig.kinds() == [("stream.started", "cam"), ("stream.ended", "cam")]
    await settle()
    rig.clock.now += GRACE - 1
    rig.hub.sweep()
    assert not rig.playlist().ended
    rig.clock.now += 1
    rig.hub.sweep()
    ended = rig.playlist()
    assert ended.ended and ended.segments
    assert rig.hub.segmenter("cam").state is State.ENDED  # type: ignore[union-attr]


async def test_a_republish_within_grace_continues_the_playlist() -> None:
    rig = Rig()
    first = rig.publish()
    feed(first, av_clip())
    first.on_end("connection closed")
    await settle()
    before = rig.playlist()
    rig.clock.now += GRACE - 1
    rig.hub.sweep()
    second = rig.publish()
    rig.clock.now += 10
    rig.hub.sweep()
    feed(second, av_clip(), start_ms=123_456)
    await settle()
    after = rig.playlist()
    assert not after.ended
    assert after.segments[-1].sequence > before.segments[-1].sequence
    assert [s.sequence for s in after.segments if s.discontinuity] == [
        before.segments[-1].sequence + 1]


async def test_an_unpublish_ends_the_playlist_at_once() -> None:
    rig = Rig()
    publisher = rig.publish()
    media = av_clip()
    feed(publisher, media)
    # Still queued for the reader: the end must come after all of it.
    publisher.on_end("unpublished (FCUnpublish)", unpublished=True)
    playlist = rig.playlist()
    assert playlist.ended
    assert sum(s.duration for s in playlist.segments) == pytest.approx(
        media.span_ms("video") / 1000, abs=0.05)
    assert not rig.hub.is_live("cam") and rig.hub.live_streams() == []
    assert rig.kinds() == [("stream.started", "cam"), ("stream.ended", "cam")]
    assert rig.events[-1].reason == "unpublished (FCUnpublish)"
    # A later publish starts a new playlist.
    again = rig.publish()
    feed(again, media)
    await settle()
    fresh = rig.playlist()
    assert not fresh.ended and fresh.media_sequence == 0
    assert not any(s.discontinuity for s in fresh.segments)
    assert fresh.segments[0].uri != playlist.segments[0].uri
    assert rig.kinds()[-1] == ("stream.started", "cam")


async def test_kick_with_block_ends_the_publisher_and_refuses_until_it_runs_out() -> None:
    rig = Rig()
    publisher = rig.publish()
    session = publisher.session
    assert rig.hub.kick("cam", "bad words", block_seconds=10)
    assert session.kicks == ["bad words"] and publisher.ended
    assert not rig.hub.is_live("cam")
    assert rig.hub.refusal_for("cam") == Refusal(
        "blocked", "channel cam is blocked for 10 more seconds")
    rig.clock.now += 9.5
    assert rig.hub.refusal_for("cam") is not None
    rig.clock.now += 0.5
    assert rig.hub.refusal_for("cam") is None and rig.hub.blocked_for("cam") == 0
    assert not rig.hub.kick("cam", "nobody there")


async def test_release_lets_a_channel_go_to_another_node_with_its_last_segment() -> None:
    rig = Rig()
    dropped: list[list[str]] = []
    rig.hub.drop_listeners.append(dropped.append)
    made: list[int] = []
    rig.hub.segment_listeners.append(lambda channel, info: made.append(info.sequence))
    publisher = rig.publish()
    session = publisher.session
    feed(publisher, av_clip())  # still queued: release publishes it before letting go
    segmenter = rig.hub.segmenter("cam")
    assert segmenter is not None
    assert rig.hub.release("cam", "publisher moved to node b")
    assert session.kicks == ["publisher moved to node b"] and publisher.ended
    assert "cam" not in rig.hub.channels and dropped == [["cam"]]
    assert made == [0, 1, 2, 3]  # the open segment was closed and announced
    point = segmenter.resume_point()
    assert point is not None and point.next_sequence == 4
    assert rig.kinds() == [("stream.started", "cam"), ("stream.ended", "cam")]
    assert not rig.hub.release("cam", "again")


async def test_a_publish_carrying_on_another_nodes_playlist_replaces_a_stale_copy() -> None:
    rig = Rig()
    first = rig.publish()
    feed(first, av_clip())
    first.on_end("connection closed")  # in its grace period here...
    await settle()
    stale = rig.hub.channels["cam"]
    # ...while another node carried the playlist on to sequence 9.
    second = rig.hub.start_publish("cam", "10.0.0.9:9", resume=PlaylistResume(9, 2, 2))
    assert rig.hub.channels["cam"] is not stale and stale.segmenter.ended
    feed(second, av_clip())
    await settle()
    playlist = rig.playlist()
    assert [s.sequence for s in playlist.segments][:1] == [9]
    assert playlist.segments[0].discontinuity and playlist.discontinuity_sequence == 2
    # A live local publisher is taken over as ever: the local playlist goes on.
    live = rig.hub.channels["cam"]
    rig.hub.start_publish("cam", "10.0.0.10:10", resume=PlaylistResume(50, 0, 2))
    assert rig.hub.channels["cam"] is live


async def test_kick_ends_a_publisher_whose_session_does_not() -> None:
    rig = Rig()
    publisher = rig.hub.start_publish("cam", "127.0.0.1:1", None)
    assert rig.hub.kick("cam", "api")
    assert publisher.ended and not rig.hub.is_live("cam")


async def test_sweep_forgets_ended_playlists_after_retention() -> None:
    rig = Rig()
    drops: list[list[str]] = []
    rig.hub.drop_listeners.append(drops.append)
    for name in ("cam", "cam2"):
        publisher = rig.publish(name)
        feed(publisher, av_clip())
        publisher.on_end("stop", unpublished=True)
    rig.clock.now += RETENTION - 1
    rig.hub.sweep()
    assert "cam" in rig.hub.channels and drops == []
    rig.clock.now += 1
    rig.hub.sweep()
    assert rig.hub.channels == {} and rig.hub.segmenter("cam") is None
    # One call per sweep, with every channel it let go (the server trims the heap then).
    assert drops == [["cam", "cam2"]]
    rig.hub.sweep()
    assert drops == [["cam", "cam2"]]


async def test_a_failing_listener_does_not_stop_the_others() -> None:
    rig = Rig()

    def broken(event: HubEvent) -> None:
        raise RuntimeError("listener bug")

    rig.hub.listeners.insert(0, broken)
    rig.publish().on_end("connection closed")
    assert rig.kinds() == [("stream.started", "cam"), ("stream.ended", "cam")]


async def test_shutdown_ends_every_playlist() -> None:
    rig = Rig()
    for name in ("a", "b"):
        feed(rig.publish(name), av_clip())
    rig.hub.shutdown()
    assert rig.hub.publishers() == []
    assert rig.playlist("a").ended and rig.playlist("b").ended


async def test_end_listeners_hear_each_playlist_that_ends_for_good_once_after_its_last_segment(
        ) -> None:
    rig = Rig()
    heard: list[tuple[str, str]] = []
    rig.hub.segment_listeners.append(lambda channel, info: heard.append(("segment", channel)))
    rig.hub.end_listeners.append(lambda channel: heard.append(("end", channel)))
    # An unpublish ends at once; a dropped publisher only once the grace period is over.
    unpublished, dropped, moved, stopped = (rig.publish(name) for name in
                                            ("unpub", "drop", "moved", "stop"))
    for publisher in (unpublished, dropped, moved, stopped):
        feed(publisher, av_clip())
    unpublished.on_end("stop", unpublished=True)
    assert heard[-1] == ("end", "unpub")
    dropped.on_end("connection closed")
    await settle()
    assert ("end", "drop") not in heard
    # A channel moving to another node goes on there: that is no end.
    rig.hub.release("moved", "publisher moved to node b")
    rig.clock.now += GRACE
    rig.hub.sweep()
    assert heard[-1] == ("end", "drop")
    rig.hub.shutdown()
    ends = [channel for what, channel in heard if what == "end"]
    assert ends == ["unpub", "drop", "stop"]
    # Every segment of a channel, its last included, was announced before its end.
    for channel in ends:
        assert max(i for i, seen in enumerate(heard) if seen == ("segment", channel)) < \
            heard.index(("end", channel))


async def test_a_reader_that_falls_behind_skips_and_the_playlist_goes_on() -> None:
    rig = Rig()
    publisher = rig.publish()
    media = av_clip()
    taps: list[object] = []
    segments: list[SegmentInfo] = []
    rig.hub.segment_listeners.append(lambda name, info: segments.append(info))
    channel = rig.hub.channels["cam"]
    channel.taps.append(taps.append)
    # Far more than the queue holds, all in one loop turn: a sender outrunning real time.
    span = media.span_ms("video")
    feed(publisher, media)
    await settle()
    loops = DEFAULT_MAX_QUEUED // len(media.packets) + 3
    for i in range(1, loops):
        feed(publisher, media, start_ms=i * span, headers=False)
    assert channel.reader.times_skipped == 1 and channel.reader.frames_skipped > 0
    assert rig.hub.reader_skips.times == 1
    await settle()
    after_skip = rig.playlist()
    # More comes and is segmented: the reader was not dropped.
    feed(publisher, media, start_ms=loops * span, headers=False)
    await settle()
    playlist = rig.playlist()
    assert playlist.segments[-1].sequence >= after_skip.segments[-1].sequence + 3
    # No segment spans the gap (many seconds of media): the skip is a discontinuity.
    # (3 s at most: where the 7 s clip loops, a 1 s GOP joins the next 2 s one.)
    assert [s.discontinuity for s in segments].count(True) == 1
    assert channel.reader.frames_skipped > 2 * 30 * 3
    assert max(s.duration for s in segments) <= 3.05
    assert len(taps) == (loops + 1) * len(media.packets) + 1  # taps see everything
    publisher.on_end("stop", unpublished=True)
    assert rig.playlist().ended


async def test_a_thumbnail_tap_keeps_only_the_newest_keyframe() -> None:
    """The other reader of a channel: bounded to one keyframe, it never falls behind."""
    rig = Rig()
    thumbnails = Thumbnailer(exists=lambda name: name in rig.hub.channels)
    rig.hub.tap_factories.append(thumbnails.tap)
    try:
        publisher = rig.publish()
        media = av_clip()
        loops = DEFAULT_MAX_QUEUED // len(media.packets) + 3
        for i in range(loops):
            feed(publisher, media, start_ms=i * media.span_ms("video"), headers=i == 0)
        assert rig.hub.channels["cam"].reader.times_skipped == 1
        picture = await thumbnails.picture("cam")
        assert picture is not None and (picture.width, picture.height) == (1280, 720)
        last_keyframe = [p for p in media.packets if p.kind == "video" and p.keyframe][-1]
        slot = thumbnails._slots["cam"]
        assert slot.keyframe is not None and slot.keyframe[1] == bytes(last_keyframe.data)
        assert slot.serial == loops * len(media.keyframe_dts())
    finally:
        thumbnails.close()


async def test_an_ended_channel_holds_no_publisher_session_or_segmenter() -> None:
    rig = Rig()
    publisher = rig.publish()
    feed(publisher, av_clip())
    await settle()
    session_ref = weakref.ref(publisher.session)
    segmenter_ref = weakref.ref(rig.hub.channels["cam"].segmenter)
    publisher_ref = weakref.ref(publisher)
    publisher.on_end("connection closed")
    rig.clock.now += GRACE
    rig.hub.sweep()
    rig.clock.now += RETENTION
    rig.hub.sweep()
    assert rig.hub.channels == {}
    await settle()  # the drain callback scheduled by the end has run
    # Something elsewhere still holds the publisher (a loop variable, a closing
    # connection): it must not keep the session or the channel's segment data alive.
    gc.collect()
    assert session_ref() is None
    assert segmenter_ref() is None
    del publisher
    gc.collect()
    assert publisher_ref() is None


async def _published(rig: Rig) -> tuple[Publisher, weakref.ref[object]]:
    """Publish a clip (handled by the segmenter); the publisher and a weak reference to
    its channel's segmenter."""
    publisher = rig.publish()
    feed(publisher, av_clip())
    await settle()
    return publisher, weakref.ref(rig.hub.channels["cam"].segmenter)


async def _ended_after_unpublish(rig: Rig) -> weakref.ref[object]:
    """Publish a clip, stop on purpose (ENDLIST at once); a weak reference to its segmenter."""
    publisher, segmenter_ref = await _published(rig)
    publisher.on_end("stop", unpublished=True)
    await settle()
    return segmenter_ref


@contextmanager
def collector_off() -> Iterator[None]:
    """Inside, only reference counting frees anything: what waits in a reference
    cycle for the cyclic collector stays alive, as it would for minutes in a busy server."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_a_dropped_channel_frees_its_segments_without_waiting_for_the_collector(
) -> None:
    # Reference counting alone must free a forgotten channel: a reference cycle left
    # for the cyclic collector kept each churned channel's segments for minutes.
    rig = Rig()
    with collector_off():
        segmenter_ref = await _ended_after_unpublish(rig)
        assert segmenter_ref() is not None  # still served within the ended retention
        rig.clock.now += RETENTION
        rig.hub.sweep()
        assert rig.hub.channels == {}
        assert segmenter_ref() is None


async def test_a_republish_frees_the_ended_playlist_it_replaces_at_once() -> None:
    rig = Rig()
    with collector_off():
        segmenter_ref = await _ended_after_unpublish(rig)
        rig.publish()  # a new playlist for the same channel, before the retention ran out
        assert rig.hub.channels["cam"].segmenter is not segmenter_ref()
        assert segmenter_ref() is None


async def test_a_channel_released_to_another_node_frees_its_segments_at_once() -> None:
    # The cluster's hand-over drops the channel here without an ENDLIST: it must let
    # go of the segmenter as the sweep does, not leave it to the cyclic collector.
    rig = Rig()
    with collector_off():
        publisher, segmenter_ref = await _published(rig)
        assert rig.hub.release("cam", "publisher moved to node b")
        del publisher
        await settle()  # the drain its end scheduled has run and let go of the reader
        assert segmenter_ref() is None


async def test_a_stale_copy_replaced_by_another_nodes_playlist_is_freed_at_once() -> None:
    rig = Rig()
    with collector_off():
        first, stale_ref = await _published(rig)
        first.on_end("connection closed")  # in its grace period here...
        await settle()
        # ...while another node carried the playlist on.
        rig.hub.start_publish("cam", "10.0.0.9:9", resume=PlaylistResume(9, 2, 2))
        del first
        assert stale_ref() is None


async def test_a_taken_over_publisher_holds_nothing_of_the_channel() -> None:
    rig = Rig()
    old = rig.publish()
    session_ref = weakref.ref(old.session)
    rig.publish()
    gc.collect()
    assert session_ref() is None
    assert old.ended
    old.on_video(0, b"\x17\x01\x00\x00\x00")  # goes nowhere, raises nothing


async def test_the_queue_is_empty_once_the_playlist_ended() -> None:
    rig = Rig()
    publisher = rig.publish()
    feed(publisher, av_clip())
    channel = rig.hub.channels["cam"]
    assert channel.reader.backlog > 0
    publisher.on_end("stop", unpublished=True)
    assert channel.reader.backlog == 0
    assert channel.feed.configured is None


def test_publish_ended_keeps_its_name() -> None:
    assert PublishEnded("x").reason == "x"


async def test_a_frame_the_segmenter_fails_on_is_counted_and_the_rest_go_in(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    publisher = rig.publish()
    live = rig.hub.channels["cam"]
    original = type(live.segmenter).push
    pushed = []

    def push(segmenter, packet):  # type: ignore[no-untyped-def]
        pushed.append(packet)
        if len(pushed) == 3:
            raise RuntimeError("a bug in the segmenter")
        original(segmenter, packet)

    monkeypatch.setattr(type(live.segmenter), "push", push)
    feed(publisher, av_clip())
    await settle()
    # The drain handed the frames over in batches; one failed, the others went in
    # (past the compiled fast path, push() sees the frames that meet a rule).
    assert live.reader.errors == 1 and len(pushed) > 3
    assert "HLS reader of channel=cam failed on an item" in caplog.text
    assert rig.playlist().segments


async def test_a_fast_path_failure_leaves_the_frame_to_push(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    publisher = rig.publish()
    live = rig.hub.channels["cam"]
    calls = []

    def failing_once(segmenter, items, start):  # type: ignore[no-untyped-def]
        calls.append(start)
        if len(calls) == 5:
            raise MemoryError("no room for a tuple")
        return start  # takes nothing: push() gets every frame

    monkeypatch.setattr(hub_module, "PUSH_PLAIN_FRAMES", failing_once)
    feed(publisher, av_clip())
    await settle()
    assert len(calls) > 100 and live.reader.errors == 0
    assert "HLS fast path of channel=cam failed" in caplog.text
    assert len(rig.playlist().segments) >= 3
