"""Who may publish: the RTMP server's PublishPolicy, from stream key to channel to hub.

The key is looked up in the channel store (or asked of the platform's auth
webhook); a store that cannot be reached refuses the publish with a clear
reason (fail closed), in words encoders take as "try again" (NetStream.Failed),
never as "wrong key" (NetStream.Publish.BadName, after which OBS stops retrying).
The key itself never reaches a log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from control_api.auth_webhook import AuthWebhook
from control_api.store import ChannelStore, StoreUnavailable
from hls.resume import PlaylistResume
from rtmp.events import PublishRequested
from rtmp.server import PublishAccepted, PublishRejected, RtmpSession

from .hub import Refusal, StreamHub

log = logging.getLogger("mediaserver.ingest")


@dataclass(frozen=True, slots=True)
class Admission:
    """What other nodes have to say about a publish: a refusal, or a playlist to carry on."""

    refusal: Refusal | None = None
    resume: PlaylistResume | None = None


class PublishGate(Protocol):
    """Asked before the hub's (synchronous) start_publish, when other nodes exist."""

    async def admit(self, channel: str) -> Admission: ...


class IngestPolicy:
    """rtmp.server.PublishPolicy for this server: one application, keys from the store."""

    def __init__(
        self,
        hub: StreamHub,
        store: ChannelStore,
        app: str = "live",
        auth_webhook: AuthWebhook | None = None,
        gate: PublishGate | None = None,
    ) -> None:
        self.hub = hub
        self.store = store
        self.app = app
        self.auth_webhook = auth_webhook
        self.gate = gate

    def app_exists(self, app: str) -> bool:
        return app == self.app

    async def authorize(
        self, session: RtmpSession, request: PublishRequested
    ) -> PublishAccepted | PublishRejected:
        # Unknown apps are refused at connect; this guards a policy used without that.
        if request.app != self.app:
            return PublishRejected(
                f"unknown application {request.app!r}: publish to rtmp://HOST/{self.app}",
                result="bad_app",
            )
        channel = await self._channel_for(session, request)
        if isinstance(channel, PublishRejected):
            return channel
        refusal = self.hub.refusal_for(channel)
        resume = None
        if refusal is None and self.gate is not None:
            admission = await self.gate.admit(channel)
            resume = admission.resume
            # Checked again: the hub may have changed while other nodes were asked.
            refusal = admission.refusal or self.hub.refusal_for(channel)
        if refusal is not None:
            return PublishRejected(refusal.description, result=refusal.result)
        publisher = self.hub.start_publish(channel, session.peer, session, resume=resume)
        return PublishAccepted(publisher, channel)

    async def _channel_for(
        self, session: RtmpSession, request: PublishRequested
    ) -> str | PublishRejected:
        if self.auth_webhook is not None:
            client_ip = session.peer.rsplit(":", 1)[0]
            decision = await self.auth_webhook.authorize(request.app, request.stream_name,
                                                         client_ip)
            if not decision.allowed or decision.channel is None:
                return PublishRejected(f"publish denied: {decision.reason}", result="bad_key")
            return decision.channel
        try:
            channel = await self.store.channel_for_key(request.stream_name)
        except StoreUnavailable as exc:
            log.warning("publish refused peer=%s: channel store unavailable: %s",
                        session.peer, exc)
            return PublishRejected(
                "the stream key store is unavailable; try again shortly",
                code="NetStream.Failed", result="unavailable",
            )
        if channel is None:
            return PublishRejected("unknown stream key", result="bad_key")
        return channel
