"""Process liveness, the one OS question the lifecycle asks."""
from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (``os.kill(pid, 0)``); pid 0 counts as alive
    (unknown: never declare it dead). EPERM means it exists. Never blocks."""
    if pid == 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError, ValueError):
        return True  # not a pid this OS can look up: do not declare it dead
    return True
