"""The dashboard in headless Chromium while a real ffmpeg publishes: list, play, manage."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.live import make_clip, publish, rtmp_url, running_server, stop_process, wait_for

pytestmark = pytest.mark.e2e

STEP_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "clip.flv", seconds=10)


def until(driver: Any, script: str, what: str, timeout: float = STEP_TIMEOUT) -> Any:
    """Poll a JavaScript expression in the page until it is truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def severe_console_entries(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def list_and_play(driver: Any, base: str, screenshot: Path) -> dict[str, Any]:
    """Open the dashboard, wait for cam1's card, click it and watch it play for 3 s."""
    driver.get(base + "/")
    card = 'document.querySelector(\'.card[data-channel="cam1"]\')'
    until(driver, card, "cam1's card")
    size = "1280\u00d7720"
    until(driver, f"{card}.querySelector('[data-fact=video]').textContent.includes('{size}')",
          "the card's resolution")
    until(driver, f"{card}.querySelector('img').naturalWidth > 0", "the card's thumbnail")
    facts = driver.execute_script(
        f"return Object.fromEntries([...{card}.querySelectorAll('dd')]"
        ".map(d => [d.dataset.fact, d.textContent]));")
    driver.find_element("css selector", '.card[data-channel="cam1"]').click()
    video = "document.getElementById('player')"
    started = until(driver, f"{video}.currentTime > 0 && {video}.currentTime", "playback to start")
    until(driver, f"{video}.currentTime >= {started + 3.0}", "3 s of playback", timeout=25)
    state = driver.execute_script(
        f"const v = {video}; return {{currentTime: v.currentTime, paused: v.paused, "
        "width: v.videoWidth, height: v.videoHeight, "
        "errors: window.dashboardState.hlsErrors, playing: window.dashboardState.playing};")
    driver.save_screenshot(str(screenshot))
    state["facts"] = facts
    state["console"] = severe_console_entries(driver)
    return state


async def test_dashboard_lists_the_channel_and_plays_it(
    tmp_path: Path, clip: Path, browser: Any, artifacts: Path
) -> None:
    async with running_server(tmp_path) as server:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        proc = await publish(rtmp_url(server, key), clip, loops=3)
        try:
            await wait_for(lambda: server.hub.is_live("cam1"), timeout=10, what="cam1 live")
            base = f"http://127.0.0.1:{server.http_address[1]}"
            shot = artifacts / "dashboard-playing.png"
            state = await asyncio.to_thread(list_and_play, browser, base, shot)
            viewers = server.metrics.traffic.viewers("cam1", 2.0)
        finally:
            await stop_process(proc)
    assert state["errors"] == [], state["errors"]
    assert state["playing"] == "cam1" and not state["paused"]
    assert (state["width"], state["height"]) == (1280, 720)
    assert state["facts"]["video"] == "1280\u00d7720 h264"
    assert state["facts"]["frame rate"].endswith("fps")
    assert state["console"] == [], state["console"]
    assert viewers == 1  # the page's player counts as a viewer
    assert shot.stat().st_size > 10_000


def manage(driver: Any, base: str, token: str, screenshot: Path) -> dict[str, Any]:
    """Unlock with the token, create a channel, rotate its key and kick cam1 from the page."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/")
    until(driver, "document.querySelector('.card[data-channel=\"cam1\"]')", "cam1's card")
    locked_actions = driver.execute_script(
        "return document.querySelector('.card[data-channel=\"cam1\"] .actions').hidden")
    driver.find_element("id", "token-input").send_keys(token)
    driver.find_element("css selector", "#token-form button").click()
    until(driver, "!document.getElementById('manage').hidden", "the management section")
    until(driver, "document.querySelector('#channel-rows tr[data-channel=\"cam1\"]')",
          "cam1 in the channel table")

    driver.find_element("id", "create-name").send_keys("newcam")
    driver.find_element("css selector", "#create-form button").click()
    until(driver, "!document.getElementById('secret').hidden", "the new key")
    created = driver.find_element("id", "secret-key").text
    until(driver, "document.querySelector('#channel-rows tr[data-channel=\"newcam\"]')",
          "newcam in the channel table")
    driver.find_element("id", "secret-hide").click()

    driver.find_element(
        "css selector", '#channel-rows tr[data-channel="newcam"] button').click()
    WebDriverWait(driver, STEP_TIMEOUT).until(expected_conditions.alert_is_present())
    driver.switch_to.alert.accept()
    until(driver, "!document.getElementById('secret').hidden", "the rotated key")
    rotated = driver.find_element("id", "secret-key").text
    driver.save_screenshot(str(screenshot))

    driver.find_element("css selector", '.card[data-channel="cam1"] button.danger').click()
    WebDriverWait(driver, STEP_TIMEOUT).until(expected_conditions.alert_is_present())
    driver.switch_to.alert.accept()
    until(driver, "!document.querySelector('.card[data-channel=\"cam1\"] .badge')"
          ".textContent.includes('LIVE') || !document.querySelector('.card')",
          "cam1 to go off air")
    return {
        "locked_actions": locked_actions,
        "created": created,
        "rotated": rotated,
        "session": driver.execute_script("return sessionStorage.getItem('mediaserver.apiToken')"),
        "local": driver.execute_script("return localStorage.length"),
        "notice": driver.find_element("id", "notice").text,
        "console": severe_console_entries(driver),
    }


async def test_dashboard_manages_channels_with_the_session_token(
    tmp_path: Path, clip: Path, browser: Any, artifacts: Path
) -> None:
    async with running_server(tmp_path) as server:
        store = server.store
        assert store is not None
        key = await store.create_channel("cam1")
        proc = await publish(rtmp_url(server, key), clip, loops=3)
        try:
            await wait_for(lambda: server.hub.is_live("cam1"), timeout=10, what="cam1 live")
            base = f"http://127.0.0.1:{server.http_address[1]}"
            shot = artifacts / "dashboard-manage.png"
            result = await asyncio.to_thread(manage, browser, base, server.token, shot)
            await wait_for(lambda: not server.hub.is_live("cam1"), timeout=5, what="the kick")
            assert await store.channel_for_key(result["created"]) is None  # rotated away
            assert await store.channel_for_key(result["rotated"]) == "newcam"
        finally:
            await stop_process(proc)
    assert result["locked_actions"] is True  # no token: no management buttons
    assert result["created"] != result["rotated"]
    assert result["session"] == server.token and result["local"] == 0
    assert result["notice"] == ""
    assert result["console"] == [], result["console"]
