"""The workers' pure parts: handover, reports, restart timing, refusals, addresses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mediaserver.app import MediaServer
from mediaserver.config import OPTIONS, Config, config_flags, load_config
from mediaserver.lifecycle import SHUTDOWN_TIMEOUT
from mediaserver.listeners import private_http_address
from mediaserver.workers.handover import (
    HandoverError,
    Ready,
    WorkerSpec,
    decode_handover,
    encode_handover,
    parse_report,
    ready_line,
)
from mediaserver.workers.restarts import (
    FIRST_BACKOFF_SECONDS,
    MAX_BACKOFF_SECONDS,
    STABLE_SECONDS,
    RestartPolicy,
)
from mediaserver.workers.supervisor import STOP_DEADLINE_SECONDS, describe_exit, refusal

REDIS = "redis://127.0.0.1:6379/0"
SPEC = WorkerSpec(slot=1, restarts=3, rtmp_fd=5, http_fd=6, status_fd=8, supervisor_pid=42)


def config(**flags: str) -> Config:
    return load_config(flags, env={})


def test_config_flags_rebuild_the_same_config_through_the_same_parsers() -> None:
    original = config(rtmp="[::1]:0", http="10.0.0.5:8081", data_dir="media-data",
                      store=REDIS, segment_duration="0.1", grace_period="12.5",
                      duplicate_publish="reject", api_token="sécret", advertise="[fd00::7]:9000",
                      workers="3", edge="redirect", max_stream_memory="1000",
                      read_interval="0")
    flags = config_flags(original)
    assert load_config(flags, env={}) == original
    assert flags["advertise"] == "[fd00::7]:9000" and flags["rtmp"] == "[::1]:0"
    assert "public_host" not in flags  # unset stays unset
    assert set(flags) <= {option.name for option in OPTIONS}


def test_config_flags_of_the_defaults() -> None:
    defaults = config()
    assert load_config(config_flags(defaults), env={}) == defaults


def test_the_handover_carries_config_and_worker_exactly() -> None:
    original = config(store=REDIS, api_token="t0ken", workers="2")
    data = encode_handover(original, SPEC)
    assert b"t0ken" in data  # secrets travel here, on stdin, never in argv
    assert decode_handover(data) == (original, SPEC)


@pytest.mark.parametrize("data", [
    b"",
    b"not json",
    b"[]",
    json.dumps({"config": {}}).encode(),
    json.dumps({"config": {"workers": "two"}, "worker": {}}).encode(),
    json.dumps({"config": {}, "worker": {"slot": 1}}).encode(),
    json.dumps({"config": {}, "worker": {"slot": "1", "restarts": 0, "rtmp_fd": 3,
                                         "http_fd": 4, "status_fd": 5,
                                         "supervisor_pid": 1}}).encode(),
])
def test_a_bad_handover_is_one_clear_error(data: bytes) -> None:
    with pytest.raises(HandoverError, match="unusable worker handover"):
        decode_handover(data)


def test_ready_reports_round_trip_and_junk_is_refused() -> None:
    ready = Ready(2, 1234, "box:1234:abcdef", "http://[::1]:9002")
    line = ready_line(ready)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_report(line.rstrip(b"\n")) == ready
    for junk in (b"", b"ready", b"ready x 1 n u", b"hello 1 2 n u", b"ready 1 2 n u extra"):
        with pytest.raises(HandoverError):
            parse_report(junk)


def test_restart_policy_backs_off_quick_deaths_and_forgives_a_stable_run() -> None:
    policy = RestartPolicy()
    assert policy.delay_after(STABLE_SECONDS + 1) == 0.0  # was healthy: at once
    quick = [policy.delay_after(0.2) for _ in range(10)]
    assert quick[:4] == [FIRST_BACKOFF_SECONDS * 2 ** i for i in range(4)]
    assert quick == sorted(quick) and max(quick) == MAX_BACKOFF_SECONDS
    assert policy.delay_after(STABLE_SECONDS) == 0.0
    assert policy.delay_after(1.0) == FIRST_BACKOFF_SECONDS  # the count started again


def test_several_workers_need_redis_and_redirect_needs_an_address_viewers_reach() -> None:
    assert refusal(config()) is None
    assert refusal(config(workers="1", store="sqlite://")) is None
    for store in (None, "sqlite://", "sqlite:///other.db"):
        flags = {"workers": "2"} | ({"store": store} if store else {})
        message = refusal(config(**flags))
        assert message is not None and "--store redis://" in message
    assert refusal(config(workers="2", store=REDIS)) is None
    assert refusal(config(workers="2", store="rediss://cache:6380/1")) is None
    message = refusal(config(workers="2", store=REDIS, edge="redirect"))
    assert message is not None and "--advertise" in message
    assert refusal(config(workers="2", store=REDIS, edge="redirect",
                          advertise="media1.example:9000")) is None


def test_private_listener_addresses() -> None:
    assert private_http_address(config(), 0) == ("127.0.0.1", 0)
    assert private_http_address(config(http="0.0.0.0:8080"), 3) == ("127.0.0.1", 0)
    advertised = config(http="10.0.0.5:8080", advertise="media1.example:9000")
    assert [private_http_address(advertised, i) for i in range(3)] == [
        ("10.0.0.5", 9000), ("10.0.0.5", 9001), ("10.0.0.5", 9002)]
    assert private_http_address(config(advertise="media1.example:0"), 5) == ("0.0.0.0", 0)


def test_a_worker_is_reached_at_its_own_listener_under_the_advertised_host(
        tmp_path: Path) -> None:
    single = MediaServer(config(data_dir=str(tmp_path), advertise="media1.example:9000"))
    single.http_address = ("0.0.0.0", 8080)
    assert single.node_address == ("media1.example", 9000)
    worker = MediaServer(config(data_dir=str(tmp_path), advertise="media1.example:9000"))
    worker.http_address = ("0.0.0.0", 8080)
    worker.private_http_address = ("0.0.0.0", 9001)
    assert worker.node_address == ("media1.example", 9001)
    loopback = MediaServer(config(data_dir=str(tmp_path)))
    loopback.http_address = ("0.0.0.0", 8080)
    loopback.private_http_address = ("127.0.0.1", 41234)
    assert loopback.node_address == ("127.0.0.1", 41234)


def test_the_supervisor_waits_longer_than_a_worker_takes_to_stop() -> None:
    assert STOP_DEADLINE_SECONDS > SHUTDOWN_TIMEOUT + 2


def test_exits_are_described_for_the_log() -> None:
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(1) == "exit status 1"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"
