"""Connection caps fitted under the open-file limit."""

from __future__ import annotations

import resource

from mediaserver.fdlimit import plan_caps, raise_fd_limit


def test_caps_that_fit_are_kept() -> None:
    caps = plan_caps(100_000, rtmp=1000, http=4096, reserve=128)
    assert (caps.rtmp, caps.http) == (1000, 4096)


def test_caps_that_do_not_fit_shrink_in_proportion_and_leave_the_reserve() -> None:
    caps = plan_caps(1024, rtmp=1000, http=4000, reserve=128)
    assert caps.rtmp + caps.http + caps.reserve <= 1024
    assert caps.rtmp == (1024 - 128) * 1000 // 5000
    assert caps.http > caps.rtmp > 0


def test_a_tiny_limit_still_leaves_one_of_each() -> None:
    caps = plan_caps(16, rtmp=1000, http=4000, reserve=128)
    assert caps.rtmp >= 1 and caps.http >= 1


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        assert raise_fd_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
