"""The cluster layer's parts against a real redis-server, without media.

Registry (heartbeats, claims, lapse, locate), control bus (requests and answers,
malformed messages) and failover records (coalesced writes, ownership, outages).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from control_api.live import StreamStats
from hls.resume import PlaylistResume
from mediaserver.cluster.bus import ControlBus
from mediaserver.cluster.failover import ResumeRecords
from mediaserver.cluster.keys import CONTROL_CHANNEL
from mediaserver.cluster.messages import Ack, Handoff, Kick
from mediaserver.cluster.registry import MISS, Registry, RemoteStream
from tests.live import wait_for
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration


def stats(channel: str) -> StreamStats:
    return StreamStats(channel, "10.0.0.1:5000", 1.7e9, "h264", 1280, 720, 30.0, 2e6, 2.0,
                       "aac", 48000, 2, ())


class FakeNode:
    """What a Registry reads of its node: an address and the streams live there."""

    def __init__(self, redis: aioredis.Redis, node: str, port: int, ttl: float = 5.0) -> None:
        self.streams: dict[str, StreamStats] = {}
        self.lost: list[tuple[str, str]] = []
        self.registry = Registry(redis, node, lambda: f"http://127.0.0.1:{port}",
                                 lambda: list(self.streams.values()), self.streams.get,
                                 lambda channel, holder: self.lost.append((channel, holder)),
                                 ttl=ttl)
        self.writer = asyncio.get_running_loop().create_task(self.registry.run_writes())

    async def publish(self, channel: str) -> None:
        self.streams[channel] = stats(channel)
        self.registry.claim(channel)
        assert await self.registry.drain(2.0)


@pytest.fixture
async def node(raw: aioredis.Redis) -> AsyncIterator[Callable[..., FakeNode]]:
    """Makes FakeNodes on the test's Redis; their claim writers stop with the test."""
    made: list[FakeNode] = []

    def make(name: str, port: int, ttl: float = 5.0) -> FakeNode:
        made.append(FakeNode(raw, name, port, ttl))
        return made[-1]

    yield make
    for fake in made:
        fake.writer.cancel()


async def test_heartbeat_records_node_streams_and_origin(
        raw: aioredis.Redis, node: Callable[..., FakeNode]) -> None:
    a, b = node("a", 1001), node("b", 1002)
    await a.publish("cam1")
    await a.registry.heartbeat()
    await b.registry.heartbeat()
    record = await raw.hgetall("ms:node:a")
    assert record["address"] == "http://127.0.0.1:1001" and int(record["pid"]) > 0
    assert 0 < await raw.pttl("ms:node:a") <= 5000
    assert await raw.smembers("ms:nodes") == {"a", "b"}
    assert await raw.get("ms:online:cam1") == "a"
    assert 0 < await raw.pttl("ms:online:cam1") <= 5000
    assert await b.registry.locate("cam1") == "http://127.0.0.1:1001"
    assert await a.registry.locate("cam1") is None  # held here
    assert await b.registry.locate("nobody") is None
    assert await b.registry.remote_streams() == [
        RemoteStream("a", "http://127.0.0.1:1001", stats("cam1"))]  # which node, and where
    assert await a.registry.remote_streams() == []  # its own are read from its hub


async def test_newest_claim_wins_and_the_old_holder_hears_of_it(
        raw: aioredis.Redis, node: Callable[..., FakeNode]) -> None:
    a, b = node("a", 1001), node("b", 1002)
    await a.publish("cam1")
    await a.registry.heartbeat()
    await b.publish("cam1")  # a takeover whose message to `a` was lost
    await b.registry.heartbeat()
    assert await raw.get("ms:online:cam1") == "b"
    assert await a.registry.remote_streams() == [
        RemoteStream("b", "http://127.0.0.1:1002", stats("cam1"))]  # b's, and only b's
    await a.registry.heartbeat()  # renews only what is still its own
    assert a.lost == [("cam1", "b")]
    assert await raw.get("ms:online:cam1") == "b"
    await a.registry.release("cam1")  # a late release of a's never drops b's record
    assert await raw.get("ms:online:cam1") == "b"


async def test_a_release_racing_its_claim_leaves_no_record(
        raw: aioredis.Redis, node: Callable[..., FakeNode]) -> None:
    a = node("a", 1001)
    a.registry.claim("cam1")
    a.registry.release_soon("cam1")  # before the writer ran: nothing is sent
    a.registry.claim("cam2")
    await asyncio.sleep(0)  # the writer takes cam2's claim and sends it...
    a.registry.release_soon("cam2")  # ...and this release follows it
    assert await a.registry.drain(2.0)
    assert await raw.exists("ms:online:cam2") == 0
    await a.registry.heartbeat()
    assert await raw.exists("ms:online:cam1") == 0


async def test_a_silent_node_lapses_and_is_pruned(
        raw: aioredis.Redis, node: Callable[..., FakeNode]) -> None:
    a, b = node("a", 1001, ttl=0.3), node("b", 1002)
    await a.publish("cam1")
    await a.registry.heartbeat()
    assert [stream.stats for stream in await b.registry.remote_streams()] == [stats("cam1")]
    await wait_for(lambda: _gone(raw, "ms:node:a"), timeout=2, what="a's record to lapse")
    assert await raw.exists("ms:online:cam1") == 0
    assert await b.registry.remote_streams() == []
    assert await raw.smembers("ms:nodes") == set()  # pruned by the listing
    assert await b.registry.holder("cam1") is None


async def _gone(raw: aioredis.Redis, key: str) -> bool:
    return await raw.exists(key) == 0


async def test_locate_is_cached_and_shared_and_rides_out_an_outage(
        redis_server: RedisServer, raw: aioredis.Redis, node: Callable[..., FakeNode]) -> None:
    a, b = node("a", 1001), node("b", 1002)
    await a.publish("cam1")
    await a.registry.heartbeat()
    answers = await asyncio.gather(*(b.registry.locate("cam1") for _ in range(50)))
    assert set(answers) == {"http://127.0.0.1:1001"}
    assert b.registry.stats.locate_lookups == 1  # fifty viewers, one Redis lookup
    await a.registry.release("cam1")
    assert await b.registry.locate("cam1") == "http://127.0.0.1:1001"  # cached, for now
    await wait_for(lambda: _located(b, None), timeout=3, what="the cache to expire")
    await a.publish("cam2")
    await a.registry.heartbeat()
    assert await b.registry.locate("cam2") == "http://127.0.0.1:1001"
    c = node("c", 1003)
    gone = asyncio.ensure_future(c.registry.locate("cam2"))
    staying = asyncio.ensure_future(c.registry.locate("cam2"))
    await asyncio.sleep(0)
    gone.cancel()  # the viewer that started the lookup went away
    assert await staying == "http://127.0.0.1:1001"
    redis_server.stop()
    await wait_for(lambda: b.registry.cache.get("cam2") is MISS, timeout=3,
                   what="the answer to expire")
    assert await b.registry.locate("cam2") == "http://127.0.0.1:1001"  # the last answer
    assert await b.registry.locate("cam3") is None  # never known: held nowhere known


async def _located(node: FakeNode, expected: str | None) -> bool:
    return await node.registry.locate("cam1") == expected


# ---- control bus ------------------------------------------------------------------------


class Listener:
    def __init__(self, redis: aioredis.Redis, node: str, answer: bool = True) -> None:
        self.heard: list[Kick | Handoff] = []
        self.answer = answer
        self.bus = ControlBus(redis, node, self.handle)

    async def handle(self, command: Kick | Handoff) -> None:
        self.heard.append(command)
        if self.answer and self.bus.node in command.targets:
            await self.bus.send(Ack(command.request_id, self.bus.node, kicked=True))


@pytest.fixture
async def buses(raw: aioredis.Redis) -> AsyncIterator[tuple[Listener, Listener, Listener]]:
    nodes = (Listener(raw, "a"), Listener(raw, "b"), Listener(raw, "c", answer=False))
    for node in nodes:
        await node.bus.start()
    for node in nodes:
        await asyncio.wait_for(node.bus.subscribed.wait(), 5)
    yield nodes
    for node in nodes:
        await node.bus.stop()


async def test_a_request_reaches_every_node_and_waits_for_its_targets(
        buses: tuple[Listener, Listener, Listener]) -> None:
    a, b, c = buses
    kick = Kick("cam1", "r", 0.0, a.bus.new_request_id(), "a", ("b",))
    acks = await a.bus.request(kick, timeout=2.0)
    assert set(acks) == {"b"} and acks["b"].kicked
    await wait_for(lambda: c.heard == [kick], timeout=2, what="c to hear it")
    assert b.heard == [kick] and a.heard == []  # never its own

    silent = Handoff("cam1", "r", a.bus.new_request_id(), "a", ("c",))
    started = time.monotonic()
    assert await a.bus.request(silent, timeout=0.5) == {}
    assert 0.45 <= time.monotonic() - started < 2.0
    assert a.bus.stats.ack_timeouts == 1


async def test_malformed_messages_are_counted_and_never_acted_on(
        raw: aioredis.Redis, buses: tuple[Listener, Listener, Listener]) -> None:
    a, b, _ = buses
    for junk in ("{", '{"op":"kick","channel":"../x"}', "x" * 10_000):
        await raw.publish(CONTROL_CHANNEL, junk)
    kick = Kick("cam1", "r", 0.0, a.bus.new_request_id(), "a", ("b",))
    assert set(await a.bus.request(kick, timeout=2.0)) == {"b"}
    assert b.heard == [kick]
    assert b.bus.stats.malformed == 3


async def test_the_bus_subscribes_again_after_redis_comes_back(
        redis_server: RedisServer, buses: tuple[Listener, Listener, Listener]) -> None:
    a, b, _ = buses
    redis_server.stop()
    await wait_for(lambda: not b.bus.subscribed.is_set(), timeout=5, what="b to notice")
    redis_server.start()
    await asyncio.wait_for(b.bus.subscribed.wait(), 10)
    await asyncio.wait_for(a.bus.subscribed.wait(), 10)
    kick = Kick("cam1", "r", 0.0, a.bus.new_request_id(), "a", ("b",))
    assert set(await a.bus.request(kick, timeout=2.0)) == {"b"}


# ---- failover records -------------------------------------------------------------------


async def test_records_keep_the_latest_state_with_a_ttl(raw: aioredis.Redis) -> None:
    records = ResumeRecords(raw, "a", ttl_seconds=45)
    writer = asyncio.get_running_loop().create_task(records.run())
    try:
        for sequence in range(1, 200):
            records.record("cam1", PlaylistResume(sequence, 0, 2, sequence * 2000))
        assert await records.flush(5.0)
        assert records.stats.records_written < 199  # coalesced, not one write per call
        record = await records.read("cam1")
        assert record is not None and record.node == "a"
        assert record.resume == PlaylistResume(199, 0, 2, 398_000)
        assert abs(record.recorded_at - time.time()) < 5
        assert 40_000 < await raw.pttl("ms:resume:cam1") <= 45_000
    finally:
        writer.cancel()


async def test_forget_drops_only_a_record_this_node_wrote(raw: aioredis.Redis) -> None:
    a, b = ResumeRecords(raw, "a", 45), ResumeRecords(raw, "b", 45)
    loop = asyncio.get_running_loop()
    writers = [loop.create_task(a.run()), loop.create_task(b.run())]
    try:
        a.record("cam1", PlaylistResume(5, 0, 2))
        assert await a.flush(5.0)
        b.record("cam1", PlaylistResume(6, 1, 2))  # carried on by b since
        assert await b.flush(5.0)
        a.forget("cam1")
        assert await a.flush(5.0)
        record = await b.read("cam1")
        assert record is not None and record.node == "b"
        b.forget("cam1")
        assert await b.flush(5.0)
        assert await b.read("cam1") is None
        await raw.hset("ms:resume:cam2", mapping={"node": "x", "next_sequence": "zz"})
        assert await b.read("cam2") is None and b.stats.bad_records == 1
    finally:
        for writer in writers:
            writer.cancel()


async def test_records_written_during_an_outage_arrive_after_it(
        redis_server: RedisServer, raw: aioredis.Redis) -> None:
    records = ResumeRecords(raw, "a", 45)
    writer = asyncio.get_running_loop().create_task(records.run())
    try:
        redis_server.stop()
        records.record("cam1", PlaylistResume(7, 0, 2))
        await wait_for(lambda: records.stats.write_failures > 0, timeout=5, what="a failure")
        records.record("cam1", PlaylistResume(8, 0, 2))
        assert not await records.flush(0.2)
        redis_server.start()
        assert await records.flush(10.0)
        record = await records.read("cam1")
        assert record is not None and record.resume.next_sequence == 8
    finally:
        writer.cancel()
