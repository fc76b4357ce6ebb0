"""Process liveness, the one OS question the lifecycle asks."""
from __future__ import annotations

import os
import sys

_LINUX = sys.platform.startswith("linux")


def _is_zombie(pid: int) -> bool:
    """Whether /proc says ``pid`` exited but was not reaped yet (state 'Z'). Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(512)
    except OSError:
        return False  # vanished meanwhile, or no /proc: leave it to kill()
    # "pid (comm) S ...": comm may contain spaces and parentheses; the state
    # follows the LAST ')'.
    paren = stat.rfind(b")")
    return paren >= 0 and stat[paren + 1:paren + 3] == b" Z"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (``os.kill(pid, 0)``); pid 0 counts as alive
    (unknown: never declare it dead). EPERM means it exists. On Linux an exited
    but unreaped child (a zombie, state 'Z' in /proc/<pid>/stat) counts as dead:
    it will never write again. Never blocks."""
    if pid == 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OSError, OverflowError, ValueError):
        return True  # not a pid this OS can look up: do not declare it dead
    if _LINUX and _is_zombie(pid):
        return False
    return True
