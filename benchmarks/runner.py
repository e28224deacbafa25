"""One benchmark case, start to finish: server up, load on, measure a window, tear down.

Timeline of a case: start the server (pinned to its CPU) -> create N stream keys
-> publishers join, spread over `ramp` seconds so keyframes are not all aligned
-> each publisher's first playable segment is timed -> `warmup` -> the measured
window (CPU, memory, viewers or a latency sampler) -> live-edge lag read on
every stream -> everything stopped. Only the window counts for CPU per stream.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from . import procstats
from .case import Case, CaseResult, Settings
from .chunked import ChunkedClip
from .httpload import HttpLoad
from .pacer import Feed, Pacer
from .probes import edge_lag, first_segment
from .profiling import Profiler
from .publisher import RtmpPublisher
from .servers import ServerUnderTest, StreamTarget
from .stats import Summary
from .viewer import START_DISTANCE, ViewerStats

Progress = Callable[[str], None]
# Asked at the end of the window, while the load still runs: a note for the report.
Probe = Callable[[], Awaitable[str]]
PROGRESS_EVERY = 5.0
MB = 1024 * 1024
# Probes at the end of a case run this many requests at once at most.
PROBE_CONCURRENCY = 20
# Above this share of a core used by other processes during a window, say the run was noisy.
OTHER_CPU_WARNING = 10.0
# After the window: time allowed for teardown before the pacer stops by itself.
TEARDOWN_BUDGET = 120.0


class _Stream:
    """A publisher and what was learned about it."""

    def __init__(self, target: StreamTarget) -> None:
        self.target = target
        self.publisher = RtmpPublisher(target.host, target.port, target.app,
                                       target.stream_name)
        self.feed: Feed | None = None
        self.refusal: str | None = None
        self.first_segment: float | None = None


@dataclass(frozen=True, slots=True)
class _Window:
    seconds: float
    server_cpu: float
    load_cpu: float
    machine_cpu: float
    memory: procstats.Memory


async def run_case(server: ServerUnderTest, scenario: str, case: Case, settings: Settings,
                   clip: ChunkedClip, progress: Progress, probe: Probe | None = None
                   ) -> CaseResult:
    result = CaseResult(server.name, scenario, case.streams, case.viewers)
    tag = f"[{server.name} {scenario} streams={case.streams} viewers={case.viewers}]"
    progress(f"{tag} starting server")
    await server.start()
    result.server_code = server.code
    try:
        await _run_started(server, case, settings, clip, result, lambda m: progress(f"{tag} {m}"),
                           probe)
    finally:
        result.server_exit_code = await server.stop()
        if result.server_exit_code not in (0, None):
            result.notes.append(f"server exited with {result.server_exit_code}")
    progress(f"{tag} done: {result.cpu_ms_per_stream_second:.2f} ms CPU per stream-second, "
             f"peak RSS {result.rss_peak_mb:.0f} MB, behind {result.behind}, "
             f"dropped {result.dropped}")
    return result


async def _run_started(server: ServerUnderTest, case: Case, settings: Settings,
                       clip: ChunkedClip, result: CaseResult, progress: Progress,
                       probe: Probe | None) -> None:
    loop = asyncio.get_running_loop()
    streams = [_Stream(t) for t in await server.prepare(case.streams)]
    result.rss_start_mb = procstats.tree_memory(server.pid).rss / MB
    pacer = Pacer(settings.tick)
    pacer.start(loop.time() + settings.ramp + settings.first_segment_timeout
                + settings.warmup + START_DISTANCE * settings.segment_target
                + settings.seconds + TEARDOWN_BUDGET)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    http: HttpLoad | None = None
    try:
        live = await _join_all(streams, clip, pacer, session, settings, result, progress)
        # Viewers join a stream that has been on for a while: a full start distance of it.
        await asyncio.sleep(max(settings.warmup, START_DISTANCE * settings.segment_target)
                            if case.viewers_per_stream else settings.warmup)
        http = HttpLoad(session, [s.target.playlist_url for s in live], case, settings)
        window_end = time.monotonic() + settings.seconds
        http.start(window_end)
        profiler = await _start_profiler(server, case, settings, result)
        window = await _measure(server.pid, live, settings, window_end, loop, progress)
        if probe is not None:
            result.notes.append(await probe())
        result.edge_lag = Summary.of(await _edge_lags(session, live))
        if profiler is not None:
            await _finish_profiler(profiler, result)
        _summarise(result, case, window)
        stats, result.viewers_started = await http.collect()
        result.latency_source = http.source
        _summarise_http(result, stats)
        _summarise_publishers(result, live, pacer, settings)
    finally:
        if http is not None:
            http.cancel()
        await pacer.stop()
        await asyncio.gather(*(s.publisher.close() for s in streams), return_exceptions=True)
        await session.close()


async def _join_all(streams: list[_Stream], clip: ChunkedClip, pacer: Pacer,
                    session: aiohttp.ClientSession, settings: Settings, result: CaseResult,
                    progress: Progress) -> list[_Stream]:
    progress(f"{len(streams)} publishers joining over {settings.ramp:g}s")
    spacing = settings.ramp / max(1, len(streams))
    await asyncio.gather(*(_join(s, i * spacing, clip, pacer, session, settings)
                           for i, s in enumerate(streams)))
    live = [s for s in streams if s.feed is not None]
    result.published = len(live)
    result.refused = dict(Counter(s.refusal for s in streams if s.refusal))
    firsts = [s.first_segment for s in live if s.first_segment is not None]
    result.first_segment = Summary.of(firsts)
    result.first_segment_missing = len(live) - len(firsts)
    message = f"published {len(live)}/{len(streams)}"
    if result.refused:
        message += f", refused {result.refused}"
    if result.first_segment:
        message += (f", first segment p50 {result.first_segment.p50:.2f}s"
                    f" max {result.first_segment.max:.2f}s")
    progress(message)
    return live


async def _join(stream: _Stream, delay: float, clip: ChunkedClip, pacer: Pacer,
                session: aiohttp.ClientSession, settings: Settings) -> None:
    await asyncio.sleep(delay)
    outcome = await stream.publisher.publish()
    transport = stream.publisher.transport
    if not outcome.ok or transport is None:
        stream.refusal = outcome.code
        return
    since = time.monotonic()
    stream.feed = Feed(clip, transport, stream.publisher.stream_id,
                       asyncio.get_running_loop().time())
    pacer.add(stream.feed)
    stream.first_segment = await first_segment(session, stream.target.playlist_url, since,
                                               settings.first_segment_timeout,
                                               settings.segment_target)


async def _measure(pid: int, live: list[_Stream], settings: Settings, window_end: float,
                   loop: asyncio.AbstractEventLoop, progress: Progress) -> _Window:
    """The measured window: CPU of server, load and machine; progress every few seconds."""
    cpu_start = procstats.cpu_seconds(pid)
    load_start = procstats.self_cpu_seconds()
    machine_start = procstats.machine_busy_seconds()
    started = time.monotonic()
    while (now := time.monotonic()) < window_end:
        await asyncio.sleep(min(PROGRESS_EVERY, window_end - now))
        elapsed = time.monotonic() - started
        cpu = procstats.cpu_seconds(pid) - cpu_start
        behind = sum(1 for s in live if s.feed and s.feed.lag(loop.time()) > settings.max_lag)
        progress(f"{elapsed:5.1f}/{settings.seconds:g}s  server CPU "
                 f"{100 * cpu / elapsed:5.1f}%  behind now {behind}/{len(live)}")
    return _Window(
        seconds=time.monotonic() - started,
        server_cpu=procstats.cpu_seconds(pid) - cpu_start,
        load_cpu=procstats.self_cpu_seconds() - load_start,
        machine_cpu=procstats.machine_busy_seconds() - machine_start,
        memory=procstats.tree_memory(pid),
    )


async def _start_profiler(server: ServerUnderTest, case: Case, settings: Settings,
                          result: CaseResult) -> Profiler | None:
    if settings.profile_dir is None or server.name != "ours":
        return None
    out = settings.profile_dir / f"pyspy-{server.name}-{case.streams}x{case.viewers}.txt"
    profiler = Profiler(server.pid, settings.seconds, out, settings.profile_native)
    if not await profiler.start():
        result.notes.append("py-spy not found: no profile")
        return None
    return profiler


async def _finish_profiler(profiler: Profiler, result: CaseResult) -> None:
    error = await profiler.wait()
    if error:
        result.notes.append(f"py-spy: {error}")
    elif profiler.out.exists():
        # Relative to the results directory, which holds the profiles directory.
        result.profile = f"{profiler.out.parent.name}/{profiler.out.name}"
        result.notes.append("profiled with py-spy at 100 Hz: compare CPU figures only "
                            "between unprofiled runs")


async def _edge_lags(session: aiohttp.ClientSession, live: list[_Stream]) -> list[float]:
    gate = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def one(stream: _Stream) -> float | None:
        assert stream.feed is not None
        async with gate:
            return await edge_lag(session, stream.target.playlist_url,
                                  stream.feed.media_seconds())

    lags = await asyncio.gather(*(one(s) for s in live))
    return [lag for lag in lags if lag is not None]


def _summarise(result: CaseResult, case: Case, window: _Window) -> None:
    seconds = result.window_seconds = window.seconds
    cpu = result.server_cpu_seconds = window.server_cpu
    result.server_cpu_percent = 100 * cpu / seconds
    if result.published:
        result.cpu_ms_per_stream_second = 1000 * cpu / (result.published * seconds)
        result.rss_per_stream_mb = ((window.memory.rss / MB - result.rss_start_mb)
                                    / result.published)
    if case.viewers:
        result.cpu_ms_per_viewer_second = 1000 * cpu / (case.viewers * seconds)
    result.rss_end_mb = window.memory.rss / MB
    result.rss_peak_mb = window.memory.peak / MB
    result.load_cpu_percent = 100 * window.load_cpu / seconds
    other = window.machine_cpu - window.server_cpu - window.load_cpu
    result.other_cpu_percent = max(0.0, 100 * other / seconds)
    if result.other_cpu_percent > OTHER_CPU_WARNING:
        result.notes.append(f"other processes used {result.other_cpu_percent:.0f}% of a "
                            "core during the window: the machine was not quiet")
    if result.load_cpu_percent > 90:
        result.notes.append("load generator near 100% of its CPU: numbers may be capped "
                            "by the load side")


def _summarise_http(result: CaseResult, stats: ViewerStats) -> None:
    result.playlist_latency = Summary.of(stats.playlist_latency)
    result.segment_latency = Summary.of(stats.segment_latency)
    result.segments_fetched = stats.segments
    result.bytes_fetched = stats.bytes
    result.stalls = stats.stalls
    result.stall_seconds = stats.stall_seconds
    result.request_errors = stats.errors
    result.skipped_segments = stats.skipped


def _summarise_publishers(result: CaseResult, live: list[_Stream], pacer: Pacer,
                          settings: Settings) -> None:
    feeds = [s.feed for s in live if s.feed is not None]
    result.dropped = sum(1 for s in live if s.publisher.closed_by_server
                         or (s.feed is not None and s.feed.closed))
    result.behind = sum(1 for f in feeds if f.max_lag > settings.max_lag)
    result.max_send_lag = max((f.max_lag for f in feeds), default=0.0)
    result.pacer_max_overrun = pacer.stats.max_overrun
    if result.pacer_max_overrun > settings.max_lag / 2:
        result.notes.append(f"the load generator itself stalled for up to "
                            f"{result.pacer_max_overrun:.2f}s: lag may be the load side's")
