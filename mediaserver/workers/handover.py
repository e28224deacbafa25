"""What passes between the supervisor and a worker: a JSON handover, and report lines.

The supervisor writes the handover to the worker's stdin and closes it: the exact
configuration it resolved (secrets included, so they never show in a process
list), the worker's slot, and the numbers of the inherited descriptors. A worker
reports on the shared status pipe with one line per event; lines are far shorter
than PIPE_BUF, so the writes of several workers never interleave.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..config import Config, ConfigError, config_flags, load_config

# Report lines longer than this are not ours; a reader stops buffering past it.
MAX_REPORT_LINE = 512


class HandoverError(ValueError):
    """The handover or a report line is not what this version writes."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    slot: int  # 0..N-1: which of the N workers this is
    restarts: int  # times the supervisor had restarted this slot before this process
    rtmp_fd: int  # its listening sockets on the public ports, inherited
    http_fd: int
    status_fd: int  # write end of the supervisor's status pipe
    supervisor_pid: int  # a worker whose supervisor is gone stops


def encode_handover(config: Config, spec: WorkerSpec) -> bytes:
    return json.dumps({"config": config_flags(config), "worker": asdict(spec)}).encode()


def decode_handover(data: bytes) -> tuple[Config, WorkerSpec]:
    try:
        message = json.loads(data)
        config = load_config(message["config"], env={})
        spec = WorkerSpec(**message["worker"])
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise HandoverError(f"unusable worker handover: {exc}") from exc
    if not all(isinstance(value, int) for value in asdict(spec).values()):
        raise HandoverError("unusable worker handover: non-integer worker fields")
    return config, spec


@dataclass(frozen=True, slots=True)
class Ready:
    """A worker serves: its pid, its cluster node id and the URL other nodes reach it at."""

    slot: int
    pid: int
    node: str
    url: str


def ready_line(ready: Ready) -> bytes:
    return f"ready {ready.slot} {ready.pid} {ready.node} {ready.url}\n".encode()


def parse_report(line: bytes) -> Ready:
    parts = line.decode(errors="replace").split()
    if len(parts) != 5 or parts[0] != "ready" or not (parts[1].isdigit() and parts[2].isdigit()):
        raise HandoverError(f"unexpected worker report {line[:80]!r}")
    return Ready(int(parts[1]), int(parts[2]), parts[3], parts[4])
