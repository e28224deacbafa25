"""The compiled fast path for plain frames (hls._plain_frames) leaves a segmenter exactly
as Segmenter.push alone does: same playlists, same bytes for every segment and part,
same counters and clocks, whatever the frames (repeated, backwards or negative
timestamps, refused or oversized frames, writable buffers, a memory cap that bites)
and however the reads cut them into batches. It also takes most frames of a plain
publish, or it would save nothing."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from hls.media import MediaPacket
from hls.plain_frames import PUSH_PLAIN_FRAMES
from hls.segmenter import Segmenter
from mediaserver.hub import SegmenterFeed
from tests.component.test_hls_segmenter import T0, Clock
from tests.hls_media import Media, av_clip

pytestmark = pytest.mark.skipif(
    PUSH_PLAIN_FRAMES is None,
    reason="the compiled path is off (MEDIASERVER_NO_EXTENSIONS) or not built")


@pytest.fixture(scope="module")
def hls_av() -> Media:
    return av_clip()


def perturbed(packets: tuple[MediaPacket, ...], seed: int) -> list[MediaPacket]:
    """The clip with one frame in ~15 made odd in a way push() has a rule for."""
    rng = random.Random(seed)
    out: list[MediaPacket] = []
    for packet in packets:
        roll = rng.random()
        if roll < 0.015:
            packet = dataclasses.replace(packet, dts=packet.dts - 1)  # repeated / backwards
        elif roll < 0.03:
            packet = dataclasses.replace(packet, data=packet.data[: rng.randrange(4)])  # refused
        elif roll < 0.04:
            packet = dataclasses.replace(packet, data=memoryview(bytearray(packet.data)))
        elif roll < 0.05:
            packet = dataclasses.replace(packet, data=bytes(packet.data) + b"\0")  # bad tiling
        elif roll < 0.055:
            packet = dataclasses.replace(packet, data=bytearray(packet.data))
        elif roll < 0.06:
            packet = dataclasses.replace(packet, dts=-10_000_000, pts=-10_000_000)
        elif roll < 0.065:
            packet = dataclasses.replace(packet, kind="subtitles")
        out.append(packet)
    return out


def batches(packets: list[MediaPacket], seed: int) -> list[list[MediaPacket]]:
    """Runs of 1-40 frames, as reads of a paced socket bring them."""
    rng = random.Random(seed)
    out, at = [], 0
    while at < len(packets):
        size = rng.randrange(1, 41)
        out.append(packets[at:at + size])
        at += size
    return out


def state(segmenter: Segmenter, names: list[str]) -> dict[str, Any]:
    """Everything a viewer, the metrics or the next frame can see of a segmenter."""
    return {
        "playlist": segmenter.render_playlist(),
        "ll": segmenter.render_ll_playlist() if segmenter.low_latency else None,
        "resources": {name: bytes(segmenter.segment(name) or b"") for name in names},
        "drops": dict(segmenter.drop_reasons),
        "held": (segmenter.bytes_held, segmenter.bytes_in_window, segmenter.segments_produced),
        "clocks": (dict(segmenter._last_dts), dict(segmenter._frame_ms),
                   segmenter._next_purge_dts),
        "forced": (segmenter.forced_cuts, segmenter.parts_clamped),
        # Each frame's row (flags, dts, pts, duration, size), held and open.
        "frames": ([list(form.frames._table) for form in segmenter._store.ts_forms()],
                   None if segmenter._open is None else list(segmenter._open.frames._rows)),
    }


def names_in(segmenter: Segmenter) -> list[str]:
    names = [entry.uri for entry in segmenter.playlist.segments]
    for entry in segmenter.playlist.segments:
        if entry.ll_uri:
            names.append(entry.ll_uri)
            names.extend(part.uri for part in entry.parts)
    return names


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("part_duration", [0.333, None], ids=["ll-hls", "ts-only"])
@pytest.mark.parametrize("max_bytes", [None, 3_000_000], ids=["no-cap", "cap"])
def test_the_fast_path_leaves_a_segmenter_as_push_alone_does(
        hls_av: Media, seed: int, part_duration: float | None, max_bytes: int | None) -> None:
    clocks = Clock(), Clock()
    pushed, batched = (Segmenter(window=3, clock=clock, name_token="", max_bytes=max_bytes,
                                 part_duration=part_duration) for clock in clocks)
    feed = SegmenterFeed(batched, "fast")
    for segmenter in (pushed, batched):
        segmenter.configure(hls_av.video, hls_av.audio)
    names: list[str] = []
    first = hls_av.packets[0].dts
    packets = perturbed(hls_av.packets, seed)
    for batch in batches(packets, seed):
        for clock in clocks:
            clock.now = T0 + max(batch[0].dts - first, 0) / 1000
        for packet in batch:
            pushed.push(packet)
        assert feed.handle_batch(list(batch)) == 0
        names.extend(name for name in names_in(pushed) if name not in names)
        assert names_in(batched) == names_in(pushed)
    assert sum(pushed.drop_reasons.values()) > 0  # the odd frames met push()'s rules
    assert state(batched, names) == state(pushed, names)


def test_most_frames_of_a_plain_publish_take_the_fast_path(hls_av: Media) -> None:
    assert PUSH_PLAIN_FRAMES is not None
    segmenter = Segmenter(window=3, clock=Clock(), name_token="", part_duration=0.333)
    segmenter.configure(hls_av.video, hls_av.audio)
    packets = list(hls_av.packets)
    taken = index = 0
    while index < len(packets):
        after = PUSH_PLAIN_FRAMES(segmenter, packets, index)
        taken += after - index
        if after < len(packets):
            segmenter.push(packets[after])
            after += 1
        index = after
    assert taken > 0.9 * len(packets)
    assert segmenter.segments_produced >= 3 and not segmenter.drop_reasons
