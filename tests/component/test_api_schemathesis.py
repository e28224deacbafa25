"""Property test: schemathesis drives the running API from its own openapi.json.

Every generated request (valid and invalid) must get a documented status, never a 5xx,
and a body that validates against the schema documented for that status.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from control_api.app import API_PREFIX, create_root_app
from control_api.openapi import build_openapi
from control_api.store import open_store
from control_api.urls import PublicUrls
from tests.api_fakes import FakeLive

TOKEN = "schemathesis-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URLS = PublicUrls("rtmp://127.0.0.1:1935/live", "http://127.0.0.1:8080")
START_DEADLINE = 10.0
MAX_EXAMPLES = 80

schema = schemathesis.openapi.from_dict(build_openapi())


class ApiThread:
    """The API on 127.0.0.1, an ephemeral port, in its own thread and event loop.

    Schemathesis sends blocking requests, so the server cannot share the test's loop.
    """

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-under-test", daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.run_until_complete(self._store.close())
        self._loop.close()

    async def _start(self) -> web.AppRunner:
        self._store = open_store(None, self._data_dir)
        await self._store.create_channel("demo")
        live = FakeLive()
        app = create_root_app(self._store, live, TOKEN, URLS)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner

    def __enter__(self) -> str:
        self._thread.start()
        if not self._ready.wait(START_DEADLINE):
            raise RuntimeError("API server did not start")
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_DEADLINE)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ApiThread(tmp_path_factory.mktemp("api")) as url:
        yield url


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_openapi(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers=AUTH, timeout=10)
