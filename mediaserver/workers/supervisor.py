"""The parent of `mediaserver serve --workers N`: owns the ports, starts N workers, keeps them.

Each public port (RTMP, HTTP) is a SO_REUSEPORT group the supervisor owns: a
reservation socket that never listens, and one listening socket per worker,
bound here and inherited by that worker. Why this way:
- the kernel hashes each new connection to one socket of the group, so workers
  get even shares whatever the arrival rate. One listening socket shared by every
  worker (tried first) leaves it to a race to accept, which the worker the kernel
  happens to run first wins, not the least busy one: of 60 connections 100 ms
  apart, one worker took 56 and 54 in two runs (SO_REUSEPORT: 33 and 30), and
  long-lived publishers pile up on it;
- port 0 works as everywhere else: the reservation picks the port, once, and it
  stays held while no worker listens (between a crash and its restart);
- a worker that dies takes its socket with it (the supervisor closes its copy):
  the connections it had not yet accepted are reset, and new ones go to the
  workers that are alive instead of waiting for its restart;
- a port that cannot be bound is reported once, before any worker starts.
The price of SO_REUSEPORT: another process of the same user could join the group.

The supervisor runs no event loop while it supervises (one short one before, for
the first-start actions) and holds no server state: it waits on a self-pipe that
signals are written to and on the pipe workers report on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from control_api.store import is_shared_store, open_store

from ..config import Config
from ..first_start import FirstStart, banner, ensure_demo_channel, load_or_create_token, public_urls
from ..listeners import SharedPort
from .handover import (
    MAX_REPORT_LINE,
    HandoverError,
    Ready,
    WorkerSpec,
    encode_handover,
    parse_report,
)
from .restarts import RestartPolicy

log = logging.getLogger("mediaserver.supervisor")

# A worker bounds its own shutdown to lifecycle.SHUTDOWN_TIMEOUT (5 s); this leaves
# room for the process to unwind and exit before the supervisor kills it.
STOP_DEADLINE_SECONDS = 10.0
# The first start of every worker (imports, store, listeners) on a busy box; a worker
# not ready by then is taken for one that cannot start.
START_DEADLINE_SECONDS = 60.0
# The longest the supervisor sleeps with nothing to do: a lost wake-up costs this much.
IDLE_WAKE_SECONDS = 1.0
# Connections the kernel queues on a worker's socket before the worker accepts them
# (the worker's own listen() sets its figure again when it starts serving).
LISTEN_BACKLOG = 128
# Where the `mediaserver` package this supervisor runs lives: its workers run the same.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
WORKER_COMMAND = (sys.executable, "-m", "mediaserver.workers.worker")


class StartError(RuntimeError):
    """The workers could not be started (and the supervisor exits 1)."""


def refusal(config: Config) -> str | None:
    """Why these options cannot run several workers, or None if they can."""
    if config.workers <= 1:
        return None
    if not is_shared_store(config.store):
        return (f"--workers {config.workers} needs --store redis://HOST:PORT/DB: the workers "
                "are nodes that share channels, live streams and control through Redis")
    if config.edge == "redirect" and config.advertise is None:
        return ("--edge redirect with several workers sends viewers to one worker's own "
                "address: give --advertise HOST:PORT that viewers can reach (worker i "
                "listens on PORT + i)")
    return None


@dataclass(slots=True)
class Slot:
    """One of the N workers, across its restarts."""

    index: int
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    ready: Ready | None = None
    start_at: float | None = None  # a start is due at this time
    sockets: list[socket.socket] = field(default_factory=list)  # its listeners, while it runs
    unclean: bool = False  # after the stop: killed at the deadline, or a bad exit

    @property
    def alive(self) -> bool:
        return self.process is not None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Supervisor:
    """Runs `config.workers` workers until told to stop; `run()` returns the exit status."""

    def __init__(self, config: Config, command: Sequence[str] = WORKER_COMMAND,
                 clock: Callable[[], float] = time.monotonic,
                 out: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.command = list(command)
        self.clock = clock
        self.out = out or (lambda text: print(text, flush=True))
        self.slots = [Slot(i) for i in range(config.workers)]
        self.restarts = 0
        self._ports: dict[str, SharedPort] = {}
        self._status_w = -1
        self._reports = b""
        self._announced = False
        self._announcement = ""
        self._banner = ""
        self._start_deadline = 0.0
        self._stopping = False
        self._stop_deadline = 0.0
        self._failed = False

    # ---- the whole run -----------------------------------------------------------------

    def run(self) -> int:
        config = self.config
        with ExitStack() as stack:
            try:
                for what, (host, port) in (("http", config.http), ("rtmp", config.rtmp)):
                    self._ports[what] = shared = SharedPort(what, host, port)
                    stack.callback(shared.close)
            except OSError as exc:
                log.error("cannot start: %s", exc)
                return 1
            stack.callback(self._close_listeners)
            try:
                token, first = asyncio.run(first_start(config))
            except OSError as exc:  # the token file cannot be written
                log.error("cannot start: %s", exc)
                return 1
            rtmp_host, rtmp_port = self._ports["rtmp"].address
            http_host, http_port = self._ports["http"].address
            self._announcement = (
                f"listening rtmp://{rtmp_host}:{rtmp_port}/{config.app} "
                f"http://{http_host}:{http_port}/ with {config.workers} workers")
            urls = public_urls(config, rtmp_port, http_port)
            self._banner = banner(urls, first, token, config.data_dir)
            selector = stack.enter_context(selectors.DefaultSelector())
            wake_r = self._wake_on_signals(stack)
            status_r, self._status_w = os.pipe()
            stack.callback(os.close, status_r)
            stack.callback(os.close, self._status_w)
            os.set_blocking(status_r, False)
            selector.register(wake_r, selectors.EVENT_READ, "signals")
            selector.register(status_r, selectors.EVENT_READ, "reports")
            self._start_deadline = self.clock() + START_DEADLINE_SECONDS
            for slot in self.slots:
                self._spawn(slot)
            return self._supervise(selector)

    def _wake_on_signals(self, stack: ExitStack) -> int:
        """A pipe that SIGTERM, SIGINT and SIGCHLD write their numbers to."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        stack.callback(os.close, wake_r)
        stack.callback(os.close, wake_w)
        previous = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        stack.callback(signal.set_wakeup_fd, previous)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            # The handler does nothing: the wake-up byte is the message.
            stack.callback(signal.signal, sig, signal.signal(sig, _ignore))
        return wake_r

    def _supervise(self, selector: selectors.BaseSelector) -> int:
        while True:
            for key, _ in selector.select(self._timeout()):
                if key.data == "signals":
                    for number in _drain(key.fd):
                        if number in (signal.SIGTERM, signal.SIGINT):
                            self._stop(f"{signal.Signals(number).name} received")
                else:
                    self._read_reports(key.fd)
            self._reap()
            now = self.clock()
            if self._stopping:
                if not any(slot.alive for slot in self.slots):
                    return self._exit_status()
                if now >= self._stop_deadline:
                    self._kill_the_rest()
                continue
            if not self._announced and now >= self._start_deadline:
                self._stop(f"workers not ready after {START_DEADLINE_SECONDS:.0f}s",
                           failed=True)
                continue
            for slot in self.slots:
                if slot.start_at is not None and now >= slot.start_at:
                    self._spawn(slot)

    def _timeout(self) -> float:
        now = self.clock()
        due = [slot.start_at for slot in self.slots if slot.start_at is not None]
        if self._stopping:
            due.append(self._stop_deadline)
        elif not self._announced:
            due.append(self._start_deadline)
        return max(0.0, min([IDLE_WAKE_SECONDS, *(t - now for t in due)]))

    # ---- workers -----------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> None:
        slot.start_at = None
        slot.ready = None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, (str(PACKAGE_ROOT), env.get("PYTHONPATH"))))
        try:
            rtmp = self._ports["rtmp"].listener(LISTEN_BACKLOG)
            slot.sockets.append(rtmp)
            http = self._ports["http"].listener(LISTEN_BACKLOG)
            slot.sockets.append(http)
            spec = WorkerSpec(slot.index, slot.restarts, rtmp.fileno(), http.fileno(),
                              self._status_w, os.getpid())
            process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, env=env,
                pass_fds=(spec.rtmp_fd, spec.http_fd, spec.status_fd))
        except OSError as exc:
            log.error("cannot start worker %d: %s", slot.index, exc)
            self._close_listeners(slot)
            self._after_death(slot, 0.0)
            return
        slot.process, slot.started_at = process, self.clock()
        if self.config.worker_cpu_affinity == "auto":
            pin_to_core(process.pid, slot.index)
        assert process.stdin is not None
        try:
            process.stdin.write(encode_handover(self.config, spec))
            process.stdin.close()
        except BrokenPipeError:
            pass  # it died already: its exit is reaped like any other
        log.info("worker %d started (pid %d)%s", slot.index, process.pid,
                 f", restart {slot.restarts}" if slot.restarts else "")

    def _read_reports(self, fd: int) -> None:
        while chunk := _read_some(fd):
            self._reports += chunk
        *lines, self._reports = self._reports.split(b"\n")
        if len(self._reports) > MAX_REPORT_LINE:
            self._reports = b""
        for line in lines:
            try:
                ready = parse_report(line)
            except HandoverError as exc:
                log.warning("%s", exc)
                continue
            slot = self.slots[ready.slot] if 0 <= ready.slot < len(self.slots) else None
            if slot is None or slot.process is None or slot.process.pid != ready.pid:
                continue  # from a worker already gone
            slot.ready = ready
            log.info("worker %d (pid %d) ready: node %s, reachable at %s", slot.index,
                     ready.pid, ready.node, ready.url)
        if not self._announced and all(slot.ready for slot in self.slots):
            self._announced = True
            log.info("%s", self._announcement)
            self.out(self._banner)

    def _reap(self) -> None:
        for slot in self.slots:
            process = slot.process
            if process is None or process.poll() is None:
                continue
            slot.process = None
            self._close_listeners(slot)  # its unaccepted connections go; new ones go elsewhere
            code = process.returncode
            uptime = self.clock() - slot.started_at
            if self._stopping:
                log.info("worker %d (pid %d) stopped: %s", slot.index, process.pid,
                         describe_exit(code))
                # Killed by SIGTERM itself: it was stopped before it served.
                slot.unclean = slot.unclean or code not in (0, -signal.SIGTERM, -signal.SIGINT)
                continue
            if not self._announced:
                log.error("worker %d (pid %d) could not start: %s (its log is above)",
                          slot.index, process.pid, describe_exit(code))
                self._stop("a worker could not start", failed=True)
                continue
            self._after_death(slot, uptime, process.pid, code)

    def _after_death(self, slot: Slot, uptime: float, pid: int = 0, code: int = 0) -> None:
        delay = slot.policy.delay_after(uptime)
        slot.restarts += 1
        self.restarts += 1
        slot.start_at = self.clock() + delay
        log.warning("worker %d (pid %d) died after %.1fs (%s): restarting it in %.1fs "
                    "(restart %d of this worker, %d in all)", slot.index, pid, uptime,
                    describe_exit(code), delay, slot.restarts, self.restarts)

    def _close_listeners(self, slot: Slot | None = None) -> None:
        """Close a slot's listening sockets (every slot's without one)."""
        for each in [slot] if slot is not None else self.slots:
            for sock in each.sockets:
                sock.close()
            each.sockets.clear()

    # ---- stopping ------------------------------------------------------------------------

    def _stop(self, why: str, failed: bool = False) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._failed = failed
        self._stop_deadline = self.clock() + STOP_DEADLINE_SECONDS
        log.info("stopping %d workers: %s", sum(slot.alive for slot in self.slots), why)
        for slot in self.slots:
            slot.start_at = None
            if slot.process is not None:
                slot.process.send_signal(signal.SIGTERM)

    def _kill_the_rest(self) -> None:
        for slot in self.slots:
            if slot.process is not None:
                log.error("worker %d (pid %d) did not stop within %.0fs: killing it",
                          slot.index, slot.process.pid, STOP_DEADLINE_SECONDS)
                slot.unclean = True
                slot.process.kill()
        self._stop_deadline = float("inf")  # done: now only their exits are awaited

    def _exit_status(self) -> int:
        failed = self._failed or any(slot.unclean for slot in self.slots)
        log.info("supervisor exits: %d worker restart(s) while running%s", self.restarts,
                 "; not every worker stopped cleanly" if failed else "")
        return 1 if failed else 0


def pin_to_core(pid: int, index: int) -> int | None:
    """Pin process `pid` to the index-th core this process may use (round robin); the
    core, or None where the platform cannot pin or refuses (logged: it still runs)."""
    if not hasattr(os, "sched_setaffinity"):
        log.warning("worker cpu affinity: this platform cannot pin processes")
        return None
    cores = sorted(os.sched_getaffinity(0))
    core = cores[index % len(cores)]
    try:
        os.sched_setaffinity(pid, {core})
    except OSError as exc:
        log.warning("worker cpu affinity: cannot pin pid %d to core %d: %s", pid, core, exc)
        return None
    log.info("worker %d (pid %d) pinned to core %d", index, pid, core)
    return core


async def first_start(config: Config) -> tuple[str, FirstStart]:
    """The API token and channel `demo`, once for every worker (see first_start)."""
    token, generated = load_or_create_token(config)
    store = open_store(config.store, config.data_dir)
    try:
        demo_key = await ensure_demo_channel(store)
    finally:
        await store.close()
    return token, FirstStart(demo_key, generated)


def _ignore(signum: int, frame: object) -> None:
    return None


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


def _drain(fd: int) -> Iterator[int]:
    """The signal numbers written to the wake-up pipe since it was last read."""
    while chunk := _read_some(fd):
        yield from chunk
