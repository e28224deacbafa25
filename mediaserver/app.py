"""The composition root: store, hub, RTMP listener and HTTP app on one event loop.

Start-up order is store -> sockets and HTTP app -> cluster (with a Redis store)
-> hub -> HTTP serving -> RTMP (publishers are let in last, once everything they
feed exists). Every part is pushed onto one exit stack as it starts, so shutdown
and a failed start both run the other way round; the hub ends every playlist with
ENDLIST while HTTP still serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

from aiohttp import web

from control_api.app import API_PREFIX, create_api_app
from control_api.auth_webhook import AuthWebhook
from control_api.live import LiveControl
from control_api.redis_store import RedisStore
from control_api.store import ChannelStore, StoreError, open_store
from control_api.urls import PublicUrls
from control_api.webhooks import WebhookSender
from hls.http import HLS_HOT, HLS_SIGNALS, add_hls_routes
from hls.spill import SpillDirectory
from rtmp.server import RtmpServer

from .cluster import Cluster, ClusterSettings
from .cluster.edge import Locate, ProxyEdge, RedirectEdge, make_edge
from .config import Config
from .dashboard import ClusterCards, Dashboard
from .fdlimit import plan_caps, raise_fd_limit
from .first_start import FirstStart, ensure_demo_channel, load_or_create_token, public_urls
from .hot_http import HotFront
from .http_limits import PROBE_RESERVE_CONNECTIONS, GuardedSockSite, HttpGate, HttpLimits
from .hub import HubEvent, HubSettings, StreamHub
from .ingest import IngestPolicy
from .listeners import SharedListeners, bound
from .ll_metrics import blocked_request_families
from .local_live import HubLive
from .memory import release_free_memory
from .metrics import ServerMetrics, hot_path_families
from .thumbnails import Thumbnailer

log = logging.getLogger("mediaserver")

# Online status in a shared store lapses unless refreshed: a crashed node's
# streams stop showing as live within this long.
ONLINE_TTL_SECONDS = 30.0
ONLINE_REFRESH_SECONDS = 10.0
# /readyz answers 503 rather than hang when the store neither answers nor fails.
READY_CHECK_TIMEOUT = 2.0
# Under --data-dir: expired segments' files (--expired-segments disk), per process.
SPILL_DIRECTORY = "expired"


class MediaServer:
    """Owns every long-lived part; start() and stop() are the whole lifecycle."""

    def __init__(self, config: Config, shared: SharedListeners | None = None) -> None:
        """`shared`: a worker's listeners, bound by its supervisor (None: bind our own)."""
        self.config = config
        self.shared = shared
        self.hub = StreamHub(
            HubSettings(
                segment_duration=config.segment_duration,
                playlist_size=config.playlist_size,
                grace_period=config.grace_period,
                duplicate_publish=config.duplicate_publish,
                max_stream_memory=config.max_stream_memory,
                part_duration=config.part_duration if config.ll_hls == "on" else None,
            )
        )
        self.thumbnails = Thumbnailer(exists=lambda name: name in self.hub.channels)
        self.hub.tap_factories.append(self.thumbnails.tap)
        self.hub.drop_listeners.append(lambda names: release_free_memory())
        self.metrics = ServerMetrics(self.hub, lambda: self.rtmp, lambda: self.thumbnails.stats,
                                     lambda: self.http_gate)
        self.store: ChannelStore | None = None
        self.token = ""
        self.rtmp: RtmpServer | None = None
        self.rtmp_address: tuple[str, int] = ("", 0)
        self.http_address: tuple[str, int] = ("", 0)
        # A worker's own HTTP listener (bound when several workers share the public
        # port, which cannot address one of them); None for a single process.
        self.private_http_address: tuple[str, int] | None = None
        self.urls: PublicUrls | None = None
        self.first_start = FirstStart(None, False)
        self._runner: web.AppRunner | None = None
        self._auth_webhook: AuthWebhook | None = None
        self._webhooks: WebhookSender | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._exit_stack = contextlib.AsyncExitStack()
        self.http_gate: HttpGate | None = None
        # Answers the hot HLS requests below aiohttp (None: --http-fast-path off).
        self.http_hot: HotFront | None = None
        self._stopped = False
        # Unique per process start: a restarted node (same host, and in a container
        # the same pid) must not be taken for its predecessor while that one's
        # records are still lapsing.
        self._node = f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(3)}"
        # With a Redis store this node is part of a cluster (mediaserver.cluster).
        self.cluster: Cluster | None = None
        # The origin's base URL for a channel whose publisher another node holds
        # (None: held here, or nowhere); None without a cluster.
        self.cluster_locate: Locate | None = None
        # Serves playback URLs of channels held elsewhere (set at start with a locate).
        self.edge: ProxyEdge | RedirectEdge | None = None

    async def start(self) -> None:
        """Start every part; if one fails, whatever had started is closed again.

        Each part is pushed onto one exit stack as it starts, so stop() and a failed
        start unwind the same way: every playlist ended (while HTTP still serves it),
        RTMP, the hub, HTTP, sockets, webhooks, the store.
        """
        async with contextlib.AsyncExitStack() as stack:
            await self._start(stack)
            self._exit_stack = stack.pop_all()

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        config = self.config
        self.hub.settings.check()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        if config.expired_segments == "disk":
            self.hub.spill = SpillDirectory(config.data_dir / SPILL_DIRECTORY)
            stack.callback(self.hub.spill.close)  # last: after every playlist has ended
        self.store = open_store(config.store, config.data_dir)
        stack.push_async_callback(self._close_store, self.store)
        if isinstance(self.store, RedisStore):
            self.cluster = Cluster(
                config.store or "", self.hub, self._node, lambda: self.node_address,
                ClusterSettings(config.grace_period, config.duplicate_publish))
            self.cluster_locate = self.cluster.locate
        stack.callback(self.thumbnails.close)
        self.token, token_generated = load_or_create_token(config)
        if self.shared is None:  # a worker's supervisor has done this, once for all
            self.first_start = FirstStart(await ensure_demo_channel(self.store),
                                          token_generated)
        if config.auth_webhook:
            self._auth_webhook = AuthWebhook(config.auth_webhook)
            stack.push_async_callback(self._auth_webhook.close)
        if config.webhook:
            self._webhooks = WebhookSender(config.webhook, config.webhook_secret or self.token)
            await self._webhooks.start()
            stack.push_async_callback(self._webhooks.close)
        caps = plan_caps(raise_fd_limit(), config.max_connections, config.max_http_connections)
        if (caps.rtmp, caps.http) != (config.max_connections, config.max_http_connections):
            log.warning("connection caps lowered to fit the open-file limit %d: "
                        "--max-connections %d -> %d, --max-http-connections %d -> %d",
                        caps.fd_limit, config.max_connections, caps.rtmp,
                        config.max_http_connections, caps.http)
        log.info("open-file limit %d: rtmp cap %d, http cap %d (+%d probe reserve), "
                 "%d kept in reserve", caps.fd_limit, caps.rtmp, caps.http,
                 PROBE_RESERVE_CONNECTIONS, caps.reserve)

        # Bind both sockets first so the public URLs (with real ports) exist before the
        # apps that hand them out; serve HTTP, then let publishers in last.
        private_sock = None
        if self.shared is None:
            http_sock = stack.enter_context(bound("http", *config.http))
            rtmp_sock = stack.enter_context(bound("rtmp", *config.rtmp))
        else:
            http_sock = stack.enter_context(self.shared.http)
            rtmp_sock = stack.enter_context(self.shared.rtmp)
            private_sock = stack.enter_context(
                bound("this worker's own http", *self.shared.private_http))
            self.private_http_address = private_sock.getsockname()[:2]
        self.http_address = http_sock.getsockname()[:2]
        self.rtmp_address = rtmp_sock.getsockname()[:2]
        self.urls = public_urls(config, self.rtmp_address[1], self.http_address[1])
        if self.cluster_locate is not None:
            self.edge = make_edge(config, self.cluster_locate, self._node)
            stack.push_async_callback(self.edge.close)  # after HTTP has stopped
            self.metrics.sources.append(self.edge.metrics)
        http_app = self.build_http_app()
        if config.http_fast_path == "on":
            hot = self.http_hot = HotFront(http_app[HLS_HOT], config.http_keepalive_timeout)
            self.metrics.sources.append(lambda: hot_path_families(hot.stats))
        self._runner = web.AppRunner(http_app, access_log=None,
                                     handle_signals=False,
                                     keepalive_timeout=config.http_keepalive_timeout)
        stack.push_async_callback(self._runner.cleanup)
        await self._runner.setup()

        if self.cluster is not None:
            # Before the hub on the stack, so it stops after the hub has ended every
            # publish (and the cluster has released them).
            await self.cluster.start()
            stack.push_async_callback(self.cluster.stop)
            self.metrics.node = self._node
            self.metrics.sources.append(self.cluster.metrics)
        self.hub.listeners.append(self._on_hub_event)
        self.hub.start()
        stack.push_async_callback(self._shutdown_hub)
        if self.cluster is None:  # a cluster keeps online records itself, with its heartbeat
            refresher = asyncio.get_running_loop().create_task(self._refresh_online())
            stack.push_async_callback(_cancel, refresher)

        self.http_gate = HttpGate(HttpLimits(caps.http, config.http_header_timeout))
        await GuardedSockSite(self._runner, http_sock, self.http_gate, self.http_hot).start()
        if private_sock is not None:
            await GuardedSockSite(self._runner, private_sock, self.http_gate,
                                  self.http_hot).start()
        self.rtmp = RtmpServer(
            IngestPolicy(self.hub, self.store, config.app, self._auth_webhook,
                         self.cluster.gate if self.cluster is not None else None),
            max_connections=caps.rtmp,
            handshake_timeout=config.handshake_timeout,
            idle_timeout=config.idle_timeout,
            read_interval=config.read_interval,
        )
        stack.push_async_callback(self.rtmp.close)
        await self.rtmp.start(sock=rtmp_sock)
        # First at stop: every playlist gets its last segment and ENDLIST as one change,
        # which a request held for it (an edge following it) is answered with.
        stack.callback(self.hub.shutdown)
        if self.private_http_address is None:
            log.info(
                "listening rtmp://%s:%d/%s http://%s:%d/",
                self.rtmp_address[0], self.rtmp_address[1], config.app,
                self.http_address[0], self.http_address[1],
            )
        else:  # the supervisor logs the shared addresses once
            log.info("worker serving the shared rtmp %s:%d and http %s:%d listeners; "
                     "its own http at %s:%d",
                     *self.rtmp_address, *self.http_address, *self.private_http_address)

    @property
    def node_id(self) -> str:
        """This node's id in the cluster (unique per process start)."""
        return self._node

    @property
    def node_address(self) -> tuple[str, int]:
        """Where other nodes reach this node's HTTP (origin fetches, cluster calls).

        A worker: its own listener, under the --advertise host if there is one.
        A single process: `--advertise`, else the HTTP listener. A wildcard host is
        replaced by this box's name, which peers can resolve.
        """
        advertise = self.config.advertise
        if self.private_http_address is not None:
            host, port = self.private_http_address
            if advertise is not None:
                host = advertise[0]
        elif advertise is not None:
            return advertise
        else:
            host, port = self.http_address
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return host, port

    def build_http_app(self) -> web.Application:
        assert self.store is not None and self.urls is not None
        traffic = self.metrics.traffic
        app = web.Application(client_max_size=64 * 1024)
        add_hls_routes(app, self.hub.segmenter, on_request=traffic.on_request, remote=self.edge)
        signals = app[HLS_SIGNALS]
        self.metrics.sources.append(lambda: blocked_request_families(signals))
        self.thumbnails.add_routes(app, remote=self.edge)
        self.metrics.add_routes(app)
        cards = None
        if self.cluster is not None:
            cards = ClusterCards(self._node, self.cluster.live.elsewhere,
                                 proxied=isinstance(self.edge, ProxyEdge))
        Dashboard(self.hub, traffic.viewers, API_PREFIX, cluster=cards).add_routes(app)
        live: LiveControl = self.cluster.live if self.cluster is not None else HubLive(self.hub)
        app.add_subapp(API_PREFIX, create_api_app(self.store, live, self.token, self.urls))
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        """Liveness: the loop answers. Says nothing of the store (that is /readyz)."""
        return web.json_response(
            {"status": "ok", "live_streams": len(self.hub.publishers())},
            headers={"Cache-Control": "no-store"},
        )

    async def _readyz(self, request: web.Request) -> web.Response:
        """Readiness: 503 while the channel store cannot be reached (no publish can start)."""
        assert self.store is not None
        try:
            await asyncio.wait_for(self.store.ping(), READY_CHECK_TIMEOUT)
        except (StoreError, TimeoutError) as exc:
            return web.json_response(
                {"status": "unavailable", "store": f"unreachable: {exc or 'timed out'}"},
                status=503, headers={"Cache-Control": "no-store"},
            )
        return web.json_response({"status": "ok", "store": "ok"},
                                 headers={"Cache-Control": "no-store"})

    # ---- hub events -> store online status and webhooks -----------------------------

    def _on_hub_event(self, event: HubEvent) -> None:
        if self._webhooks is not None:
            self._webhooks.emit(event.kind, {"channel": event.channel, "reason": event.reason})
        if self.store is not None and self.cluster is None:
            if event.kind == "stream.started":
                self._spawn(self.store.mark_online(event.channel, self._node, ONLINE_TTL_SECONDS))
            else:
                self._spawn(self.store.mark_offline(event.channel))

    def _spawn(self, coro: object) -> None:
        async def run() -> None:
            try:
                await coro  # type: ignore[misc]
            except StoreError as exc:
                log.warning("store update failed: %s", exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh_online(self) -> None:
        while True:
            await asyncio.sleep(ONLINE_REFRESH_SECONDS)
            # Names only: a loop variable holding a Publisher would keep it (and its
            # session and segmenter) alive through the next sleep after its channel ended.
            for channel in [publisher.channel for publisher in self.hub.publishers()]:
                await self._mark_online(channel)

    async def _mark_online(self, channel: str) -> None:
        assert self.store is not None
        try:
            await self.store.mark_online(channel, self._node, ONLINE_TTL_SECONDS)
        except StoreError as exc:
            log.warning("online refresh failed channel=%s: %s", channel, exc)

    # ---- shutdown -------------------------------------------------------------------

    async def stop(self) -> None:
        """Idempotent: tests and signal handlers may both call it."""
        if self._stopped:
            return
        self._stopped = True
        stack, self._exit_stack = self._exit_stack, contextlib.AsyncExitStack()
        await stack.aclose()
        log.info("stopped")

    async def _shutdown_hub(self) -> None:
        """End every playlist, then let the store updates that this caused finish."""
        self.hub.shutdown()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)

    @staticmethod
    async def _close_store(store: ChannelStore) -> None:
        with contextlib.suppress(Exception):
            await store.close()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
