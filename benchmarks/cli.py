"""`python -m benchmarks run|smoke|pipeline|clip|report`: the benchmark suite's command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from . import (
    cmafmux,
    firsttouch,
    httpparse,
    httpreq,
    llviewers,
    memory,
    pipeline,
    procstats,
    spillwrite,
    tsjit,
)
from . import edge as edge_mod
from . import soak as soak_mod
from . import workers as workers_mod
from .case import Case, CaseResult, Settings
from .chunked import ChunkedClip
from .clip import BENCH_CLIP, DEFAULT_CACHE, SMOKE_CLIP, ensure_clip
from .flvfile import read_flv
from .machine import machine_info
from .pacer import DEFAULT_TICK
from .report import markdown_table, rerender, write_results
from .runner import run_case
from .servers import NginxRtmp, ServerError, make_server

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DELEGATED: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "cmafmux": (cmafmux.main, "LL-HLS fMP4 writer vs PyAV's mp4 muxer vs TS: CPU and "
                              "instructions per frame, in-process"),
    "llviewers": (llviewers.main, "one stream, 500 LL-HLS viewers blocking on every part, "
                                  "server on one core"),
    "memory": (memory.main, "memory per stream on the wall clock, in-process: what the "
                            "segmenters hold, RSS, where the heap is"),
    "tsjit": (tsjit.main, "what a TS segment muxed just in time costs its first request"),
    "spillwrite": (spillwrite.main, "what writing an expired segment to its file costs "
                                    "(--expired-segments disk), in-process"),
    "firsttouch": (firsttouch.main, "what this machine charges for memory a process touches "
                                    "for the first time (anonymous and page cache) and after"),
    "httpreq": (httpreq.main, "CPU per playlist and per segment request (wrk, keep-alive): "
                              "ours with and without the hot path, nginx-rtmp"),
    "httpparse": (httpparse.main, "the hot path's request-head parser: httptools against a "
                                  "minimal Python one, in-process"),
}
SCENARIOS = {
    "publishers": ("1,10,50,100,200", "N publishers with HLS on, no viewers"),
    "viewers": ("100,500", "one publisher, N viewers"),
    "mixed": ("20", "N publishers, each with --viewers-per-stream viewers"),
}


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,10,50: {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Load tests for the media server, side by side with nginx-rtmp.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run a scenario and write results under benchmarks/results/",
        description="Scenarios: " + "; ".join(f"{k}: {v[1]} (default N {v[0]})"
                                              for k, v in SCENARIOS.items()))
    run.add_argument("--server", choices=["ours", "nginx", "both"], default="both")
    run.add_argument("--scenario", choices=sorted(SCENARIOS), default="publishers")
    run.add_argument("--n", type=_ints, default=None,
                     help="comma-separated N values (default per scenario)")
    run.add_argument("--viewers-per-stream", type=int, default=20,
                     help="viewers per publisher in the mixed scenario")
    run.add_argument("--seconds", type=float, default=30.0, help="measured window per case")
    run.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    run.add_argument("--profile", action="store_true",
                     help="record our server with py-spy during each window (top functions "
                          "go into the report)")
    run.add_argument("--profile-native", action="store_true",
                     help="with --profile: include C frames (PyAV/FFmpeg, uvloop)")
    _common(run)

    smoke = commands.add_parser(
        "smoke", help="a few seconds with 2 publishers on our server: keeps the tools working",
        description="2 publishers and 2 viewers on our server for a few seconds; exit status "
                    "1 if anything that should have happened did not.")
    smoke.add_argument("--seconds", type=float, default=4.0)
    smoke.add_argument("--json", action="store_true", help="print the result as one JSON line")
    _common(smoke)

    workers = commands.add_parser(
        "workers", help="publishers `--workers 2` carries against one worker, side by side "
                        "(needs redis-server)",
        description=workers_mod.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    workers.add_argument("--n", type=_ints, default=_ints("100,200,300,400,500,600,700,800"),
                         help="comma-separated N values to step through")
    workers.add_argument("--seconds", type=float, default=20.0, help="measured window per case")
    workers.add_argument("--playlist-p99", type=float, default=workers_mod.PLAYLIST_P99_BOUND,
                         help="seconds: a slower playlist p99 means N was not carried")
    workers.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    _common(workers)

    edge = commands.add_parser(
        "edge", help="a channel served through edge nodes of a cluster: latency against the "
                     "origin's, and what a spread audience costs the origin (needs redis-server)",
        description=edge_mod.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    edge_mod.add_arguments(edge)

    pipeline = commands.add_parser(
        "pipeline", help="the ingest pipeline in-process, no sockets: CPU per stream, low noise",
        description="RtmpSession -> hub -> segmenter for N streams fed the benchmark clip's "
                    "bytes in read-sized slices; prints CPU ms per stream-second per pass and "
                    "the median. Less noisy than `run`; leaves out the kernel and the loop.")
    pipeline.add_argument("--streams", type=int, default=100)
    pipeline.add_argument("--passes", type=int, default=5)
    pipeline.add_argument("--loops", type=int, default=2,
                          help="times the clip is played per pass (2 x 20 s fills the window)")
    pipeline.add_argument("--read-ms", type=int, default=100,
                          help="media per read, as --read-interval paces it")
    pipeline.add_argument("--ll-hls", choices=["on", "off", "both"], default="on",
                          help="the LL-HLS rendition (the server's default: on); both "
                               "alternates passes with and without it")
    pipeline.add_argument("--ts-fetch", choices=["none", "all"], default="none",
                          help="ask for no TS segment (a stream nobody plays as index.m3u8: "
                               "no TS is muxed) or for every one once, as it is published")
    pipeline.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    pipeline.add_argument("--clip", type=Path, default=None)
    # Commands with their own parsers (python -m benchmarks NAME --help).
    for name, (_, summary) in DELEGATED.items():
        commands.add_parser(name, help=summary, add_help=False)

    soak = commands.add_parser(
        "soak", help="minutes to hours of churning publishers and viewers; RSS, CPU, fds, errors",
        description="P publishers that stop and publish again every --churn seconds (so "
                    "channels end and start) and V player-like viewers on our server; "
                    "samples its RSS, CPU, open fds, live streams and the errors seen every "
                    "--sample seconds, fits the RSS slope over the steady state, writes "
                    "results/soak-<time>.json and .md. Exit status 1 on any error.")
    soak.add_argument("--minutes", type=float, default=10.0)
    soak.add_argument("--seconds", type=float, default=None, help="instead of --minutes")
    soak.add_argument("--publishers", type=int, default=4)
    soak.add_argument("--viewers", type=int, default=20)
    soak.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    soak.add_argument("--churn", type=float, default=60.0,
                      help="seconds a publish lasts before its publisher stops and comes back")
    soak.add_argument("--warmup", type=float, default=None,
                      help="seconds before the steady state (default: a quarter of the run, "
                           "at most 120)")
    soak.add_argument("--grace", type=float, default=soak_mod.DEFAULT_GRACE,
                      help="the server's --grace-period")
    soak.add_argument("--release-timeout", type=float, default=120.0,
                      help="after the load, how long the server may take to drop every "
                           "channel (grace + ended retention); 0: do not wait")
    soak.add_argument("--segment-duration", type=float, default=2.0)
    soak.add_argument("--tick", type=float, default=DEFAULT_TICK)
    soak.add_argument("--seed", type=int, default=1)
    soak.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    soak.add_argument("--clip", type=Path, default=None,
                      help="an FLV file to replay (default: the small smoke clip)")
    soak.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    soak.add_argument("--server-cpu", type=int, default=None,
                      help="pin the server to this CPU (default: not pinned)")
    soak.add_argument("--ours-cmd", default=None)
    soak.add_argument("--ours-arg", action="append", default=[])

    fuzz = commands.add_parser(
        "fuzz", help="mutated RTMP sessions and FLV tags into the parsers; only the "
                     "protocol error allowed",
        description="Mutates the OBS capture and the benchmark publisher's session (and FLV "
                    "tag bodies) and feeds them to rtmp.connection.ServerConnection, rtmp.flv "
                    "and mediaserver.publisher.Publisher. Any exception other than the "
                    "protocol error is a finding: saved under --out, exit status 1.")
    fuzz.add_argument("--inputs", type=int, default=10_000)
    fuzz.add_argument("--seed", type=int, default=1)
    fuzz.add_argument("--out", type=Path, default=RESULTS_DIR / "fuzz-findings",
                      help="where findings are saved")
    fuzz.add_argument("--replay", type=Path, default=None, help="run one saved finding again")
    fuzz.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    fuzz.add_argument("--clip", type=Path, default=None)

    report = commands.add_parser("report", help="rewrite the .md and .png of JSON results")
    report.add_argument("json", type=Path, nargs="+", help="results/<scenario>-<time>.json")

    clip = commands.add_parser("clip", help="generate the cached source clips now")
    clip.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="where generated clips are kept")
    parser.add_argument("--clip", type=Path, default=None,
                        help="an FLV file to replay instead of the generated clip")
    parser.add_argument("--ramp", type=float, default=None,
                        help="seconds over which publishers join")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds after the first segments before measuring")
    parser.add_argument("--tick", type=float, default=DEFAULT_TICK,
                        help="pacer tick, seconds (coarser: fewer, bigger writes)")
    parser.add_argument("--max-lag", type=float, default=0.5,
                        help="a publisher this many seconds behind real time fell behind")
    parser.add_argument("--sample-interval", type=float, default=1.0,
                        help="seconds between the latency sampler's playlist + segment "
                             "fetches (cases without viewers); 0.05 gives a p99 of ~600 "
                             "samples in 30 s instead of the worst of ~30")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to")
    parser.add_argument("--load-cpu", type=int, default=1,
                        help="CPU this process (the load) is pinned to")
    parser.add_argument("--segment-duration", type=float, default=None,
                        help="HLS target for both servers (default 2; smoke 1)")
    parser.add_argument("--ours-cmd", default=None,
                        help="command that runs our server up to 'serve' "
                             "(default: this python -m mediaserver serve)")
    parser.add_argument("--ours-arg", action="append", default=[],
                        help="extra flag for our server, e.g. --ours-arg=--log-level=warning")


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def _stoppable(coro: Coroutine[Any, Any, int]) -> int:
    """Run `coro`; SIGTERM cancels it, so its `finally` blocks stop the servers it started."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await coro


def _run_loop(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        run = asyncio.run
    else:
        run = uvloop.run
    try:
        return run(_stoppable(coro))
    except asyncio.CancelledError:
        progress("stopped by SIGTERM")
        return 143


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return DELEGATED[argv[0]][0](argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "report":
        for path in args.json:
            print(rerender(path))
        return 0
    if args.command == "clip":
        for spec in (BENCH_CLIP, SMOKE_CLIP):
            print(ensure_clip(spec, args.cache))
        return 0
    if args.command == "pipeline":
        return _run_loop(pipeline_command(args))
    if args.command == "soak":
        return _run_loop(soak(args))
    if args.command == "fuzz":
        return fuzz_command(args)
    if args.command == "edge":
        return edge_mod.run(args)
    if not procstats.pin(0, args.load_cpu):
        progress(f"CPU {args.load_cpu} not available: load generator not pinned")
    if args.command == "smoke":
        return _run_loop(smoke(args))
    if args.command == "workers":
        return _run_loop(workers_command(args))
    return _run_loop(run(args))


def _settings(args: argparse.Namespace, seconds: float, segment: float) -> Settings:
    return Settings(seconds=seconds, ramp=segment if args.ramp is None else args.ramp,
                    warmup=args.warmup, tick=args.tick, max_lag=args.max_lag,
                    segment_target=segment,
                    sample_interval=args.sample_interval)


def _load_clip(args: argparse.Namespace, smoke: bool) -> tuple[Path, ChunkedClip]:
    path = args.clip or ensure_clip(SMOKE_CLIP if smoke else BENCH_CLIP, args.cache)
    return path, ChunkedClip.build(read_flv(path))


def _ours_args(args: argparse.Namespace, segment: float) -> list[str]:
    extra = list(args.ours_arg)
    if not any(a.startswith("--segment-duration") for a in extra):
        extra += [f"--segment-duration={segment:g}"]
    return extra


async def run(args: argparse.Namespace) -> int:
    segment = args.segment_duration or 2.0
    clip_path, clip = _load_clip(args, smoke=False)
    settings = _settings(args, args.seconds, segment)
    stem = f"{args.scenario}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.profile:
        settings = replace(settings, profile_dir=args.out / f"{stem}-profiles",
                           profile_native=args.profile_native)
    ns = args.n or _ints(SCENARIOS[args.scenario][0])
    names = ["ours", "nginx"] if args.server == "both" else [args.server]
    if "nginx" in names and (missing := NginxRtmp.available()):
        progress(f"skipping nginx: {missing}")
        names.remove("nginx")
    cases = [Case(n, args.viewers_per_stream) if args.scenario == "mixed"
             else Case(1, n) if args.scenario == "viewers" else Case(n) for n in ns]
    machine = machine_info()
    info: dict[str, Any] = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "clip": f"{clip_path.name}, {clip.bitrate / 1e6:.2f} Mbit/s, loop {clip.loop_seconds:g}s",
        "server cpu": args.server_cpu,
        "load cpu": args.load_cpu, "ours args": " ".join(_ours_args(args, segment)),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    results: list[CaseResult] = []
    failed = False
    # Servers alternate per case, so that both see the same background on a shared machine.
    for case in cases:
        for name in names:
            server = make_server(name, args.server_cpu, _ours_args(args, segment),
                                 shlex.split(args.ours_cmd) if args.ours_cmd else None,
                                 segment)
            try:
                results.append(await run_case(server, args.scenario, case, settings, clip,
                                              progress))
            except (ServerError, OSError) as exc:
                failed = True
                progress(f"[{name} {args.scenario} {case}] failed: {exc}")
                continue
            md = write_results(args.out, stem, args.scenario, results, machine, info)
    if results:
        print(markdown_table(results))
        print(f"\nresults: {md}")
    return 1 if failed or not results else 0


async def workers_command(args: argparse.Namespace) -> int:
    segment = args.segment_duration or 2.0
    clip_path, clip = _load_clip(args, smoke=False)
    settings = replace(_settings(args, args.seconds, segment),
                       ramp=workers_mod.RAMP_SECONDS if args.ramp is None else args.ramp)
    stem = f"workers-{time.strftime('%Y%m%d-%H%M%S')}"
    machine = machine_info()
    info: dict[str, Any] = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "clip": f"{clip_path.name}, {clip.bitrate / 1e6:.2f} Mbit/s, loop {clip.loop_seconds:g}s",
        "server cpu (1 worker)": args.server_cpu, "load cpu": args.load_cpu,
        "ours args": " ".join(_ours_args(args, segment)), "playlist p99 bound": args.playlist_p99,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    results: list[CaseResult] = []

    def record(result: CaseResult) -> None:
        results.append(result)
        write_results(args.out, stem, "publishers", results, machine, info)

    capacity = await workers_mod.step(
        args.n, settings, clip, BENCH_CLIP.gop_seconds, args.server_cpu, args.load_cpu,
        _ours_args(args, segment), shlex.split(args.ours_cmd) if args.ours_cmd else None,
        args.playlist_p99, progress, record)
    if not results:
        return 1
    md = write_results(args.out, stem, "publishers", results, machine, info)
    lines = workers_mod.summary(results, capacity, args.server_cpu, args.load_cpu)
    md.write_text(md.read_text() + "\n" + "\n".join(lines) + "\n")
    print(markdown_table(results))
    print("\n" + "\n".join(lines))
    print(f"\nresults: {md}")
    return 0


async def pipeline_command(args: argparse.Namespace) -> int:
    path, clip = _load_clip(args, smoke=False)
    progress(f"pipeline: {args.streams} streams x {args.loops} x {clip.loop_seconds:g} s of "
             f"{path.name}, {args.read_ms} ms per read, {args.passes} passes, "
             f"LL-HLS {args.ll_hls}, TS segments fetched: {args.ts_fetch}")
    settings = {"on": (True,), "off": (False,), "both": (True, False)}[args.ll_hls]
    results = await pipeline.measure(clip, args.streams, args.passes, args.loops, args.read_ms,
                                     settings, args.ts_fetch == "all")
    for on, result in results.items():
        label = f"LL-HLS {'on' if on else 'off'}: "
        print(label + "CPU ms per stream-second, per pass: "
              + " ".join(f"{v:.3f}" for v in result.ms_per_stream_second))
        print(f"{label}median {result.median:.3f} ms per stream-second "
              f"(~{1000 / result.median:.0f} streams per core without the kernel and the "
              f"loop); {result.segments_per_stream:.0f} segments per stream per pass")
        print(f"{label}of which ingest (bytes -> readers' queues), per pass: "
              + " ".join(f"{v:.3f}" for v in result.ingest_ms_per_stream_second)
              + f"; median {result.ingest_median:.3f}, the readers' drains (segmenters) "
              f"{result.median - result.ingest_median:.3f}")
    return 0 if all(r.segments_per_stream > 0 for r in results.values()) else 1


async def soak(args: argparse.Namespace) -> int:
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(120.0, seconds / 4)
    settings = soak_mod.SoakSettings(
        seconds=seconds, publishers=args.publishers, viewers=args.viewers,
        sample_every=args.sample, churn=args.churn, warmup=warmup,
        segment_target=args.segment_duration, grace=args.grace, tick=args.tick, seed=args.seed,
        release_timeout=args.release_timeout)
    _path, clip = _load_clip(args, smoke=True)
    server = soak_mod.make_server(args.server_cpu, args.ours_arg,
                                  shlex.split(args.ours_cmd) if args.ours_cmd else None,
                                  settings)
    try:
        result = await soak_mod.run_soak(clip, settings, server, progress,
                                         lambda line: print(line, flush=True))
    except (ServerError, OSError, TimeoutError) as exc:
        progress(f"soak failed: {exc}\n{server.log_tail()}")
        return 1
    md = soak_mod.write_results(args.out, result, machine_info())
    print()
    print("\n".join(soak_mod.summary_lines(result)))
    print(f"\nresults: {md}")
    return 1 if result.errors_total else 0


def fuzz_command(args: argparse.Namespace) -> int:
    from . import fuzz, fuzzseeds

    if args.replay is not None:
        print(fuzz.replay(args.replay))
        return 0
    _path, clip = _load_clip(args, smoke=True)
    sessions = [fuzzseeds.obs_seed(), asyncio.run(fuzzseeds.record_publisher(clip))]
    tags = fuzzseeds.flv_seed_tags(clip, args.cache)
    progress(f"fuzz: {args.inputs} inputs, seed {args.seed}; sessions "
             + ", ".join(f"{s.name} ({len(s.messages)} messages)" for s in sessions)
             + f"; {len(tags)} FLV tags")
    stats = fuzz.fuzz(args.inputs, args.seed, sessions, tags, args.out, progress)
    print("\n".join(fuzz.summary(stats)))
    return 1 if stats.findings else 0


async def smoke(args: argparse.Namespace) -> int:
    segment = args.segment_duration or 1.0
    _path, clip = _load_clip(args, smoke=True)
    settings = _settings(args, args.seconds, segment)
    server = make_server("ours", args.server_cpu, _ours_args(args, segment),
                         shlex.split(args.ours_cmd) if args.ours_cmd else None, segment)
    try:
        result = await run_case(server, "smoke", Case(2, 1), settings, clip, progress)
    except (ServerError, OSError) as exc:
        progress(f"smoke failed: {exc}")
        return 1
    problems = smoke_problems(result)
    if args.json:
        print(json.dumps({**asdict(result), "problems": problems}))
    else:
        print(markdown_table([result]))
    for problem in problems:
        progress(f"smoke: {problem}")
    if problems:
        progress(f"server log (tail):\n{server.log_tail()}")
    return 1 if problems else 0


def smoke_problems(result: CaseResult) -> list[str]:
    """What a healthy smoke run must show; an empty list means it passed."""
    checks = [
        (result.published == result.streams, f"published {result.published}/{result.streams}"),
        (result.behind == 0, f"{result.behind} publishers fell behind real time"),
        (result.dropped == 0, f"{result.dropped} publishers dropped by the server"),
        (result.server_cpu_seconds > 0, "no server CPU time measured"),
        (result.rss_peak_mb > 0, "no server memory measured"),
        (result.first_segment_missing == 0 and result.first_segment is not None,
         "a publisher never got a playable segment"),
        (result.segments_fetched > 0, "viewers fetched no segments"),
        (result.stalls == 0, f"viewers stalled {result.stalls} times"),
    ]
    return [message for ok, message in checks if not ok]
