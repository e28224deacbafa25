"""Suite-wide settings and fixtures: tests run on uvloop, the loop `mediaserver serve`
runs on; `redis_server` is a throwaway real redis-server for one test; `clip` is one
encoder-like clip for the whole session."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvloop

from tests.redis_server import REDIS_SERVER, RedisServer


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> Mapping[str, Any]:
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of 1280x720 30 fps H.264 (2 s GOP, B-frames) + 48 kHz stereo AAC, as FLV."""
    from tests.live import make_clip  # only for tests that use it: it loads the server

    return make_clip(tmp_path_factory.mktemp("media") / "clip720.flv", seconds=12)


@pytest.fixture(params=["aiohttp", "hot"])
def http_path(request: pytest.FixtureRequest) -> str:
    """Each HLS HTTP test runs through aiohttp alone and through the hot path in front
    of it (tests/http_paths.py), which must answer alike."""
    return str(request.param)
