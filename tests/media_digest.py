"""What a publish becomes, packet by packet: the HLS output read back with PyAV, as a digest.

A client's bytes go through a real RtmpSession (a stand-in transport), the real
StreamHub, Publisher and Segmenter; every segment the playlist publishes is
collected, the segments are joined and demuxed with PyAV, and each packet is
summed up as (stream type, pts, dts, keyframe flag, sha256 of its bytes).
`expected_digests.json` in tests/captures holds these summaries as main's code
produced them before the ingest batch path and the compiled readers: the
test that reads it proves the media did not change. Regenerate it (only when a
change of output is intended) with `python -m tests.media_digest --write`.

The session's stand-in transport and policy are the in-process pipeline
benchmark's; with them, this file runs against older checkouts too.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sys
from typing import Any

import av

from benchmarks.pipeline import _feed, _HubPolicy, _Transport
from mediaserver.hub import StreamHub
from rtmp.server import RtmpServer, RtmpSession
from tests.fixtures import CAPTURES, OBS_C2S

BENCH_CLIP_HEAD = CAPTURES / "bench_clip_head.flv"
EXPECTED = CAPTURES / "expected_digests.json"
# Bytes per read handed to the session: a paced read of a 3 Mbit/s stream.
READ_SIZE = 40_000


async def _segments(data: bytes) -> list[bytes]:
    hub = StreamHub()
    got: list[bytes] = []

    def keep(channel: str, info: Any) -> None:
        segment = hub.segmenter(channel).segment(info.name)  # type: ignore[union-attr]
        assert segment is not None
        got.append(bytes(segment))

    hub.segment_listeners.append(keep)
    server = RtmpServer(_HubPolicy(hub), read_interval=0)
    session = RtmpSession(server)
    session.connection_made(_Transport())  # type: ignore[arg-type]
    for start in range(0, len(data), READ_SIZE):
        _feed(session, server, data[start : start + READ_SIZE])
        for _ in range(20):  # the authorization runs as a task; the hub drains on a turn
            await asyncio.sleep(0)
    assert session.publishing, "the publish was not accepted"
    session.close("done")
    for live in hub.channels.values():
        live.reader.flush()
        live.segmenter.end()
    return got


def hls_packets(data: bytes) -> list[tuple[str, int | None, int | None, bool, str]]:
    """(type, pts, dts, keyframe, sha256) of every packet PyAV reads from the HLS output."""
    segments = asyncio.run(_segments(data))
    assert segments, "no segment was made"
    out = []
    with av.open(io.BytesIO(b"".join(segments)), format="mpegts") as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            out.append((packet.stream.type, packet.pts, packet.dts, bool(packet.is_keyframe),
                        hashlib.sha256(bytes(packet)).hexdigest()))
    return out


def bench_clip_bytes() -> bytes:
    """What a benchmark publisher sends for the committed head of the benchmark clip."""
    from benchmarks.chunked import ChunkedClip
    from benchmarks.flvfile import read_flv
    from benchmarks.pipeline import publisher_bytes

    setup, slices = publisher_bytes(ChunkedClip.build(read_flv(BENCH_CLIP_HEAD)), 1, 100)
    return setup + b"".join(slices)


INPUTS = {"obs29_capture": lambda: OBS_C2S.read_bytes(), "bench_clip_head": bench_clip_bytes}


def digest(packets: list[tuple[str, int | None, int | None, bool, str]]) -> dict[str, Any]:
    text = json.dumps(packets, separators=(",", ":")).encode()
    return {"packets": len(packets),
            "video": sum(p[0] == "video" for p in packets),
            "audio": sum(p[0] == "audio" for p in packets),
            "sha256": hashlib.sha256(text).hexdigest()}


def main() -> int:
    found = {name: digest(hls_packets(make())) for name, make in INPUTS.items()}
    text = json.dumps(found, indent=2, sort_keys=True) + "\n"
    if "--write" in sys.argv:
        EXPECTED.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
