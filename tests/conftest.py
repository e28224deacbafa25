"""Suite-wide settings and fixtures: tests run on uvloop, the loop `mediaserver serve`
runs on; `redis_server` is a throwaway real redis-server for one test."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
