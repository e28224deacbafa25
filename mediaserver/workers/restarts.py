"""When the supervisor starts a dead worker again.

A worker that ran for a while and then died (a crash, the OOM killer, an
operator's SIGKILL) is started again at once: its encoders are reconnecting and
its slot's share of the box is idle. One that dies soon after starting is likely
to die again (a bad disk, a port taken, Redis refusing it), so each quick death
doubles the wait before the next attempt, up to a ceiling: a crash loop costs a
start every half minute, not a core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A worker that lived this long was healthy: its death says nothing of the next start.
STABLE_SECONDS = 10.0
# The wait after the first quick death; each further quick death doubles it.
FIRST_BACKOFF_SECONDS = 0.5
# Never wait longer than this between attempts.
MAX_BACKOFF_SECONDS = 30.0


@dataclass(slots=True)
class RestartPolicy:
    """One slot's restart timing: call `delay_after` with how long the dead worker ran."""

    stable: float = STABLE_SECONDS
    first: float = FIRST_BACKOFF_SECONDS
    ceiling: float = MAX_BACKOFF_SECONDS
    quick_deaths: int = field(default=0)

    def delay_after(self, uptime: float) -> float:
        """Seconds to wait before starting the slot's next worker."""
        if uptime >= self.stable:
            self.quick_deaths = 0
            return 0.0
        self.quick_deaths += 1
        return min(self.ceiling, self.first * 2 ** (self.quick_deaths - 1))
