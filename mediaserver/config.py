"""Server configuration: one table of options, read from flags, env, a TOML file, defaults.

Precedence is flag > environment (MEDIASERVER_<NAME>) > config file > default, as
SPEC.md says. Every option is declared once in OPTIONS; argparse, the env reader
and the TOML reader are all built from that table so they cannot drift apart.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "MEDIASERVER_"


class ConfigError(ValueError):
    """A bad option value, with the option's name in the message."""


def parse_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"must be > 0, got {value}")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"must be >= 1, got {value}")
    return number


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return parse


def _optional_str(value: str) -> str | None:
    return value or None


def _workers(value: str) -> int:
    """A worker count, or `auto`: the cores this process may run on."""
    if value.strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    return _positive_int(value)


def _optional_hostport(value: str) -> tuple[str, int] | None:
    return parse_hostport(value) if value else None


@dataclass(frozen=True, slots=True)
class Option:
    name: str  # attribute name; the flag is --name-with-dashes, the env MEDIASERVER_NAME
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option("rtmp", parse_hostport, "0.0.0.0:1935", "RTMP listen address (port 0: any free port)",
           "HOST:PORT"),
    Option("http", parse_hostport, "0.0.0.0:8080",
           "HTTP listen address for HLS, API, metrics (port 0: any free port)", "HOST:PORT"),
    Option("data_dir", Path, "./var", "directory for the SQLite store and the API token", "DIR"),
    Option("store", _optional_str, None,
           "channel store URL: sqlite:///PATH (default: under --data-dir) or redis://HOST:PORT/DB",
           "URL"),
    Option("segment_duration", _positive_float, 2.0, "HLS target segment duration", "SECONDS"),
    Option("ll_hls", _choice("on", "off"), "on",
           "serve low-latency HLS (ll.m3u8: fMP4 parts, blocking reload) beside index.m3u8",
           "on|off"),
    Option("part_duration", _positive_float, 0.333,
           "LL-HLS part target (PART-TARGET); shorter than --segment-duration", "SECONDS"),
    Option("playlist_size", _positive_int, 6, "segments in the rolling playlist window", "N"),
    Option("grace_period", _non_negative_float, 30.0,
           "how long a dropped publisher may come back into the same playlist", "SECONDS"),
    Option("duplicate_publish", _choice("takeover", "reject"), "takeover",
           "what a second publisher with a valid key does to a live channel",
           "takeover|reject"),
    Option("log_level", _choice("debug", "info", "warning", "error"), "info", "log level",
           "LEVEL"),
    Option("public_host", _optional_str, None,
           "host name put in printed and API URLs (default: the listen host, or localhost)",
           "HOST"),
    Option("app", str, "live", "RTMP application name publishers connect to", "NAME"),
    Option("api_token", _optional_str, None,
           "bearer token for the control API (default: generated into the data dir)", "TOKEN"),
    Option("auth_webhook", _optional_str, None,
           "URL the server POSTs {app, stream_key, client_ip} to, instead of the store", "URL"),
    Option("webhook", _optional_str, None, "URL that receives stream.started/ended events",
           "URL"),
    Option("webhook_secret", _optional_str, None,
           "HMAC-SHA256 secret for webhook signatures (default: the API token)", "SECRET"),
    Option("max_connections", _positive_int, 1000, "cap on open RTMP connections", "N"),
    Option("idle_timeout", _positive_float, 20.0, "close a publisher silent for this long",
           "SECONDS"),
    Option("handshake_timeout", _positive_float, 10.0,
           "close a connection that has not published within this long", "SECONDS"),
    Option("read_interval", _non_negative_float, 0.1,
           "read each publisher's socket at most this often; batching frames saves CPU "
           "(0: read on every wake-up)", "SECONDS"),
    Option("max_stream_memory", _positive_int, 64 * 1024 * 1024,
           "cap on HLS bytes held in memory per stream", "BYTES"),
    # RFC 8216 6.2.2 keeps a segment fetchable after it leaves the playlist: ~14 s of
    # media a channel at the defaults, half of what it holds, asked for only by late
    # players. In one file whose ranges are reused in place (hls.spill) that half costs
    # the kernel ~0.1 ms a segment and no measurable CPU per stream in the steady state,
    # against 5 MB of the process's memory per 3.2 Mbit/s stream; while the file grows (a
    # server's first half minute) each segment lands on pages the file never had, which
    # costs more (benchmarks/README.md, "Expired segments in one file"). So disk is the default;
    # memory is for a box with no disk to write on (and where writes fail, segments
    # stay in memory anyway).
    Option("expired_segments", _choice("memory", "disk"), "disk",
           "where segments that left the playlist wait out their RFC 8216 retention: disk "
           "(files under --data-dir/expired, about half the memory per stream) or memory",
           "disk|memory"),
    # Each open HTTP connection holds a descriptor; with the RTMP cap and a reserve
    # it is fitted under the open-file limit at start (the values chosen are logged).
    Option("max_http_connections", _positive_int, 4096,
           "cap on open HTTP connections; past it new ones get 503 (health probes excepted)",
           "N"),
    # A player sends a request line and headers at once; a peer that trickles them
    # (slowloris) or never finishes them holds a descriptor for nothing.
    Option("http_header_timeout", _positive_float, 10.0,
           "close an HTTP connection that has not sent complete request headers within this "
           "long", "SECONDS"),
    # Players refetch a live playlist every target duration (2 s by default), so a
    # connection idle for much longer than that is a player that has gone.
    Option("http_keepalive_timeout", _positive_float, 15.0,
           "close an idle HTTP keep-alive connection after this long", "SECONDS"),
    # The hot HLS requests (playlists, segments, parts of local channels) cost a few
    # times less answered below aiohttp (mediaserver.hot_http); off serves every request
    # through aiohttp, to compare the two or to rule the fast path out.
    Option("http_fast_path", _choice("on", "off"), "on",
           "answer hot HLS requests (local playlists without directives, segments, parts) "
           "from pre-built bytes below aiohttp; everything else goes through aiohttp",
           "on|off"),
    # Cluster (SPEC "Cluster (Redis)"): more than one worker or box needs a Redis store.
    Option("workers", _workers, "1",
           "worker processes sharing the RTMP and HTTP ports (auto: one per usable core); "
           "more than one needs --store redis://; each worker is a node of the cluster with "
           "its own HTTP listener on 127.0.0.1 (see --advertise)", "N|auto"),
    Option("worker_cpu_affinity", _choice("off", "auto"), "off",
           "with --workers N: pin worker i to the i-th core this process may use (as "
           "nginx's worker_cpu_affinity auto), so each keeps its core's cache; off: the "
           "kernel places them", "off|auto"),
    Option("advertise", _optional_hostport, None,
           "HOST:PORT other nodes use to reach this node's HTTP (default: the address it "
           "listens on); with --workers N, worker i listens on PORT+i of the --http host "
           "(PORT 0: free ports) and advertises HOST:PORT+i", "HOST:PORT"),
    Option("edge", _choice("proxy", "redirect"), "proxy",
           "how a node serves a channel whose publisher is on another node: fetch and cache "
           "from it, or answer 302 to it", "proxy|redirect"),
)


@dataclass(frozen=True, slots=True)
class Config:
    rtmp: tuple[str, int]
    http: tuple[str, int]
    data_dir: Path
    store: str | None
    segment_duration: float
    ll_hls: str
    part_duration: float
    playlist_size: int
    grace_period: float
    duplicate_publish: str
    log_level: str
    public_host: str | None
    app: str
    api_token: str | None
    auth_webhook: str | None
    webhook: str | None
    webhook_secret: str | None
    max_connections: int
    idle_timeout: float
    handshake_timeout: float
    read_interval: float
    max_stream_memory: int
    expired_segments: str
    max_http_connections: int
    http_header_timeout: float
    http_keepalive_timeout: float
    http_fast_path: str
    workers: int
    worker_cpu_affinity: str
    advertise: tuple[str, int] | None
    edge: str

    def replace(self, **changes: Any) -> Config:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Config(**values)

    @property
    def url_host(self) -> str:
        """Host for URLs given to people: explicit, else the bound host unless it is a wildcard."""
        if self.public_host:
            return self.public_host
        host = self.http[0]
        return "localhost" if host in ("0.0.0.0", "::", "") else host


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option as a flag; defaults are None so that env and file can fill gaps."""
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="TOML config file (keys as the flags, with _ or -)")
    for option in OPTIONS:
        env = ENV_PREFIX + option.name.upper()
        parser.add_argument(
            "--" + option.name.replace("_", "-"),
            dest=option.name,
            default=None,
            metavar=option.metavar,
            help=f"{option.help} [env {env}; default {option.default}]",
        )


def load_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Merge the four sources; raise ConfigError naming the bad option."""
    flags = flags or {}
    env = os.environ if env is None else env
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            raw = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        known = {o.name for o in OPTIONS}
        for key, value in raw.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigError(f"unknown key {key!r} in {config_file}")
            file_values[name] = value
    values: dict[str, Any] = {}
    for option in OPTIONS:
        source, raw_value = "default", option.default
        env_value = env.get(ENV_PREFIX + option.name.upper())
        if flags.get(option.name) is not None:
            source, raw_value = "--" + option.name.replace("_", "-"), flags[option.name]
        elif env_value is not None:
            source, raw_value = ENV_PREFIX + option.name.upper(), env_value
        elif option.name in file_values:
            source, raw_value = "config file", file_values[option.name]
        try:
            values[option.name] = None if raw_value is None else option.parse(str(raw_value))
        except ValueError as exc:
            raise ConfigError(f"bad value for {option.name} (from {source}): {exc}") from exc
    return Config(**values)


def config_flags(config: Config) -> dict[str, str]:
    """Every set option as the text its flag takes: load_config(config_flags(c)) == c.

    How a worker process gets exactly its supervisor's configuration: re-read through
    the same parsers, never through the environment or a file that may have changed.
    """
    flags = {}
    for option in OPTIONS:
        value = getattr(config, option.name)
        if value is None:
            continue
        if isinstance(value, tuple):  # HOST:PORT; an IPv6 literal keeps its brackets
            host, port = value
            value = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        flags[option.name] = str(value)  # str() of a float is exact (its repr)
    return flags
