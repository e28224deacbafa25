"""Which code pushes a run of plain frames into a segmenter: the compiled fast path
(hls/_plain_frames.pyx) when it is built and wanted, else none, and every frame goes
through Segmenter.push, the reference the compiled path mirrors.

`PUSH_PLAIN_FRAMES(segmenter, items, start)` pushes items[start:] while each is a frame
push() would take without a decision (no cut, part, purge, cap, drop or refusal), and
returns the index of the first it left to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .extensions import extensions_wanted

PushPlainFrames = Callable[[Any, list[Any], int], int]

PUSH_PLAIN_FRAMES: PushPlainFrames | None = None
if extensions_wanted():
    try:
        from ._plain_frames import push_plain_frames as PUSH_PLAIN_FRAMES
    except ImportError:  # a build without the extensions: push() takes every frame
        PUSH_PLAIN_FRAMES = None
