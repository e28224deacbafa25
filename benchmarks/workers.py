"""`python -m benchmarks workers`: the publishers `--workers 2` carries against one worker.

One run, side by side. For each N of `--n` (ascending), one case with one worker
and one with two, alternating so that both see the same background; each case is
a fresh `mediaserver serve --store redis://…` (one redis-server for the run,
emptied between cases) under the `publishers` scenario of `run`: N OBS-like
publishers of the 3.2 Mbit/s bench clip and a sampler fetching one playlist and
its newest segment a second. A configuration stops stepping after the first N it
does not carry.

**Carries N**: every publisher published, got a playable segment and was never
more than `--max-lag` behind real time, none was dropped, playlist p99 within
`--playlist-p99` and the live-edge lag p99 within a segment target plus a GOP.

**The load generator needs CPU too.** It is this process. With one worker, the
worker is pinned to `--server-cpu` and the load to `--load-cpu`: each has a core.
With two workers, neither the workers nor the load are pinned, and the kernel
shares both cores among the three (pinned, the load would halve the one worker
that lands beside it). Publishers join over `--ramp` (default 10 s) so that a few
hundred RTMP set-ups at once do not starve the load generator. So the measured
ratio of capacities is bounded by the load's share of the box (about
2 x server / (server + load) per-stream CPU), not by the server. The report
gives it, and beside it the capacity each configuration would have with its
cores to itself: cores / (server CPU per stream at its capacity). Their ratio is
2 x (one worker's CPU per stream / two workers'), i.e. whether two workers carry
twice the streams at the same CPU per stream.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from control_api.redis_store import ONLINE_PREFIX, connect

from . import procstats
from .case import Case, CaseResult, Settings
from .chunked import ChunkedClip
from .redis_server import RedisServer
from .runner import run_case
from .servers import OurServer, ServerError

CONFIGS = (1, 2)  # workers
# Publishers join over this long by default (see above).
RAMP_SECONDS = 10.0
# A playlist answered slower than this (p99) is not being served in real time.
PLAYLIST_P99_BOUND = 1.0
READY = re.compile(r"worker (\d+) \(pid \d+\) ready: node (\S+),")


def label(workers: int) -> str:
    return f"{workers} worker" + ("s" if workers > 1 else "")


@dataclass(frozen=True, slots=True)
class Verdict:
    carried: bool
    why: str  # what failed, empty if carried


def verdict(result: CaseResult, settings: Settings, gop_seconds: float,
            playlist_p99: float = PLAYLIST_P99_BOUND) -> Verdict:
    """Whether a case carried its N publishers, and if not, the first reason why."""
    checks = [
        (result.published == result.streams,
         f"published {result.published}/{result.streams}"),
        (result.first_segment_missing == 0, f"{result.first_segment_missing} without a segment"),
        (result.behind == 0, f"{result.behind} behind real time"),
        (result.dropped == 0, f"{result.dropped} dropped"),
        (result.playlist_latency is not None and result.playlist_latency.p99 <= playlist_p99,
         "playlist p99 " + (f"{result.playlist_latency.p99:.2f}s" if result.playlist_latency
                            else "not measured")),
        (result.edge_lag is not None
         and result.edge_lag.p99 <= settings.segment_target + gop_seconds,
         "edge lag p99 " + (f"{result.edge_lag.p99:.2f}s" if result.edge_lag
                            else "not measured")),
    ]
    failed = [why for ok, why in checks if not ok]
    return Verdict(not failed, failed[0] if failed else "")


async def worker_split(redis: aioredis.Redis, server: OurServer) -> str:
    """Which worker holds how many of the live channels (their origin records)."""
    slots = {m[2]: int(m[1]) for m in READY.finditer(server.log_text())}
    holders = Counter[int]()
    async for key in redis.scan_iter(match=f"{ONLINE_PREFIX}*", count=1000):
        node = await redis.get(key)
        holders[slots.get(node, -1)] += 1
    return "streams per worker: " + ", ".join(
        f"worker {slot}: {count}" for slot, count in sorted(holders.items()))


async def step(ns: list[int], settings: Settings, clip: ChunkedClip, gop_seconds: float,
               server_cpu: int, load_cpu: int, server_args: list[str],
               command: list[str] | None,
               playlist_p99: float, progress: Callable[[str], None],
               record: Callable[[CaseResult], None]) -> dict[int, int]:
    """Step N for every configuration until each fails; the largest N each carried."""
    capacity = dict.fromkeys(CONFIGS, 0)
    stepping = set(CONFIGS)
    with RedisServer() as redis:
        client = connect(redis.url)
        for n in sorted(ns):
            for workers in CONFIGS:
                if workers not in stepping:
                    continue
                redis.flushall()
                if workers == 1:
                    procstats.pin(0, load_cpu)
                else:
                    procstats.unpin(0)
                server = OurServer(server_cpu if workers == 1 else None,
                                   ["--store", redis.url, "--workers", str(workers),
                                    *server_args], command)
                server.name = label(workers)
                probe = None
                if workers > 1:
                    async def probe(server: OurServer = server) -> str:
                        return await worker_split(client, server)
                try:
                    result = await run_case(server, "publishers", Case(n), settings, clip,
                                            progress, probe)
                except (ServerError, OSError) as exc:
                    progress(f"[{label(workers)} N={n}] failed: {exc}")
                    stepping.discard(workers)
                    continue
                outcome = verdict(result, settings, gop_seconds, playlist_p99)
                result.notes.append("carried" if outcome.carried
                                    else f"not carried: {outcome.why}")
                record(result)
                progress(f"[{label(workers)} N={n}] "
                         + ("carried" if outcome.carried else f"NOT carried ({outcome.why})"))
                if outcome.carried:
                    capacity[workers] = n
                else:
                    stepping.discard(workers)
            if not stepping:
                break
        await client.aclose()
    return capacity


def summary(results: list[CaseResult], capacity: dict[int, int], server_cpu: int,
            load_cpu: int) -> list[str]:
    """The capacity lines of the report: measured, and with the load accounted for."""
    at_capacity = {w: next((r for r in results if r.server == label(w)
                            and r.streams == capacity[w]), None) for w in CONFIGS}
    lines = ["## Capacity", ""]
    for workers in CONFIGS:
        r = at_capacity[workers]
        tried = max((x.streams for x in results if x.server == label(workers)), default=0)
        if r is None:
            lines.append(f"- {label(workers)}: carried none of the N tried")
            continue
        more = " (the largest N tried)" if capacity[workers] == tried else ""
        lines.append(
            f"- {label(workers)}: carried N = {capacity[workers]}{more}; there the server "
            f"used {r.server_cpu_percent / 100:.2f} cores at {r.cpu_ms_per_stream_second:.2f} "
            f"ms per stream·s, the load generator {r.load_cpu_percent / 100:.2f} cores "
            f"({10 * r.load_cpu_percent / max(r.published, 1):.2f} ms per stream·s), "
            f"everything else {r.other_cpu_percent / 100:.2f}")
    one, two = at_capacity[1], at_capacity[2]
    if one is not None and two is not None and capacity[1]:
        lines.append(f"- measured on this box, the load generator on it too: 2 workers / 1 "
                     f"= {capacity[2] / capacity[1]:.2f}")
        own = {w: cores * 1000 / r.cpu_ms_per_stream_second
               for w, cores, r in ((1, 1, one), (2, 2, two)) if r.cpu_ms_per_stream_second}
        if len(own) == 2:
            lines.append(
                f"- with the cores to the server alone (cores / CPU per stream at capacity): "
                f"1 worker ≈ {own[1]:.0f}, 2 workers ≈ {own[2]:.0f}, ratio "
                f"{own[2] / own[1]:.2f} (the target is ≥ 1.8)")
    common = sorted({r.streams for r in results if r.server == label(1)}
                    & {r.streams for r in results if r.server == label(2)})
    if common:
        lines += ["", "CPU ms per stream·s at the same N (1 worker / 2 workers): " + ", ".join(
            f"N={n}: " + " / ".join(
                f"{r.cpu_ms_per_stream_second:.2f}" for w in CONFIGS
                for r in results if r.server == label(w) and r.streams == n)
            for n in common)]
    lines += ["", f"With one worker, it is pinned to CPU {server_cpu} and the load generator to "
              f"CPU {load_cpu}; with two, nothing is pinned (see benchmarks/workers.py)."]
    return lines
