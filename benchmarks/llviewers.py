"""`python -m benchmarks llviewers`: one stream, V LL-HLS viewers blocking on every part.

Our server runs pinned to one core (`--server-cpu`); the bench clip is published
in real time by the benchmark publisher in a process of its own (so that the
viewers' work cannot delay the stream), and this process (pinned to
`--load-cpu`, as is the publisher) runs V player-like LL-HLS viewers. Each
viewer does what hls.js does in low-latency mode: load ll.m3u8, start
PART-HOLD-BACK from the live edge at an independent part, then for every part at
once ask for the hinted part (held by the server until it is complete) and for
the playlist that will list it (`_HLS_msn`/`_HLS_part`/`_HLS_skip=YES`, held
until then), and play in real time from its first part (a stall: the playhead
reached the end of what it had).

Measured, for every blocking playlist answer:
- after first: how much later than the first viewer's answer for the same part
  it came: the wake-up of hundreds of waiters (the first answer comes within a
  millisecond or two of the part landing);
- after ingest: answer time minus the moment the publisher sent the frame that
  completed the part (parts close when the next frame of the lead track comes):
  what read pacing, segmenting and the wake-up add up to;
  (both only for requests already waiting when the part landed; a viewer still
  busy fetching the previous part asks late, and is counted apart);
- wait: how long the request was held (asked right after the previous answer):
  parts land every part target or so, so this is at most about that plus delivery.
And, from the server's own /metrics (mediaserver_hls_blocked_wakeup_seconds),
the time from each part landing to the answer of every request it woke being
ready: the server's share, free of the load generator's. And the server's CPU,
this process's CPU (above ~90 % the load generator limits the client-side
figures, as does other work on the machine), stalls and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import struct
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from hls.segmenter import TIMELINE_ORIGIN_MS

from . import procstats
from .chunked import ChunkedClip
from .clip import BENCH_CLIP, DEFAULT_CACHE, ensure_clip
from .flvfile import TAG_VIDEO, read_flv
from .llm3u8 import LiveEdge, LlPlaylist, Part, live_edge, parse_ll_playlist, part_duration
from .machine import machine_info
from .pacer import DEFAULT_TICK, Feed, Pacer
from .publisher import RtmpPublisher
from .report import save_report
from .servers import HOST, OurServer
from .stats import Summary

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CHANNEL = "bench0"  # what OurServer.prepare(1) creates
# Viewers join spread over this long, as an audience does, not in one burst.
ARRIVAL_SPREAD = 3.0
REQUEST_TIMEOUT = 15.0  # above the server's own limit (3 target durations)
# hls.js asks for a delta update once the playlist offers them.
BLOCKING_QUERY = "_HLS_msn={}&_HLS_part={}&_HLS_skip=YES"
# The issue's bound: an answer at most the part target plus this after the part landed.
DELIVERY_MS = 50


@dataclass(slots=True)
class ViewerLog:
    answers: list[tuple[str, float, float]] = field(default_factory=list)  # part, asked, answered
    parts: int = 0
    bytes: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stalls: int = 0
    stall_seconds: float = 0.0
    started: bool = False


class PartClock:
    """When each part's media starts (from the parts' own tfdt), shared by all viewers."""

    def __init__(self) -> None:
        self.start_ms: dict[str, float] = {}

    def note(self, uri: str, data: bytes) -> None:
        if uri not in self.start_ms:
            start = first_tfdt_ms(data)
            if start is not None:
                self.start_ms[uri] = start


def first_tfdt_ms(data: bytes) -> float | None:
    """The first track fragment's decode time (track 1 is video, 90 kHz), in ms."""
    at = data.find(b"tfdt")
    if at < 4:
        return None
    version = data[at + 4]
    if version == 1:
        (decode_time,) = struct.unpack_from(">Q", data, at + 8)
    else:
        (decode_time,) = struct.unpack_from(">I", data, at + 8)
    return decode_time / 90


class LlViewer:
    def __init__(self, session: aiohttp.ClientSession, base: str, clock: PartClock,
                 parts: bool = True) -> None:
        self.session = session
        self.base = base
        self.clock = clock
        self.parts = parts  # False: follow the playlist only (isolates blocking reloads)
        self.log = ViewerLog()
        self._have: set[str] = set()
        self._buffered = 0.0  # media seconds received since playback started
        self._play_start = 0.0
        self._stalled = 0.0

    async def _get(self, path: str) -> tuple[int, bytes]:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        try:
            async with self.session.get(f"{self.base}/{path}", timeout=timeout,
                                        headers={"Accept-Encoding": "identity"}) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.log.errors += 1
            self.log.error_kinds[type(exc).__name__] += 1
            return 0, b""

    async def run(self, deadline: float, delay: float) -> ViewerLog:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(delay)
        status, body = await self._get("ll.m3u8")
        if status != 200:
            self.log.errors += 1
            self.log.error_kinds[f"status {status}"] += 1
            return self.log
        playlist = parse_ll_playlist(body.decode())
        await self._get(playlist.maps[-1])
        for part in self._start_parts(playlist) if self.parts else ():
            await self._fetch_part(part)
        edge = LiveEdge(playlist.open_msn, tuple(p.uri for p in playlist.open_parts),
                        playlist.hint, playlist.ended)
        while loop.time() < deadline and not edge.ended and edge.hint is not None:
            msn, index = edge.next_wanted()
            hint = edge.hint  # the part (msn, index) will be, whichever segment it ends in
            asked = loop.time()
            query = BLOCKING_QUERY.format(msn, index)
            fetch_hint = self.parts and hint not in self._have
            answer, hinted = await asyncio.gather(
                self._get(f"ll.m3u8?{query}"),
                self._get(hint) if fetch_hint else _nothing())
            answered = loop.time()
            status, body = answer
            if status != 200:
                self.log.errors += 1
                self.log.error_kinds[f"status {status}"] += 1
                await asyncio.sleep(0.1)
                continue
            self.log.answers.append((hint, asked, answered))
            edge = live_edge(body)
            if hinted is not None and hinted[0] == 200:
                self._arrived(hint, hinted[1], part_duration(body, hint))
            for uri in edge.open_parts if self.parts else ():  # fell behind: catch up
                if uri not in self._have:
                    await self._fetch_part(Part(uri, part_duration(body, uri) or 0.0, False))
        return self.log

    def _start_parts(self, playlist: LlPlaylist) -> list[Part]:
        """From an independent part about PART-HOLD-BACK before the end, to the end."""
        parts = playlist.all_parts()
        behind, at = 0.0, len(parts)
        while at > 0 and behind < playlist.part_hold_back:
            at -= 1
            behind += parts[at].duration
        while at > 0 and not parts[at].independent:
            at -= 1
        return parts[at:]

    async def _fetch_part(self, part: Part) -> None:
        status, data = await self._get(part.uri)
        if status != 200:
            self.log.errors += 1
            self.log.error_kinds[f"part status {status}"] += 1
            return
        self._arrived(part.uri, data, part.duration)

    def _arrived(self, uri: str, data: bytes, duration: float | None = None) -> None:
        if uri in self._have:
            return
        self._have.add(uri)
        self.clock.note(uri, data)
        self.log.parts += 1
        self.log.bytes += len(data)
        now = asyncio.get_running_loop().time()
        if not self.log.started:
            self.log.started = True
            self._play_start = now
        played = now - self._play_start - self._stalled
        if played > self._buffered:  # the playhead ran out before this part came
            self.log.stalls += 1
            self.log.stall_seconds += played - self._buffered
            self._stalled += played - self._buffered
        # A part the playlist no longer lists in full (rare): 0.3 s stands in.
        self._buffered += duration if duration is not None else 0.3


async def _nothing() -> None:
    return None  # gather()'s stand-in for the hint already fetched


WAKEUP_METRIC = "mediaserver_hls_blocked_wakeup_seconds"
_LE = re.compile(r'le="([^"]+)"')


async def wakeup_buckets(session: aiohttp.ClientSession, metrics_url: str
                         ) -> dict[float, float]:
    """The server's wake-up histogram: cumulative count per upper bound (inf: all), and
    its sum under the key -1."""
    async with session.get(metrics_url) as response:
        text = await response.text()
        if response.status != 200:
            raise RuntimeError(f"/metrics answered {response.status}: {text[:200]}")
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{WAKEUP_METRIC}_bucket{{"):
            bound = _LE.search(line)
            if bound is not None:
                buckets.setdefault(float(bound.group(1)), float(line.rsplit(" ", 1)[1]))
        elif line.startswith(f"{WAKEUP_METRIC}_sum"):
            buckets.setdefault(-1.0, float(line.rsplit(" ", 1)[1]))
    if not buckets:
        raise RuntimeError(f"no {WAKEUP_METRIC} in /metrics")
    return buckets


def wakeup_summary(before: dict[float, float], after: dict[float, float]
                   ) -> dict[str, float] | None:
    """Requests woken in the window, their mean delay and the bucket bounds that hold
    50 % and 99 % of them (ms)."""
    delta = {bound: after.get(bound, 0.0) - before.get(bound, 0.0) for bound in after}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return None
    bounds = sorted(b for b in delta if b >= 0)

    def within(share: float) -> float:
        return next(b for b in bounds if delta[b] >= share * total) * 1000

    return {"count": total, "mean": round(delta[-1.0] / total * 1000, 2),
            "p50_at_most": within(0.5), "p99_at_most": within(0.99)}


def first_keyframe_ms(clip: ChunkedClip) -> int:
    for tag, offset in zip(clip.media, clip.offsets_ms, strict=True):
        if tag.type_id == TAG_VIDEO and (tag.body[0] >> 4) == 1:
            return offset
    raise ValueError("the clip has no keyframe")


def summarise(logs: list[ViewerLog], clock: PartClock, feed_start: float,
              first_key_ms: int) -> dict[str, Any]:
    first: dict[str, float] = {}
    for log in logs:
        for uri, _, answered in log.answers:
            first[uri] = min(first.get(uri, answered), answered)
    # A part is complete when the next part's first frame comes: the next part's start.
    ordered = sorted(clock.start_ms, key=lambda uri: clock.start_ms[uri])
    ends = {uri: clock.start_ms[after] for uri, after in itertools.pairwise(ordered)}
    after_first, after_ingest, waits = [], [], []
    late = 0
    for log in logs:
        for uri, asked, answered in log.answers:
            waits.append(answered - asked)
            if asked > first[uri]:
                late += 1  # asked after the part had landed: not woken by it
                continue
            after_first.append(answered - first[uri])
            if uri in ends:
                sent = feed_start + (ends[uri] - TIMELINE_ORIGIN_MS + first_key_ms) / 1000
                after_ingest.append(answered - sent)

    def ms(values: list[float]) -> dict[str, float] | None:
        summary = Summary.of(values)
        return None if summary is None else {k: round(v * 1000, 1) if k != "count" else v
                                              for k, v in asdict(summary).items()}

    errors: dict[str, int] = defaultdict(int)
    for log in logs:
        for kind, count in log.error_kinds.items():
            errors[kind] += count
    return {
        "viewers": len(logs), "started": sum(log.started for log in logs),
        "answers": len(waits), "asked_after_landing": late,
        "parts_fetched": sum(log.parts for log in logs),
        "after_first_ms": ms(after_first), "after_ingest_ms": ms(after_ingest),
        "wait_ms": ms(waits), "stalls": sum(log.stalls for log in logs),
        "stall_seconds": round(sum(log.stall_seconds for log in logs), 2),
        "errors": sum(log.errors for log in logs), "error_kinds": dict(errors),
    }


async def publish_forever(host: str, port: int, key: str, clip_path: Path) -> int:
    """The publisher process: prints when media timestamp 0 was due (asyncio's loop
    clock is the monotonic clock, which every process reads alike), then its worst
    lag every second."""
    clip = ChunkedClip.build(read_flv(clip_path))
    publisher = RtmpPublisher(host, port, "live", key)
    outcome = await publisher.publish()
    if not outcome.ok or publisher.transport is None:
        print(f"refused {outcome.code}", flush=True)
        return 1
    loop = asyncio.get_running_loop()
    feed = Feed(clip, publisher.transport, publisher.stream_id, loop.time())
    pacer = Pacer(DEFAULT_TICK)
    pacer.add(feed)
    pacer.start(loop.time() + 24 * 3600)
    print(f"started {feed.start!r}", flush=True)
    while not feed.closed:
        await asyncio.sleep(1.0)
        print(f"lag {feed.max_lag!r}", flush=True)
    return 0


class PublisherProcess:
    """`python -m benchmarks.llviewers --publish ...` as a child; its clock and lag."""

    def __init__(self, host: str, port: int, key: str, clip: Path, cpu: int | None) -> None:
        # The key as --publish-key=KEY: a random key may begin with "-", which argparse
        # would take for an option if it stood alone.
        self.args = [sys.executable, "-m", "benchmarks.llviewers", "--publish", host,
                     str(port), f"--publish-key={key}", "--clip", str(clip)]
        self.cpu = cpu
        self.start = 0.0
        self.max_lag = 0.0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PublisherProcess:
        self._proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL)
        procstats.pin(self._proc.pid, self.cpu)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        line = (await asyncio.wait_for(self._proc.stdout.readline(), 30)).decode().split()
        if line[:1] != ["started"]:
            errors = (await self._proc.stderr.read()).decode(errors="replace")
            raise RuntimeError(f"publisher: {' '.join(line)}\n{errors[-3000:]}")
        self.start = float(line[1])
        self._reader = asyncio.get_running_loop().create_task(self._read_lag())
        return self

    async def _read_lag(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        assert self._proc.stderr is not None
        # Whatever it logs is read and dropped: a full pipe would stall the publisher.
        drain = asyncio.get_running_loop().create_task(self._proc.stderr.read())
        try:
            await self._lag_lines()
        finally:
            drain.cancel()

    async def _lag_lines(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            words = raw.decode().split()
            if words[:1] == ["lag"]:
                self.max_lag = max(self.max_lag, float(words[1]))

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()


async def measure(viewers: int, seconds: float, server_cpu: int | None, load_cpu: int | None,
                  ours_args: list[str], clip_path: Path, parts: bool = True) -> dict[str, Any]:
    clip = ChunkedClip.build(read_flv(clip_path))
    server = OurServer(server_cpu, ours_args)
    await server.start()
    loop = asyncio.get_running_loop()
    try:
        target = (await server.prepare(1))[0]
        async with PublisherProcess(target.host, target.port, target.stream_name, clip_path,
                                    load_cpu) as publisher:
            return await _watch(server, publisher, clip, viewers, seconds, parts, loop,
                                ours_args)
    finally:
        await server.stop()


async def _watch(server: OurServer, publisher: PublisherProcess, clip: ChunkedClip,
                 viewers: int, seconds: float, parts: bool, loop: asyncio.AbstractEventLoop,
                 ours_args: list[str]) -> dict[str, Any]:
    base = f"http://{HOST}:{server.http_port}/live/{CHANNEL}"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.monotonic() + 30
        while True:
            async with session.get(f"{base}/ll.m3u8") as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("no ll.m3u8 after 30 s")
            await asyncio.sleep(0.2)
        clock = PartClock()
        crowd = [LlViewer(session, base, clock, parts) for _ in range(viewers)]
        end = loop.time() + ARRIVAL_SPREAD + seconds
        runs = asyncio.gather(*(viewer.run(end, ARRIVAL_SPREAD * i / viewers)
                                for i, viewer in enumerate(crowd)))
        await asyncio.sleep(ARRIVAL_SPREAD + 1)  # everyone in: the measured window
        metrics_url = f"http://{HOST}:{server.http_port}/metrics"
        woken_before = await wakeup_buckets(session, metrics_url)
        cpu, load, busy = (procstats.cpu_seconds(server.pid), procstats.self_cpu_seconds(),
                           procstats.machine_busy_seconds())
        started = time.monotonic()
        logs = await runs
        woken = wakeup_summary(woken_before, await wakeup_buckets(session, metrics_url))
        elapsed = time.monotonic() - started
        cpu = procstats.cpu_seconds(server.pid) - cpu
        load = procstats.self_cpu_seconds() - load
        other = procstats.machine_busy_seconds() - busy - cpu - load
    result = summarise(logs, clock, publisher.start, first_keyframe_ms(clip))
    result |= {
        "server_wakeup_ms": woken,
        "seconds": round(elapsed, 1),
        "server_cpu_percent": round(100 * cpu / elapsed, 1),
        "load_cpu_percent": round(100 * load / elapsed, 1),
        "other_cpu_percent": round(100 * max(other, 0.0) / elapsed, 1),
        "publisher_max_lag_ms": round(publisher.max_lag * 1000, 1),
        "server_args": " ".join(ours_args), "server_code": server.code,
    }
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [f"{result['viewers']} LL-HLS viewers of one stream, {result['seconds']} s "
             f"(server {result['server_args'] or 'defaults'}):", "",
             "| measure | p50 ms | p95 ms | p99 ms | max ms | n |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, label in (("after_first_ms", "answer after the first answer for the part"),
                       ("after_ingest_ms", "answer after the part's last frame was sent"),
                       ("wait_ms", "blocking request held")):
        s = result[key]
        if s is None:
            lines.append(f"| {label} | - | - | - | - | 0 |")
        else:
            lines.append(f"| {label} | {s['p50']} | {s['p95']} | {s['p99']} | {s['max']} "
                         f"| {s['count']} |")
    woken = result["server_wakeup_ms"]
    if woken is not None:
        lines += ["", f"Server side ({WAKEUP_METRIC}): {woken['count']:.0f} held requests "
                  f"answered a mean {woken['mean']} ms after their part landed; 50 % within "
                  f"{woken['p50_at_most']:g} ms, 99 % within {woken['p99_at_most']:g} ms."]
    lines += ["", f"server CPU {result['server_cpu_percent']} % of a core, load generator "
              f"{result['load_cpu_percent']} %, rest of the machine "
              f"{result['other_cpu_percent']} %; {result['asked_after_landing']} of "
              f"{result['answers']} requests asked after their part landed; "
              f"stalls {result['stalls']} "
              f"({result['stall_seconds']} s), errors {result['errors']} "
              f"{result['error_kinds'] or ''}; publisher max lag "
              f"{result['publisher_max_lag_ms']} ms"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks llviewers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--playlists-only", action="store_true",
                        help="viewers follow the playlist but fetch no parts (the load "
                             "generator's own CPU then stays out of the way)")
    parser.add_argument("--ours-arg", action="append", default=[],
                        help="extra flag for our server, e.g. --ours-arg=--read-interval=0")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--clip", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--publish", nargs=2, metavar=("HOST", "PORT"),
                        help=argparse.SUPPRESS)  # the publisher child
    parser.add_argument("--publish-key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    clip = args.clip or ensure_clip(BENCH_CLIP, args.cache)
    import uvloop

    if args.publish:
        host, port = args.publish
        return uvloop.run(publish_forever(host, int(port), args.publish_key, clip))
    procstats.pin(0, args.load_cpu)
    result = uvloop.run(measure(args.viewers, args.seconds, args.server_cpu, args.load_cpu,
                                args.ours_arg, clip, parts=not args.playlists_only))
    result["playlists_only"] = args.playlists_only
    result["machine"] = machine_info()
    save_report(args.out, "llviewers", result, markdown(result))
    ok = result["errors"] == 0 and result["stalls"] == 0 and result["started"] == args.viewers
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
