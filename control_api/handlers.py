"""Route handlers of the control API: translate HTTP to store and live-system calls."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import web

from control_api.bodies import read_string_fields
from control_api.errors import ApiError, ErrorCode
from control_api.keys import InvalidChannelName, is_valid_channel_name, validate_channel_name
from control_api.live import LiveControl, StreamStats
from control_api.store import Channel, ChannelExists, ChannelNotFound, ChannelStore
from control_api.urls import PublicUrls

# Longest publish ban one kick may set. A week covers "take this channel off air for the
# event"; anything longer is what deleting the channel or rotating its key is for.
MAX_BLOCK_SECONDS = 7 * 24 * 3600.0

KICK_REASON_API = "kicked through the control API"
KICK_REASON_ROTATED = "stream key rotated"
KICK_REASON_DELETED = "channel deleted"


@dataclass(frozen=True, slots=True)
class ApiHandlers:
    """The handlers, bound to the store and live system they act on."""

    store: ChannelStore
    live: LiveControl
    urls: PublicUrls

    async def create_channel(self, request: web.Request) -> web.Response:
        name = (await read_string_fields(request, ("name",)))["name"]
        try:
            validate_channel_name(name)
        except InvalidChannelName as exc:
            raise ApiError(422, ErrorCode.INVALID_NAME, str(exc)) from None
        try:
            key = await self.store.create_channel(name)
        except ChannelExists:
            raise ApiError(
                409, ErrorCode.CHANNEL_EXISTS, f"channel {name!r} already exists"
            ) from None
        return web.json_response(self.urls.credentials(name, key), status=201)

    async def list_channels(self, request: web.Request) -> web.Response:
        channels = await self.store.list_channels()
        live = await self._live_channels()
        return web.json_response(
            {"channels": [self._channel_json(channel, live) for channel in channels]}
        )

    async def get_channel(self, request: web.Request) -> web.Response:
        channel = await self._existing_channel(request.match_info["name"])
        return web.json_response(self._channel_json(channel, await self._live_channels()))

    async def rotate_key(self, request: web.Request) -> web.Response:
        name = _channel_name(request)
        try:
            key = await self.store.rotate_key(name)
        except ChannelNotFound:
            raise _channel_not_found(name) from None
        await self.live.kick(name, KICK_REASON_ROTATED)
        return web.json_response(self.urls.credentials(name, key))

    async def delete_channel(self, request: web.Request) -> web.Response:
        name = _channel_name(request)
        if not await self.store.delete_channel(name):
            raise _channel_not_found(name)
        await self.live.kick(name, KICK_REASON_DELETED)
        return web.Response(status=204)

    async def validate_key(self, request: web.Request) -> web.Response:
        key = (await read_string_fields(request, ("stream_key",)))["stream_key"]
        channel = await self.store.channel_for_key(key)
        return web.json_response({"valid": channel is not None, "channel": channel})

    async def list_streams(self, request: web.Request) -> web.Response:
        streams = sorted(await self.live.live_streams(), key=lambda stats: stats.channel)
        return web.json_response({"streams": [_stats_json(stats) for stats in streams]})

    async def kick_stream(self, request: web.Request) -> web.Response:
        name = request.match_info["channel"]
        block_seconds = _block_seconds(request)
        if not is_valid_channel_name(name):
            raise _stream_not_live(name) if block_seconds == 0 else _channel_not_found(name)
        if block_seconds == 0:
            if not await self.live.kick(name, KICK_REASON_API):
                raise _stream_not_live(name)
            kicked = True
        else:
            # A ban on a name no channel has would be silently useless: refuse it.
            if not await self.live.is_live(name) and await self.store.get_channel(name) is None:
                raise _channel_not_found(name)
            kicked = await self.live.kick(name, KICK_REASON_API, block_seconds)
        return web.json_response(
            {"channel": name, "kicked": kicked, "block_seconds": block_seconds}
        )

    async def _existing_channel(self, name: str) -> Channel:
        channel = await self.store.get_channel(name) if is_valid_channel_name(name) else None
        if channel is None:
            raise _channel_not_found(name)
        return channel

    async def _live_channels(self) -> set[str]:
        """Channels live anywhere: the store's online records (every node) and, fresher,
        what this node holds."""
        return await self.store.online_channels() | self.live.live_here()

    def _channel_json(self, channel: Channel, live: set[str]) -> dict[str, object]:
        return {
            "name": channel.name,
            "created_at": channel.created_at,
            "key_rotated_at": channel.key_rotated_at,
            "live": channel.name in live,
            "rtmp_url": self.urls.rtmp_url(),
            "playback_url": self.urls.playback_url(channel.name),
        }


def _channel_name(request: web.Request) -> str:
    """The {name} path segment, or 404 when no channel could carry that name."""
    name = request.match_info["name"]
    if not is_valid_channel_name(name):
        raise _channel_not_found(name)
    return name


def _channel_not_found(name: str) -> ApiError:
    return ApiError(404, ErrorCode.CHANNEL_NOT_FOUND, f"no channel named {name!r}")


def _stream_not_live(name: str) -> ApiError:
    return ApiError(404, ErrorCode.STREAM_NOT_LIVE, f"channel {name!r} is not live")


def _block_seconds(request: web.Request) -> float:
    """The optional `block_seconds` query parameter: a finite number in [0, max]."""
    values = request.query.getall("block_seconds", [])
    if not values:
        return 0.0
    problem = f"block_seconds must be a number from 0 to {MAX_BLOCK_SECONDS:g}"
    if len(values) > 1:
        raise ApiError(422, ErrorCode.INVALID_QUERY, "block_seconds given more than once")
    try:
        seconds = float(values[0])
    except ValueError:
        raise ApiError(422, ErrorCode.INVALID_QUERY, problem) from None
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_BLOCK_SECONDS):
        raise ApiError(422, ErrorCode.INVALID_QUERY, problem)
    return seconds


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or Infinity; an unmeasurable figure is reported as null."""
    return value if value is not None and math.isfinite(value) else None


def _stats_json(stats: StreamStats) -> dict[str, object]:
    return {
        "channel": stats.channel,
        "publisher": stats.publisher,
        "started_at": _finite(stats.started_at) or 0.0,
        "video_codec": stats.video_codec,
        "width": stats.width,
        "height": stats.height,
        "fps": _finite(stats.fps),
        "bitrate_bps": _finite(stats.bitrate_bps) or 0.0,
        "keyframe_interval": _finite(stats.keyframe_interval),
        "audio_codec": stats.audio_codec,
        "sample_rate": stats.sample_rate,
        "audio_channels": stats.audio_channels,
        "warnings": list(stats.warnings),
    }
