"""hls.js in headless Chromium playing a channel from nodes that do not hold its publisher.

Three `mediaserver serve` processes on one real redis-server; real ffmpeg publishes
to node A; players play the same channel's URL on nodes B and C. Node A is then
SIGKILLed and the encoder republishes to B: the player on C must carry on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from benchmarks.servers import OurServer
from tests.e2e import player
from tests.e2e.test_dashboard import list_and_play
from tests.live import metric_samples, publish, publishing, server_processes, stop_process, wait_for
from tests.m3u8 import parse_playlist
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

CHANNEL = "cam1"


def base(node: OurServer) -> str:
    return f"http://127.0.0.1:{node.http_port}"


def playback(node: OurServer) -> str:
    return f"{base(node)}/live/{CHANNEL}/index.m3u8"


async def create_channel(session: aiohttp.ClientSession, node: OurServer) -> str:
    async with session.post(f"{base(node)}/api/v1/channels", json={"name": CHANNEL},
                            headers={"Authorization": f"Bearer {node.token}"}) as response:
        assert response.status == 201
        return str((await response.json())["stream_key"])


async def segments_on(session: aiohttp.ClientSession, node: OurServer, count: int) -> bool:
    async with session.get(playback(node)) as response:
        return response.status == 200 and len(
            parse_playlist(await response.text()).segments) >= count


async def origin_fetches(session: aiohttp.ClientSession, node: OurServer) -> float:
    """Media this node fetched from another node (its edge at work)."""
    async with session.get(f"{base(node)}/metrics") as response:
        samples = metric_samples(await response.text())
    return sum(value for (name, labels), value in samples.items()
               if name == "mediaserver_edge_origin_fetches_total"
               and ("kind", "media") in labels and ("result", "ok") in labels)


def play_on_b_and_c(driver: Any, b: OurServer, c: OurServer) -> dict[str, dict[str, Any]]:
    player.open_page(driver, base(c))
    player.start(driver, "b", playback(b))
    player.start(driver, "c", playback(c))
    return {name: player.plays(driver, name, 4.0) for name in ("b", "c")}


def dashboard_on(driver: Any, node: OurServer, screenshot: Path) -> dict[str, Any]:
    driver.get_log("browser")  # what the players' page said is not the dashboard's
    return list_and_play(driver, base(node), screenshot)


async def test_published_to_a_it_plays_from_b_and_c(
        redis_server: RedisServer, clip: Path, browser: Any, artifacts: Path) -> None:
    async with server_processes(3, "--store", redis_server.url) as (a, b, c), \
            aiohttp.ClientSession() as session:
        key = await create_channel(session, a)
        async with publishing(f"rtmp://127.0.0.1:{a.rtmp_port}/live/{key}", clip, loops=5):
            await wait_for(lambda: segments_on(session, a, 3), timeout=20,
                           what="three segments on A")
            states = await asyncio.to_thread(play_on_b_and_c, browser, b, c)
            fetched = {node: await origin_fetches(session, node) for node in (a, b, c)}
            # B's dashboard lists A's stream, shows its picture and plays it through B.
            dashboard = await asyncio.to_thread(dashboard_on, browser, b,
                                                artifacts / "dashboard-on-b.png")
        assert dashboard["errors"] == [] and dashboard["console"] == [], dashboard
        assert dashboard["playing"] == CHANNEL and not dashboard["paused"]
        assert (dashboard["width"], dashboard["height"]) == (1280, 720)
        assert dashboard["facts"]["node"] not in ("", "this node")  # A's id
    for name, state in states.items():
        assert state["fatal"] == [], (name, state["errors"])
        assert not state["paused"] and (state["width"], state["height"]) == (1280, 720)
        assert len(state["frags"]) >= 2, (name, state["frags"])
    # B and C served it through their edges, from A; A held it and fetched nothing.
    assert fetched[b] > 0 and fetched[c] > 0 and fetched[a] == 0


def watch_through_failover(driver: Any, c: OurServer, kill_a: Any) -> dict[str, Any]:
    """Play on C, let kill_a() crash A and republish to B, then watch C go on."""
    player.open_page(driver, base(c))
    player.start(driver, "c", playback(c))
    before = player.plays(driver, "c", 3.0)
    kill_a()
    # Played across the discontinuity (a fragment of the next one), and well beyond.
    player.until(driver, "window.players.c.frags.some(f => f.cc >= 1)",
                 "a fragment after the discontinuity", timeout=40)
    after = player.plays(driver, "c", 6.0, timeout=30)
    return {"before": before, "after": after}


async def test_a_crashed_origin_republished_to_b_plays_on_through_c(
        redis_server: RedisServer, clip: Path, browser: Any) -> None:
    async with server_processes(3, "--store", redis_server.url) as (a, b, c), \
            aiohttp.ClientSession() as session:
        key = await create_channel(session, a)
        encoder = await publish(f"rtmp://127.0.0.1:{a.rtmp_port}/live/{key}", clip, loops=5)
        republished: list[asyncio.subprocess.Process] = []
        loop = asyncio.get_running_loop()
        killed_at: list[float] = []

        def kill_a() -> None:
            os.kill(a.pid, signal.SIGKILL)
            killed_at.append(time.monotonic())
            # The encoder's connection dies with A; it reconnects, to B.
            asyncio.run_coroutine_threadsafe(
                _republish(f"rtmp://127.0.0.1:{b.rtmp_port}/live/{key}", clip, republished),
                loop).result(timeout=10)

        try:
            await wait_for(lambda: segments_on(session, a, 3), timeout=20,
                           what="three segments on A")
            seen = await asyncio.to_thread(watch_through_failover, browser, c, kill_a)
            await asyncio.wait_for(encoder.wait(), timeout=10)  # A's connection is gone
            assert await segments_on(session, b, 1)  # B is the origin now
        finally:
            await stop_process(encoder)
            for process in republished:
                await stop_process(process)
    after = seen["after"]
    assert after["fatal"] == [], after["errors"]
    assert not after["paused"]
    assert after["currentTime"] >= seen["before"]["currentTime"] + 6.0
    ccs = [frag["cc"] for frag in after["frags"]]
    assert ccs == sorted(ccs) and ccs[0] == 0 and ccs[-1] == 1  # one discontinuity, crossed
    print(f"player on C: {len(after['frags'])} fragments, "
          f"{after['currentTime']:.1f}s played; non-fatal errors: "
          f"{[e['details'] for e in after['errors']]}")


async def _republish(url: str, clip: Path, started: list[asyncio.subprocess.Process]) -> None:
    started.append(await publish(url, clip, loops=5))
