"""The dashboard with streams Chromium cannot show as video: HEVC, and audio only.

ffmpeg 5.1 cannot put HEVC in FLV, so the HEVC publish is the benchmark publisher
replaying an Enhanced RTMP (`hvc1`) feed made from a libx265 clip; the audio-only
publish is a real ffmpeg.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.chunked import ChunkedClip
from benchmarks.hevcclip import ensure_hevc_clip, hevc_flv_tags
from benchmarks.pacer import Feed, Pacer
from benchmarks.publisher import RtmpPublisher
from mediaserver.app import MediaServer
from tests.e2e.test_dashboard import severe_console_entries, until
from tests.live import make_clip, publishing, rtmp_url, running_server, wait_for

pytestmark = pytest.mark.e2e

HEVC_PROBE = "MediaSource.isTypeSupported('video/mp4; codecs=\"hvc1.1.6.L93.B0\"')"
# How long the page is watched after it gave up (or should have): longer than the
# thumbnail refresh (5 s) and than hls.js's retry cycle (a fatal error every ~2.5 s).
OBSERVE_SECONDS = 8.0
CARD = "document.querySelector('.card[data-channel=\"{}\"]')"
PLAYER_STATE = (
    "return {error: document.getElementById('player-error').textContent, "
    "errorShown: !document.getElementById('player-error').hidden, "
    "state: document.getElementById('player-state').textContent, "
    "fatal: window.dashboardState.hlsErrors.filter(e => e.fatal).length, "
    "errors: window.dashboardState.hlsErrors.length, "
    "hls: window.dashboardState.hls !== null, "
    "playlists: performance.getEntriesByType('resource')"
    ".filter(e => e.name.includes('.m3u8')).length};")


@pytest.fixture(scope="module")
def hevc_clip(tmp_path_factory: pytest.TempPathFactory) -> ChunkedClip:
    try:
        path = ensure_hevc_clip(tmp_path_factory.mktemp("hevc"), seconds=4)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no libx265 to make an HEVC feed: {exc}")
    return ChunkedClip.build(hevc_flv_tags(path))


@contextlib.asynccontextmanager
async def publishing_hevc(server: MediaServer, key: str, clip: ChunkedClip
                          ) -> AsyncIterator[None]:
    """The benchmark publisher sending the HEVC feed in real time, looped."""
    publisher = RtmpPublisher("127.0.0.1", server.rtmp_address[1], "live", key)
    outcome = await publisher.publish()
    assert outcome.ok and publisher.transport is not None, outcome
    loop = asyncio.get_running_loop()
    pacer = Pacer()
    pacer.start(loop.time() + 120)
    pacer.add(Feed(clip, publisher.transport, publisher.stream_id, loop.time()))
    try:
        yield
    finally:
        await pacer.stop()
        await publisher.close()


def observe(driver: Any, seconds: float) -> list[dict[str, Any]]:
    """The player's state every half second for `seconds` (a bounded watch, not a wait)."""
    states = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        states.append(driver.execute_script(PLAYER_STATE))
        time.sleep(0.5)
    return states


def open_hevc(driver: Any, base: str, force_hlsjs: bool) -> dict[str, Any]:
    driver.get(base + "/")
    card = CARD.format("hevc1")
    until(driver, f"{card} && {card}.querySelector('[data-fact=video]')"
          ".textContent.includes('hevc')", "the HEVC card")
    if driver.execute_script(f"return {HEVC_PROBE};"):
        return {"plays_hevc": True}
    card_note = driver.execute_script(
        f"return {card}.querySelector('.unplayable')?.textContent ?? '';")
    if force_hlsjs:
        # Pretend MediaSource said yes, so the page starts hls.js and meets the codec
        # error where the browser really fails: at addSourceBuffer.
        driver.execute_script(
            "const probe = MediaSource.isTypeSupported.bind(MediaSource);"
            "MediaSource.isTypeSupported = (t) => t.includes('L93.B0') || probe(t);")
    until(driver, f"{card}.querySelector('img').naturalWidth > 0", "the HEVC thumbnail")
    driver.find_element("css selector", '.card[data-channel="hevc1"]').click()
    until(driver, "!document.getElementById('player-error').hidden", "the player's message")
    states = observe(driver, OBSERVE_SECONDS)
    return {"plays_hevc": False, "card_note": card_note, "states": states,
            "console": severe_console_entries(driver)}


async def hevc_page(tmp_path: Path, browser: Any, artifacts: Path, clip: ChunkedClip,
                    through_hlsjs: bool, screenshot: str) -> dict[str, Any]:
    """Publish the HEVC clip, open its card; skip where this Chromium decodes HEVC."""
    async with running_server(tmp_path) as server:
        key = await server.store.create_channel("hevc1")  # type: ignore[union-attr]
        async with publishing_hevc(server, key, clip):
            await wait_for(lambda: server.hub.is_live("hevc1"), timeout=10, what="hevc1 live")
            base = f"http://127.0.0.1:{server.http_address[1]}"
            result = await asyncio.to_thread(open_hevc, browser, base, through_hlsjs)
            if result["plays_hevc"]:
                pytest.skip("this Chromium decodes HEVC: nothing to refuse")
            await asyncio.to_thread(browser.save_screenshot, str(artifacts / screenshot))
    return result


async def test_dashboard_says_once_that_this_browser_cannot_play_hevc(
    tmp_path: Path, browser: Any, artifacts: Path, hevc_clip: ChunkedClip
) -> None:
    result = await hevc_page(tmp_path, browser, artifacts, hevc_clip, False, "dashboard-hevc.png")
    states = result["states"]
    first, last = states[0], states[-1]
    assert "cannot play HEVC video" in result["card_note"]
    assert "This browser cannot play HEVC video" in first["error"] and first["errorShown"]
    assert "/live/hevc1/index.m3u8" in first["error"]
    assert last["state"] == "not playable here"
    # Said once and left alone: no player, not one playlist request, no hls.js errors.
    assert all(s == first for s in states), states
    assert (last["hls"], last["playlists"], last["errors"]) == (False, 0, 0)
    assert result["console"] == [], result["console"]


async def test_dashboard_stops_on_the_first_hlsjs_codec_error(
    tmp_path: Path, browser: Any, artifacts: Path, hevc_clip: ChunkedClip
) -> None:
    result = await hevc_page(tmp_path, browser, artifacts, hevc_clip, True,
                             "dashboard-hevc-hlsjs.png")
    states = result["states"]
    first, last = states[0], states[-1]
    assert last["fatal"] == 1, states  # before: a fatal error and a retry every few seconds
    assert "cannot decode this stream (bufferAddCodecError" in first["error"]
    assert not last["hls"] and last["state"] == "not playable here"
    assert last["playlists"] == first["playlists"]  # nothing more asked of the server


def open_audio_only(driver: Any, base: str) -> dict[str, Any]:
    driver.get(base + "/")
    card = CARD.format("radio")
    until(driver, f"{card} && {card}.querySelector('[data-fact=audio]')"
          ".textContent.includes('aac')", "the audio-only card")
    deadline = time.monotonic() + OBSERVE_SECONDS
    thumbnails: list[int] = []
    while time.monotonic() < deadline:  # a bounded watch across thumbnail refreshes
        thumbnails.append(driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('thumbnail.jpg')).length;"))
        time.sleep(0.5)
    look = driver.execute_script(
        f"const c = {card}; const img = c.querySelector('img');"
        "return {imgHidden: img.hidden, imgSrc: img.getAttribute('src'),"
        "imgVisible: img.getBoundingClientRect().height > 0 && "
        "getComputedStyle(img).display !== 'none',"
        "placeholder: c.querySelector('.thumb span:not(.badge)').textContent,"
        "placeholderVisible: !c.querySelector('.thumb span:not(.badge)').hidden,"
        "video: c.querySelector('[data-fact=video]').textContent};")
    driver.save_screenshot(str(ARTIFACT_AUDIO))
    driver.find_element("css selector", '.card[data-channel="radio"]').click()
    video = "document.getElementById('player')"
    until(driver, f"{video}.currentTime > 1", "audio-only playback", timeout=25)
    look["thumbnails"] = thumbnails
    look["console"] = severe_console_entries(driver)
    look["errors"] = driver.execute_script("return window.dashboardState.hlsErrors;")
    return look


ARTIFACT_AUDIO = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard-audio.png"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI")
async def test_audio_only_channel_shows_no_broken_picture_and_plays(
    tmp_path: Path, browser: Any, artifacts: Path
) -> None:
    clip = make_clip(tmp_path / "audio.flv", seconds=6, video=False)
    async with running_server(tmp_path / "data") as server:
        key = await server.store.create_channel("radio")  # type: ignore[union-attr]
        async with publishing(rtmp_url(server, key), clip, loops=5):
            await wait_for(lambda: server.hub.is_live("radio"), timeout=10, what="radio live")
            base = f"http://127.0.0.1:{server.http_address[1]}"
            look = await asyncio.to_thread(open_audio_only, browser, base)
    assert set(look["thumbnails"]) == {0}  # never asked for a picture that cannot exist
    assert look["video"] == "none"
    assert look["placeholder"] == "audio only" and look["placeholderVisible"]
    assert look["imgHidden"] and not look["imgVisible"] and look["imgSrc"] is None
    assert look["console"] == [], look["console"]
    assert look["errors"] == [], look["errors"]
