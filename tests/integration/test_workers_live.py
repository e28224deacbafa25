"""`mediaserver serve --workers 2` as an operator runs it: real processes, real redis-server,
real ffmpeg publishers, workers killed for real."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from benchmarks.servers import OurServer
from mediaserver.workers.restarts import FIRST_BACKOFF_SECONDS, RestartPolicy
from mediaserver.workers.supervisor import STOP_DEADLINE_SECONDS
from tests.live import metric_samples, publish, stop_process, wait_for
from tests.m3u8 import Playlist, parse_playlist
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"worker (\d+) \(pid (\d+)\) ready: node (\S+), reachable at (\S+)")
STARTED = re.compile(r"(\S+ \S+) INFO mediaserver\.supervisor worker (\d+) started \(pid (\d+)\)")
DIED = re.compile(r"(\S+ \S+) WARNING mediaserver\.supervisor worker (\d+) \(pid (\d+)\) died "
                  r"after ([\d.]+)s \(([^)]*)\): restarting it in ([\d.]+)s")
# SPEC: a stop ends every playlist and exits "within a few seconds".
STOP_SECONDS = 8.0


@dataclass(frozen=True)
class Worker:
    slot: int
    pid: int
    node: str
    url: str


def workers_ready(log: str) -> dict[int, Worker]:
    """The newest ready report of each worker slot, from the supervisor's log."""
    found = {}
    for match in READY.finditer(log):
        found[int(match[1])] = Worker(int(match[1]), int(match[2]), match[3], match[4])
    return found


@contextlib.asynccontextmanager
async def box(redis_url: str, *args: str) -> AsyncIterator[OurServer]:
    """`mediaserver serve --workers 2` on the store, ports picked by the kernel."""
    server = OurServer(cpu=None, extra_args=["--store", redis_url, "--workers", "2", *args])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def get_text(url: str, session: aiohttp.ClientSession) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def playlist_at(session: aiohttp.ClientSession, url: str) -> Playlist | None:
    with contextlib.suppress(aiohttp.ClientError):
        status, text = await get_text(url, session)
        if status == 200:
            return parse_playlist(text)
    return None


def alive(pid: int) -> bool:
    """True while pid runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


async def test_two_workers_serve_one_port_and_the_first_start_happens_once(
        redis_server: RedisServer, raw: aioredis.Redis) -> None:
    async with box(redis_server.url) as server:
        log = server.log_text()
        listening = re.findall(r"listening rtmp://127\.0\.0\.1:(\d+)/live "
                               r"http://127\.0\.0\.1:(\d+)/ with 2 workers", log)
        assert listening == [(str(server.rtmp_port), str(server.http_port))]
        assert server.rtmp_port > 0 and server.http_port > 0  # port 0 was asked for
        assert log.count("Channel 'demo' created") == 1
        assert log.count("RTMP ingest :") == 1

        workers = workers_ready(log)
        assert sorted(workers) == [0, 1]
        assert len({w.pid for w in workers.values()}) == 2
        assert len({w.url for w in workers.values()}) == 2
        assert {parent_of(w.pid) for w in workers.values()} == {server.pid}
        assert {w.node for w in workers.values()} <= await raw.smembers("ms:nodes")
        async with aiohttp.ClientSession() as session:
            for worker in workers.values():
                assert (await raw.hgetall(f"ms:node:{worker.node}"))["address"] == worker.url
                status, _ = await get_text(worker.url + "/healthz", session)
                assert status == 200
                # Each worker's own listener reaches that worker and no other.
                _, text = await get_text(worker.url + "/metrics", session)
                assert metric_samples(text)[("mediaserver_worker_restarts_total",
                                             (("node", worker.node),
                                              ("worker", str(worker.slot))))] == 0

        # New connections to the one public port are taken by both workers.
        seen: set[str] = set()
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(200):
                _, text = await get_text(f"http://127.0.0.1:{server.http_port}/metrics",
                                         session)
                seen |= {labels[0][1] for name, labels in metric_samples(text)
                         if name == "mediaserver_live_streams"}
                if len(seen) == 2:
                    break
        assert seen == {w.node for w in workers.values()}
    assert "supervisor exits: 0 worker restart(s)" in server.final_log_text


async def test_connections_arriving_one_by_one_are_spread_over_the_workers(
        redis_server: RedisServer) -> None:
    """Encoders connect one at a time, not in bursts: each worker must get its share."""
    arrivals, spacing = 40, 0.05
    async with box(redis_server.url) as server, aiohttp.ClientSession() as session:
        workers = workers_ready(server.log_text()).values()
        held = []
        try:
            for _ in range(arrivals):
                held.append(await asyncio.open_connection("127.0.0.1", server.rtmp_port))
                await asyncio.sleep(spacing)

            async def counts() -> list[float] | None:
                found = []
                for worker in workers:
                    _, text = await get_text(worker.url + "/metrics", session)
                    found.append(metric_samples(text)[("mediaserver_rtmp_connections_total",
                                                       (("node", worker.node),))])
                return found if sum(found) == arrivals else None

            per_worker = await wait_for(counts, timeout=10, what="every connection counted")
        finally:
            for _, writer in held:
                writer.close()
    print(f"{arrivals} connections {spacing * 1000:.0f} ms apart, per worker: {per_worker}")
    # Even shares are 20 and 20; 8 or fewer for one happens by chance once in ~10,000 runs.
    assert min(per_worker) > 8, per_worker


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity here")
async def test_worker_cpu_affinity_auto_pins_each_worker_to_a_core_of_its_own(
        redis_server: RedisServer) -> None:
    cores = sorted(os.sched_getaffinity(0))
    async with box(redis_server.url, "--worker-cpu-affinity", "auto") as server:
        await wait_for(lambda: len(workers_ready(server.log_text())) == 2, timeout=20,
                       what="both workers ready")
        workers = workers_ready(server.log_text())
        for worker in workers.values():
            assert os.sched_getaffinity(worker.pid) == {cores[worker.slot % len(cores)]}
        pinned = re.findall(r"worker (\d+) \(pid \d+\) pinned to core (\d+)", server.log_text())
        assert sorted(pinned) == [(str(w.slot), str(cores[w.slot % len(cores)]))
                                  for w in sorted(workers.values(), key=lambda w: w.slot)]
    async with box(redis_server.url) as server:  # off by default: the kernel places them
        await wait_for(lambda: len(workers_ready(server.log_text())) == 2, timeout=20,
                       what="both workers ready")
        for worker in workers_ready(server.log_text()).values():
            assert os.sched_getaffinity(worker.pid) == set(cores)


async def test_a_killed_worker_is_restarted_and_its_streams_come_back_when_encoders_reconnect(
        redis_server: RedisServer, raw: aioredis.Redis, clip: Path) -> None:
    encoders: dict[str, asyncio.subprocess.Process] = {}
    try:
        async with box(redis_server.url) as server, aiohttp.ClientSession() as session:
            public = f"http://127.0.0.1:{server.http_port}"
            headers = {"Authorization": f"Bearer {server.token}"}
            keys = {}
            for name in ("cam1", "cam2"):
                async with session.post(f"{public}/api/v1/channels", json={"name": name},
                                        headers=headers) as response:
                    assert response.status == 201
                    keys[name] = (await response.json())["stream_key"]

            def rtmp(name: str) -> str:
                return f"rtmp://127.0.0.1:{server.rtmp_port}/live/{keys[name]}"

            def playlist(name: str) -> str:
                return f"{public}/live/{name}/index.m3u8"

            for name in keys:
                encoders[name] = await publish(rtmp(name), clip, loops=6)
            for name in keys:
                await wait_for(lambda name=name: _min_segments(session, playlist(name), 2),
                               timeout=25, what=f"two segments of {name}")

            # The worker holding cam1 (and maybe cam2 too) is killed outright.
            workers = workers_ready(server.log_text())
            holder = await raw.get("ms:online:cam1")
            doomed = next(w for w in workers.values() if w.node == holder)
            on_doomed = {name for name in keys if await raw.get(f"ms:online:{name}") == holder}
            os.kill(doomed.pid, signal.SIGKILL)

            def replaced() -> Worker | None:
                now = workers_ready(server.log_text()).get(doomed.slot)
                return now if now is not None and now.pid != doomed.pid else None

            new = await wait_for(replaced, timeout=30, what="the worker's replacement")
            # Where the dead worker's playlists stood: where the republishes carry on.
            carried = {name: int((await raw.hgetall(f"ms:resume:{name}"))["next_sequence"])
                       for name in on_doomed}
            log = server.log_text()
            assert re.search(rf"worker {doomed.slot} \(pid {doomed.pid}\) died after [\d.]+s "
                             r"\(killed by SIGKILL\)", log)
            _, text = await get_text(new.url + "/metrics", session)
            assert metric_samples(text)[("mediaserver_worker_restarts_total",
                                         (("node", new.node), ("worker", str(doomed.slot))))] == 1

            for name in keys:
                if name in on_doomed:  # its connection died with the worker
                    await asyncio.wait_for(encoders[name].wait(), timeout=10)
                else:
                    assert encoders[name].returncode is None
            # The encoders reconnect, within the grace period, to whichever worker.
            for name in on_doomed:
                encoders[name] = await publish(rtmp(name), clip, loops=3)
            for name in on_doomed:
                # Until the new origin is known, a worker's edge may serve its last copy
                # of the dead origin's playlist (the grace period): wait for the new one.
                after = await wait_for(
                    lambda name=name: _carried_on(session, playlist(name)), timeout=25,
                    what=f"{name} carried on")
                first = after.segments[0]
                assert first.sequence == carried[name]
            print(f"worker {doomed.slot} held {sorted(on_doomed)}; its playlists carried on "
                  f"from {carried}")
            for name in set(keys) - on_doomed:  # never stopped
                assert encoders[name].returncode is None
                assert (await playlist_at(session, playlist(name))) is not None

            stopping = time.monotonic()
        stopped_in = time.monotonic() - stopping
    finally:
        for encoder in encoders.values():
            await stop_process(encoder)
    log = server.final_log_text
    assert stopped_in < STOP_SECONDS, stopped_in
    assert re.search(r"worker \d \(pid \d+\) stopped: exit status 0", log)
    assert len(re.findall(r"\(pid \d+\) stopped: exit status 0", log)) == 2
    for name in keys:  # every playlist ended by its worker's clean stop
        assert f"playlist ended channel={name} (server shutting down)" in log
    assert "supervisor exits: 1 worker restart(s) while running" in log


async def test_a_worker_that_keeps_dying_is_restarted_after_a_growing_wait(
        redis_server: RedisServer) -> None:
    async with box(redis_server.url) as server:
        first = workers_ready(server.log_text())[0]
        os.kill(first.pid, signal.SIGKILL)
        killed = {first.pid}
        for _ in range(2):  # each replacement killed as soon as it starts
            def next_start() -> int | None:
                starts = [int(m[3]) for m in STARTED.finditer(server.log_text())
                          if m[2] == "0" and int(m[3]) not in killed]
                return starts[0] if starts else None

            pid = await wait_for(next_start, timeout=20, what="worker 0 started again")
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        await wait_for(lambda: workers_ready(server.log_text())[0].pid not in killed,
                       timeout=30, what="worker 0 ready after the crash loop")
        log = server.log_text()
    deaths = [m for m in DIED.finditer(log) if m[2] == "0"]
    # Each replacement died young, so each wait doubled (the first too, unless this
    # box took longer than a stable run to start the first worker).
    policy = RestartPolicy()
    expected = [policy.delay_after(float(m[4])) for m in deaths]
    assert [float(m[6]) for m in deaths] == expected
    assert expected[1:] == [FIRST_BACKOFF_SECONDS, 2 * FIRST_BACKOFF_SECONDS] or \
        expected == [FIRST_BACKOFF_SECONDS * 2 ** i for i in range(3)]
    starts = {int(m[3]): _clock(m[1]) for m in STARTED.finditer(log) if m[2] == "0"}
    restarted = sorted(t for pid, t in starts.items() if pid != first.pid)
    for death, start in zip(deaths, restarted, strict=True):
        assert start - _clock(death[1]) >= float(death[6]) - 0.01  # waited (ms timestamps)
    assert server.final_log_text.count("restart 3 of this worker, 3 in all") == 1


async def test_workers_stop_when_their_supervisor_is_killed(redis_server: RedisServer) -> None:
    async with box(redis_server.url) as server:
        workers = workers_ready(server.log_text())
        os.kill(server.pid, signal.SIGKILL)
        for worker in workers.values():
            await wait_for(lambda pid=worker.pid: not alive(pid), timeout=15,
                           what=f"orphaned worker {worker.pid} to stop")
        log = server.log_text()
    assert log.count("is gone: stopping this worker") == 2


async def test_a_worker_that_does_not_stop_is_killed_and_the_exit_status_says_so(
        redis_server: RedisServer) -> None:
    async with box(redis_server.url) as server:
        frozen = workers_ready(server.log_text())[1]
        os.kill(frozen.pid, signal.SIGSTOP)  # alive, but deaf to SIGTERM
        asked = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        await wait_for(lambda: not alive(server.pid), timeout=STOP_DEADLINE_SECONDS + 10,
                       what="the supervisor to give up on the frozen worker and exit")
        took = time.monotonic() - asked
        code = await server.stop()
    log = server.final_log_text
    assert code == 1
    assert STOP_DEADLINE_SECONDS <= took < STOP_DEADLINE_SECONDS + 5, took
    assert (f"worker 1 (pid {frozen.pid}) did not stop within "
            f"{STOP_DEADLINE_SECONDS:.0f}s: killing it") in log
    assert re.search(r"worker 0 \(pid \d+\) stopped: exit status 0", log)
    assert "not every worker stopped cleanly" in log


def test_several_workers_without_redis_are_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mediaserver", "serve", "--workers", "2", "--rtmp",
         "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 2
    assert "--workers 2 needs --store redis://" in result.stderr
    assert not (tmp_path / "api_token").exists()  # refused before doing anything


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path,
                                                          redis_server: RedisServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Worker 0's own listener goes on the advertised port, which is taken.
        result = subprocess.run(
            [sys.executable, "-m", "mediaserver", "serve", "--workers", "2", "--store",
             redis_server.url, "--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0",
             "--advertise", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    assert (f"cannot listen for this worker's own http on 127.0.0.1:{port}"
            in result.stderr), result.stderr
    assert re.search(r"worker 0 \(pid \d+\) could not start: exit status 1", result.stderr)
    assert "listening rtmp://" not in result.stderr  # it never claimed to serve
    for pid in (int(m[3]) for m in STARTED.finditer(result.stderr)):
        assert not alive(pid)


async def _min_segments(session: aiohttp.ClientSession, url: str, count: int
                        ) -> Playlist | None:
    found = await playlist_at(session, url)
    return found if found is not None and len(found.segments) >= count else None


async def _carried_on(session: aiohttp.ClientSession, url: str) -> Playlist | None:
    """The playlist once a republish carried it on (its first segment after a DISCONTINUITY)."""
    found = await playlist_at(session, url)
    return found if found is not None and found.segments and found.segments[0].discontinuity \
        else None


def _clock(stamp: str) -> float:
    """Seconds of a log line's time stamp (`YYYY-mm-dd HH:MM:SS,mmm`), for differences."""
    clock, millis = stamp.split(" ")[1].split(",")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return hours * 3600 + minutes * 60 + seconds + int(millis) / 1000
