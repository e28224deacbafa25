"""One node's membership of the cluster: the parts wired to the hub, started and stopped.

The hub stays synchronous and knows nothing of other nodes; this listens to it
(streams starting and ending, segments published) and writes Redis in the
background, answers other nodes' commands by acting on it, and hands the rest
of the server three things: `live` for the control API, `gate` for ingest and
`locate` for serving channels held elsewhere. Every Redis failure is logged
and ridden out; the node goes on publishing and serving what it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, Metric

from control_api.redis_store import connect
from hls.segmenter import SegmentInfo

from ..hub import HubEvent, StreamHub
from .blocks import Blocks
from .bus import Command, ControlBus
from .failover import RESUME_MARGIN_SECONDS, ResumeRecords
from .gate import ClusterGate
from .messages import Ack, Handoff, Kick
from .records import base_url
from .registry import Registry
from .view import ClusterLive

log = logging.getLogger("mediaserver.cluster")

# At stop, how long to wait for the last records (releases, playlist state) to reach
# Redis before leaving without them (they lapse on their own).
STOP_FLUSH_SECONDS = 2.0
# A node letting go of a channel waits this long for its last playlist state to be
# written before it answers, so the new origin carries on from it.
HANDOFF_FLUSH_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    grace_period: float
    duplicate_publish: str  # "takeover" | "reject"


class Cluster:
    """This node's part in the cluster on Redis at `url`."""

    def __init__(self, url: str, hub: StreamHub, node: str,
                 address: Callable[[], tuple[str, int]], settings: ClusterSettings) -> None:
        self.node = node
        self.hub = hub
        self.address = address
        self.redis = connect(url)
        # With no grace period a playlist ends with its publisher: nothing to carry on.
        self.carry_on = settings.grace_period > 0
        self.registry = Registry(self.redis, node, lambda: base_url(*address()),
                                 hub.live_streams, hub.stream_stats, self._on_lost)
        self.bus = ControlBus(self.redis, node, self._on_command)
        self.blocks = Blocks(self.redis)
        self.records = ResumeRecords(self.redis, node,
                                     settings.grace_period + RESUME_MARGIN_SECONDS)
        self.live = ClusterLive(hub, self.registry, self.bus, self.blocks)
        self.gate = ClusterGate(self.registry, self.bus, self.blocks, self.records,
                                settings.duplicate_publish, self.carry_on)
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Listen to the hub and the bus, and start heartbeating. Needs no Redis yet."""
        self.hub.listeners.append(self._on_hub_event)
        self.hub.segment_listeners.append(self._on_segment)
        self.hub.end_listeners.append(self._on_playlist_end)
        await self.bus.start()
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self.registry.run()),
                       loop.create_task(self.registry.run_writes()),
                       loop.create_task(self.records.run())]
        log.info("cluster: node %s joins, reachable at %s", self.node, base_url(*self.address()))

    async def stop(self) -> None:
        """Leave: last writes flushed (bounded), records removed, connections closed."""
        with contextlib.suppress(ValueError):
            self.hub.listeners.remove(self._on_hub_event)
        with contextlib.suppress(ValueError):
            self.hub.segment_listeners.remove(self._on_segment)
        with contextlib.suppress(ValueError):
            self.hub.end_listeners.remove(self._on_playlist_end)
        await self.records.flush(STOP_FLUSH_SECONDS)
        await self.registry.drain(STOP_FLUSH_SECONDS)
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.bus.stop()
        try:
            await asyncio.wait_for(self.registry.deregister(), STOP_FLUSH_SECONDS)
        except Exception as exc:  # Redis gone: the records lapse within the TTL
            log.warning("cluster: could not leave cleanly (records lapse on their own): %s",
                        exc)
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    async def locate(self, channel: str) -> str | None:
        """Base URL of the node holding the channel's publisher, if it is another one."""
        if self.hub.is_live(channel):
            return None
        return await self.registry.locate(channel)

    # ---- the hub, heard ----------------------------------------------------------------

    def _on_hub_event(self, event: HubEvent) -> None:
        channel = event.channel
        if event.kind == "stream.started":
            self.registry.claim(channel)
            return
        self.registry.release_soon(channel)

    def _on_segment(self, channel: str, info: SegmentInfo) -> None:
        if not self.carry_on:
            return
        segmenter = self.hub.segmenter(channel)
        point = segmenter.resume_point() if segmenter is not None else None
        if point is not None:
            self.records.record(channel, point)

    def _on_playlist_end(self, channel: str) -> None:
        """A playlist that said ENDLIST (unpublish, grace period over, shutdown) must not
        be carried on by a publish elsewhere: its state goes. Only a dropped publisher
        within its grace period, or a node that died, leaves a state to carry on."""
        if self.carry_on:
            # Queued after the last segment's record, so the forget is what is written.
            self.records.forget(channel)

    def _on_lost(self, channel: str, holder: str) -> None:
        if channel in self.hub.channels:
            log.warning("cluster: channel=%s is held by node %s now; letting go here",
                        channel, holder)
            self.hub.release(channel, f"publisher moved to node {holder}")

    # ---- other nodes, heard ------------------------------------------------------------

    async def _on_command(self, command: Command) -> None:
        channel = command.channel
        if isinstance(command, Kick):
            kicked = self.hub.kick(channel, command.reason, command.block_seconds)
            if kicked:
                log.info("cluster: kicked channel=%s for node %s", channel, command.sender)
                await self.registry.release(channel)
            had = kicked
        else:
            assert isinstance(command, Handoff)
            had = channel in self.hub.channels
            kicked = self.hub.release(channel, command.reason) if had else False
            if had:
                log.info("cluster: channel=%s handed to node %s", channel, command.sender)
                await self.records.flush(HANDOFF_FLUSH_SECONDS)
                await self.registry.release(channel)
            self.registry.cache.forget(channel)
        if had or self.node in command.targets:
            await self.bus.send(Ack(command.request_id, self.node, kicked))

    # ---- metrics -----------------------------------------------------------------------

    def metrics(self) -> Iterator[Metric]:
        """Cluster series for /metrics (read at scrape time; no Redis I/O)."""
        registry, bus, records = self.registry.stats, self.bus.stats, self.records.stats
        prefix = "mediaserver_cluster"
        yield CounterMetricFamily(f"{prefix}_heartbeats", "Heartbeats written to Redis.",
                                  value=registry.heartbeats)
        yield CounterMetricFamily(f"{prefix}_heartbeat_failures",
                                  "Heartbeats Redis did not take.",
                                  value=registry.heartbeat_failures)
        messages = CounterMetricFamily(f"{prefix}_bus_messages",
                                       "Control bus messages, by what became of them.",
                                       labels=["result"])
        messages.add_metric(["sent"], bus.sent)
        messages.add_metric(["received"], bus.received)
        messages.add_metric(["malformed"], bus.malformed)
        yield messages
        yield CounterMetricFamily(f"{prefix}_bus_answer_timeouts",
                                  "Commands a node they concerned did not answer in time.",
                                  value=bus.ack_timeouts)
        lookups = CounterMetricFamily(f"{prefix}_locate_lookups",
                                      "Origin lookups for channels held elsewhere, by source.",
                                      labels=["source"])
        lookups.add_metric(["cache"], registry.locate_cache_hits)
        lookups.add_metric(["redis"], registry.locate_lookups)
        yield lookups
        yield CounterMetricFamily(f"{prefix}_handoffs",
                                  "Publishes here that took a channel over from another node.",
                                  value=self.gate.handoffs)
        yield CounterMetricFamily(f"{prefix}_playlists_carried_on",
                                  "Publishes here that carried on another node's playlist.",
                                  value=self.gate.resumed)
        yield CounterMetricFamily(f"{prefix}_channels_lost",
                                  "Channels found held by another node at a heartbeat.",
                                  value=registry.channels_lost)
        yield CounterMetricFamily(f"{prefix}_bad_records",
                                  "Records of other nodes that could not be read.",
                                  value=registry.bad_records + records.bad_records)
        yield CounterMetricFamily(f"{prefix}_playlist_state_writes",
                                  "Playlist states recorded for failover.",
                                  value=records.records_written)
