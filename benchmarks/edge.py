"""`python -m benchmarks.edge`: what serving a channel through another node (an edge) costs.

Three processes on loopback: the origin (ffmpeg publishing the bench clip to it),
the edge (a node whose registry says the origin holds every channel) and this load
generator. Measured:

1. Latency of playlist and segment requests, direct from the origin and through
   the edge (sequential requests, so each one's time is its own, not a queue's);
   segments through the edge both as first fetches (the edge asks the origin) and
   as cache hits.
2. Origin requests per second caused by V player-like viewers (benchmarks.viewer)
   watching through the edge, next to what the same viewers cost it directly.

`python -m benchmarks.edge node --origin URL [server flags]` is the edge process:
a MediaServer whose `cluster_locate` always answers URL (until the cluster
registry lands, the only way to make a node an edge from the command line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from mediaserver.cluster.edge_playlists import PLAYLIST_FRESH_SECONDS

from .clip import BENCH_CLIP, ensure_clip
from .m3u8 import parse_media_playlist
from .servers import HOST, OurServer
from .stats import Summary
from .viewer import Viewer, ViewerStats

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CHANNEL = "bench0"  # what OurServer.prepare(1) creates
# Viewers join spread over this long, as an audience does, not in one burst.
ARRIVAL_SPREAD = 2.0
# Playlist requests spaced past the edge's freshness (half a second each).
REFETCH_SAMPLES = 40


# ---- the edge process -------------------------------------------------------------------


def run_node(origin: str, argv: list[str]) -> int:
    from mediaserver.config import add_arguments, load_config
    from mediaserver.logs import configure_logging

    parser = argparse.ArgumentParser(prog="python -m benchmarks.edge node")
    add_arguments(parser)
    config = load_config(vars(parser.parse_args(argv)), env={})
    configure_logging(config.log_level)
    import uvloop

    return uvloop.run(_node(config, origin.rstrip("/")))


async def _node(config: object, origin: str) -> int:
    from mediaserver.app import MediaServer

    server = MediaServer(config)  # type: ignore[arg-type]

    async def locate(channel: str) -> str | None:
        return origin

    server.cluster_locate = locate
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0


# ---- the measurement --------------------------------------------------------------------


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


async def audience(session: aiohttp.ClientSession, origin: str, playlist_url: str,
                   viewers: int, seconds: float) -> dict[str, object]:
    """`viewers` players on playlist_url for `seconds`: what reached the origin meanwhile."""
    before = await hls_requests(session, origin)
    started = time.monotonic()
    deadline = started + seconds
    crowd = [Viewer(session, playlist_url) for _ in range(viewers)]
    results = await asyncio.gather(*(v.run(deadline, ARRIVAL_SPREAD * i / viewers)
                                     for i, v in enumerate(crowd)))
    elapsed = time.monotonic() - started
    after = await hls_requests(session, origin)
    merged = ViewerStats()
    for stats in results:
        merged.merge(stats)
    per_second = {kind: round((after.get(kind, 0) - before.get(kind, 0)) / elapsed, 2)
                  for kind in ("playlist", "segment")}
    return {"viewers": viewers, "seconds": round(elapsed, 1),
            "origin_requests_per_second": per_second,
            "viewer_requests_per_second": round(
                (len(merged.playlist_latency) + len(merged.segment_latency)) / elapsed, 1),
            "viewer_errors": merged.errors, "stalls": merged.stalls}


async def measure(requests: int, viewers: int, seconds: float) -> dict[str, object]:
    clip = ensure_clip(BENCH_CLIP)
    origin_server = OurServer(cpu=0)
    await origin_server.start()
    ffmpeg: asyncio.subprocess.Process | None = None
    edge_server: OurServer | None = None
    try:
        target = (await origin_server.prepare(1))[0]
        ffmpeg = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
            "-i", str(clip), "-c", "copy", "-f", "flv",
            f"rtmp://{HOST}:{origin_server.rtmp_port}/live/{target.stream_name}",
            stdin=asyncio.subprocess.DEVNULL)
        origin = f"http://{HOST}:{origin_server.http_port}"
        edge_server = OurServer(cpu=1, command=[sys.executable, "-m", "benchmarks.edge",
                                                "node", "--origin", origin])
        await edge_server.start()
        edge = f"http://{HOST}:{edge_server.http_port}"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            deadline = time.monotonic() + 30
            while len(await window(session, origin)) < 4:
                if time.monotonic() > deadline:
                    raise RuntimeError("no playlist on the origin after 30 s")
                await asyncio.sleep(0.2)
            playlist_path = f"/live/{CHANNEL}/index.m3u8"
            latencies = {
                "playlist_origin": await latency(session, [origin + playlist_path], requests),
                "playlist_edge": await latency(session, [edge + playlist_path], requests),
                # Each one finds the edge's copy stale: it includes the origin refetch.
                "playlist_edge_refetch": await latency(
                    session, [edge + playlist_path], REFETCH_SAMPLES,
                    spacing=PLAYLIST_FRESH_SECONDS + 0.05),
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
            result: dict[str, object] = {
                "clip": BENCH_CLIP.filename,
                "requests": requests,
                "latency_seconds": {name: asdict(summary) if summary else None
                                    for name, summary in latencies.items()},
            }
            result["through_edge"] = await audience(session, origin, edge + playlist_path,
                                                    viewers, seconds)
            result["direct"] = await audience(session, origin, origin + playlist_path,
                                              viewers, seconds)
            return result
    finally:
        if ffmpeg is not None and ffmpeg.returncode is None:
            ffmpeg.kill()
            await ffmpeg.wait()
        if edge_server is not None:
            await edge_server.stop()
        await origin_server.stop()


def markdown(result: dict[str, object]) -> str:
    lines = [f"Edge vs origin, {result['requests']} sequential requests each "
             f"(clip {result['clip']}):", "",
             "| request | p50 ms | p99 ms | max ms | n |", "|---|---:|---:|---:|---:|"]
    for name, summary in result["latency_seconds"].items():  # type: ignore[attr-defined]
        if summary is None:
            lines.append(f"| {name} | - | - | - | 0 |")
            continue
        lines.append(f"| {name} | {summary['p50'] * 1000:.2f} | {summary['p99'] * 1000:.2f} "
                     f"| {summary['max'] * 1000:.2f} | {summary['count']} |")
    lines += ["", "| viewers watching | origin playlist req/s | origin segment req/s "
              "| viewer req/s | viewer errors | stalls |", "|---|---:|---:|---:|---:|---:|"]
    for name in ("through_edge", "direct"):
        run = result[name]
        rates = run["origin_requests_per_second"]  # type: ignore[index]
        lines.append(f"| {run['viewers']} {name.replace('_', ' ')} "  # type: ignore[index]
                     f"| {rates['playlist']} | {rates['segment']} "
                     f"| {run['viewer_requests_per_second']} "  # type: ignore[index]
                     f"| {run['viewer_errors']} | {run['stalls']} |")  # type: ignore[index]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["node"]:
        node = argparse.ArgumentParser(prog="python -m benchmarks.edge node", add_help=False)
        node.add_argument("--origin", required=True)
        known, rest = node.parse_known_args(argv[1:])
        return run_node(known.origin, rest)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.edge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300,
                        help="sequential requests per latency measurement")
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0, help="per audience run")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.requests, args.viewers, args.seconds))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"edge-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (args.out / f"edge-{stamp}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
