"""The cluster's say in a publish, asked before the hub's synchronous start_publish.

One round of concurrent Redis reads decides it: a block set on any node refuses
the publish; a channel live on another node is refused (`--duplicate-publish
reject`) or taken over: that node is told over the bus to let go, and its answer
is waited for so that the playlist state it leaves is the one carried on. A
channel whose playlist another node had within the grace period is seeded from
that state. Redis being down only makes the node decide on what it knows itself.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from ..hub import Refusal
from ..ingest import Admission
from .blocks import Blocks
from .bus import ControlBus
from .failover import ResumeRecords
from .messages import Handoff
from .registry import Registry

log = logging.getLogger("mediaserver.cluster")

# How long a publish waits for the node that had the channel to let go. It answers
# in milliseconds when alive; a node that crashed a moment ago still looks alive
# until its records lapse, and is then given up on after this.
HANDOFF_ANSWER_SECONDS = 1.0
# What the old publisher is told, as on one node (hub.start_publish).
TAKEOVER_REASON = "another publisher took over this channel"


class ClusterGate:
    """mediaserver.ingest.PublishGate for a node in a cluster."""

    def __init__(self, registry: Registry, bus: ControlBus, blocks: Blocks,
                 records: ResumeRecords, duplicate_publish: str, carry_on: bool) -> None:
        self.registry = registry
        self.bus = bus
        self.blocks = blocks
        self.records = records
        self.node = registry.node
        self.duplicate_publish = duplicate_publish
        self.carry_on = carry_on
        self.handoffs = 0
        self.resumed = 0

    async def admit(self, channel: str) -> Admission:
        try:
            return await self._admit(channel)
        except (RedisError, OSError) as exc:
            log.warning("cluster: publish channel=%s decided without the other nodes "
                        "(Redis unavailable): %s", channel, exc)
            return Admission()

    async def _admit(self, channel: str) -> Admission:
        found, blocked, record = await asyncio.gather(
            self.registry.holder(channel), self.blocks.remaining(channel),
            self.records.read(channel))
        if blocked > 0:
            return Admission(Refusal.blocked(channel, blocked))
        holder = found[0] if found is not None and found[0] != self.node else None
        if holder is not None and self.duplicate_publish == "reject":
            return Admission(Refusal.duplicate(channel))
        targets = {holder} if holder is not None else set()
        previous = record.node if record is not None and record.node != self.node else None
        if previous is not None and previous not in targets and await self.registry.alive(previous):
            targets.add(previous)  # it may still serve the playlist from its grace period
        if targets:
            self.handoffs += 1
            log.info("cluster: channel=%s moves here from %s", channel, ", ".join(sorted(targets)))
            await self.bus.request(
                Handoff(channel, TAKEOVER_REASON, self.bus.new_request_id(), self.node,
                        tuple(sorted(targets))),
                HANDOFF_ANSWER_SECONDS)
            record = await self.records.read(channel)  # with the old origin's last segment
        if not self.carry_on or record is None or record.node == self.node:
            return Admission()
        self.resumed += 1
        log.info("cluster: channel=%s carries on the playlist of node %s from sequence %d",
                 channel, record.node, record.resume.next_sequence)
        return Admission(resume=record.resume)
