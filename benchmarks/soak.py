"""`python -m benchmarks soak`: a long run with churning publishers, watching what grows.

A short benchmark cannot see memory that outlives a channel, a descriptor leaked per
connection, or an error once a minute. The soak keeps P publishers and V player-like
viewers on one server for minutes to hours. Publishers churn: each stops after
`churn` seconds (alternately as OBS's "Stop Streaming" does and by dropping the
connection) and publishes again on another channel of its own, so channels end and
new ones start all the time. Every `sample_every` seconds the server's RSS, CPU, open
descriptors and live streams are read, with the errors the load has seen. RSS over the
steady state (after `warmup`) is fitted by least squares: a slope well above zero is
a leak. After the load stops, the channels are left to end and RSS is read once more.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from . import procstats
from .chunked import ChunkedClip
from .pacer import DEFAULT_TICK, Feed, Pacer
from .probes import first_segment
from .publisher import RtmpPublisher
from .servers import HOST, OurServer, StreamTarget
from .stats import LinearFit
from .viewer import Viewer, ViewerStats

Progress = Callable[[str], None]
MB = 1024 * 1024
# A publish that shows no playable segment within this long is counted as an error.
FIRST_SEGMENT_TIMEOUT = 20.0
# After a refused or failed publish, wait this long before the next try (no hot loop).
RETRY_DELAY = 1.0
# A viewer joins only a channel whose publisher stays at least this much longer ...
MIN_WATCH = 4.0
# ... and leaves this long before that publisher stops: a viewer cut off by our own
# churn is not a server error.
VIEWER_MARGIN = 1.0
# After the load stops: how long channels may take to end, beyond the grace period.
DRAIN_TIMEOUT = 20.0
# Lines of the server's log that are errors whatever the load saw.
LOG_ERROR = re.compile(r"\bERROR\b|Traceback")
# A dropped publisher's channel must end before the publisher comes back to it (its slot
# rotates through CHANNELS_PER_SLOT channels), so the soak keeps the server's grace short.
DEFAULT_GRACE = 5.0
CHANNELS_PER_SLOT = 2
POLL = 0.25


@dataclass(frozen=True, slots=True)
class SoakSettings:
    seconds: float
    publishers: int = 4
    viewers: int = 20
    sample_every: float = 10.0
    churn: float = 60.0  # seconds each publish lasts before the publisher stops
    warmup: float = 60.0  # seconds before the steady state the RSS slope is fitted over
    segment_target: float = 2.0
    grace: float = DEFAULT_GRACE  # the server's --grace-period
    tick: float = DEFAULT_TICK
    seed: int = 1
    # After the load: how long the server may take to drop every channel (grace period,
    # then the ended playlist's retention); 0 skips that wait.
    release_timeout: float = 120.0


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the load started
    rss_mb: float
    cpu_percent: float  # of one core, since the previous sample
    fds: int
    live_streams: int  # the server's own gauge; -1 when /metrics did not answer
    rtmp_connections: int
    channels_held: int  # channels the server keeps in memory: live, in grace, or ended
    hls_mb: float  # segment bytes held in all playlist windows
    publishes: int  # successful publishes so far
    watching: int  # viewers watching right now
    http_errors: int  # so far
    rtmp_errors: int  # so far


@dataclass(slots=True)
class SoakResult:
    settings: dict[str, Any]
    server_code: str = ""
    samples: list[Sample] = field(default_factory=list)
    steady_from: float = 0.0  # t of the first steady-state sample
    rss_steady_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_slope_mb_per_10min: float = 0.0
    rss_fit_r2: float = 0.0
    drained: Sample | None = None  # after the load stopped and the publishers were gone
    released: Sample | None = None  # once the server held no channel at all
    publishes: int = 0
    channels_used: int = 0
    segments_fetched: int = 0
    bytes_fetched: int = 0
    stalls: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count
    refusals: dict[str, int] = field(default_factory=dict)  # publish failure -> count
    server_log_errors: list[str] = field(default_factory=list)  # first few lines
    server_exit_code: int | None = None

    @property
    def errors_total(self) -> int:
        return sum(self.errors.values())


class _Slot:
    """One publisher position: publishes, stops, publishes again on its next channel."""

    def __init__(self, targets: list[StreamTarget]) -> None:
        self.targets = targets
        self.live: StreamTarget | None = None  # set once its playlist has a segment
        self.stop_at = 0.0


class _Load:
    """Everything the publishers and viewers share, and what they counted."""

    def __init__(self, server: OurServer, clip: ChunkedClip, settings: SoakSettings,
                 session: aiohttp.ClientSession, end: float) -> None:
        self.server = server
        self.clip = clip
        self.settings = settings
        self.session = session
        self.end = end  # monotonic time the load stops
        self.pacer = Pacer(settings.tick)
        self.publishes = 0
        self.publish_failures: Counter[str] = Counter()
        self.drops = 0  # closed by the server while we were still sending
        self.no_segment = 0  # published, but no playable segment appeared
        self.http = ViewerStats()  # viewers that finished
        self.watching: set[Viewer] = set()

    @property
    def rtmp_errors(self) -> int:
        return sum(self.publish_failures.values()) + self.drops + self.no_segment

    @property
    def http_errors(self) -> int:
        return self.http.errors + sum(v.stats.errors for v in self.watching)


async def _run_slot(load: _Load, slot: _Slot, first_stop: float) -> None:
    loop = asyncio.get_running_loop()
    settings = load.settings
    turn = 0
    stop_at = first_stop
    while time.monotonic() < load.end:
        target = slot.targets[turn % len(slot.targets)]
        publisher = RtmpPublisher(target.host, target.port, target.app, target.stream_name)
        outcome = await publisher.publish()
        if not outcome.ok or publisher.transport is None:
            load.publish_failures[outcome.code] += 1
            await publisher.close()
            await asyncio.sleep(RETRY_DELAY)
            continue
        load.publishes += 1
        since = time.monotonic()
        feed = Feed(load.clip, publisher.transport, publisher.stream_id, loop.time())
        load.pacer.add(feed)
        stop_at = min(load.end, max(stop_at, since + MIN_WATCH))
        first = await first_segment(load.session, target.playlist_url, since,
                                    FIRST_SEGMENT_TIMEOUT, settings.segment_target)
        if first is None:
            load.no_segment += 1
        else:
            slot.stop_at, slot.live = stop_at, target
        while (time.monotonic() < stop_at and not publisher.closed_by_server
               and not feed.closed):
            await asyncio.sleep(min(POLL, max(0.0, stop_at - time.monotonic())))
        slot.live = None
        if time.monotonic() < stop_at:
            load.drops += 1
        load.pacer.remove(feed)
        # Both ways a publish ends in the wild: a deliberate stop, and a dropped connection.
        if turn % 2 == 0:
            await publisher.unpublish()
        else:
            await publisher.close()
        turn += 1
        stop_at = time.monotonic() + settings.churn


async def _run_viewer(load: _Load, slots: list[_Slot], rng: random.Random) -> None:
    await asyncio.sleep(rng.uniform(0, load.settings.segment_target * 2))
    while (now := time.monotonic()) < load.end:
        choices = [s for s in slots if s.live is not None and s.stop_at - now > MIN_WATCH]
        if not choices:
            await asyncio.sleep(POLL)
            continue
        slot = rng.choice(choices)
        assert slot.live is not None
        viewer = Viewer(load.session, slot.live.playlist_url)
        load.watching.add(viewer)
        try:
            stats = await viewer.run(min(load.end, slot.stop_at - VIEWER_MARGIN))
        finally:
            load.watching.discard(viewer)
        load.http.merge(stats)


async def _scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The server's gauges that say what is live, from its own /metrics."""
    wanted = {"mediaserver_live_streams", "mediaserver_rtmp_connections_open"}
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return {}
    out: dict[str, float] = {"channels_held": 0, "hls_bytes": 0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                out[sample.name] = sample.value
            elif sample.name == "mediaserver_hls_window_bytes":  # one per channel held
                out["channels_held"] += 1
                out["hls_bytes"] += sample.value
    return out


class _Sampler:
    def __init__(self, load: _Load, started: float) -> None:
        self.load = load
        self.started = started
        self.pid = load.server.pid
        self.metrics_url = f"http://{HOST}:{load.server.http_port}/metrics"
        self._cpu = procstats.cpu_seconds(self.pid)
        self._at = time.monotonic()

    async def sample(self) -> Sample:
        load = self.load
        gauges = await _scrape(load.session, self.metrics_url)
        now = time.monotonic()
        cpu = procstats.cpu_seconds(self.pid)
        percent = 100 * (cpu - self._cpu) / max(1e-6, now - self._at)
        self._cpu, self._at = cpu, now
        return Sample(
            t=round(now - self.started, 1),
            rss_mb=round(procstats.memory(self.pid).rss / MB, 1),
            cpu_percent=round(percent, 1),
            fds=procstats.open_fds(self.pid),
            live_streams=int(gauges.get("mediaserver_live_streams", -1)),
            rtmp_connections=int(gauges.get("mediaserver_rtmp_connections_open", -1)),
            channels_held=int(gauges.get("channels_held", -1)),
            hls_mb=round(gauges.get("hls_bytes", 0) / MB, 1),
            publishes=load.publishes,
            watching=len(load.watching),
            http_errors=load.http_errors,
            rtmp_errors=load.rtmp_errors,
        )


COLUMNS = ("t", "rss_mb", "cpu_percent", "fds", "live_streams", "rtmp_connections",
           "channels_held", "hls_mb", "publishes", "watching", "http_errors", "rtmp_errors")
HEADS = ("t s", "RSS MB", "CPU %", "fds", "live", "RTMP conns", "channels held", "HLS MB",
         "publishes", "watching",
         "HTTP errors", "RTMP errors")


def table_head() -> str:
    return "| " + " | ".join(HEADS) + " |\n|" + "---|" * len(HEADS)


def table_row(sample: Sample, label: str = "") -> str:
    values = [f"{getattr(sample, c):g}" for c in COLUMNS]
    if label:
        values[0] = f"{values[0]} ({label})"
    return "| " + " | ".join(values) + " |"


async def run_soak(clip: ChunkedClip, settings: SoakSettings, server: OurServer,
                   progress: Progress, emit: Callable[[str], None] = print) -> SoakResult:
    """Start the server, run the load for settings.seconds, drain, and summarise."""
    result = SoakResult(settings={k: v for k, v in asdict(settings).items()})
    await server.start()
    result.server_code = server.code
    try:
        await _run_started(server, clip, settings, result, progress, emit)
    finally:
        log = server.log_text()
        result.server_log_errors = [line for line in log.splitlines()
                                    if LOG_ERROR.search(line)]
        result.server_exit_code = await server.stop()
    _summarise(result)
    return result


async def _run_started(server: OurServer, clip: ChunkedClip, settings: SoakSettings,
                       result: SoakResult, progress: Progress,
                       emit: Callable[[str], None]) -> None:
    count = settings.publishers * CHANNELS_PER_SLOT
    targets = await server.prepare(count)
    result.channels_used = count
    slots = [_Slot(targets[i::settings.publishers]) for i in range(settings.publishers)]
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    started = time.monotonic()
    load = _Load(server, clip, settings, session, started + settings.seconds)
    rng = random.Random(settings.seed)
    load.pacer.start(asyncio.get_running_loop().time() + settings.seconds + DRAIN_TIMEOUT
                     + FIRST_SEGMENT_TIMEOUT)
    # First stops spread over one churn period, so channels end one at a time.
    churn = settings.churn
    tasks = [asyncio.create_task(_run_slot(load, slot, started + churn * (i + 1)
                                           / settings.publishers))
             for i, slot in enumerate(slots)]
    tasks += [asyncio.create_task(_run_viewer(load, slots, random.Random(rng.random())))
              for _ in range(settings.viewers)]
    sampler = _Sampler(load, started)
    progress(f"soak: {settings.publishers} publishers (each stops after {churn:g}s and "
             f"publishes again), {settings.viewers} viewers, {settings.seconds:g}s, "
             f"sampled every {settings.sample_every:g}s")
    emit(table_head())
    try:
        while True:
            sample = await sampler.sample()
            result.samples.append(sample)
            emit(table_row(sample))
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            now = time.monotonic()
            if now >= load.end:
                break
            await asyncio.sleep(min(settings.sample_every, load.end - now))
        # The load ends by itself at load.end; give it the time a publish may need to finish.
        await asyncio.wait_for(asyncio.gather(*tasks), FIRST_SEGMENT_TIMEOUT + DRAIN_TIMEOUT)
        await load.pacer.stop()
        result.drained = await _drain(sampler, settings, emit)
        if settings.release_timeout > 0:
            result.released = await _release(sampler, settings, emit)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await load.pacer.stop()
        await session.close()
    result.publishes = load.publishes
    stats = load.http
    result.segments_fetched, result.bytes_fetched, result.stalls = (
        stats.segments, stats.bytes, stats.stalls)
    result.refusals = dict(load.publish_failures)
    result.errors = {
        "http": load.http_errors,
        "publish_failed": sum(load.publish_failures.values()),
        "publisher_dropped": load.drops,
        "no_segment": load.no_segment,
    }


async def _drain(sampler: _Sampler, settings: SoakSettings,
                 emit: Callable[[str], None]) -> Sample:
    """Wait for every channel to end (bounded), then read the server once more."""
    deadline = time.monotonic() + settings.grace + DRAIN_TIMEOUT
    while True:
        sample = await sampler.sample()
        if sample.live_streams == 0 or time.monotonic() >= deadline:
            emit(table_row(sample, "drained"))
            return sample
        await asyncio.sleep(POLL * 2)


async def _release(sampler: _Sampler, settings: SoakSettings,
                   emit: Callable[[str], None]) -> Sample:
    """Wait (bounded) until the server holds no channel: memory a channel kept is gone now."""
    deadline = time.monotonic() + settings.release_timeout
    while True:
        sample = await sampler.sample()
        if sample.channels_held == 0 or time.monotonic() >= deadline:
            emit(table_row(sample, "released"))
            return sample
        await asyncio.sleep(POLL * 4)


def _summarise(result: SoakResult) -> None:
    samples = result.samples
    if not samples:
        result.errors["no_samples"] = 1
        return
    warmup = float(result.settings["warmup"])
    steady = [s for s in samples if s.t >= warmup]
    if len(steady) < 2:
        steady = samples
    result.steady_from = steady[0].t
    result.rss_steady_start_mb = steady[0].rss_mb
    result.rss_end_mb = steady[-1].rss_mb
    result.rss_peak_mb = max(s.rss_mb for s in samples)
    fit = LinearFit.of([s.t for s in steady], [s.rss_mb for s in steady])
    if fit is not None:
        result.rss_slope_mb_per_10min = round(fit.per_stream * 600, 2)
        result.rss_fit_r2 = round(fit.r2, 3)
    if result.server_log_errors:
        result.errors["server_log"] = len(result.server_log_errors)
    if result.server_exit_code not in (0, None):
        result.errors["server_exit"] = 1
    if result.drained is not None and result.drained.live_streams not in (0, -1):
        result.errors["channels_not_ended"] = result.drained.live_streams
    if result.released is not None and result.released.channels_held not in (0, -1):
        result.errors["channels_not_released"] = result.released.channels_held


def summary_lines(result: SoakResult) -> list[str]:
    drained = result.drained
    lines = [
        f"- steady state from t = {result.steady_from:g} s: RSS {result.rss_steady_start_mb:.1f}"
        f" MB -> {result.rss_end_mb:.1f} MB at the end (peak {result.rss_peak_mb:.1f} MB)",
        f"- RSS slope over the steady state: {result.rss_slope_mb_per_10min:+.2f} MB per 10 min"
        f" (least squares, R² {result.rss_fit_r2:.2f})",
    ]
    if drained is not None:
        lines.append(f"- after the load stopped: RSS {drained.rss_mb:.1f} MB, "
                     f"{drained.fds} fds, {drained.live_streams} live streams")
    if result.released is not None:
        released = result.released
        later = released.t - (drained or released).t
        lines.append(f"- once every channel was released ({later:.0f} s later): RSS "
                     f"{released.rss_mb:.1f} MB, {released.fds} fds, "
                     f"{released.channels_held} channels held, {released.hls_mb:g} MB of HLS")
    lines += [
        f"- publishes: {result.publishes} on {result.channels_used} channels; viewers fetched "
        f"{result.segments_fetched} segments ({result.bytes_fetched / MB:.0f} MB), "
        f"{result.stalls} stalls",
        f"- errors: {result.errors_total} "
        + (", ".join(f"{k} {v}" for k, v in result.errors.items() if v) or "(none)"),
    ]
    if result.refusals:
        lines.append(f"- publish failures: {result.refusals}")
    for line in result.server_log_errors[:5]:
        lines.append(f"- server log: `{line[:200]}`")
    lines.append(f"- server: {result.server_code}; exit code {result.server_exit_code}")
    return lines


def markdown_report(result: SoakResult, machine: dict[str, str]) -> str:
    lines = ["# Soak", "", *summary_lines(result), "", table_head()]
    lines += [table_row(s) for s in result.samples]
    for label, extra in (("drained", result.drained), ("released", result.released)):
        if extra is not None:
            lines.append(table_row(extra, label))
    lines += ["", "## Settings", ""] + [f"- {k}: {v}" for k, v in result.settings.items()]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in machine.items()]
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, result: SoakResult, machine: dict[str, str]) -> Path:
    """soak-<time>.json (every sample) and soak-<time>.md; returns the markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    data = {"machine": machine, **asdict(result), "errors_total": result.errors_total}
    (out_dir / f"{stem}.json").write_text(json.dumps(data, indent=2))
    md = out_dir / f"{stem}.md"
    md.write_text(markdown_report(result, machine))
    return md


def make_server(cpu: int | None, extra_args: list[str], command: list[str] | None,
                settings: SoakSettings) -> OurServer:
    args = list(extra_args)
    if not any(a.startswith("--segment-duration") for a in args):
        args.append(f"--segment-duration={settings.segment_target:g}")
    if not any(a.startswith("--grace-period") for a in args):
        args.append(f"--grace-period={settings.grace:g}")
    return OurServer(cpu, args, command)

