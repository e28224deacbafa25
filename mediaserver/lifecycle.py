"""Running one node until it is told to stop: the loop, the signals, a bounded shutdown.

The same for `mediaserver serve` in one process and for each worker of
`--workers N`; only what is announced once the node serves differs (the banner,
or a report to the supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from control_api.store import StoreError

from .app import MediaServer

log = logging.getLogger("mediaserver")

# After SIGINT/SIGTERM, give publishers and HTTP clients this long to be closed cleanly.
SHUTDOWN_TIMEOUT = 5.0
# A worker checks this often that its supervisor is still there; one left behind by
# a supervisor that was killed stops instead of serving the old sockets forever.
SUPERVISOR_CHECK_SECONDS = 1.0
# The cyclic collector's youngest generation is collected after this many more
# container allocations than frees (CPython's default: 700). Each read of a publisher
# makes and drops thousands of short-lived tuples and lists; at 700 the collector ran
# ~80 times a second per 100 streams and promoted what was merely in flight, which made
# the full collections that walk the whole heap. At 20,000 almost all of it is freed
# before a collection: in-process at 100 streams, 0.56 instead of 4.1 s of collector
# CPU per run and 15-20 % less CPU per stream (benchmarks/README.md, "Issue 12, media
# half"). Nothing here relies on the collector to free memory soon: no channel is ever
# in a reference cycle (tests/integration/test_churn_memory.py).
YOUNG_COLLECTION_THRESHOLD = 20_000


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on uvloop where it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(main)
    return uvloop.run(main)


async def serve_until_stopped(make_server: Callable[[], MediaServer],
                              announce: Callable[[MediaServer], None],
                              supervisor_pid: int | None = None) -> int:
    """Start, announce, serve until SIGINT/SIGTERM (or the supervisor is gone), stop.

    Exit status 0 after a clean stop, even one cut short by SHUTDOWN_TIMEOUT; 1 if
    the server could not start. The server is made on the running loop.
    """
    server = make_server()
    try:
        await server.start()
    except (OSError, StoreError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        await server.stop()
        return 1
    freeze_startup_objects()
    announce(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watch = None
    if supervisor_pid is not None:
        watch = loop.create_task(_stop_when_orphaned(supervisor_pid, stop))
    await stop.wait()
    log.info("shutting down")
    try:
        await asyncio.wait_for(server.stop(), SHUTDOWN_TIMEOUT)
    except TimeoutError:
        log.warning("shutdown took longer than %.0fs; exiting anyway", SHUTDOWN_TIMEOUT)
    if watch is not None:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    return 0


def freeze_startup_objects() -> None:
    """Take what start-up made (modules, classes, functions, the server's long-lived
    parts: three quarters of the objects the collector tracks) out of its way for good.

    A full collection walks every tracked object and stops the loop meanwhile: every
    stream's ingest and every HLS request wait. Measured at 100 streams, a full
    collection took 50 ms of CPU with start-up objects in it and 9 ms without, about
    every 5 s. The garbage start-up left is collected first, so none of it is kept.
    The young generation is then collected less often (YOUNG_COLLECTION_THRESHOLD).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


async def _stop_when_orphaned(supervisor_pid: int, stop: asyncio.Event) -> None:
    while os.getppid() == supervisor_pid:
        await asyncio.sleep(SUPERVISOR_CHECK_SECONDS)
    log.warning("supervisor (pid %d) is gone: stopping this worker", supervisor_pid)
    stop.set()
