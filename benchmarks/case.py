"""What a benchmark case is (N publishers, viewers each), how it runs, and what it measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .stats import Summary


@dataclass(frozen=True, slots=True)
class Case:
    streams: int
    viewers_per_stream: int = 0

    @property
    def viewers(self) -> int:
        return self.streams * self.viewers_per_stream


@dataclass(frozen=True, slots=True)
class Settings:
    seconds: float = 30.0  # measured window
    ramp: float = 2.0  # publishers (and viewers) join spread over this long
    warmup: float = 2.0  # after every first segment, before the window opens
    tick: float = 0.005  # pacer tick: see pacer.DEFAULT_TICK
    max_lag: float = 0.5  # a publisher more than this behind real time "fell behind"
    first_segment_timeout: float = 20.0
    segment_target: float = 2.0  # as configured on the server: when first segments can appear
    # Seconds between the latency sampler's requests (scenarios without viewers); shorter
    # gives a p99 of many samples rather than the window's worst few.
    sample_interval: float = 1.0
    profile_dir: Path | None = None  # py-spy our server during the window, raw stacks here
    profile_native: bool = False  # include C frames in the profile


@dataclass(slots=True)
class CaseResult:
    server: str
    scenario: str
    streams: int
    viewers: int
    window_seconds: float = 0.0
    published: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # reason -> count
    dropped: int = 0  # published, then closed by the server before the end
    behind: int = 0  # publishers whose send lag went over max_lag
    max_send_lag: float = 0.0
    server_cpu_seconds: float = 0.0
    cpu_ms_per_stream_second: float = 0.0
    cpu_ms_per_viewer_second: float = 0.0
    server_cpu_percent: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_per_stream_mb: float = 0.0
    first_segment: Summary | None = None
    first_segment_missing: int = 0
    edge_lag: Summary | None = None
    playlist_latency: Summary | None = None
    segment_latency: Summary | None = None
    latency_source: str = ""  # "viewers" or "sampler"
    viewers_started: int = 0
    segments_fetched: int = 0
    bytes_fetched: int = 0
    stalls: int = 0
    stall_seconds: float = 0.0
    request_errors: int = 0
    skipped_segments: int = 0
    load_cpu_percent: float = 0.0
    other_cpu_percent: float = 0.0  # everything else on the machine: noise if high
    pacer_max_overrun: float = 0.0
    server_exit_code: int | None = None
    server_code: str = ""  # ours: commit + source digest at start; nginx: its version
    profile: str = ""  # py-spy raw stacks of the window, relative to the results directory
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.server} {self.scenario} streams={self.streams} viewers={self.viewers}"
