"""No change of media: the OBS capture and the benchmark clip come out as the same packets.

Each input goes through a session, the hub, a publisher and a segmenter; the HLS
segments are read back with PyAV and every packet (type, pts, dts, keyframe flag,
payload bytes) is digested. The expected digests were made by main's code before
the batch path and the compiled readers (tests/media_digest.py says how); both
paths, compiled and pure Python, must give exactly those.
"""

from __future__ import annotations

import json

import pytest

import mediaserver.publisher
import rtmp.connection
from mediaserver.coded_frames import COMPILED_FRAMES, PureTrackClock, pure_take_coded_frames
from rtmp.chunk import COMPILED_READER, PurePythonChunkReader
from tests.media_digest import EXPECTED, INPUTS, digest, hls_packets

EXPECTED_DIGESTS = json.loads(EXPECTED.read_text())


@pytest.mark.parametrize("path", ["compiled", "pure"])
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_the_media_packets_are_the_ones_main_made(name: str, path: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if path == "compiled" and not (COMPILED_READER and COMPILED_FRAMES):
        pytest.skip("the compiled path is off (MEDIASERVER_NO_EXTENSIONS) or not built")
    if path == "pure":
        monkeypatch.setattr(rtmp.connection, "ChunkReader", PurePythonChunkReader)
        monkeypatch.setattr(mediaserver.publisher, "take_coded_frames", pure_take_coded_frames)
        monkeypatch.setattr(mediaserver.publisher, "TrackClock", PureTrackClock)
    packets = hls_packets(INPUTS[name]())
    assert {p[0] for p in packets} == {"video", "audio"}
    assert digest(packets) == EXPECTED_DIGESTS[name]
