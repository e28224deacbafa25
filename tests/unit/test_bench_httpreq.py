"""The request benchmark reads wrk's report: counts, errors and latency percentiles."""

from __future__ import annotations

import pytest

from benchmarks.httpreq import parse_wrk

REPORT = """\
Running 10s test @ http://127.0.0.1:41234/live/bench0/index.m3u8
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.99ms    1.30ms  37.61ms   93.43%
    Req/Sec    33.95k     4.02k   39.84k    75.00%
  Latency Distribution
     50%  612.00us
     75%    1.05ms
     90%    1.87ms
     99%    1.20s
  337904 requests in 10.00s, 327.18MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 17
Requests/sec:  33786.11
Transfer/sec:     32.71MB
"""


def test_a_wrk_report_is_read_whole() -> None:
    parsed = parse_wrk(REPORT)
    assert parsed == {"requests": 337904, "non_2xx": 17, "socket_errors": 3,
                      "p50": pytest.approx(0.612), "p99": pytest.approx(1200.0)}


def test_a_clean_report_has_no_errors() -> None:
    clean = "\n".join(line for line in REPORT.splitlines()
                      if "Socket errors" not in line and "Non-2xx" not in line)
    parsed = parse_wrk(clean)
    assert parsed["non_2xx"] == 0 and parsed["socket_errors"] == 0


def test_anything_else_is_refused() -> None:
    with pytest.raises(ValueError, match="not a wrk report"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")
