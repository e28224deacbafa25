"""The benchmark tools keep working: the replayed clip is valid RTMP, and
`python -m benchmarks smoke` runs against the real server and measures something real.

The smoke run is a subprocess because the benchmark pins itself and the server to
CPUs and starts the server as its own process, as a real benchmark run does.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import pipeline
from benchmarks.chunked import ChunkedClip
from benchmarks.clip import SMOKE_CLIP, ensure_clip
from benchmarks.flvfile import TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, read_flv
from benchmarks.redis_server import REDIS_SERVER
from rtmp import amf0
from rtmp.chunk import SET_CHUNK_SIZE, ChunkReader, ChunkWriter

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI"),
]

REPO = Path(__file__).resolve().parents[2]
# The cluster benchmarks start their own redis-server.
NEEDS_REDIS = pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server")


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_clip(SMOKE_CLIP, tmp_path_factory.mktemp("bench-cache"))


def test_pre_chunked_clip_loops_with_increasing_timestamps(clip_path: Path) -> None:
    clip = ChunkedClip.build(read_flv(clip_path))
    loops = 3
    wire = [ChunkWriter().write(2, SET_CHUNK_SIZE, 0, 0, struct.pack(">I", clip.chunk_size))]
    wire += clip.head_messages(stream_id=1)
    wire += [clip.message(i, loop, 1) for loop in range(loops) for i in range(len(clip.media))]
    reader = ChunkReader()
    reader.feed(b"".join(wire))
    messages = []
    while (msg := reader.next_message()) is not None:
        messages.append(msg)
    head = messages[1 : 1 + len(clip.head)]
    media = messages[1 + len(clip.head) :]
    assert amf0.decode_all(head[0].payload)[:2] == ["@setDataFrame", "onMetaData"]
    assert head[0].type_id == TAG_SCRIPT and all(m.stream_id == 1 for m in head)
    assert len(media) == loops * len(clip.media)
    expected = [loop * clip.loop_ms + t for loop in range(loops) for t in clip.offsets_ms]
    assert [m.timestamp for m in media] == expected
    for type_id in (TAG_AUDIO, TAG_VIDEO):  # each track never goes backwards, across joins too
        track = [m.timestamp for m in media if m.type_id == type_id]
        assert track == sorted(track) and len(set(track)) == len(track)
    for k, msg in enumerate(media):
        tag = clip.media[k % len(clip.media)]
        assert (msg.type_id, bytes(msg.payload)) == (tag.type_id, tag.body)
    first_video = next(t for t in clip.media if t.type_id == TAG_VIDEO)
    assert first_video.is_keyframe  # each loop restarts decodable
    assert abs(clip.loop_seconds - SMOKE_CLIP.seconds) < 0.1


def test_smoke_publishes_keeps_up_and_measures(clip_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "smoke", "--json", "--clip", str(clip_path)],
        cwd=REPO, capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["problems"] == []
    assert result["published"] == result["streams"] == 2
    assert result["refused"] == {} and result["dropped"] == 0
    assert result["behind"] == 0 and result["max_send_lag"] < 0.5
    # Real measurements, not placeholders.
    assert result["server_cpu_seconds"] > 0 and result["cpu_ms_per_stream_second"] > 0
    assert result["rss_peak_mb"] > 0
    assert result["first_segment"]["count"] == 2 and result["first_segment"]["max"] > 0
    assert result["segments_fetched"] > 0 and result["bytes_fetched"] > 0
    assert result["segment_latency"]["p50"] > 0
    assert result["stalls"] == 0


def run_benchmark(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m benchmarks ARGS` as a user runs it; it must succeed."""
    done = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


@NEEDS_REDIS
def test_workers_benchmark_steps_both_configurations(clip_path: Path, tmp_path: Path) -> None:
    run_benchmark("workers", "--n", "2", "--seconds", "3", "--segment-duration", "1",
                  "--clip", str(clip_path), "--out", str(tmp_path))
    report = next(tmp_path.glob("workers-*.md")).read_text()
    assert "- 1 worker: carried N = 2 (the largest N tried)" in report
    assert "- 2 workers: carried N = 2 (the largest N tried)" in report
    data = json.loads(next(tmp_path.glob("workers-*.json")).read_text())
    rows = {row["server"]: row for row in data["results"]}
    assert set(rows) == {"1 worker", "2 workers"}
    for row in rows.values():
        assert row["published"] == 2 and row["cpu_ms_per_stream_second"] > 0
    split = next(n for n in rows["2 workers"]["notes"] if n.startswith("streams per worker"))
    assert sum(int(count) for count in re.findall(r": (\d+)", split)) == 2


@NEEDS_REDIS
def test_edge_benchmark_measures_a_real_cluster(clip_path: Path, tmp_path: Path) -> None:
    run_benchmark("edge", "--requests", "20", "--viewers", "30", "--seconds", "4",
                  "--news-segments", "2", "--clip", str(clip_path), "--out", str(tmp_path))
    data = json.loads(next(tmp_path.glob("edge-*.json")).read_text())
    assert data["edges"] == 3
    latencies = dict(data["latency_seconds"])
    # A difference of two times: it may be zero or below (the origin poller asked later).
    news = latencies.pop("playlist_news_edge_minus_origin")
    assert news is not None and news["count"] > 0
    for name, summary in latencies.items():
        assert summary is not None and summary["count"] > 0 and summary["p50"] > 0, name
    one, spread, direct = data["audiences"]
    assert (one["viewers"], spread["viewers"], direct["viewers"]) == (1, 30, 30)
    assert all(run["viewer_errors"] == 0 for run in data["audiences"])
    # Through the edges the origin sees a few clients, not thirty.
    assert 0 < spread["origin_requests_per_second"]["segment"] \
        < direct["origin_requests_per_second"]["segment"] / 3


async def test_in_process_pipeline_cuts_segments_and_measures_cpu(clip_path: Path) -> None:
    results = await pipeline.measure(ChunkedClip.build(read_flv(clip_path)), streams=2,
                                     passes=2, loops=2, ll_hls=(True, False))
    assert set(results) == {True, False}
    for result in results.values():
        assert result.media_seconds == pytest.approx(12, abs=0.5)  # 2 loops of the 6 s clip
        # 12 s of 1 s GOPs at the default 2 s target: the real segmenter cut about six each.
        assert 4 <= result.segments_per_stream <= 7
        assert len(result.ms_per_stream_second) == 2
        assert all(value > 0 for value in result.ms_per_stream_second)
        # The ingest part is measured inside each pass, so it is some of it, never all.
        assert all(0 < ingest < whole for ingest, whole in
                   zip(result.ingest_ms_per_stream_second, result.ms_per_stream_second,
                       strict=True))


def test_cmafmux_compares_the_muxers(clip_path: Path) -> None:
    done = run_benchmark("cmafmux", "--passes", "1", "--loops", "1", "--clip", str(clip_path))
    figures = {line.split()[0]: float(line.split()[1]) for line in done.stdout.splitlines()
               if line.startswith("  ")}
    assert set(figures) == {"ours", "pyav", "ts"} and all(v > 0 for v in figures.values())


def test_httpparse_times_both_parsers_on_both_heads() -> None:
    done = run_benchmark("httpparse", "--number", "200", "--passes", "1")
    rows = [line.split("|")[1:4] for line in done.stdout.splitlines()
            if line.startswith("| ") and line[2:3] in "wb"]
    assert {(head.strip(), parser.strip()) for head, parser, _ in rows} == {
        (head, parser) for head in ("wrk (1 header)", "browser (15 headers)")
        for parser in ("httptools", "minimal Python")}
    assert all(float(micros) > 0 for _, _, micros in rows)


def test_tsjit_times_each_kind_of_first_request(clip_path: Path) -> None:
    done = run_benchmark("tsjit", "--passes", "1", "--gap", "2", "--clip", str(clip_path))
    figures = {line.split()[0]: float(line.split()[1]) for line in done.stdout.splitlines()
               if line.startswith("  ")}
    assert set(figures) == {"cold", "next", "cached", "gap"}
    # Muxing a segment costs more than handing back one already muxed.
    assert figures["next"] > figures["cached"] >= 0


def test_memory_reports_what_the_segmenters_hold(clip_path: Path) -> None:
    done = run_benchmark("memory", "--streams", "2", "--warmup", "3", "--clip", str(clip_path))
    held = re.search(r"held ([0-9.]+) MB per stream", done.stdout)
    assert held is not None and float(held.group(1)) > 0, done.stdout


def test_llviewers_follows_parts_and_reads_the_servers_wakeups(clip_path: Path,
                                                               tmp_path: Path) -> None:
    run_benchmark("llviewers", "--viewers", "4", "--seconds", "4", "--clip", str(clip_path),
                  "--out", str(tmp_path), "--server-cpu", "-1", "--ours-arg=--segment-duration=1")
    [report] = tmp_path.glob("llviewers-*.json")
    result = json.loads(report.read_text())
    assert result["started"] == 4 and result["errors"] == 0 and result["stalls"] == 0
    assert result["answers"] > 20 and result["parts_fetched"] > 20
    assert result["server_wakeup_ms"]["count"] > 0
    assert result["after_ingest_ms"]["p50"] > 0 and result["wait_ms"]["p50"] > 100


def _soak(clip_path: Path, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str],
                                                              dict]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "soak", "--seconds", "16", "--churn", "7",
         "--sample", "2", "--publishers", "2", "--viewers", "3", "--grace", "2",
         "--segment-duration", "1",
         "--clip", str(clip_path), "--out", str(out), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    reports = sorted(out.glob("soak-*.json"))
    assert len(reports) == 1, done.stdout[-2000:] + done.stderr[-3000:]
    assert reports[0].with_suffix(".md").exists()
    return done, json.loads(reports[0].read_text())


def test_soak_churns_samples_the_server_and_drains(clip_path: Path, tmp_path: Path) -> None:
    done, result = _soak(clip_path, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert result["errors_total"] == 0 and result["server_log_errors"] == []
    samples = result["samples"]
    assert len(samples) >= 6  # one every 2 s over 16 s
    assert all(s["rss_mb"] > 0 and s["fds"] > 0 for s in samples)
    # Live now, plus channels in their grace period after a dropped publisher.
    assert 2 <= max(s["live_streams"] for s in samples) <= 4
    # Churn: each publisher stopped and published again, on more than one channel.
    assert result["publishes"] >= 4 and result["channels_used"] == 4
    assert result["segments_fetched"] > 0 and max(s["watching"] for s in samples) > 0
    drained = result["drained"]
    assert drained["live_streams"] == 0 and drained["rtmp_connections"] == 0
    # Then the server let go of every channel (grace, then the ended playlist's retention).
    released = result["released"]
    assert released["channels_held"] == 0 and released["hls_mb"] == 0
    assert max(s["channels_held"] for s in samples) >= 2
    assert "RSS slope over the steady state" in done.stdout


def test_soak_fails_when_the_load_sees_errors(clip_path: Path, tmp_path: Path) -> None:
    # One RTMP connection allowed: the second publisher is refused, again and again.
    done, result = _soak(clip_path, tmp_path, "--ours-arg=--max-connections=1",
                         "--release-timeout=0")
    assert done.returncode == 1
    assert result["errors"]["publish_failed"] > 0 and result["errors_total"] > 0


def test_fuzz_command_seeds_from_capture_publisher_and_hevc(clip_path: Path,
                                                            tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "fuzz", "--inputs", "500", "--seed", "5",
         "--clip", str(clip_path), "--cache", str(clip_path.parent), "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "sessions obs29" in done.stderr and "benchmark-publisher" in done.stderr
    assert "500 inputs" in done.stdout and "inputs/s" in done.stdout
    assert "findings: 0" in done.stdout
