"""One worker of `mediaserver serve --workers N`: `python -m mediaserver.workers.worker`.

Started by the supervisor only, never by hand: it reads its handover from stdin
(see handover), serves the inherited public sockets as an ordinary cluster node
with its own private HTTP listener, reports to the supervisor once it serves, and
stops on SIGTERM/SIGINT or when the supervisor is gone.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from ..app import MediaServer
from ..cluster.records import base_url
from ..config import Config
from ..lifecycle import run_loop, serve_until_stopped
from ..listeners import SharedListeners, private_http_address
from ..logs import configure_logging
from ..metrics import NAMESPACE
from .handover import HandoverError, Ready, WorkerSpec, decode_handover, ready_line

log = logging.getLogger("mediaserver.worker")


def restart_metrics(spec: WorkerSpec) -> Iterator[Metric]:
    """How often the supervisor restarted this worker's slot (summed over workers: all)."""
    family = CounterMetricFamily(
        f"{NAMESPACE}_worker_restarts",
        "Times the supervisor restarted this worker slot (after a crash or kill) before "
        "this process started.", labels=["worker"])
    family.add_metric([str(spec.slot)], spec.restarts)
    yield family


def make_server(config: Config, spec: WorkerSpec) -> MediaServer:
    shared = SharedListeners(
        rtmp=socket.socket(fileno=spec.rtmp_fd),
        http=socket.socket(fileno=spec.http_fd),
        private_http=private_http_address(config, spec.slot),
    )
    server = MediaServer(config, shared)
    server.metrics.sources.append(lambda: restart_metrics(spec))
    return server


def report_ready(spec: WorkerSpec, server: MediaServer) -> None:
    """Tell the supervisor this worker serves, and where other nodes reach it."""
    ready = Ready(spec.slot, os.getpid(), server.node_id, base_url(*server.node_address))
    try:
        os.write(spec.status_fd, ready_line(ready))
    except OSError as exc:  # the supervisor is gone: the orphan watch stops this worker
        log.warning("cannot report to the supervisor: %s", exc)


def main() -> int:
    try:
        config, spec = decode_handover(sys.stdin.buffer.read())
    except HandoverError as exc:
        print(f"mediaserver worker: {exc} (workers are started by `mediaserver serve "
              "--workers N`)", file=sys.stderr)
        return 2
    rate_limit = configure_logging(config.log_level, tag=f"worker-{spec.slot}")
    try:
        return run_loop(serve_until_stopped(
            lambda: make_server(config, spec), lambda server: report_ready(spec, server),
            supervisor_pid=spec.supervisor_pid))
    finally:
        rate_limit.flush()


if __name__ == "__main__":
    sys.exit(main())
