"""`python -m benchmarks httpreq`: what one HLS request costs the server, ours and nginx-rtmp's.

Each server runs pinned to one core (`--server-cpu`) with one live stream (the
bench clip, published in real time by the benchmark publisher in a process of its
own). Against it, `wrk` (Debian's package: a C load generator on epoll, one
thread, keep-alive connections; `apt-get install -y wrk`) pinned to the other core
(`--load-cpu`) asks for one URL as fast as it can for `--seconds`: the playlist,
then the newest segment. The same server is read from /proc before and after:
CPU per request is its CPU in the window, less what the stream alone cost it over
an idle window of the same server just before (publisher only, no requests), over
the requests answered. wrk rather than a Python client because the load generator
must not be what limits the rate: wrk used about 10 µs of its own core per playlist
request (60-75 % of it at 55-67k requests/s, never saturated), where an aiohttp
client needs several times that and could not keep a 15 µs server busy from one core.

Servers alternate round by round (`--rounds`): ours (the default: the hot path on),
ours with `--http-fast-path off` (every request through aiohttp: the before) and
nginx-rtmp, so that a machine shared with others is noisy for all of them alike.
Results go to results/httpreq-<time>.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from . import procstats
from .clip import BENCH_CLIP, DEFAULT_CACHE, ensure_clip
from .llviewers import PublisherProcess
from .machine import machine_info
from .report import save_report
from .servers import NginxRtmp, OurServer, ServerError

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WRK = shutil.which("wrk")
# The playlist must list this many segments before measuring, so that the segment
# asked for stays listed (and on disk for nginx) through the whole window.
READY_SEGMENTS = 3
READY_TIMEOUT = 40.0
# Seconds of the stream alone before the requests: the server's CPU without them.
IDLE_SECONDS = 5.0
WRK_SLACK = 30.0  # beyond --seconds before a hung wrk is given up on
CONFIGS = {
    "ours": [],
    "ours-aiohttp": ["--http-fast-path", "off"],
    "nginx": None,
}


@dataclass
class Measure:
    config: str
    round: int
    kind: str
    url_tail: str
    body_bytes: int
    seconds: float
    requests: int
    requests_per_second: float
    non_2xx: int
    socket_errors: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    server_cpu_percent: float
    idle_cpu_percent: float  # the stream alone, measured before
    server_us_per_request: float  # net of the stream's own CPU
    requests_per_core_second: float  # 1e6 / the above: the rate one core would carry
    wrk_cpu_percent: float
    other_cpu_percent: float
    server_code: str


def _wrk_run(url: str, seconds: float, connections: int, load_cpu: int | None,
             headers: list[str]) -> tuple[str, float]:
    """wrk's report and the CPU seconds wrk used."""
    assert WRK is not None
    cmd = [WRK, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "5s"]
    for header in headers:
        cmd += ["-H", header]
    if load_cpu is not None:
        cmd = ["taskset", "-c", str(load_cpu), *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True,
                         timeout=seconds + WRK_SLACK).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, used


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency_ms(report: str, percentile: str) -> float | None:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", report, re.MULTILINE)
    return round(float(match[1]) * _UNITS_MS[match[2]], 3) if match else None


def parse_wrk(report: str) -> dict[str, Any]:
    """Requests, non-2xx answers, socket errors and latency percentiles from wrk's report."""
    total = re.search(r"(\d+) requests in", report)
    if total is None:
        raise ValueError(f"not a wrk report:\n{report}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       report)
    return {
        "requests": int(total[1]),
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": sum(int(v) for v in errors.groups()) if errors else 0,
        "p50": _latency_ms(report, "50"),
        "p99": _latency_ms(report, "99"),
    }


async def _ready_playlist(url: str) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(url) as response:
                text = await response.text() if response.status == 200 else ""
            if text.count("#EXTINF") >= READY_SEGMENTS:
                return text
            await asyncio.sleep(0.2)
    raise ServerError(f"{url}: fewer than {READY_SEGMENTS} segments after {READY_TIMEOUT:.0f}s")


async def _size(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return len(await response.read())


def _newest_segment(playlist_url: str, text: str) -> str:
    uri = [line for line in text.splitlines() if line and not line.startswith("#")][-1]
    return playlist_url.rsplit("/", 1)[0] + "/" + uri


async def measure_server(config: str, round_no: int, args: argparse.Namespace, clip: Path,
                         progress: Any) -> list[Measure]:
    extra = CONFIGS[config]
    server = NginxRtmp(args.server_cpu) if extra is None else OurServer(args.server_cpu, extra)
    await server.start()
    results = []
    try:
        target = (await server.prepare(1))[0]
        async with PublisherProcess(target.host, target.port, target.stream_name, clip,
                                    args.load_cpu):
            await _ready_playlist(target.playlist_url)
            cpu0, t0 = procstats.cpu_seconds(server.pid), time.monotonic()
            await asyncio.sleep(IDLE_SECONDS)
            idle_rate = (procstats.cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
            for kind in args.kinds:
                if kind == "playlist":
                    url = target.playlist_url
                else:
                    url = _newest_segment(target.playlist_url,
                                          await _ready_playlist(target.playlist_url))
                size = await _size(url)
                cpu0, t0 = procstats.cpu_seconds(server.pid), time.monotonic()
                busy0 = procstats.machine_busy_seconds()
                report, wrk_cpu = await asyncio.to_thread(
                    _wrk_run, url, args.seconds, args.connections, args.load_cpu, args.header)
                seconds = time.monotonic() - t0
                cpu = procstats.cpu_seconds(server.pid) - cpu0
                other = procstats.machine_busy_seconds() - busy0 - cpu - wrk_cpu
                wrk = parse_wrk(report)
                net_us = 1e6 * max(cpu - idle_rate * seconds, 0.0) / max(wrk["requests"], 1)
                measure = Measure(
                    config=config, round=round_no, kind=kind, url_tail=url.rsplit("/", 1)[1],
                    body_bytes=size, seconds=round(seconds, 2), requests=wrk["requests"],
                    requests_per_second=round(wrk["requests"] / seconds),
                    non_2xx=wrk["non_2xx"], socket_errors=wrk["socket_errors"],
                    latency_p50_ms=wrk["p50"], latency_p99_ms=wrk["p99"],
                    server_cpu_percent=round(100 * cpu / seconds, 1),
                    idle_cpu_percent=round(100 * idle_rate, 1),
                    server_us_per_request=round(net_us, 2),
                    requests_per_core_second=round(1e6 / net_us) if net_us else 0,
                    wrk_cpu_percent=round(100 * wrk_cpu / seconds, 1),
                    other_cpu_percent=round(100 * max(other, 0.0) / seconds, 1),
                    server_code=server.code)
                progress(f"[{config} round {round_no} {kind}] {measure.requests_per_second} "
                         f"req/s, server {measure.server_cpu_percent} % "
                         f"({measure.server_us_per_request} us/request net), wrk "
                         f"{measure.wrk_cpu_percent} %, other {measure.other_cpu_percent} %"
                         + (f", {measure.non_2xx} non-2xx" if measure.non_2xx else ""))
                results.append(measure)
    finally:
        await server.stop()
    return results


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def markdown(measures: list[Measure], args: argparse.Namespace) -> str:
    lines = [f"wrk -t1 -c{args.connections} -d{args.seconds:g}s (keep-alive), one live stream, "
             f"server on CPU {args.server_cpu}, wrk on CPU {args.load_cpu}; "
             f"{args.rounds} rounds alternating {', '.join(args.configs)}"
             + (f"; extra headers {args.header}" if args.header else ""), "",
             "| kind | server | round | req/s | server CPU % | µs / request (net) | "
             "requests / core·s | p50 / p99 ms | non-2xx | wrk CPU % | other CPU % |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for m in sorted(measures, key=lambda m: (m.kind, m.config, m.round)):
        lines.append(f"| {m.kind} ({m.body_bytes:,} B) | {m.config} | {m.round} | "
                     f"{m.requests_per_second:,} | {m.server_cpu_percent} | "
                     f"{m.server_us_per_request} | {m.requests_per_core_second:,} | "
                     f"{m.latency_p50_ms} / {m.latency_p99_ms} | {m.non_2xx} | "
                     f"{m.wrk_cpu_percent} | {m.other_cpu_percent} |")
    lines += ["", "Medians over the rounds:", "",
              "| kind | server | µs / request | requests / core·s | vs nginx |",
              "|---|---|---:|---:|---:|"]
    for kind in args.kinds:
        nginx = [m.server_us_per_request for m in measures
                 if m.kind == kind and m.config == "nginx"]
        for config in args.configs:
            own = [m.server_us_per_request for m in measures
                   if m.kind == kind and m.config == config]
            if not own:
                continue
            median = _median(own)
            ratio = f"{median / _median(nginx):.2f}" if nginx and _median(nginx) else "-"
            lines.append(f"| {kind} | {config} | {median:.2f} | "
                         f"{round(1e6 / median) if median else 0:,} | {ratio} |")
    return "\n".join(lines) + "\n"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, clip: Path) -> list[Measure]:
    measures: list[Measure] = []
    for round_no in range(1, args.rounds + 1):
        for config in args.configs:
            measures += await measure_server(config, round_no, args, clip, progress)
    return measures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks httpreq", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, alternated in this order ({', '.join(CONFIGS)})")
    parser.add_argument("--kinds", default="playlist,segment",
                        help="comma-separated: playlist, segment")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk's run per URL")
    parser.add_argument("--connections", type=int, default=50, help="wrk's keep-alive connections")
    parser.add_argument("--header", action="append", default=[],
                        help="a header wrk sends, e.g. --header 'Accept-Encoding: gzip'")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--clip", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.configs = [c for c in args.configs.split(",") if c]
    args.kinds = [k for k in args.kinds.split(",") if k]
    unknown = [c for c in args.configs if c not in CONFIGS]
    unknown += [k for k in args.kinds if k not in ("playlist", "segment")]
    if unknown:
        parser.error(f"unknown configs or kinds: {unknown}")
    if WRK is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    if "nginx" in args.configs and NginxRtmp.available():
        progress(f"skipping nginx: {NginxRtmp.available()}")
        args.configs.remove("nginx")
    clip = args.clip or ensure_clip(BENCH_CLIP, args.cache)
    import uvloop

    procstats.pin(0, args.load_cpu)
    measures = uvloop.run(run(args, clip))
    save_report(args.out, "httpreq", {
        "measures": [asdict(m) for m in measures],
        "args": {k: v for k, v in vars(args).items() if k not in ("cache", "clip", "out")},
        "machine": machine_info()}, markdown(measures, args))
    failed = [m for m in measures if m.non_2xx or m.socket_errors or not m.requests]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
