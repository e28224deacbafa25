"""The soak's verdict from its samples: steady state, RSS slope, errors."""

from __future__ import annotations

import pytest

from benchmarks.soak import Sample, SoakResult, SoakSettings, _summarise, summary_lines


def sample(t: float, rss: float, live: int = 4) -> Sample:
    return Sample(t=t, rss_mb=rss, cpu_percent=5.0, fds=30, live_streams=live,
                  rtmp_connections=live, channels_held=live, hls_mb=0.0, publishes=0,
                  watching=0, http_errors=0, rtmp_errors=0)


def result(samples: list[Sample], warmup: float = 60.0) -> SoakResult:
    settings = SoakSettings(seconds=600, warmup=warmup)
    out = SoakResult(settings={"warmup": settings.warmup}, samples=samples,
                     drained=sample(610, 100, live=0), server_exit_code=0)
    _summarise(out)
    return out


def test_slope_is_fitted_over_the_steady_state_only() -> None:
    # Start-up growth (80 -> 100 MB) in the first minute, then +1 MB a minute.
    samples = [sample(0, 80), sample(30, 95)]
    samples += [sample(t, 100 + (t - 60) / 60) for t in range(60, 601, 30)]
    out = result(samples)
    assert out.steady_from == 60
    assert (out.rss_steady_start_mb, out.rss_end_mb) == (100, 109)
    assert out.rss_slope_mb_per_10min == pytest.approx(10.0)
    assert out.rss_fit_r2 == pytest.approx(1.0)
    assert out.errors_total == 0
    assert any("+10.00 MB per 10 min" in line for line in summary_lines(out))


def test_flat_rss_has_no_slope() -> None:
    out = result([sample(t, 120.0) for t in range(0, 601, 30)])
    assert out.rss_slope_mb_per_10min == 0


def test_server_trouble_counts_as_errors() -> None:
    out = SoakResult(settings={"warmup": 0.0}, samples=[sample(0, 90), sample(10, 90)],
                     drained=sample(20, 90, live=2), released=sample(30, 90, live=1),
                     server_exit_code=1,
                     server_log_errors=["ERROR boom", "Traceback (most recent call last):"])
    _summarise(out)
    assert out.errors == {"server_log": 2, "server_exit": 1, "channels_not_ended": 2,
                          "channels_not_released": 1}
    assert out.errors_total == 6
