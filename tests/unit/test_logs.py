"""The rate limit on the server's log output, FFmpeg's included."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import av.logging
import pytest

from hls.muxer import enable_libav_warnings
from mediaserver.logs import BURST_LINES, RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited() -> Iterator[tuple[RateLimit, io.StringIO, Clock]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    clock = Clock()
    limit = RateLimit(window=10.0, clock=clock)
    limit.install(handler)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield limit, out, clock
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_a_flood_of_one_message_is_cut_to_a_burst_and_a_summary(
        limited: tuple[RateLimit, io.StringIO, Clock]) -> None:
    _limit, out, clock = limited
    flood = logging.getLogger("rtmp.test")
    for n in range(5000):
        flood.warning("peer=10.0.0.%d sent junk %d", n % 250, n)
    logging.getLogger("other").info("a different message still gets through")
    assert len(lines(out)) == BURST_LINES + 1
    clock.now = 11.0
    flood.warning("peer=10.0.0.1 sent junk %d", 1)
    summary = [line for line in lines(out) if "suppressed" in line]
    assert summary == [f"WARNING rtmp.test {5000 - BURST_LINES} similar messages suppressed "
                       "in 10s: peer=10.0.0.%d sent junk %d"]
    assert lines(out)[-1] == "WARNING rtmp.test peer=10.0.0.1 sent junk 1"


def test_ffmpeg_messages_go_through_the_same_limit(
        limited: tuple[RateLimit, io.StringIO, Clock]) -> None:
    limit, out, _clock = limited
    enable_libav_warnings()
    for n in range(2000):
        # Preformatted by FFmpeg, numbers and all: one kind once the digits are folded.
        av.logging.log(av.logging.ERROR, "mpegts",
                       f"non monotonically increasing dts to muxer in stream 1: {n} >= {n}\n")
    ffmpeg = [line for line in lines(out) if "libav.mpegts" in line]
    assert 1 <= len(ffmpeg) <= BURST_LINES
    limit.flush()
    assert "similar messages suppressed" in lines(out)[-1]
    assert lines(out)[-1].startswith("ERROR libav.mpegts ")
