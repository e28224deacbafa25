"""What nodes say to each other through Redis: bus messages and records (no Redis here).

Every node reads every message and record, so decoding must refuse anything not
quite right with the one error type its caller counts, and never act on it.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_api.live import StreamStats
from hls.resume import PlaylistResume
from mediaserver.cluster.messages import (
    MAX_MESSAGE_LENGTH,
    Ack,
    Handoff,
    Kick,
    MessageError,
    decode,
    encode,
)
from mediaserver.cluster.records import (
    RecordError,
    ResumeRecord,
    base_url,
    resume_fields,
    resume_from_fields,
    stats_from_json,
    stats_to_json,
)
from mediaserver.cluster.registry import MISS, LocateCache

KICK = Kick("cam1", "kicked through the control API", 30.0, "r1", "host:1:ab", ("host:2:cd",))


def test_messages_round_trip() -> None:
    handoff = Handoff("cam-2", "another publisher took over this channel", "r2", "n1", ())
    for message in (KICK, handoff, Ack("r1", "host:2:cd", True)):
        assert decode(encode(message)) == message


def body(**changes: object) -> str:
    fields = json.loads(encode(KICK))
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not ...})


@pytest.mark.parametrize("data", [
    "", "not json", "[]", "null", json.dumps({"op": "reboot"}),
    body(op="shout"),
    body(channel="UPPER"), body(channel="../etc"), body(channel=...), body(channel=7),
    body(reason="x" * 500), body(reason=None),
    body(block_seconds=-1), body(block_seconds=math.inf), body(block_seconds="30"),
    body(block_seconds=True), body(block_seconds=1e12),
    body(request_id=""), body(sender=...), body(sender="n" * 301),
    body(targets="node"), body(targets=[""]), body(targets=[3]),
    json.dumps({"op": "ack", "request_id": "r", "sender": "n", "kicked": "yes"}),
    json.dumps({"op": "ack", "request_id": "r", "sender": "n"}),
    body(reason="x" * (MAX_MESSAGE_LENGTH + 1)),
])
def test_malformed_messages_are_refused(data: str) -> None:
    with pytest.raises(MessageError):
        decode(data)


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_decoding_anything_either_works_or_says_why(data: str | bytes) -> None:
    try:
        message = decode(data)
    except MessageError:
        return
    assert decode(encode(message)) == message


def stats(**changes: object) -> StreamStats:
    values: dict[str, object] = dict(
        channel="cam1", publisher="10.0.0.1:5000", started_at=1.7e9, video_codec="h264",
        width=1280, height=720, fps=29.97, bitrate_bps=2_500_000, keyframe_interval=2.0,
        audio_codec="aac", sample_rate=48000, audio_channels=2,
        warnings=("keyframe interval 4.0 s > segment target 2.0 s",))
    values.update(changes)
    return StreamStats(**values)  # type: ignore[arg-type]


def test_stream_stats_round_trip_and_unmeasurable_figures_travel_as_null() -> None:
    assert stats_from_json(stats_to_json(stats())) == stats()
    audio_only = stats(video_codec=None, width=None, height=None, fps=math.nan,
                       keyframe_interval=math.inf, warnings=())
    assert stats_from_json(stats_to_json(audio_only)) == stats(
        video_codec=None, width=None, height=None, fps=None, keyframe_interval=None, warnings=())


@pytest.mark.parametrize("text", [
    "", "{", "[]", json.dumps({"channel": "cam1"}),
    stats_to_json(stats()).replace('"width":1280', '"width":"1280"'),
    stats_to_json(stats()).replace('"fps":29.97', '"fps":true'),
    stats_to_json(stats()).replace('"warnings":[', '"warnings":[1,'),
    stats_to_json(stats())[:-1] + ',"extra":1}',
])
def test_unreadable_stream_stats_are_refused(text: str) -> None:
    with pytest.raises(RecordError):
        stats_from_json(text)


def test_resume_record_round_trips_through_hash_fields() -> None:
    record = ResumeRecord("host:1:ab", PlaylistResume(41, 3, 4, 123_456), 1.7e9 + 0.25)
    fields = resume_fields(record)
    assert all(isinstance(value, str) for value in fields.values())
    assert resume_from_fields(fields) == record
    untimed = ResumeRecord("n", PlaylistResume(0, 0, 2), 1.0)
    assert resume_from_fields(resume_fields(untimed)) == untimed


@pytest.mark.parametrize("change", [
    {"node": ""}, {"next_sequence": "x"}, {"next_sequence": "-1"}, {"target_duration": "0"},
    {"recorded_at": "nan"}, {"timeline_end_ms": "1.5"}, {"discontinuity_sequence": None},
])
def test_unusable_resume_records_are_refused(change: dict[str, object]) -> None:
    fields: dict[str, object] = dict(
        resume_fields(ResumeRecord("n", PlaylistResume(5, 1, 2, 1000), 1.0)))
    fields.update(change)
    fields = {k: v for k, v in fields.items() if v is not None}
    with pytest.raises(RecordError):
        resume_from_fields(fields)


def test_base_url_brackets_ipv6() -> None:
    assert base_url("10.0.0.5", 8080) == "http://10.0.0.5:8080"
    assert base_url("::1", 8080) == "http://[::1]:8080"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_locate_cache_answers_for_its_ttl_then_keeps_a_stale_fallback() -> None:
    clock = Clock()
    cache = LocateCache(ttl=1.0, max_entries=10, clock=clock)
    assert cache.get("cam1") is MISS
    cache.put("cam1", "http://a:1")
    cache.put("cam2", None)  # "held nowhere" is an answer too
    clock.now += 0.9
    assert cache.get("cam1") == "http://a:1" and cache.get("cam2") is None
    clock.now += 0.2
    assert cache.get("cam1") is MISS
    assert cache.stale("cam1") == "http://a:1"
    cache.forget("cam1")
    assert cache.stale("cam1") is None


def test_locate_cache_is_bounded_and_forgets_the_oldest() -> None:
    cache = LocateCache(ttl=10.0, max_entries=3, clock=Clock())
    for name in ("a", "b", "c"):
        cache.put(name, name)
    cache.put("a", "a2")  # refreshed: now the newest
    cache.put("d", "d")
    assert len(cache) == 3
    assert cache.get("b") is MISS and cache.get("a") == "a2" and cache.get("d") == "d"
