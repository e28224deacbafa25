"""CPU time and memory of a process tree, read from /proc; CPU pinning.

The server's cost is what the kernel charged it: utime + stime of the process,
of its children already reaped (cutime + cstime) and of live descendants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Memory:
    rss: int  # bytes resident now (VmRSS)
    peak: int  # bytes resident at the peak (VmHWM)


def _stat_fields(pid: int) -> list[str]:
    text = (PROC / str(pid) / "stat").read_text()
    # The command name may contain spaces and parentheses; fields follow the last ')'.
    return text[text.rindex(")") + 2 :].split()


def _own_cpu_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(v) for v in fields[11:15])


def descendants(pid: int) -> list[int]:
    """Live descendants of pid (scans /proc once)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack and len(found) < 10_000:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """CPU seconds charged to pid and its descendants so far."""
    ticks = _own_cpu_ticks(pid)
    for child in descendants(pid):
        try:
            ticks += _own_cpu_ticks(child)
        except (OSError, ValueError, IndexError):
            continue  # exited between the scan and the read
    return ticks / CLOCK_TICKS


def memory(pid: int) -> Memory:
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0]) * 1024
    return Memory(values["VmRSS"], values["VmHWM"])


def tree_memory(pid: int) -> Memory:
    """memory() of pid plus its live descendants (a supervisor and its workers).

    The peak is the sum of each process's own peak: an upper bound on the tree's.
    """
    total = memory(pid)
    for child in descendants(pid):
        try:
            own = memory(child)
        except (OSError, ValueError):
            continue  # exited between the scan and the read
        total = Memory(total.rss + own.rss, total.peak + own.peak)
    return total


def open_fds(pid: int) -> int:
    """File descriptors pid holds open now (sockets included)."""
    return sum(1 for _ in (PROC / str(pid) / "fd").iterdir())


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (every process, kernel work included)."""
    fields = (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def self_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def unpin(pid: int) -> None:
    """Let pid (0: this process) run on every CPU of the machine."""
    os.sched_setaffinity(pid, range(os.cpu_count() or 1))


def pin(pid: int, cpu: int | None) -> bool:
    """Pin pid (0: this process) to one CPU; False if that CPU does not exist here."""
    if cpu is None or not 0 <= cpu < (os.cpu_count() or 1):
        return False
    os.sched_setaffinity(pid, {cpu})
    return True
