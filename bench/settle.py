"""Waits for the machine to go quiet before a measured run.

The chains of `make bench` share the machine, and two of them share our PDP
(nginx auth_request and ours). A run that overloads its chain (2,000 req/s
open loop) can leave work behind after vegeta stops: requests the client
gave up on are still queued in a PDP or an Envoy. Measured right after, the
next chain would pay for that backlog. So each run starts once the whole
machine's CPU has been mostly idle for a moment, or after a bounded wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

QUIET_BUSY = 0.25  # of all cores: the bench's own idle servers and the rest of the box stay below
_WINDOW_S = 0.25
_QUIET_WINDOWS = 2


def cpu_times(stat_text: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat's first line."""
    fields = stat_text.split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        raise ValueError("not /proc/stat: the first line is not the all-CPU line")
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, sum(ticks)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of all CPUs' time that was busy between two cpu_times samples."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def _read_stat() -> str:
    return Path("/proc/stat").read_text()


def wait_for_quiet(
    max_s: float,
    read_stat: Callable[[], str] = _read_stat,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bool, float]:
    """Blocks until two windows in a row were below QUIET_BUSY, at most max_s.

    Returns (quiet, seconds waited): quiet is False when max_s ran out first.
    """
    started = clock()
    quiet_windows = 0
    previous = cpu_times(read_stat())
    while True:
        sleep(_WINDOW_S)
        current = cpu_times(read_stat())
        quiet_windows = quiet_windows + 1 if busy_share(previous, current) < QUIET_BUSY else 0
        previous = current
        waited = clock() - started
        if quiet_windows >= _QUIET_WINDOWS:
            return True, waited
        if waited >= max_s:
            return False, waited
