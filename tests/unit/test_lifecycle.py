"""How a node runs: start-up objects are frozen out of the cyclic collector's way, and
its young generation is collected less often."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

from mediaserver.lifecycle import YOUNG_COLLECTION_THRESHOLD, serve_until_stopped


class _Server:
    """Stands in for MediaServer: serve_until_stopped only starts and stops it."""

    def __init__(self) -> None:
        self.stopped = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True


async def test_a_serving_node_has_frozen_its_start_up_objects() -> None:
    server = _Server()
    frozen_when_announced: list[int] = []
    thresholds_when_announced: list[tuple[int, int, int]] = []

    def announce(_server: object) -> None:
        frozen_when_announced.append(gc.get_freeze_count())
        thresholds_when_announced.append(gc.get_threshold())
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)

    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        status = await asyncio.wait_for(
            serve_until_stopped(lambda: server, announce), 10)  # type: ignore[arg-type, return-value]
    finally:
        gc.unfreeze()  # give the rest of the test run its collector back
        gc.set_threshold(*thresholds)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    assert status == 0 and server.stopped
    # Everything that existed once the node served (this test process's modules included).
    assert frozen_when_announced and frozen_when_announced[0] > 10_000
    # Only the young generation's threshold is raised; the older ones keep theirs.
    assert thresholds_when_announced == [(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])]
    assert thresholds[0] < YOUNG_COLLECTION_THRESHOLD
