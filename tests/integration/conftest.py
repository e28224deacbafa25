"""Shared media for integration tests: one encoder-like clip per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live import make_clip


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of 1280x720 30 fps H.264 (2 s GOP, B-frames) + 48 kHz stereo AAC, as FLV."""
    return make_clip(tmp_path_factory.mktemp("media") / "clip720.flv", seconds=12)
