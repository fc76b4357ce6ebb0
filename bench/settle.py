"""Waiting for a quiet machine before a benchmark starts.

The 1-minute load average lags: right after scripts/bench.sh's own build it still reads
about 1 for a minute or two on an idle machine, and a run started then would be labelled busy
(or, started under someone else's work, measured noisy). What matters is whether other work
uses the CPUs now, which /proc/stat tells over a few seconds. Called by bench/bench.py from
its main thread before the first measurement; blocks up to `max_wait_s`.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple, Tuple

# Busy share of all CPUs below which the machine counts as quiet: a tenth (on 2 CPUs, a
# fifth of one) leaves room for the desktop-less background of a server (journald, cron,
# the benchmark's own Python).
QUIET_SHARE = 0.10
# Length of one measured window.
SETTLE_WINDOW_S = 5.0


def cpu_times(path: str = "/proc/stat") -> Tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot from the aggregate `cpu` line of
    /proc/stat: busy is everything but idle and iowait (steal counts as busy: the host ran
    something else on our CPUs). Raises OSError if the file cannot be read and ValueError
    naming the file if its first line is not the aggregate line."""
    with open(path) as f:
        fields = f.readline().split()
    if not fields or fields[0] != "cpu" or len(fields) < 5:
        raise ValueError(f"{path}: first line is not the aggregate 'cpu' line")
    ticks = [int(x) for x in fields[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    total = sum(ticks[:8])
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return total - idle, total


class Settled(NamedTuple):
    busy_share: float  # busy share of all CPUs over the last window, 0..1
    waited_s: float  # seconds spent waiting, windows included
    quiet: bool  # busy_share < threshold when the wait ended


def wait_until_quiet(max_wait_s: float = 180.0, window_s: float = SETTLE_WINDOW_S,
                     threshold: float = QUIET_SHARE,
                     sample: Callable[[], Tuple[int, int]] = cpu_times,
                     sleep: Callable[[float], None] = time.sleep,
                     now: Callable[[], float] = time.monotonic) -> Settled:
    """Measures the CPUs' busy share window after window until one window is below
    `threshold` or `max_wait_s` has passed (then gives up: the caller measures anyway and
    reports the share). At least one window is always measured. Blocks."""
    start = now()
    while True:
        b0, t0 = sample()
        sleep(window_s)
        b1, t1 = sample()
        share = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        waited = now() - start
        if share < threshold or waited >= max_wait_s:
            return Settled(share, waited, share < threshold)
