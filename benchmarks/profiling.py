"""Sampling profiles of our server during the measured window, via py-spy.

py-spy reads the server's stacks from outside (no code change, no restart), so
the profile is of the exact process being measured. It runs on the load's CPU;
`--nonblocking` keeps it from pausing the server, at the price of rare torn stacks
(native profiles cannot do that: they pause the server at each sample).
The summary ranks functions by own time (where the CPU is) and by inclusive time
(which call paths are expensive).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 100
SCAFFOLDING_SHARE = 0.97
# Stacks with these frames are a thread waiting (the event loop in epoll, a worker on its
# queue), not spending CPU; native profiles cannot tell them apart otherwise.
WAITING = ("EpollSelector.select", "epoll_wait", "SimpleQueue_get", "acquire_lock_timed",
           "Condition.wait", "Event.wait")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """`py-spy record --format raw` on a pid for a fixed duration."""

    def __init__(self, pid: int, seconds: float, out: Path, native: bool = False) -> None:
        self.pid = pid
        self.seconds = seconds
        self.out = out
        self.native = native  # also C frames (PyAV/FFmpeg, uvloop): slower sampling
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> bool:
        exe = py_spy()
        if exe is None:
            return False
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            exe, "record", "--pid", str(self.pid), "--duration", str(max(1, round(self.seconds))),
            "--rate", str(SAMPLE_RATE), "--format", "raw",
            # Native stacks need the process paused while they are read.
            *(["--native"] if self.native else ["--nonblocking"]), "--output", str(self.out),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        return True

    async def wait(self) -> str:
        """Wait for py-spy to write its file; returns its error output, if any."""
        if self._proc is None:
            return "py-spy not found (pip install py-spy)"
        try:
            _, err = await asyncio.wait_for(self._proc.communicate(), self.seconds + 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            return "py-spy did not finish"
        return "" if self._proc.returncode == 0 else err.decode(errors="replace")[-500:]


@dataclass(frozen=True, slots=True)
class Hotspot:
    function: str  # "name (file)"
    own: float  # share of samples with this function on top
    inclusive: float  # share of samples with this function anywhere on the stack


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    else:
        file = re.sub(r"^.*/(mediaserver|rtmp|hls|control_api)/", r"\1/", file)
    return f"{match['func']} ({file})"


def hotspots(raw: Path, top: int = 15) -> tuple[int, int, list[Hotspot], list[Hotspot]]:
    """Busy samples, waiting samples, top by own time, top by inclusive time (py-spy raw)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = waiting = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if any(marker in stack for marker in WAITING):
            waiting += count
            continue
        frames = [_frame_name(f) for f in stack.split(";")
                  if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return 0, waiting, [], []

    def ranked(counter: Counter[str]) -> list[Hotspot]:
        # Frames on (nearly) every stack are the event loop's scaffolding: no information.
        names = [n for n, c in counter.most_common() if c < SCAFFOLDING_SHARE * total]
        return [Hotspot(n, own[n] / total, inclusive[n] / total) for n in names[:top]]

    return total, waiting, ranked(own), ranked(inclusive)


def hotspots_markdown(raw: Path, top: int = 15) -> str:
    total, waiting, by_own, by_inclusive = hotspots(raw, top)
    if not total:
        return "(no samples)"
    lines = [f"{total} busy samples at {SAMPLE_RATE} Hz (shares below are of these; "
             f"{waiting} more were waiting in select or on a lock and are left out)", "",
             "| own % | incl % | function |", "|---|---|---|"]
    lines += [f"| {h.own * 100:.1f} | {h.inclusive * 100:.1f} | {h.function} |" for h in by_own]
    if any(h.function.startswith("Runner.run ") for h in by_own):
        lines += ["", "Under uvloop, own time of `Runner.run` is uvloop's C event loop: epoll, "
                  "socket reads and writes, callback dispatch (`--profile-native` splits it)."]
    lines += ["", "By inclusive time:", "", "| incl % | own % | function |", "|---|---|---|"]
    lines += [f"| {h.inclusive * 100:.1f} | {h.own * 100:.1f} | {h.function} |"
              for h in by_inclusive]
    return "\n".join(lines)
