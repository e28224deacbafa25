"""Control API: channels, stream keys, live status and kicks over HTTP, plus their stores.

Talks to the live system only through `live.LiveControl`; never imports `mediaserver`,
`rtmp` or `hls`.
"""

from control_api.app import API_PREFIX, create_api_app, create_root_app
from control_api.auth_webhook import AuthDecision, AuthWebhook
from control_api.keys import InvalidChannelName, strip_key_query, validate_channel_name
from control_api.live import LiveControl, StreamStats
from control_api.store import (
    Channel,
    ChannelExists,
    ChannelNotFound,
    ChannelStore,
    StoreError,
    StoreUnavailable,
    open_store,
)
from control_api.urls import PublicUrls
from control_api.webhooks import WebhookSender

__all__ = [
    "API_PREFIX",
    "AuthDecision",
    "AuthWebhook",
    "Channel",
    "ChannelExists",
    "ChannelNotFound",
    "ChannelStore",
    "InvalidChannelName",
    "LiveControl",
    "PublicUrls",
    "StoreError",
    "StoreUnavailable",
    "StreamStats",
    "WebhookSender",
    "create_api_app",
    "create_root_app",
    "open_store",
    "strip_key_query",
    "validate_channel_name",
]
