"""`python -m benchmarks edge`: what serving a channel through other nodes (edges) costs.

A real cluster on loopback: one redis-server, an origin node (real ffmpeg publishes
the bench clip to it) and `--edges` edge nodes, every one a `mediaserver serve
--store redis://…` that finds the origin through the cluster registry. All side
by side in one run:

1. Latency of playlist and segment requests straight from the origin and through
   an edge (sequential requests, so each one's time is its own, not a queue's):
   playlists from the edge's copy, and spaced out (past the half second an edge once
   reused a copy for, so that on such an edge each one was a refetch from the origin),
   segments as the edge's first fetch of them and as cache hits.
   Then how much later a new segment shows in the edge's playlist than in the
   origin's: both polled every few milliseconds while the stream goes on.
2. The origin's cost of an audience: origin HLS requests per second and origin CPU
   while 1 viewer watches it directly, while `--viewers` viewers spread over the
   edges watch, and while the same number watch it directly. Edges fetch each
   segment once and coalesce playlist fetches, so the spread audience should cost
   the origin about one viewer per edge.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from . import procstats
from .clip import BENCH_CLIP, ensure_clip
from .m3u8 import parse_media_playlist
from .machine import machine_info
from .redis_server import RedisServer
from .report import save_report
from .servers import HOST, OurServer
from .stats import Summary
from .viewer import Viewer, ViewerStats

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CHANNEL = "bench0"  # what OurServer.prepare(1) creates
# Viewers join spread over this long, as an audience does, not in one burst.
ARRIVAL_SPREAD = 2.0
# Playlist requests spaced past the half second an edge used to reuse its copy for
# (before it followed the origin's playlist), so that each was a refetch there.
REFETCH_SAMPLES = 40
REFETCH_SPACING = 0.55
# How often the news-delay pollers ask the origin and the edge (each on its own): the
# delay's resolution. A few ms of requests to each node is little load for 20 s.
NEWS_POLL_SECONDS = 0.005
# New segments watched for the news delay (one per GOP of the clip, 2 s).
NEWS_SEGMENTS = 10
# An origin that has not published this many segments after this long is broken.
READY_SEGMENTS, READY_SECONDS = 4, 30.0


async def timed_get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    async with session.get(url) as response:
        body = await response.read()
    return response.status, body, time.perf_counter() - started


async def window(session: aiohttp.ClientSession, base: str) -> list[str]:
    status, body, _ = await timed_get(session, f"{base}/live/{CHANNEL}/index.m3u8")
    if status != 200:
        return []
    return [s.uri for s in parse_media_playlist(body.decode()).segments]


async def latency(session: aiohttp.ClientSession, url_of: list[str], count: int,
                  spacing: float = 0.0) -> Summary | None:
    samples = []
    for i in range(count):
        status, _, seconds = await timed_get(session, url_of[i % len(url_of)])
        if status == 200:
            samples.append(seconds)
        if spacing:
            await asyncio.sleep(spacing)
    return Summary.of(samples)


async def first_fetches(session: aiohttp.ClientSession, origin: str, edge: str, count: int
                        ) -> Summary | None:
    """Time through the edge of segments it has never seen: each is its origin fetch."""
    samples: list[float] = []
    seen = set(await window(session, origin))
    deadline = time.monotonic() + count * BENCH_CLIP.gop_seconds * 3
    while len(samples) < count and time.monotonic() < deadline:
        new = [uri for uri in await window(session, origin) if uri not in seen]
        for uri in new:
            seen.add(uri)
            status, _, seconds = await timed_get(session, f"{edge}/live/{CHANNEL}/{uri}")
            if status == 200:
                samples.append(seconds)
        await asyncio.sleep(0.05)
    return Summary.of(samples)


async def first_seen(session: aiohttp.ClientSession, url: str, deadline: float
                     ) -> dict[str, float]:
    """Poll a playlist until the deadline: when each segment URI first showed in it."""
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        status, body, _ = await timed_get(session, url)
        now = time.monotonic()
        if status == 200:
            for segment in parse_media_playlist(body.decode()).segments:
                seen.setdefault(segment.uri, now)
        await asyncio.sleep(NEWS_POLL_SECONDS)
    return seen


async def news_delay(session: aiohttp.ClientSession, origin_url: str, edge_url: str,
                     segments: int) -> Summary | None:
    """How much later each new segment showed in the edge's playlist than in the
    origin's (both polled at once); segments already listed at the start do not count."""
    deadline = time.monotonic() + segments * BENCH_CLIP.gop_seconds + 1.0
    origin_seen, edge_seen = await asyncio.gather(first_seen(session, origin_url, deadline),
                                                  first_seen(session, edge_url, deadline))
    start = min(origin_seen.values(), default=0.0)
    return Summary.of([edge_seen[uri] - at for uri, at in origin_seen.items()
                       if at > start and uri in edge_seen])


async def hls_requests(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """The server's HLS answers so far, by kind (all statuses)."""
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "mediaserver_hls_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    kind = sample.labels["kind"]
                    totals[kind] = totals.get(kind, 0.0) + sample.value
    return totals


async def audience(session: aiohttp.ClientSession, origin: OurServer, playlist_urls: list[str],
                   viewers: int, seconds: float, name: str) -> dict[str, object]:
    """`viewers` players spread over playlist_urls for `seconds`: what the origin paid."""
    origin_base = f"http://{HOST}:{origin.http_port}"
    before = await hls_requests(session, origin_base)
    cpu_before = procstats.cpu_seconds(origin.pid)
    started = time.monotonic()
    deadline = started + seconds
    crowd = [Viewer(session, playlist_urls[i % len(playlist_urls)]) for i in range(viewers)]
    results = await asyncio.gather(*(v.run(deadline, ARRIVAL_SPREAD * i / viewers)
                                     for i, v in enumerate(crowd)))
    elapsed = time.monotonic() - started
    cpu = procstats.cpu_seconds(origin.pid) - cpu_before
    after = await hls_requests(session, origin_base)
    merged = ViewerStats()
    for stats in results:
        merged.merge(stats)
    per_second = {kind: round((after.get(kind, 0) - before.get(kind, 0)) / elapsed, 2)
                  for kind in ("playlist", "segment")}
    return {"name": name, "viewers": viewers, "nodes": len(playlist_urls),
            "seconds": round(elapsed, 1), "origin_requests_per_second": per_second,
            "origin_cpu_percent": round(100 * cpu / elapsed, 1),
            "viewer_requests_per_second": round(
                (len(merged.playlist_latency) + len(merged.segment_latency)) / elapsed, 1),
            "viewer_errors": merged.errors, "stalls": merged.stalls}


async def measure(requests: int, viewers: int, edges: int, seconds: float,
                  clip: Path | None = None, command: list[str] | None = None,
                  news_segments: int = NEWS_SEGMENTS) -> dict[str, object]:
    """`command`: argv that runs our server up to `serve` (another checkout, say)."""
    clip = clip or ensure_clip(BENCH_CLIP)
    with RedisServer() as redis:
        origin = OurServer(cpu=None, extra_args=["--store", redis.url], command=command)
        nodes = [OurServer(cpu=None, extra_args=["--store", redis.url], command=command)
                 for _ in range(edges)]
        ffmpeg: asyncio.subprocess.Process | None = None
        try:
            await asyncio.gather(origin.start(), *(node.start() for node in nodes))
            target = (await origin.prepare(1))[0]
            ffmpeg = await asyncio.create_subprocess_exec(
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                "-i", str(clip), "-c", "copy", "-f", "flv",
                f"rtmp://{HOST}:{origin.rtmp_port}/live/{target.stream_name}",
                stdin=asyncio.subprocess.DEVNULL)
            return {"clip": clip.name, "code": origin.code,
                    **await _measure(origin, nodes, requests, viewers, seconds,
                                     news_segments)}
        finally:
            if ffmpeg is not None and ffmpeg.returncode is None:
                ffmpeg.kill()
                await ffmpeg.wait()
            await asyncio.gather(origin.stop(), *(node.stop() for node in nodes))


async def _measure(origin_server: OurServer, nodes: list[OurServer], requests: int,
                   viewers: int, seconds: float, news_segments: int) -> dict[str, object]:
    origin = f"http://{HOST}:{origin_server.http_port}"
    edges = [f"http://{HOST}:{node.http_port}" for node in nodes]
    edge = edges[0]
    playlist_path = f"/live/{CHANNEL}/index.m3u8"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.monotonic() + READY_SECONDS
        while len(await window(session, origin)) < READY_SEGMENTS or \
                len(await window(session, edge)) < READY_SEGMENTS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no playlist through the edge after {READY_SECONDS:.0f} s")
            await asyncio.sleep(0.2)
        latencies = {
            "playlist_origin": await latency(session, [origin + playlist_path], requests),
            "playlist_edge": await latency(session, [edge + playlist_path], requests),
            # Where an edge reused its copy for half a second, each was an origin refetch.
            "playlist_edge_refetch": await latency(
                session, [edge + playlist_path], REFETCH_SAMPLES, spacing=REFETCH_SPACING),
            "playlist_news_edge_minus_origin": await news_delay(
                session, origin + playlist_path, edge + playlist_path, news_segments),
        }
        # The newest three segments, fetched once through the edge first: the hit case.
        uris = await window(session, origin)
        segments = [f"/live/{CHANNEL}/{uri}" for uri in uris[-3:]]
        for path in segments:
            await timed_get(session, edge + path)
        latencies |= {
            "segment_origin": await latency(session, [origin + p for p in segments],
                                            requests),
            "segment_edge_cached": await latency(session, [edge + p for p in segments],
                                                 requests),
            "segment_edge_first_fetch": await first_fetches(session, origin, edge, 8),
        }
        audiences = [
            await audience(session, origin_server, [origin + playlist_path], 1, seconds,
                           "1 viewer on the origin"),
            await audience(session, origin_server, [e + playlist_path for e in edges],
                           viewers, seconds, f"{viewers} viewers over {len(edges)} edges"),
            await audience(session, origin_server, [origin + playlist_path], viewers,
                           seconds, f"{viewers} viewers on the origin"),
        ]
    return {"requests": requests, "edges": len(edges),
            "latency_seconds": {name: asdict(summary) if summary else None
                                for name, summary in latencies.items()},
            "audiences": audiences}


def markdown(result: dict[str, object]) -> str:
    lines = [f"Edge vs origin, {result['requests']} sequential requests each "
             f"(clip {result['clip']}; {result.get('code', '')}):", "",
             "| request | p50 ms | p99 ms | max ms | n |", "|---|---:|---:|---:|---:|"]
    for name, summary in result["latency_seconds"].items():  # type: ignore[attr-defined]
        if summary is None:
            lines.append(f"| {name} | - | - | - | 0 |")
            continue
        lines.append(f"| {name} | {summary['p50'] * 1000:.2f} | {summary['p99'] * 1000:.2f} "
                     f"| {summary['max'] * 1000:.2f} | {summary['count']} |")
    lines += ["", "| audience | origin playlist req/s | origin segment req/s | origin CPU % "
              "| viewer req/s | viewer errors | stalls |", "|---|---:|---:|---:|---:|---:|---:|"]
    for run in result["audiences"]:  # type: ignore[attr-defined]
        rates = run["origin_requests_per_second"]
        lines.append(f"| {run['name']} | {rates['playlist']} | {rates['segment']} "
                     f"| {run['origin_cpu_percent']} | {run['viewer_requests_per_second']} "
                     f"| {run['viewer_errors']} | {run['stalls']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks edge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(sys.argv[1:] if argv is None else argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=300,
                        help="sequential requests per latency measurement")
    parser.add_argument("--viewers", type=int, default=300, help="the spread audience")
    parser.add_argument("--edges", type=int, default=3, help="edge nodes beside the origin")
    parser.add_argument("--seconds", type=float, default=30.0, help="per audience")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--clip", type=Path, default=None,
                        help="an FLV file to publish (default: the cached bench clip)")
    parser.add_argument("--news-segments", type=int, default=NEWS_SEGMENTS,
                        help="new segments watched for the edge's news delay")
    parser.add_argument("--ours-cmd", default=None,
                        help="command that runs our server up to 'serve', for every node "
                             "(default: this python -m mediaserver serve)")


def run(args: argparse.Namespace) -> int:
    command = shlex.split(args.ours_cmd) if args.ours_cmd else None
    result = asyncio.run(measure(args.requests, args.viewers, args.edges, args.seconds,
                                 args.clip, command, args.news_segments))
    result["machine"] = machine_info()
    save_report(args.out, "edge", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
