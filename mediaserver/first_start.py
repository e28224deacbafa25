"""What a server does once when it starts: the API token, channel `demo`, the banner.

A single process does this itself; with `--workers N` the supervisor does it once,
before any worker starts, so N workers never race to create the token file or the
demo channel, and the operator sees one banner.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from control_api.app import API_PREFIX
from control_api.store import ChannelStore, StoreError
from control_api.urls import PublicUrls

from .config import Config

log = logging.getLogger("mediaserver")

TOKEN_FILENAME = "api_token"
DEMO_CHANNEL = "demo"


@dataclass(frozen=True, slots=True)
class FirstStart:
    """What a first start created, to be shown once to the operator."""

    demo_key: str | None
    token_generated: bool


def load_or_create_token(config: Config) -> tuple[str, bool]:
    """The API token: configured, or kept in the data directory (created 0600 once)."""
    if config.api_token:
        return config.api_token, False
    path = config.data_dir / TOKEN_FILENAME
    if path.exists():
        return path.read_text().strip(), False
    token = secrets.token_urlsafe(32)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, True


async def ensure_demo_channel(store: ChannelStore) -> str | None:
    """First start with an empty store: create channel `demo` and return its key."""
    try:
        if await store.list_channels():
            return None
        return await store.create_channel(DEMO_CHANNEL)
    except StoreError as exc:
        log.warning("could not check or create the demo channel: %s", exc)
        return None


def public_urls(config: Config, rtmp_port: int, http_port: int) -> PublicUrls:
    host = config.url_host
    return PublicUrls(
        rtmp_base=f"rtmp://{host}:{rtmp_port}/{config.app}",
        http_base=f"http://{host}:{http_port}",
    )


def banner(urls: PublicUrls, first_start: FirstStart, token: str, data_dir: Path) -> str:
    """What an operator sees at start: where to publish and play, and first-start secrets."""
    lines = [
        "",
        f"  RTMP ingest : {urls.rtmp_url()}",
        f"  Playback    : {urls.playback_url('CHANNEL')}",
        f"  Dashboard   : {urls.http_base}/",
        f"  Control API : {urls.http_base}{API_PREFIX}/ (Bearer token)",
    ]
    if first_start.demo_key:
        lines += [
            "",
            f"  Channel '{DEMO_CHANNEL}' created. In OBS: Settings > Stream > Service: Custom",
            f"    Server     : {urls.rtmp_url()}",
            f"    Stream key : {first_start.demo_key}",
            f"    Play it at : {urls.playback_url(DEMO_CHANNEL)}",
        ]
    if first_start.token_generated:
        lines += ["", f"  API token (kept in {Path(data_dir) / TOKEN_FILENAME}): {token}"]
    return "\n".join(lines) + "\n"
