"""Bare hls.js players in headless Chromium: any playlist URL, every event kept, no recovery.

The dashboard's player recovers from errors by itself; these do not, so a fatal
error stays visible to the test. The page is a node's /healthz (a same-origin
page without the dashboard's CSP, which allows only its own node); hls.js is
loaded from that node, and players of other nodes' URLs rely on our CORS headers.
WebDriver calls block: run these in a thread (asyncio.to_thread).
"""

from __future__ import annotations

from typing import Any

from tests.e2e.test_dashboard import until

_START = """
const [name, url] = arguments;
const video = document.createElement('video');
video.muted = true;
document.body.appendChild(video);
const state = {errors: [], frags: [], video};
const hls = new Hls({liveDurationInfinity: true});
hls.on(Hls.Events.ERROR, (_e, d) => state.errors.push(
  {type: d.type, details: d.details, fatal: d.fatal}));
hls.on(Hls.Events.FRAG_CHANGED, (_e, d) => state.frags.push(
  {sn: d.frag.sn, cc: d.frag.cc, at: video.currentTime}));
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
hls.loadSource(url);
hls.attachMedia(video);
(window.players = window.players || {})[name] = state;
"""

_STATE = """
const s = window.players[arguments[0]];
return {currentTime: s.video.currentTime, paused: s.video.paused,
        width: s.video.videoWidth, height: s.video.videoHeight,
        errors: s.errors, fatal: s.errors.filter(e => e.fatal), frags: s.frags};
"""


def open_page(driver: Any, node_base: str) -> None:
    """A blank same-origin page on `node_base` with hls.js loaded from it."""
    driver.get(node_base + "/healthz")
    driver.execute_script(
        "const s = document.createElement('script'); s.src = arguments[0];"
        "document.head.appendChild(s);", node_base + "/static/vendor/hls.min.js")
    until(driver, "window.Hls && Hls.isSupported()", "hls.js to load")


def start(driver: Any, name: str, url: str) -> None:
    driver.execute_script(_START, name, url)


def state(driver: Any, name: str) -> dict[str, Any]:
    """currentTime, paused, picture size, every error (and the fatal ones), fragments played."""
    return driver.execute_script(_STATE, name)  # type: ignore[no-any-return]


def plays(driver: Any, name: str, seconds: float, timeout: float = 40.0) -> dict[str, Any]:
    """Wait until player `name` has played `seconds` more than now; its state then."""
    began = state(driver, name)["currentTime"]
    until(driver, f"window.players[{name!r}].video.currentTime >= {began + seconds}",
          f"{name} to play {seconds:g}s more", timeout)
    return state(driver, name)
