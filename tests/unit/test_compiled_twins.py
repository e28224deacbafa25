"""The compiled hot path against its pure-Python reference, input for input.

rtmp._chunk_reader.ChunkReader must cut the same messages and raise the same
errors as rtmp.chunk's pure reader, mediaserver._coded_frames must make the
same packets, counts and clock state as mediaserver.coded_frames, and hls._fmp4
the same fragments and track state as hls.fmp4, whatever the input (hls._plain_frames
against Segmenter.push: tests/component/test_plain_frames.py). When the
extensions are switched off (MEDIASERVER_NO_EXTENSIONS) these comparisons are
skipped; that the default build uses them is checked here too.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hls.fmp4 as fmp4
import hls.plain_frames as plain_frames
import mediaserver.coded_frames as coded_frames
import rtmp.chunk as chunk
from hls.media import MediaPacket
from mediaserver.feedstats import FeedStats
from rtmp.chunk import ABORT, SET_CHUNK_SIZE, ChunkWriter, PurePythonChunkReader
from rtmp.errors import RemoteProtocolError
from rtmp.extensions import extensions_wanted
from tests.hls_media import av_clip

compiled = pytest.mark.skipif(
    not (chunk.COMPILED_READER and coded_frames.COMPILED_FRAMES),
    reason="the compiled path is off (MEDIASERVER_NO_EXTENSIONS) or not built")


def test_the_compiled_path_is_used_unless_switched_off() -> None:
    """A build that silently lost its extensions would make the server slower, not wrong:
    only this test notices."""
    if not extensions_wanted():
        assert chunk.ChunkReader is PurePythonChunkReader
        assert coded_frames.take_coded_frames is coded_frames.pure_take_coded_frames
        assert coded_frames.TrackClock is coded_frames.PureTrackClock
        assert fmp4.build_fragment is fmp4.pure_build_fragment
        assert plain_frames.PUSH_PLAIN_FRAMES is None  # Segmenter.push takes every frame
        return
    assert chunk.COMPILED_READER and chunk.ChunkReader is not PurePythonChunkReader
    assert coded_frames.COMPILED_FRAMES
    assert coded_frames.take_coded_frames is not coded_frames.pure_take_coded_frames
    assert coded_frames.TrackClock is not coded_frames.PureTrackClock
    assert fmp4.COMPILED_FRAGMENTS and fmp4.build_fragment is not fmp4.pure_build_fragment
    assert plain_frames.PUSH_PLAIN_FRAMES is not None


# --------------------------------------------------------------------------- ChunkReader


def _drain(reader: Any, pieces: list[bytes], media_stream: int | None) -> list[Any]:
    """Everything a reader gives for these pieces: messages, media runs, then its error."""
    out: list[Any] = []
    try:
        for piece in pieces:
            reader.feed(piece)
            while True:
                if media_stream is None:
                    msg = reader.next_message()
                else:
                    frames: list[tuple[int, int, bytes]] = []
                    msg = reader.read_media(frames, media_stream, 5)
                    out.append(("run", len(frames)))
                    out.extend(("media", *f) for f in frames)
                    if msg is None and frames:
                        continue
                if msg is None:
                    break
                out.append((msg.csid, msg.type_id, msg.stream_id, msg.timestamp,
                            bytes(msg.payload)))
    except RemoteProtocolError as exc:
        out.append(("error", str(exc)))
    out.append(("state", reader.chunk_size, reader.bytes_received))
    return out


def _pieces(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(data):
        size = rng.choice([1, 2, 5, 11, 100, 3000, 70000])
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


def _assert_twins_agree(data: bytes, seed: int, **limits: int) -> None:
    for media_stream in (None, 1):
        for pieces in ([data], _pieces(data, seed)):
            expected = _drain(PurePythonChunkReader(**limits), pieces, media_stream)
            assert _drain(chunk.ChunkReader(**limits), pieces, media_stream) == expected


_messages = st.lists(
    st.tuples(
        st.sampled_from([2, 3, 4, 5, 63, 64, 200, 319, 320, 5000, 65599]),  # 1-, 2-, 3-byte ids
        st.sampled_from([8, 9, 8, 9, 18, 20, 22, 4]),
        st.sampled_from([0, 1, 1, 2, 0x01020304]),
        st.one_of(st.integers(0, 5000), st.integers(0xFFFF00, 0xFFFFFFFF)),
        st.binary(max_size=700),
        st.sampled_from([None, None, None, 0, 1, 2, 3]),  # header type: None picks
        st.sampled_from([None, None, None, 1, 64, 128, 1000, 4096]),  # SetChunkSize before
    ),
    max_size=25,
)


def _wire(messages: list[Any]) -> bytes:
    writer = ChunkWriter()
    out = bytearray()
    for csid, type_id, stream_id, timestamp, payload, fmt, new_size in messages:
        if new_size is not None:
            out += writer.write(2, SET_CHUNK_SIZE, 0, 0, new_size.to_bytes(4, "big"))
            writer.chunk_size = new_size
        try:
            out += writer.write(csid, type_id, stream_id, timestamp, payload, fmt=fmt)
        except (ValueError, AssertionError, TypeError):
            out += writer.write(csid, type_id, stream_id, timestamp, payload)
    return bytes(out)


@compiled
@settings(max_examples=300, deadline=None)
@given(_messages, st.integers(0, 10_000))
def test_chunk_readers_agree_on_well_formed_streams(messages: list[Any], seed: int) -> None:
    _assert_twins_agree(_wire(messages), seed)


@compiled
@settings(max_examples=300, deadline=None)
@given(_messages, st.integers(0, 10_000), st.binary(min_size=1, max_size=40))
def test_chunk_readers_agree_on_damaged_streams(messages: list[Any], seed: int,
                                                noise: bytes) -> None:
    data = bytearray(_wire(messages))
    rng = random.Random(seed)
    for byte in noise:  # overwrite, insert or delete a few bytes anywhere
        at = rng.randrange(len(data) + 1)
        if byte % 3 == 0 and at < len(data):
            data[at] = byte
        elif byte % 3 == 1:
            data[at:at] = bytes([byte])
        else:
            del data[at : at + 1]
    _assert_twins_agree(bytes(data), seed, max_message_size=5000, max_chunk_streams=6,
                        max_pending_bytes=9000)


@compiled
def test_chunk_readers_agree_on_abort_and_the_limits() -> None:
    writer = ChunkWriter(100)
    big = writer.write(4, 9, 1, 40, bytes(range(256)) * 3)
    abort = ChunkWriter().write(2, ABORT, 0, 0, (4).to_bytes(4, "big"))
    after = ChunkWriter().write(4, 8, 1, 50, b"abc")
    for data in (big[:150] + abort + after, big, big[:50] + b"\xc4" * 10,
                 ChunkWriter().write(2, SET_CHUNK_SIZE, 0, 0, bytes(4)),
                 ChunkWriter().write(2, SET_CHUNK_SIZE, 0, 0, b"\x00")):
        for seed in range(3):
            _assert_twins_agree(data, seed)
            _assert_twins_agree(data, seed, max_message_size=700, max_pending_bytes=500)


# --------------------------------------------------------------------------- coded frames

_bodies = st.one_of(
    st.tuples(st.sampled_from([0x17, 0x27, 0x37, 0x47, 0x57, 0x07, 0x67, 0x1C, 0x2C, 0x12, 0x97,
                               0xAF, 0xAE, 0x2F, 0xA0]),
              st.sampled_from([0, 1, 1, 1, 2]), st.binary(max_size=6)).map(
        lambda t: bytes([t[0], t[1]]) + t[2]),
    st.binary(max_size=4),
)


def _run_take(take: Any, clock: Any, frames: list[tuple[int, int, Any]], video: bool,
              audio: bool) -> tuple[Any, ...]:
    stats = FeedStats(clock=lambda: 100.0)
    clocks = (clock(), clock())
    out: list[Any] = []
    stops = []
    index = 0
    while index < len(frames):  # as Publisher.on_media does: skip the frame it stops at
        index = take(frames, index, video, audio, clocks[0], clocks[1], stats, out)
        stops.append(index)
        index += 1
    # Real MediaPackets, equal to what the class makes of the same fields.
    assert all(type(p) is MediaPacket and p == MediaPacket(p.kind, p.dts, p.pts, p.keyframe,
                                                           p.data) for p in out)
    packets = [(p.kind, p.dts, p.pts, p.keyframe, bytes(p.data)) for p in out]
    counts = tuple(getattr(stats, name) for name in (
        "video_bytes", "audio_bytes", "video_frames", "audio_frames", "keyframes",
        "keyframe_interval", "backwards_timestamps", "_bucket_bytes", "_bucket_frames"))
    return packets, stops, counts, [(c.raw, c.offset, c.last) for c in clocks]


@compiled
@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([8, 9]),
                          st.one_of(st.integers(0, 3000), st.integers(0xFFFFF000, 0xFFFFFFFF)),
                          _bodies), max_size=30),
       st.booleans(), st.booleans(), st.booleans())
def test_coded_frame_twins_agree(frames: list[tuple[int, int, bytes]], video: bool, audio: bool,
                                 as_bytearray: bool) -> None:
    if as_bytearray:  # payloads other than bytes: the compiled one leaves them to the full path
        frames = [(t, ts, bytearray(b)) for t, ts, b in frames]  # type: ignore[misc]
        compiled_result = _run_take(coded_frames.take_coded_frames, coded_frames.TrackClock,
                                    frames, video, audio)
        assert compiled_result[1] == list(range(len(frames)))
        return
    expected = _run_take(coded_frames.pure_take_coded_frames, coded_frames.PureTrackClock, frames,
                         video, audio)
    assert _run_take(coded_frames.take_coded_frames, coded_frames.TrackClock, frames, video,
                     audio) == expected


@compiled
@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 0xFFFFFFFF), st.integers(0xFFFFFF00, 0xFFFFFFFF),
                          st.integers(0, 300)), max_size=40))
def test_track_clock_twins_agree(timestamps: list[int]) -> None:
    pure, fast = coded_frames.PureTrackClock(), coded_frames.TrackClock()
    assert (fast.raw, fast.offset, fast.last) == (None, 0, None)
    for timestamp in timestamps:
        assert fast.unwrap(timestamp) == pure.unwrap(timestamp)
        assert (fast.raw, fast.offset, fast.last) == (pure.raw, pure.offset, pure.last)


# --------------------------------------------------------------------------- fMP4 fragments

compiled_fragments = pytest.mark.skipif(
    not fmp4.COMPILED_FRAGMENTS,
    reason="the compiled path is off (MEDIASERVER_NO_EXTENSIONS) or not built")

# A frame: (video?, dts step in ms, pts - dts in ms, keyframe, payload size). Steps of 0 and
# a step back by a second make the clamps and the reference's errors happen too.
_fmp4_frames = st.lists(
    st.tuples(st.booleans(), st.one_of(st.integers(0, 70), st.just(-1000)),
              st.integers(0, 300), st.booleans(), st.integers(0, 3000)),
    min_size=1, max_size=40)


def _fragment_state(writer: Any) -> list[tuple[Any, ...]]:
    return [(t.last_dts, t.next_tick, t.last_duration, len(t.samples), t.payload_bytes)
            for t in writer._tracks.values()]


@compiled_fragments
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_fmp4_frames, st.one_of(st.none(), st.integers(-50, 100))),
                min_size=1, max_size=6),
       st.sampled_from(["both", "video", "audio"]))
def test_fragment_twins_agree(fragments: list[tuple[list[Any], int | None]],
                              tracks: str) -> None:
    media = av_clip()
    video = media.video if tracks != "audio" else None
    audio = media.audio if tracks != "video" else None
    writers = [fmp4.FragmentWriter(video, audio) for _ in range(2)]
    builders = [fmp4.pure_build_fragment, fmp4.build_fragment]
    dts = {"video": 10_000.0, "audio": 10_000.0}
    for sequence, (frames, end_after) in enumerate(fragments, start=1):
        for is_video, step, offset, keyframe, size in frames:
            kind = "video" if is_video else "audio"
            if kind not in writers[0].kinds:
                continue
            dts[kind] += step if kind == "video" else step * 0.7 + 0.3  # AAC: not whole ms
            for writer in writers:
                writer.add(kind, dts[kind], dts[kind] + offset, keyframe, bytes(size))
        active = [[t for t in w._tracks.values() if t.samples] for w in writers]
        if not active[0]:
            continue
        ends = {} if end_after is None else {
            t.track_id: round((dts["video" if t.is_video else "audio"] + end_after) * t.scale)
            for t in active[0]}
        outcomes: list[Any] = []
        for build, tracks_of in zip(builders, active, strict=True):
            try:
                outcomes.append(build(sequence, tracks_of, dict(ends)))
            except Exception as exc:  # the reference's error must be the twin's too
                outcomes.append((type(exc), str(exc)))
        assert outcomes[0] == outcomes[1]
        assert _fragment_state(writers[0]) == _fragment_state(writers[1])


def test_fragment_twins_agree_on_a_real_clip() -> None:
    """Every fragment of a real publish, byte for byte (and the same as the writer makes)."""
    media = av_clip()
    writers = [fmp4.FragmentWriter(media.video, media.audio) for _ in range(2)]
    builders = [fmp4.pure_build_fragment, fmp4.build_fragment]
    made = 0
    start: float | None = None
    for packet in media.packets:
        if packet.kind == "video" and start is not None and packet.dts - start >= 300:
            outs = []
            for build, writer in zip(builders, writers, strict=True):
                tracks = [t for t in writer._tracks.values() if t.samples]
                ends = {writer._tracks["video"].track_id:
                        round(packet.dts * writer._tracks["video"].scale)}
                outs.append(build(made + 1, tracks, ends))
            assert outs[0] == outs[1]
            made += 1
            start = None
        if start is None and packet.kind == "video":
            start = packet.dts
        for writer in writers:
            writer.add(packet.kind, packet.dts, packet.pts, packet.keyframe, packet.data)
    assert made > 10
