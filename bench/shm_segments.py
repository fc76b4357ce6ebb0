"""The shared-memory areas a GStreamer shmsink process leaves in /dev/shm when it dies
without closing (a benchmark helper, not a test).

shmsink (gst-plugins-bad, shmpipe.c) names each area it creates "shmpipe.%5d.%5d": its
own pid and the area's number, both printed right-aligned in 5 columns
("shmpipe. 2497.    0"). It unlinks an area when it closes it; a process killed first
(SIGKILL, a guard that ran out) leaves a 64 MiB file behind (shm-size's default). The
benchmarks remove, after each run, the areas of the shmsink processes that run started:
only names that carry one of their pids, never another process's. Also: the wait for a
shmsink sender's socket, and the pids of a process's children.
"""
from __future__ import annotations

import os
import time
from typing import List

SHM_DIR = "/dev/shm"


def shmsink_segments(pid: int, shm_dir: str = SHM_DIR) -> List[str]:
    """Paths of the areas shmsink process `pid` created that are still in `shm_dir`
    (sorted). Any thread; never blocks (one directory read)."""
    prefix = f"shmpipe.{pid:5d}."
    try:
        entries = os.listdir(shm_dir)
    except FileNotFoundError:
        return []
    return sorted(os.path.join(shm_dir, e) for e in entries
                  if e.startswith(prefix) and e[len(prefix):].strip().isdigit())


def remove_shmsink_segments(pid: int, shm_dir: str = SHM_DIR) -> List[str]:
    """Unlinks the areas of shmsink process `pid` (call it once that process has ended:
    a live one still uses them); returns the paths removed. Raises OSError (naming the
    path) for anything but an area already gone. Any thread; never blocks."""
    removed = []
    for path in shmsink_segments(pid, shm_dir):
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise OSError(e.errno, f"unlink({path}) failed: errno {e.errno} "
                                   f"({os.strerror(e.errno or 0)})") from None
        removed.append(path)
    return removed


def child_pids(pid: int) -> List[int]:
    """The pids of the running children of process `pid` (from /proc/*/stat: field 4 is
    the parent's pid), e.g. the command `perf stat -- CMD` started. Any thread; never
    blocks."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:  # ended meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(entry))
    return sorted(out)


def wait_for_path(path: str, timeout: float = 20) -> None:
    """Polls every 10 ms until `path` exists (a shmsink sender's socket: it is ready) or
    `timeout` s passed (the caller's next step then fails and says so). Blocks."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
